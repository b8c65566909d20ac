"""Ablations: one setting changed at a time, every stage reused from disk when its config hash already exists.

Each ablation point is (lift artifacts) -> fine-tune -> probe with the variants ``finetuned`` and ``concat``, so a
row holds stage-1 quality, fine-tuning cost and the probe/3D-awareness results. The baseline point (the
profile's own settings) is the run of notebooks 02-04, found by hash, not recomputed.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import pipeline
from .backbone import Backbone
from .lift import LiftResult, refit_features
from .profiles import Profile, SceneSplit
from .utils import atomic_dir, config_hash, write_json

ABLATIONS = {
    "feature_dim": "low-dim feature per Gaussian (stage 1)",
    "epochs": "fine-tuning epochs",
    "mode": "full fine-tuning vs LoRA adapter (rank 4, qkv of the last 4 blocks)",
    "target_factor": "target render resolution (token grid ×1 / ×2 / ×4)",
}


def _lifts_for_dim(profile: Profile, original: Backbone, split: SceneSplit, dim: int, artifacts_dir: str | Path,
                   iterations: int | None) -> tuple[list[LiftResult], list[LiftResult]]:
    """Training and held-out lifts with ``dim``-d features: the baseline's, or refitted on its frozen geometry."""
    base_train = pipeline.load_lifts(profile, original, split.train, artifacts_dir)
    base_val = pipeline.load_lifts(profile, original, split.val[: profile.n_val_lift], artifacts_dir)
    if dim == profile.lift.feature_dim:
        return base_train, base_val
    refit = [refit_features(b, original, dim, iterations=iterations, root=artifacts_dir) for b in base_train + base_val]
    return refit[: len(base_train)], refit[len(base_train) :]


def run_point(profile: Profile, split: SceneSplit, original: Backbone, artifacts_dir: str | Path, *, ablation: str, value: Any,
              device: str = "auto", seed: int = 0, refit_iterations: int | None = None, probe_steps: int | None = None,
              variants: tuple[str, ...] = ("concat",)) -> dict[str, Any]:
    """One ablation point -> a flat row of numbers (every stage cached by its config hash).

    ``probe_steps`` (default: the profile's) and ``variants`` keep a CPU run of the whole grid affordable.
    """
    t0 = time.time()
    prof = profile
    dim = profile.lift.feature_dim
    if ablation == "feature_dim":
        dim = int(value)
    elif ablation in ("epochs", "mode", "target_factor"):
        prof = dataclasses.replace(profile, finetune=dataclasses.replace(profile.finetune, **{ablation: value}))
    else:
        raise ValueError(f"unknown ablation {ablation!r}; choose one of {sorted(ABLATIONS)}")
    train_lifts, val_lifts = _lifts_for_dim(profile, original, split, dim, artifacts_dir, refit_iterations)
    tuned = pipeline.backbone_for(prof, device, weights=original.weights if not original.weights.startswith("file:") else original.weights[5:])
    ft = pipeline.finetune_stage(prof, tuned, split, artifacts_dir, lifts=[r.path for r in train_lifts], val_lifts=[r.path for r in val_lifts])
    if probe_steps:
        prof = dataclasses.replace(prof, probe_steps_seg=probe_steps, probe_steps_depth=probe_steps)
    probe = pipeline.probe_stage(prof, split, original, ft.load(device), ft.path.name, artifacts_dir, variants=variants,
                                 device=device, seed=seed, tag={"ablation": ablation, "value": value})
    row: dict[str, Any] = {"ablation": ablation, "value": value,
                           "lift_psnr": float(np.mean([r.stats["heldout_psnr"] for r in train_lifts])),
                           "lift_feature_cosine": float(np.mean([r.stats["heldout_feature_cosine"] for r in train_lifts])),
                           "feature_MB": float(np.mean([r.params["features"].numel() * 4 / 2**20 for r in train_lifts])),
                           "ft_val_l1_after": ft.stats["val_l1_after"], "ft_seconds_per_step": ft.stats["seconds_per_step"],
                           "ft_trainable_params": ft.stats["trainable_params"]}
    for variant in variants:
        row[f"seg_miou_{variant}"] = probe["results"]["seg"][variant]["miou"]
        row[f"depth_rmse_{variant}"] = probe["results"]["depth"][variant]["rmse"]
        row[f"recall14_{variant}"] = probe["awareness"].get(variant, {}).get("recall@14px")
    row["seconds"] = round(time.time() - t0, 1)
    return row


def run_ablations(profile: Profile, split: SceneSplit, original: Backbone, artifacts_dir: str | Path, grid: dict[str, list[Any]], *,
                  device: str = "auto", seed: int = 0, refit_iterations: int | None = None, probe_steps: int | None = None,
                  variants: tuple[str, ...] = ("concat",)) -> dict[str, Any]:
    """Every point of ``grid`` ({ablation: [values]}); writes ``artifacts/ablations/<hash>/stats.json`` for the report."""
    rows = {name: [run_point(profile, split, original, artifacts_dir, ablation=name, value=v, device=device, seed=seed,
                             refit_iterations=refit_iterations, probe_steps=probe_steps, variants=tuple(variants))
                   for v in values] for name, values in grid.items()}
    key = {"stage": "ablations", "grid": grid, "profile": profile.name, "backbone": original.describe(), "seed": seed,
           "refit_iterations": refit_iterations, "probe_steps": probe_steps, "variants": list(variants), "lift": dataclasses.asdict(profile.lift), "finetune": dataclasses.asdict(profile.finetune)}
    out = Path(artifacts_dir) / "ablations" / config_hash(key)
    stats = {"stage": "ablations", "profile": profile.name, "backbone": original.name, "weights": original.weights, "rows": rows}
    with atomic_dir(out, overwrite=True) as tmp:
        write_json(tmp / "config.json", key)
        write_json(tmp / "stats.json", stats)
    return stats
