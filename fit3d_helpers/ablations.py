"""Ablations: one setting changed at a time, every stage reused from disk when its config hash already exists.

Each point is (lift) -> fine-tune -> probe with ``prof.ablations.variants``. **Every point of a sweep has the same
budget**: the feature-dimension and feature-path sweeps refit features and decoder on the baseline's frozen geometry
for ``ablations.refit_iterations`` at *every* point, the profile's own value included (not read from notebook 02's
joint fit); every point's probes train for ``ablations.probe_steps``. So the baseline row of a sweep is recomputed at
the sweep's budget and compares fairly with its neighbours (it is not the headline probe of notebook 04).

Timing is kept out of the result rows (``row["cost"]``): wall time on a shared 2-core machine is noise.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import cache, pipeline
from .backbone import Backbone
from .lift import LiftResult, refit_features
from .probe import probe_settings_key
from .profiles import Profile, SceneSplit

# name: (what it varies, whose ablation it is)
ABLATIONS: dict[str, tuple[str, str]] = {
    "feature_dim": ("low-dim feature per Gaussian (stage 1)", "paper, arXiv 2407.20229v1 Table 5"),
    "epochs": ("fine-tuning epochs", "paper, arXiv 2407.20229v1 Table 8"),
    "mode": (
        "full fine-tuning vs a rank-4 LoRA adapter on qkv of the last 4 blocks",
        "the course's own (the paper's Table 6 adapter is one Swin block on frozen DINOv2)",
    ),
    "feature_factor": (
        "the feature path of both stages: decode at token grid ×1, ×2, or the full render (0)",
        "the course's own",
    ),
}


def grid_of(prof: Profile) -> dict[str, list[Any]]:
    """The sweep of ``prof.ablations``: {ablation: [values]}."""
    a = prof.ablations
    return {
        "feature_dim": list(a.feature_dims),
        "epochs": list(a.epochs),
        "mode": list(a.modes),
        "feature_factor": list(a.feature_factors),
    }


def _refit_lifts(
    prof: Profile,
    original: Backbone,
    base: tuple[list[LiftResult], list[LiftResult]],
    artifacts_dir: str | Path,
    *,
    dim: int,
    factor: int,
) -> tuple[list[LiftResult], list[LiftResult]]:
    """Training and held-out lifts with ``dim``-d features on the ``factor`` path, refitted on the baseline's geometry
    (``base``: the training and held-out lifts) at the sweep's budget (every point, the baseline's own values too)."""
    base_train, base_val = base
    refit = [
        refit_features(
            b, original, dim, feature_factor=factor, iterations=prof.ablations.refit_iterations, root=artifacts_dir
        )
        for b in base_train + base_val
    ]
    return refit[: len(base_train)], refit[len(base_train) :]


def run_point(
    prof: Profile,
    split: SceneSplit,
    original: Backbone,
    artifacts_dir: str | Path,
    *,
    ablation: str,
    value: Any,
    device: str = "auto",
    base: tuple[list[LiftResult], list[LiftResult]] | None = None,
) -> dict[str, Any]:
    """One ablation point -> a flat row of numbers (every stage cached by its config hash), plus its cost.

    ``base``: the profile's training and held-out lifts (:func:`pipeline.train_val_lifts`), when the caller has them.
    """
    t0 = time.time()
    a = prof.ablations
    point = prof
    if base is None:
        base = pipeline.train_val_lifts(prof, original, split, artifacts_dir, needed_by="ablations")
    if ablation == "feature_dim":
        train_lifts, val_lifts = _refit_lifts(
            prof, original, base, artifacts_dir, dim=int(value), factor=prof.lift.feature_factor
        )
    elif ablation == "feature_factor":
        train_lifts, val_lifts = _refit_lifts(
            prof, original, base, artifacts_dir, dim=prof.lift.feature_dim, factor=int(value)
        )
    elif ablation in ("epochs", "mode"):
        point = dataclasses.replace(prof, finetune=dataclasses.replace(prof.finetune, **{ablation: value}))
        train_lifts, val_lifts = base
    else:
        raise ValueError(f"unknown ablation {ablation!r}; choose one of {sorted(ABLATIONS)}")
    tuned = pipeline.backbone_for(
        point, device, weights=original.weights[5:] if original.weights.startswith("file:") else original.weights
    )
    ft = pipeline.finetune_stage(point, tuned, split, artifacts_dir, lifts=train_lifts, val_lifts=val_lifts)
    point = dataclasses.replace(
        point,
        probe=dataclasses.replace(point.probe, seg_steps=a.probe_steps, depth_steps=a.probe_steps, variants=a.variants),
    )
    probe = pipeline.probe_stage(
        point,
        split,
        original,
        ft.load(device),
        artifacts_dir,
        device=device,
        tag={"ablation": ablation, "value": value},
    )
    row: dict[str, Any] = {
        "ablation": ablation,
        "value": value,
        "lift_psnr": float(np.mean([r.stats["heldout_psnr"] for r in train_lifts])),
        "lift_feature_cosine": float(np.mean([r.stats["heldout_feature_cosine"] for r in train_lifts])),
        "feature_MB": float(np.mean([r.params["features"].numel() * 4 / 2**20 for r in train_lifts])),
        "ft_val_l1_after": ft.stats["val_l1_after"],
        "ft_trainable_params": ft.stats["trainable_params"],
    }
    for variant in a.variants:
        row[f"seg_miou_{variant}"] = probe["results"]["seg"][variant]["miou"]
        row[f"depth_rmse_{variant}"] = probe["results"]["depth"][variant]["rmse"]
        row[f"recall14_{variant}"] = probe["awareness"].get(variant, {}).get("recall@14px")
    row["cost"] = {"ft_seconds_per_step": ft.stats["seconds_per_step"], "point_seconds": round(time.time() - t0, 1)}
    return row


def run_ablations(
    prof: Profile, split: SceneSplit, original: Backbone, artifacts_dir: str | Path, *, device: str = "auto"
) -> dict[str, Any]:
    """Every point of ``prof.ablations``; the table goes to ``artifacts/ablations`` for the report."""
    grid = grid_of(prof)
    key = {
        "stage": "ablations",
        "grid": grid,
        "profile": prof.name,
        "backbone": original.identity(),
        "seed": prof.seed,
        "ablations": dataclasses.asdict(prof.ablations),
        "lift": dataclasses.asdict(prof.lift),
        "finetune": dataclasses.asdict(prof.finetune),
        "probe": probe_settings_key(prof.probe),
        "scenes": [cache.scene_id(p) for p in split.train + split.val],
        "n_val_lift": prof.data.n_val_lift,
    }

    def make(out: Path, resume: Path) -> dict[str, Any]:
        base = pipeline.train_val_lifts(prof, original, split, artifacts_dir, needed_by="ablations")  # loaded once
        rows = {
            name: [
                run_point(prof, split, original, artifacts_dir, ablation=name, value=v, device=device, base=base)
                for v in values
            ]
            for name, values in grid.items()
        }
        return {
            "stage": "ablations",
            "profile": prof.name,
            "backbone": original.name,
            "weights": original.weights,
            "sources": {k: v[1] for k, v in ABLATIONS.items()},
            "budget": {"refit_iterations": prof.ablations.refit_iterations, "probe_steps": prof.ablations.probe_steps},
            "rows": rows,
        }

    return cache.build("ablations", key, artifacts_dir, make, what="the ablation table").stats
