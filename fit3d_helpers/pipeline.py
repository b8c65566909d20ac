"""Stage-level entry points the notebooks (and the ablations) call: one function per stage, cached by config hash.

Each function takes a :class:`~fit3d_helpers.profiles.Profile`, finds what earlier stages wrote by hashing the
configs that made it (never by parsing folder names), and returns what it made plus its stats.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backbone import Backbone, load_backbone
from .data import load_scene, reprojection_consistency
from .distributed import shard as shard_items
from .finetune import FinetuneConfig, FinetuneResult, finetune
from .lift import LiftConfig, LiftError, LiftResult, lift_dir, lift_scene, load_lift
from .profiles import Profile, SceneSplit, scenes_for
from .utils import artifact_complete, atomic_dir, config_hash, read_json, save_torch, write_json


def data_stage(profile: Profile, artifacts_dir: str | Path = "artifacts", *, workers: int = 2) -> tuple[SceneSplit, dict[str, Any]]:
    """Generate (or find) the profile's scenes and record their multi-view consistency in ``artifacts/data/<hash>``."""
    t0 = time.time()
    split = scenes_for(profile, workers=workers)
    key = {"stage": "data", "dataset": profile.dataset, "scenes": [str(p) for p in split.train + split.val]}
    out = Path(artifacts_dir) / "data" / config_hash(key)
    if artifact_complete(out):
        return split, read_json(out / "stats.json")
    gen_seconds = time.time() - t0
    meta_path = Path(split.train[0]).parent.parent / "dataset.json" if split.train else None
    if meta_path is not None and meta_path.is_file():
        gen_seconds = float(read_json(meta_path).get("seconds", gen_seconds))
    per_scene = {}
    for path in split.train + split.val:
        scene = load_scene(path)
        per_scene[scene.name] = float(np.mean([reprojection_consistency(a, b, 0.03) for a, b in zip(scene.views[:-1], scene.views[1:])]))
    stats = {"stage": "data", "profile": profile.name, "dataset": profile.dataset, "train_scenes": len(split.train), "val_scenes": len(split.val),
             "views_per_scene": len(load_scene(split.train[0]).views) if split.train else 0,
             "image_hw": [profile.height, profile.width], "generate_seconds": round(gen_seconds, 1),
             "consistency_3cm_mean": float(np.mean(list(per_scene.values()))), "consistency_3cm_min": float(np.min(list(per_scene.values()))),
             "consistency_per_scene": per_scene}
    with atomic_dir(out, overwrite=True) as tmp:
        write_json(tmp / "config.json", key)
        write_json(tmp / "stats.json", stats)
    return split, stats


def backbone_for(profile: Profile, device: str = "auto", weights: str | None = None) -> Backbone:
    """The profile's backbone (random init, flagged, when the hub is unreachable)."""
    return load_backbone(profile.backbone, weights or profile.weights, device=device)


def lift_scenes(profile: Profile, split: SceneSplit) -> list[Path]:
    """Scenes stage 1 fits: every training scene, plus the first ``n_val_lift`` held-out ones (fine-tune validation)."""
    return list(split.train) + list(split.val[: profile.n_val_lift])


def lift_stage(profile: Profile, backbone: Backbone, split: SceneSplit, artifacts_dir: str | Path = "artifacts", *,
               shard: str | None = None, backend: str = "auto", force: bool = False) -> list[LiftResult]:
    """Fit every scene of this shard ("i/n": round-robin, so n machines cover every scene once)."""
    return [lift_scene(s, backbone, profile.lift, root=artifacts_dir, backend=backend, force=force) for s in shard_items(lift_scenes(profile, split), shard)]


def load_lifts(profile: Profile, backbone: Backbone, scenes: list[Path], artifacts_dir: str | Path = "artifacts") -> list[LiftResult]:
    """Stage 1's artifacts for ``scenes`` (by config hash); a missing one raises naming the scene and the call."""
    out = []
    for s in scenes:
        path = lift_dir(s, backbone, profile.lift, artifacts_dir)
        if not artifact_complete(path):
            raise LiftError(f"no lift artifact for scene {s} with these settings (expected {path}): run notebook 02 "
                            f"(or fit3d_helpers.lift.lift_scene({str(s)!r}, backbone, profile.lift)) with the same profile, backbone and weights first.")
        out.append(load_lift(path, expect_dim=backbone.dim, expect_feature_dim=profile.lift.feature_dim))
    return out


def finetune_stage(profile: Profile, backbone: Backbone, split: SceneSplit, artifacts_dir: str | Path = "artifacts", *,
                   lifts: list[Path] | None = None, val_lifts: list[Path] | None = None, backend: str = "auto",
                   force: bool = False) -> FinetuneResult:
    """Fine-tune ``backbone`` in place on the training scenes' rendered targets (or load the cached result).

    ``lifts`` / ``val_lifts`` default to stage 1's artifacts of the profile's training / lifted held-out scenes.
    """
    if lifts is None:
        lifts = [r.path for r in load_lifts(profile, backbone, split.train, artifacts_dir)]
    if val_lifts is None:
        val_lifts = [r.path for r in load_lifts(profile, backbone, split.val[: profile.n_val_lift], artifacts_dir)]
    return finetune(lifts, backbone, profile.finetune, val_lifts=val_lifts, root=artifacts_dir, backend=backend, force=force)


# ----------------------------------------------------------------------------------------------------------------
# Probing
# ----------------------------------------------------------------------------------------------------------------

PROBE_VARIANTS = ("original", "finetuned", "concat", "add", "linear")


@dataclass
class ProbeData:
    """Images, labels and depth of a list of scenes, stacked (views of all scenes)."""

    images: torch.Tensor  # [N, H, W, 3]
    labels: torch.Tensor  # [N, H, W] int64, 255 ignore
    depth: torch.Tensor  # [N, H, W] metres, 0 invalid
    scene_of: list[int]  # scene index of each view
    views: list  # data.View objects (poses, for the 3D-awareness check)
    classes: list[str]


def probe_data(scenes: list[Path], max_depth: float = 10.0) -> ProbeData:
    """Stack the views of ``scenes``; checks label ids against the class table and counts masked depth."""
    images, labels, depth, scene_of, views, classes = [], [], [], [], [], None
    for si, path in enumerate(scenes):
        scene = load_scene(path)
        classes = classes or scene.classes
        for v in scene.views:
            if v.labels is None or v.depth is None:
                raise ValueError(f"{scene.name}/{v.name}: probing needs labels and depth for every view")
            bad = (v.labels != 255) & ((v.labels < 0) | (v.labels >= len(scene.classes or [])))
            if bad.any():
                raise ValueError(f"{scene.name}/{v.name}: label ids {sorted(set(v.labels[bad].tolist()))[:5]} are outside the class table "
                                 f"(0..{len(scene.classes or []) - 1}, 255 = ignore)")
            images.append(torch.as_tensor(v.image))
            labels.append(torch.as_tensor(v.labels).long())
            d = torch.as_tensor(v.depth).float()
            depth.append(torch.where(torch.isfinite(d) & (d > 0) & (d <= max_depth), d, torch.zeros_like(d)))
            scene_of.append(si)
            views.append(v)
    return ProbeData(torch.stack(images), torch.stack(labels), torch.stack(depth), scene_of, views, list(classes or []))


def cached_features(bb: Backbone, identity: str, scenes: list[Path], images: torch.Tensor, artifacts_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen (patch [N, D, h, w], cls [N, D]) of ``images``, computed once per (model identity, scenes)."""
    key = {"stage": "features", "model": identity, "scenes": [str(p) for p in scenes]}
    out = Path(artifacts_dir) / "features" / config_hash(key)
    if artifact_complete(out):
        f = torch.load(out / "features.pt", map_location="cpu", weights_only=True)
        return f["patch"], f["cls"]
    t0 = time.time()
    patch, cls = bb.features(images.permute(0, 3, 1, 2), batch_size=8)
    with atomic_dir(out, overwrite=True) as tmp:
        save_torch(tmp / "features.pt", {"patch": patch, "cls": cls})
        write_json(tmp / "config.json", key)
        write_json(tmp / "stats.json", {"stage": "features", "n": int(patch.shape[0]), "seconds": round(time.time() - t0, 1)})
    return patch, cls


def _feats(variant: str, orig: torch.Tensor, ft: torch.Tensor) -> tuple[Any, str | None]:
    """What the probe trainers take for a variant: one tensor, or an (original, fine-tuned) pair + assembly."""
    if variant == "original":
        return orig, None
    if variant == "finetuned":
        return ft, None
    return (orig, ft), variant


def probe_stage(profile: Profile, split: SceneSplit, original: Backbone, finetuned: Backbone, finetune_id: str,
                artifacts_dir: str | Path = "artifacts", *, variants: tuple[str, ...] = PROBE_VARIANTS,
                tasks: tuple[str, ...] = ("seg", "depth"), awareness: bool = True, device: str = "auto",
                seed: int = 0, force: bool = False, tag: dict[str, Any] | None = None) -> dict[str, Any]:
    """Linear probes (seg, depth) and the 3D-awareness check for each feature variant; cached by config hash.

    Trained on the training scenes' views, evaluated on the held-out scenes (never seen in fine-tuning).
    ``finetune_id`` names the fine-tuned model (its artifact hash, or "fit3d" for the released checkpoint).
    ``tag`` (e.g. ``{"headline": True}`` or ``{"ablation": "epochs", "value": 2}``) tells the report what the run is.
    """
    from . import awareness as A
    from . import probe as P

    key = {"stage": "probe", "original": original.describe(), "finetuned": finetune_id, "train": [str(p) for p in split.train],
           "val": [str(p) for p in split.val], "variants": list(variants), "tasks": list(tasks), "awareness": awareness,
           "steps": [profile.probe_steps_seg, profile.probe_steps_depth], "lr_depth": profile.probe_lr_depth, "batch": profile.probe_batch, "max_depth": profile.max_depth, "seed": seed}  # the tag is not part of the key: equal runs are shared
    out = Path(artifacts_dir) / "probe" / config_hash(key)
    if artifact_complete(out) and not force:
        return {**read_json(out / "stats.json"), "path": str(out)}
    t0 = time.time()
    train, val = probe_data(split.train, profile.max_depth), probe_data(split.val, profile.max_depth)
    o_tr, oc_tr = cached_features(original, json.dumps(original.describe(), sort_keys=True), split.train, train.images, artifacts_dir)
    o_va, oc_va = cached_features(original, json.dumps(original.describe(), sort_keys=True), split.val, val.images, artifacts_dir)
    f_tr, fc_tr = cached_features(finetuned, finetune_id, split.train, train.images, artifacts_dir)
    f_va, fc_va = cached_features(finetuned, finetune_id, split.val, val.images, artifacts_dir)
    results: dict[str, dict[str, dict[str, float]]] = {t: {} for t in tasks}
    examples: dict[str, dict[str, torch.Tensor]] = {}
    curves: dict[str, list[float]] = {}
    for variant in variants:
        feats_tr, asm = _feats(variant, o_tr, f_tr)
        feats_va, _ = _feats(variant, o_va, f_va)
        if "seg" in tasks:
            r = P.train_seg_probe(feats_tr, train.labels, feats_va, val.labels, len(train.classes), steps=profile.probe_steps_seg,
                                  batch_size=profile.probe_batch, device=device, seed=seed, assembly=asm)
            results["seg"][variant] = {k: v for k, v in r.metrics.items()}
            examples[f"seg/{variant}"], curves[f"seg/{variant}"] = r.examples, r.losses
        if "depth" in tasks:
            # the CLS token: the fine-tuned model's for "finetuned", else the original's (as FiT3D's assembled heads)
            cls_tr, cls_va = (fc_tr, fc_va) if variant == "finetuned" else (oc_tr, oc_va)
            r = P.train_depth_probe(feats_tr, cls_tr, train.depth, feats_va, cls_va, val.depth, steps=profile.probe_steps_depth, lr=profile.probe_lr_depth,
                                    batch_size=profile.probe_batch, max_depth=profile.max_depth, device=device, seed=seed, assembly=asm)
            results["depth"][variant] = {k: v for k, v in r.metrics.items()}
            examples[f"depth/{variant}"], curves[f"depth/{variant}"] = r.examples, r.losses
    aware: dict[str, dict[str, float]] = {}
    if awareness:
        grid = tuple(o_va.shape[-2:])
        pairs = []
        for si in sorted(set(val.scene_of)):
            ids = [i for i, s in enumerate(val.scene_of) if s == si]
            pairs += [(ids[a], ids[b], ov) for a, b, ov in A.covisible_pairs([val.views[i] for i in ids], grid, max_pairs=12)]
        aware = A.awareness_table(val.views, pairs, {"original": o_va, "finetuned": f_va, "concat": torch.cat([o_va, f_va], 1)}, seed=seed)
    stats = {"stage": "probe", "profile": profile.name, **(tag or {}), **{k: v for k, v in original.describe().items() if k in ("backbone", "weights")}, "finetuned": finetune_id,
             "train_views": int(train.images.shape[0]), "val_views": int(val.images.shape[0]),
             "depth_pixels_masked_val": int((val.depth == 0).sum()), "classes": train.classes,
             "results": results, "awareness": aware, "wall_seconds": round(time.time() - t0, 1)}
    with atomic_dir(out, overwrite=True) as tmp:
        idx = next(iter(examples.values()))["index"] if examples else torch.zeros(0, dtype=torch.long)
        save_torch(tmp / "examples.pt", {"examples": examples, "index": idx, "images": val.images[idx], "depth": val.depth[idx], "labels": val.labels[idx]})
        write_json(tmp / "curves.json", curves)
        write_json(tmp / "config.json", key)
        write_json(tmp / "stats.json", stats)
    return {**stats, "path": str(out)}


__all__ = ["data_stage", "backbone_for", "lift_scenes", "lift_stage", "load_lifts", "finetune_stage", "probe_stage", "probe_data",
           "cached_features", "FinetuneConfig", "LiftConfig"]
