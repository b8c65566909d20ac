"""The stages as the notebooks call them: one function per stage, from a :class:`~fit3d_helpers.profiles.Profile`.

Each stage finds what earlier stages made by the hash of the settings that made it (:mod:`fit3d_helpers.cache`),
never by parsing folder names. **A missing input is handled the same way at every stage** (:func:`_missing`): with
``profile.on_missing == "compute"`` (smoke: minutes) the stage computes it through the same cache and prints what it
computes and roughly how long that takes; with ``"error"`` (paper: hours) it raises :class:`~.cache.MissingArtifact`
naming the notebook to run first. So a notebook opened alone (a fresh Colab runtime) either completes or says, in one
line, what to run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from . import cache
from .backbone import Backbone, load_backbone
from .cache import MissingArtifact, scene_id
from .data import load_scene, reprojection_consistency
from .distributed import shard as shard_items
from .finetune import FinetuneResult, finetune, finetune_key, released
from .lift import LiftResult, lift_key, lift_scene, load_lift
from .probe import run_probes
from .profiles import ConfigError, Profile
from .scenes import SceneSplit, scenes_for

NOTEBOOK_OF = {"data": "01_data", "lift": "02_lift_to_gaussians", "finetune": "03_finetune", "probe": "04_probe"}

# Rough CPU costs of the smoke profile on 2 cores (measured, see benchmarks/bench_course.py), for the printed notes.
_SECONDS_PER_LIFT_ITERATION_CPU = 0.15
_SECONDS_PER_FINETUNE_STEP_CPU = 0.9


def _missing(prof: Profile, what: str, stage: str, seconds: float | None, needed_by: str) -> None:
    """The one rule for a missing input: compute it (with a note) or stop naming the notebook that makes it."""
    nb = NOTEBOOK_OF[stage]
    if prof.on_missing == "error":
        raise MissingArtifact(
            f"{needed_by} needs {what}, which is not in the artifacts folder for these settings: run "
            f"notebook {nb} first with the same profile ({prof.name!r}) and overrides."
        )
    eta = f", roughly {max(1, round(seconds / 60))} min on 2 CPU cores" if seconds else ""
    print(f"[{needed_by}] {what} not found: computing it now{eta} (notebook {nb} shows this step).", flush=True)


def data_stage(
    prof: Profile, artifacts_dir: str | Path = "artifacts", *, workers: int = 2
) -> tuple[SceneSplit, dict[str, Any]]:
    """Generate (or find) the profile's scenes and record their multi-view consistency (``artifacts/data``)."""
    t0 = time.time()
    split = scenes_for(prof, workers=workers)
    key = {"stage": "data", "dataset": prof.data.dataset, "scenes": [scene_id(p) for p in split.train + split.val]}

    def make(out: Path, resume: Path) -> dict[str, Any]:
        if not split.train + split.val:  # probes-only profile (nyu): nothing to check here
            return {
                "stage": "data",
                "profile": prof.name,
                "dataset": prof.data.dataset,
                "train_scenes": 0,
                "val_scenes": 0,
            }
        gen_seconds = time.time() - t0
        meta_path = Path(split.train[0]).parent / "dataset.json" if split.train else None
        if meta_path is not None and meta_path.is_file():
            gen_seconds = float(cache.load_json(meta_path).get("seconds", gen_seconds))
        per_scene = {}
        views = 0
        for path in split.train + split.val:
            scene = load_scene(path)
            views = views or len(scene.views)
            pairs = zip(scene.views[:-1], scene.views[1:])
            per_scene[scene.name] = float(np.mean([reprojection_consistency(a, b, 0.03) for a, b in pairs]))
        return {
            "stage": "data",
            "profile": prof.name,
            "dataset": prof.data.dataset,
            "train_scenes": len(split.train),
            "val_scenes": len(split.val),
            "views_per_scene": views,
            "image_hw": [prof.data.height, prof.data.width],
            "generate_seconds": round(gen_seconds, 1),
            "consistency_3cm_mean": float(np.mean(list(per_scene.values()))),
            "consistency_3cm_min": float(np.min(list(per_scene.values()))),
            "consistency_per_scene": per_scene,
        }

    art = cache.build("data", key, artifacts_dir, make, what="the scene statistics")
    return split, art.stats


def backbone_for(prof: Profile, device: str = "auto", weights: str | None = None) -> Backbone:
    """The profile's backbone. ``auto`` with the hub unreachable: smoke falls back to a flagged random init; every
    other profile stops here, before any work, naming the cache paths to fill (hours on a random DINOv2 are waste)."""
    refuse = None if prof.name in ("smoke", "capture") else f"the {prof.name!r} profile"  # laptop minutes: allowed
    return load_backbone(prof.backbone.name, weights or prof.backbone.weights, device=device,
                         precision=prof.backbone.precision, refuse_random=refuse)  # fmt: skip


def lift_scenes(prof: Profile, split: SceneSplit) -> list[Path]:
    """Scenes stage 1 fits: the training scenes and the first ``data.n_val_lift`` held-out ones (stage 2 validation)."""
    return list(split.train) + list(split.val[: prof.data.n_val_lift])


def lift_stage(
    prof: Profile,
    backbone: Backbone,
    split: SceneSplit,
    artifacts_dir: str | Path = "artifacts",
    *,
    shard: str | None = None,
    backend: str = "auto",
    force: bool = False,
) -> list[LiftResult]:
    """Fit every scene of this shard ("i/n": round-robin, so n machines cover every scene once)."""
    return [
        lift_scene(
            s,
            backbone,
            prof.lift,
            root=artifacts_dir,
            backend=backend,
            force=force,
            include_test_frames=prof.data.include_test_frames,
            expected_wh=_expected_wh(prof),
        )
        for s in shard_items(lift_scenes(prof, split), shard)
    ]


def _expected_wh(prof: Profile) -> tuple[int, int] | None:
    """Real scenes must come at the profile's image size (ScanNet++: the official 876×584); generated ones do."""
    return (prof.data.width, prof.data.height) if prof.data.dataset == "scannetpp" else None


def lifts_for(
    prof: Profile,
    backbone: Backbone,
    scenes: list[Path],
    artifacts_dir: str | Path = "artifacts",
    *,
    needed_by: str = "this stage",
    backend: str = "auto",
) -> list[LiftResult]:
    """Stage 1's artifacts of ``scenes`` (found by hash); missing ones follow the profile's ``on_missing`` rule."""
    found = {
        s: cache.lookup("lift", lift_key(s, backbone, prof.lift, prof.data.include_test_frames), artifacts_dir)
        for s in scenes
    }
    missing = [s for s, a in found.items() if a is None]
    if missing:
        _missing(
            prof,
            f"stage 1 (the lift) of {len(missing)} scene(s)",
            "lift",
            len(missing) * prof.lift.iterations * _SECONDS_PER_LIFT_ITERATION_CPU,
            needed_by,
        )
    out = []
    for s in scenes:
        if found[s] is not None:
            out.append(
                load_lift(found[s], expect_dim=backbone.dim, expect_feature_dim=prof.lift.feature_dim, scene_path=s)
            )
        else:
            out.append(
                lift_scene(
                    s,
                    backbone,
                    prof.lift,
                    root=artifacts_dir,
                    backend=backend,
                    include_test_frames=prof.data.include_test_frames,
                    expected_wh=_expected_wh(prof),
                )
            )
    return out


def train_val_lifts(
    prof: Profile,
    backbone: Backbone,
    split: SceneSplit,
    artifacts_dir: str | Path = "artifacts",
    *,
    needed_by: str = "this stage",
    backend: str = "auto",
) -> tuple[list[LiftResult], list[LiftResult]]:
    """Stage 1's artifacts of the training scenes (the fine-tuning data) and of the lifted held-out ones (its
    validation), as :func:`lifts_for` finds them."""
    lifts = lifts_for(prof, backbone, lift_scenes(prof, split), artifacts_dir, needed_by=needed_by, backend=backend)
    return lifts[: len(split.train)], lifts[len(split.train) :]


def finetune_stage(
    prof: Profile,
    backbone: Backbone,
    split: SceneSplit,
    artifacts_dir: str | Path = "artifacts",
    *,
    lifts: list[LiftResult] | None = None,
    val_lifts: list[LiftResult] | None = None,
    backend: str = "auto",
    force: bool = False,
    needed_by: str = "fine-tuning",
) -> FinetuneResult:
    """Fine-tune ``backbone`` in place on the training scenes' rendered targets (or load the cached result).

    ``lifts`` / ``val_lifts`` default to stage 1's artifacts of the profile's training / lifted held-out scenes.
    """
    if lifts is None or val_lifts is None:
        found = train_val_lifts(prof, backbone, split, artifacts_dir, needed_by=needed_by, backend=backend)
        lifts = found[0] if lifts is None else lifts
        val_lifts = found[1] if val_lifts is None else val_lifts
    return finetune(
        lifts, backbone, prof.finetune, val_lifts=val_lifts, root=artifacts_dir, backend=backend, force=force
    )


def finetuned_model(
    prof: Profile,
    split: SceneSplit,
    artifacts_dir: str | Path = "artifacts",
    device: str = "auto",
    *,
    needed_by: str = "this notebook",
) -> tuple[Backbone, FinetuneResult | None]:
    """The fine-tuned backbone of the profile: FiT3D's released checkpoint (``finetune.mode="released"``), or stage 2's
    artifact (found by hash; a missing one follows the ``on_missing`` rule)."""
    if prof.finetune.mode == "released":
        return released(prof.backbone.name, device, precision=prof.backbone.precision), None
    fresh = backbone_for(prof, device)  # a copy of the original, trained in place if stage 2 must run
    lifts, val_lifts = train_val_lifts(prof, fresh, split, artifacts_dir, needed_by=needed_by)
    if cache.lookup("finetune", finetune_key(fresh, lifts, prof.finetune), artifacts_dir) is None:
        n_views = sum(lf.stats.get("train_views", 0) + lf.stats.get("heldout_views", 0) for lf in lifts)
        steps = prof.finetune.epochs * max(1, n_views // prof.finetune.batch_size)
        _missing(prof, "the fine-tuned model (stage 2)", "finetune", steps * _SECONDS_PER_FINETUNE_STEP_CPU, needed_by)
    result = finetune(lifts, fresh, prof.finetune, val_lifts=val_lifts, root=artifacts_dir)
    return result.load(device), result


def eval_sets(prof: Profile) -> tuple[Any, Any]:
    """The official evaluation sets the probes read (``probe.eval_root``): ((seg train, seg val), (depth train, depth
    val)), or (None, None) to probe the profile's own scenes."""
    if not prof.probe.eval_root:
        return None, None
    from . import evaldata as E

    root = Path(prof.probe.eval_root)
    if prof.data.dataset == "nyu":
        return (E.nyuv2_seg(root, "train"), E.nyuv2_seg(root, "val")), (
            E.nyu_depth(root, "train"),
            E.nyu_depth(root, "test"),
        )
    if prof.data.dataset == "scannetpp":
        return (E.scannetpp_seg(root, "train"), E.scannetpp_seg(root, "val")), (
            E.scannetpp_depth(root, "train"),
            E.scannetpp_depth(root, "val"),
        )
    raise ConfigError(
        f"probe.eval_root reads the official evaluation data of 'nyu' or 'scannetpp', not {prof.data.dataset!r}"
    )


def probe_stage(
    prof: Profile,
    split: SceneSplit,
    original: Backbone,
    finetuned: Backbone,
    artifacts_dir: str | Path = "artifacts",
    *,
    device: str = "auto",
    force: bool = False,
    tag: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Linear probes and the 3D-awareness check of ``prof.probe.variants``, cached (see :func:`probe.run_probes`):
    on the profile's scenes, or on the official evaluation data when ``probe.eval_root`` is set."""
    seg_sets, depth_sets = eval_sets(prof)
    extra: dict[str, Any] = {}
    if prof.probe.protocol == "official":
        from .probe import OfficialSettings

        extra = {"seg_sets": seg_sets, "depth_sets": depth_sets, "num_workers": prof.probe.num_workers}
        if prof.probe.official_scale != 1:
            extra["official"] = OfficialSettings().scaled(prof.probe.official_scale)
    return run_probes(prof.probe, split.train, split.val, original, finetuned, artifacts_dir,
                      max_depth=prof.data.max_depth, device=device, seed=prof.seed, force=force, tag=tag,
                      profile_name=prof.name, **extra)  # fmt: skip


__all__ = [
    "MissingArtifact",
    "NOTEBOOK_OF",
    "backbone_for",
    "data_stage",
    "eval_sets",
    "finetune_stage",
    "finetuned_model",
    "lift_scenes",
    "lift_stage",
    "lifts_for",
    "probe_stage",
    "train_val_lifts",
]
