"""The two profiles of the course, in one flat place (nanoGPT-style): "smoke" (CPU, minutes) and "paper" (one GPU).

Notebook parameters default to ``None`` meaning "the profile's value"; anything a user sets explicitly wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .finetune import FinetuneConfig
from .lift import LiftConfig


@dataclass
class Profile:
    name: str
    # scenes
    dataset: str  # "synthetic" (generated offline) or "scannetpp" (user-provided)
    n_train: int  # training scenes (lifted, fine-tuned on, probe heads trained on)
    n_val: int  # held-out scenes (probe evaluation, fine-tune validation, 3D-awareness check)
    n_val_lift: int  # held-out scenes also lifted, to measure the fine-tune validation L1
    n_views: int
    width: int
    height: int
    data_root: str
    # stages
    lift: LiftConfig
    finetune: FinetuneConfig
    probe_steps_seg: int
    probe_steps_depth: int
    probe_batch: int
    probe_lr_depth: float  # official 1e-4 over 38.4k steps; a few hundred smoke steps need 1e-3 to train at all
    max_depth: float
    backbone: str = "dinov2_small"
    weights: str = "auto"
    notes: dict[str, str] = field(default_factory=dict)


SMOKE = Profile(
    name="smoke",
    dataset="synthetic", n_train=3, n_val=2, n_val_lift=1, n_views=24, width=224, height=168, data_root="data/synthetic",
    lift=LiftConfig(),
    # lr 1e-5 (official) barely moves a model in the ~36 steps of a smoke epoch; the smoke profile uses 1e-4 so the
    # before/after difference is visible. The paper profile keeps the official 1e-5.
    finetune=FinetuneConfig(lr=1e-4),
    probe_steps_seg=150, probe_steps_depth=150, probe_batch=8, probe_lr_depth=1e-3, max_depth=10.0,
    notes={"time": "about 10-15 min on 2 CPU cores, end to end"},
)

PAPER = Profile(
    name="paper",
    dataset="scannetpp", n_train=230, n_val=50, n_val_lift=50, n_views=0, width=876, height=584, data_root="data/scannetpp",
    lift=LiftConfig.paper(),
    finetune=FinetuneConfig(),
    probe_steps_seg=40_000, probe_steps_depth=38_400, probe_batch=8, probe_lr_depth=1e-4, max_depth=20.0,
    notes={"time": "stage 1 ≈ 230 scenes × ~10 min on one A100-class GPU (≈ 40 GPU-hours; shard with --shard i/n), "
                   "stage 2 ≈ 1 epoch over ~140k views (several GPU-hours), probes ≈ 1-2 h each"},
)

PROFILES = {"smoke": SMOKE, "paper": PAPER}


def get_profile(name: str, **overrides: Any) -> Profile:
    """The named profile with ``overrides`` applied; ``None`` values are ignored (they mean "profile default")."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    prof = PROFILES[name]
    lift_over = {k[5:]: v for k, v in overrides.items() if k.startswith("lift_") and v is not None}
    ft_over = {k[3:]: v for k, v in overrides.items() if k.startswith("ft_") and v is not None}
    top = {k: v for k, v in overrides.items() if not k.startswith(("lift_", "ft_")) and v is not None}
    unknown = [k for k in top if k not in Profile.__dataclass_fields__]
    if unknown:
        raise ValueError(f"unknown profile settings {unknown}; valid: {sorted(Profile.__dataclass_fields__)}")
    return replace(prof, lift=replace(prof.lift, **lift_over), finetune=replace(prof.finetune, **ft_over), **top)


def course_profile(profile: str, *, n_train: int | None = None, n_val: int | None = None, n_views: int | None = None,
                   backbone: str | None = None, weights: str | None = None, iterations: int | None = None,
                   feature_dim: int | None = None, sh_degree: int | None = None, mode: str | None = None,
                   epochs: int | None = None, lr: float | None = None, target_factor: int | None = None,
                   seg_steps: int | None = None, depth_steps: int | None = None, strategy: str | None = None) -> Profile:
    """The profile from the pipeline parameters every notebook shares (``None`` = the profile's value).

    Every notebook takes all of them, so ``--set iterations=2000`` reaches notebooks 02-05 alike and each later
    stage finds the artifacts the earlier one made (they are looked up by the hash of these settings).
    """
    return get_profile(profile, n_train=n_train, n_val=n_val, n_views=n_views, backbone=backbone, weights=weights,
                       lift_iterations=iterations, lift_feature_dim=feature_dim, lift_sh_degree=sh_degree, ft_mode=mode,
                       ft_epochs=epochs, ft_lr=lr, ft_target_factor=target_factor, probe_steps_seg=seg_steps,
                       probe_steps_depth=depth_steps, lift_strategy=strategy)


@dataclass
class SceneSplit:
    train: list[Path]
    val: list[Path]
    classes: list[str] | None


def scenes_for(profile: Profile, *, workers: int = 2) -> SceneSplit:
    """The profile's scenes: generated (cached) synthetic rooms, or a user's ScanNet++ DSLR download."""
    if profile.dataset == "synthetic":
        from .synthetic import generate_dataset

        info = generate_dataset(profile.data_root, n_train=profile.n_train, n_val=profile.n_val, n_views=profile.n_views,
                                width=profile.width, height=profile.height, workers=workers)
        return SceneSplit(list(info.train), list(info.val), list(info.classes))
    if profile.dataset == "scannetpp":
        return scannetpp_split(Path(profile.data_root), profile.n_train, profile.n_val)
    raise ValueError(f"unknown dataset {profile.dataset!r}")


def scannetpp_split(root: Path, n_train: int, n_val: int) -> SceneSplit:
    """ScanNet++ v2 layout: ``root/splits/nvs_sem_{train,val}.txt`` and ``root/data/<id>/dslr/nerfstudio/transforms_undistorted.json``."""
    splits = root / "splits"
    if not (splits / "nvs_sem_train.txt").is_file():
        raise FileNotFoundError(f"ScanNet++ not found under {root}: download it (https://kaldir.vc.in.tum.de/scannetpp/, licence "
                                "required), undistort the DSLR images with its toolkit, and put splits/ and data/ there; "
                                "or use profile='smoke' (synthetic scenes).")

    def read(name: str, n: int) -> list[Path]:
        ids = [s.strip() for s in (splits / name).read_text().split() if s.strip()][:n]
        return [root / "data" / i / "dslr" / "nerfstudio" / "transforms_undistorted.json" for i in ids]

    return SceneSplit(read("nvs_sem_train.txt", n_train), read("nvs_sem_val.txt", n_val), None)
