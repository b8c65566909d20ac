"""Every pipeline setting of the course, in one tree of typed dataclasses (nanoGPT-style: flat, commented).

A :class:`Profile` is the whole configuration of a run: ``data``, ``backbone``, ``lift`` (stage 1), ``finetune``
(stage 2), ``probe`` and ``ablations``, plus ``seed``. Each setting has exactly one name, its dotted path
(``lift.iterations``, ``finetune.lr``, ``probe.seg_steps``), and one home, this file. The dataclass defaults are the
``smoke`` profile (a 2-core CPU, minutes); :data:`PAPER` overrides them with the official recipe (one GPU).

Notebooks, the command line and tests all go through :func:`load_profile`::

    prof = load_profile("smoke", {"lift.iterations": 2000})      # notebooks: profile + overrides
    python -m fit3d_helpers run --set lift.iterations=2000      # the same from the shell

An unknown key, or a value that does not parse to the setting's type, raises :class:`ConfigError` naming the key,
the expected type and the valid keys, before anything runs. Every config validates itself on construction.
"""

from __future__ import annotations

import ast
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

# feature variants of the probes: original, fine-tuned, three assemblies of both, and the paper's control "dup"
# (original ⊕ original, as wide as concat: arXiv 2407.20229v1, Table 13)
PROBE_VARIANTS = ("original", "finetuned", "concat", "add", "linear", "dup")


class ConfigError(ValueError):
    """A setting with a bad name, type or value. The message names the dotted key, the value and what is valid."""


# ----------------------------------------------------------------------------------------------------------------
# Validation helpers (each config calls them from __post_init__)
# ----------------------------------------------------------------------------------------------------------------


def _positive(section: str, obj: Any, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ConfigError(f"{section}.{n} must be > 0, got {v!r}")


def _non_negative(section: str, obj: Any, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ConfigError(f"{section}.{n} must be >= 0, got {v!r}")


def _finite(section: str, obj: Any) -> None:
    """Every float setting of a section must be finite: ``1e999`` parses to inf and would train to NaN."""
    for f in fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{section}.{f.name} must be a finite number, got {v!r}")


_SEED_MAX = 2**32 - 1  # numpy's legacy seed range (torch's is wider): one range for every seed of the course


def _seed(section: str, obj: Any, name: str = "seed") -> None:
    v = getattr(obj, name)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _SEED_MAX:
        key = f"{section}.{name}" if section else name
        raise ConfigError(f"{key} must be an integer in 0..{_SEED_MAX} (numpy's seed range), got {v!r}")


def _choice(section: str, obj: Any, name: str, choices: tuple[Any, ...]) -> None:
    v = getattr(obj, name)
    if v not in choices:
        raise ConfigError(f"{section}.{name} must be one of {list(choices)}, got {v!r}")


def _check_holdout_every(every: int) -> None:
    if every < 0 or every == 1:
        raise ConfigError(f"lift.holdout_every must be 0 (no hold-out) or >= 2, got {every!r}")


def _variants(section: str, variants: tuple[str, ...]) -> None:
    if not variants or any(v not in PROBE_VARIANTS for v in variants):
        raise ConfigError(
            f"{section}.variants must be a non-empty subset of {list(PROBE_VARIANTS)}, got {list(variants)}"
        )


def holdout_split(n_views: int, every: int) -> tuple[list[int], list[int]]:
    """(train ids, held-out ids) of ``n_views`` views: every ``every``-th view is held out, starting at ``every // 2``.

    ``every = 0`` holds nothing out (the official recipe trains on all views). A split that leaves no training view,
    or (with ≥ 2 views and ``every > 0``) no held-out view, raises :class:`ConfigError` naming ``lift.holdout_every``.
    """
    ids = list(range(n_views))
    _check_holdout_every(every)
    held = ids[every // 2 :: every] if every > 0 else []
    train = [i for i in ids if i not in held]
    if not train:
        raise ConfigError(f"lift.holdout_every={every} leaves no training view of {n_views}")
    if every > 0 and n_views >= 2 and not held:
        raise ConfigError(
            f"lift.holdout_every={every} holds out no view of {n_views} (the first held-out view would be "
            f"view {every // 2}); use lift.holdout_every <= {2 * (n_views - 1)} or 0 for no hold-out"
        )
    return train, held


# ----------------------------------------------------------------------------------------------------------------
# The sections
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """Which scenes: generated synthetic rooms (offline) or a ScanNet++ DSLR download."""

    # "synthetic" (generated offline, cached under root), "scannetpp" (user-provided DSLR scenes), or "nyu" (no scenes:
    # the NYUv2 probes of the official evaluation only, on FiT3D's released weights)
    dataset: str = "synthetic"
    root: str = "data/synthetic"
    n_train: int = 3  # training scenes: lifted, fine-tuned on, probe heads trained on
    n_val: int = 2  # held-out scenes: probe evaluation, fine-tune validation, 3D-awareness check
    n_val_lift: int = 1  # held-out scenes also lifted, to measure the fine-tune validation L1
    n_views: int = 24  # views per synthetic scene (real scenes: all their views)
    width: int = 224  # image size; real scenes must come at this size (ScanNet++: 876×584, the official resolution)
    height: int = 168
    max_depth: float = 10.0  # depth beyond this (metres) is invalid for the probes
    include_test_frames: bool = False  # ScanNet++: also train on `test_frames` (the official stage 1 does)

    def __post_init__(self) -> None:
        _choice("data", self, "dataset", ("synthetic", "scannetpp", "nyu"))
        _finite("data", self)
        _positive("data", self, "n_train", "n_val", "width", "height", "max_depth")
        _non_negative("data", self, "n_val_lift", "n_views")
        if min(self.width, self.height) < 28:  # the lift renders at half size; the ViT needs 14-px patches
            raise ConfigError(
                f"data.width and data.height must be >= 28 px (two 14-px backbone patches), got "
                f"{self.width}×{self.height}"
            )
        if self.dataset == "synthetic" and self.n_views < 2:  # 0 means "all views" only for real scenes
            raise ConfigError(
                f"data.n_views must be >= 2 for generated rooms (a lift needs several views), got {self.n_views}; "
                "0 (all views) applies to real datasets only"
            )
        if self.n_val_lift > self.n_val:
            raise ConfigError(f"data.n_val_lift ({self.n_val_lift}) cannot exceed data.n_val ({self.n_val})")


@dataclass(frozen=True)
class BackboneConfig:
    """The 2D model (timm) and where its weights come from (see fit3d_helpers.backbone)."""

    name: str = (
        "dinov2_small"  # short name (dinov2_small, dinov2_base, dinov2_reg_small, clip_base, mae_base, deit3_base)
    )
    weights: str = "auto"  # "auto" | "hub" | "fit3d" | "random" | path to a .pth/.safetensors
    # "auto": bfloat16 autocast on CPUs with native bf16 (about 2x faster there), float32 elsewhere; "fp32": always
    # float32 (the official runs); "bf16": always bfloat16
    precision: str = "auto"

    def __post_init__(self) -> None:
        _choice("backbone", self, "precision", ("auto", "fp32", "bf16"))
        if not self.name or not self.weights:
            raise ConfigError(
                f"backbone.name and backbone.weights must be non-empty, got {self.name!r}, {self.weights!r}"
            )


@dataclass(frozen=True)
class LiftConfig:
    """Stage 1, per scene: 3D Gaussians with a low-dim feature each, fitted to the photos and the backbone features."""

    iterations: int = 200  # official: 30_000
    feature_dim: int = 64  # low-dim feature per Gaussian (ablation: 16/32/64/128)
    sh_degree: int = 0  # official: 3 (raised by one every `sh_degree_every` iterations)
    sh_degree_every: int = 1000
    max_init_points: int = 15_000  # points unprojected from depth (or COLMAP points) to start from
    train_downscale: int = 2  # RGB is fitted at image size / train_downscale (smoke: 112×84; official: full size)
    # The feature path of BOTH stages (the decoder sees at fine-tuning time what it saw when it was fitted):
    # 0 = decode the full-size render (official); k = area-pool the render to k × the token grid, then decode (cheap)
    feature_factor: int = 2
    feature_weight: float = 1.0  # weight of the feature L1 against the RGB loss
    holdout_every: int = 8  # every n-th view is held out for evaluation (0: none, the official recipe)
    near_plane: float = 0.2  # Gaussians closer than this to a camera are culled (official rasterizer: 0.2)
    max_alpha: float = 0.99  # alpha clamp per Gaussian and pixel (official rasterizer 0.99; gsplat's kernels: 0.999)
    # learning rates (official values in comments). The smoke budget is 150× shorter than the official one, so
    # positions, colours and scales take bigger steps: at 200 iterations this gives 30.9-33.2 dB held-out PSNR on
    # the generated rooms where the official rates give 29.4-31.8 dB at 300 (docs/speed.md has the sweep)
    lr_means: float = 4e-4  # official 1.6e-4; × scene extent, decays exponentially to lr_means_final
    lr_means_final: float = 4e-6  # official 1.6e-6
    lr_sh0: float = 5e-3  # official 2.5e-3
    lr_shN: float = 1.25e-4
    lr_features: float = 6.25e-5 * 80  # official 6.25e-5 over 30k iterations; scaled for the short smoke budget
    lr_decoder: float = 6.25e-5 * 80
    lr_opacity: float = 0.05
    lr_scales: float = 2e-2  # official 5e-3
    lr_quats: float = 1e-3
    # densification (official: from 500 to 15_000 every 100, threshold 2e-4, opacity reset every 3000); gsplat's
    # 0-based schedule: refine when densify_from < it < densify_until and it % densify_every == 0 (smoke: once, at
    # iteration 100)
    strategy: str = "simple"  # "simple" (ours, plain torch) or "gsplat" (gsplat.strategy.DefaultStrategy)
    densify_from: int = 50
    densify_until: int = 150
    densify_every: int = 100
    densify_grad_threshold: float = 2e-4
    prune_opacity: float = 0.005
    opacity_reset_every: int = 3000
    max_gaussians: int = 60_000  # budget of the "simple" strategy (gsplat's has none)
    checkpoint_every: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        _positive(
            "lift",
            self,
            "iterations",
            "feature_dim",
            "sh_degree_every",
            "max_init_points",
            "train_downscale",
            "lr_means",
            "lr_means_final",
            "lr_sh0",
            "lr_shN",
            "lr_features",
            "lr_decoder",
            "lr_opacity",
            "lr_scales",
            "lr_quats",
            "densify_every",
            "densify_grad_threshold",
            "opacity_reset_every",
            "max_gaussians",
            "checkpoint_every",
            "near_plane",
        )
        _finite("lift", self)
        _seed("lift", self)
        if not 0 < self.max_alpha < 1:
            raise ConfigError(f"lift.max_alpha must be in (0, 1), got {self.max_alpha!r}")
        _non_negative(
            "lift",
            self,
            "sh_degree",
            "feature_factor",
            "feature_weight",
            "densify_from",
            "densify_until",
            "prune_opacity",
        )
        if self.sh_degree > 3:
            raise ConfigError(f"lift.sh_degree must be 0..3, got {self.sh_degree!r}")
        _check_holdout_every(self.holdout_every)
        if self.prune_opacity >= 1:
            raise ConfigError(f"lift.prune_opacity must be < 1, got {self.prune_opacity!r}")
        _choice("lift", self, "strategy", ("simple", "gsplat"))


@dataclass(frozen=True)
class FinetuneConfig:
    """Stage 2: fine-tune the backbone on the rendered multi-view-consistent features (official values by default)."""

    epochs: int = 1
    lr: float = 1e-5
    weight_decay: float = 1e-4
    batch_size: int = 2  # per process; under DDP each process takes its own share of the data
    grad_clip: float = 0.1
    flip: bool = True
    # "full": all parameters; "lora": rank-r adapters on qkv of the last blocks; "released": FiT3D's checkpoint
    mode: str = "full"
    lora_rank: int = 4
    lora_blocks: int = 4
    # which token positions count in the L1: "anonymisation" = the soft anonymisation mask, all ones without one
    # (official); "alpha" = also require rendered alpha > 0.5 (for captures the Gaussians do not cover everywhere)
    mask: str = "anonymisation"
    checkpoint_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        _positive(
            "finetune", self, "epochs", "lr", "batch_size", "grad_clip", "lora_rank", "lora_blocks", "checkpoint_every"
        )
        _non_negative("finetune", self, "weight_decay")
        _finite("finetune", self)
        _seed("finetune", self)
        _choice("finetune", self, "mode", ("full", "lora", "released"))
        _choice("finetune", self, "mask", ("alpha", "anonymisation"))


@dataclass(frozen=True)
class ProbeConfig:
    """Linear probes on frozen features: segmentation and depth heads, and which feature variants to compare."""

    # "official": the official evaluation (train-time augmentation with the frozen backbones run on every batch,
    # sliding-window segmentation and flip-averaged depth at test time); "cached": heads on features computed once
    # from un-augmented images (the smoke profile: a CPU cannot afford the backbone in the loop)
    protocol: str = "cached"
    seg_steps: int = 150  # official 40_000
    depth_steps: int = 150  # official 38_400
    seg_batch_size: int = 8  # official: 2 per GPU × 4 GPUs (FiT3D's script; its README says 8 GPUs: we follow the code)
    depth_batch_size: int = 8  # official: 2 per GPU × 8 GPUs = 16
    lr_seg: float = 1e-3
    lr_depth: float = 1e-3  # official 1e-4 over 38.4k steps; a few hundred smoke steps need 1e-3 to train at all
    depth_grad_weight: float = 0.0  # official 0.5, but its GradientLoss is identically 0 (it slices batch/channel
    # axes); 0.5 here turns on the corrected image-axis gradient loss, the course's labelled option
    depth_final_norm: bool = False  # official: the depth probe reads the last block *before* the final LayerNorm
    # where the official evaluation data lie ("eval_data": <root>/nyuv2, <root>/nyu, <root>/scannetpp, see evaldata.py);
    # "" = probe the profile's own scenes (their views, labels and depth) instead
    eval_root: str = ""
    official_scale: float = 1.0  # the official protocol's pixel sizes × this (1 = official; < 1 for small images)
    # cached protocol: training losses on labels/depth subsampled by this factor (evaluation at full size); 2 = a
    # quarter of the pixels, the smoke CPU budget (the official protocol always trains at its crop resolution)
    loss_downscale: int = 2
    num_workers: int = 0  # DataLoader workers that load and augment batches (official protocol)
    variants: tuple[str, ...] = PROBE_VARIANTS
    awareness: bool = True  # also run the 3D-correspondence check (needs depth and poses of the held-out views)

    def __post_init__(self) -> None:
        _positive("probe", self, "seg_steps", "depth_steps", "seg_batch_size", "depth_batch_size", "lr_seg", "lr_depth")
        _non_negative("probe", self, "depth_grad_weight", "num_workers")
        _positive("probe", self, "official_scale", "loss_downscale")
        _finite("probe", self)
        _choice("probe", self, "protocol", ("cached", "official"))
        _variants("probe", self.variants)


@dataclass(frozen=True)
class AblationConfig:
    """Notebook 05: one setting changed at a time; each point refits/fine-tunes/probes at this budget."""

    feature_dims: tuple[int, ...] = (16, 32, 64, 128)  # stage-1 feature dimension
    epochs: tuple[int, ...] = (1, 2)  # fine-tuning epochs
    modes: tuple[str, ...] = ("full", "lora")  # full fine-tuning vs LoRA adapter
    feature_factors: tuple[int, ...] = (1, 2, 0)  # the feature path (lift.feature_factor): grid ×1, ×2, full size
    refit_iterations: int = 100  # feature-only refits for the feature-dimension ablation (geometry is reused)
    probe_steps: int = 100  # probe steps per ablation point
    variants: tuple[str, ...] = ("concat",)  # feature variants probed per point
    # the course's control (not in the paper): fine-tune on the backbone's own features, 2D-blurred to the rendered
    # targets' smoothness (same views, steps, lr, masks), beside the 3D-rendered targets
    smoothing_control: bool = True

    def __post_init__(self) -> None:
        _positive("ablations", self, "refit_iterations", "probe_steps")
        if any(not isinstance(d, int) or d <= 0 for d in self.feature_dims):
            raise ConfigError(f"ablations.feature_dims must be positive integers, got {list(self.feature_dims)}")
        if any(not isinstance(e, int) or e <= 0 for e in self.epochs):
            raise ConfigError(f"ablations.epochs must be positive integers, got {list(self.epochs)}")
        if any(not isinstance(f, int) or f < 0 for f in self.feature_factors):
            raise ConfigError(f"ablations.feature_factors must be integers >= 0, got {list(self.feature_factors)}")
        if any(m not in ("full", "lora") for m in self.modes):
            raise ConfigError(f"ablations.modes must be 'full' or 'lora', got {list(self.modes)}")
        _variants("ablations", self.variants)


@dataclass(frozen=True)
class Profile:
    """The whole configuration of a run. ``name`` only labels it; every setting lives in the sections."""

    name: str = "smoke"
    seed: int = 0  # seeds every stage that draws random numbers (probes, views to show)
    on_missing: str = "compute"  # a stage whose input artifact is missing: "compute" it (with a note) or "error"
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    lift: LiftConfig = field(default_factory=LiftConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    ablations: AblationConfig = field(default_factory=AblationConfig)

    def __post_init__(self) -> None:
        _choice("", self, "on_missing", ("compute", "error"))
        _seed("", self)
        if self.data.n_views > 0:  # real scenes (n_views 0) are checked when they are loaded
            holdout_split(self.data.n_views, self.lift.holdout_every)
        if self.data.dataset == "nyu" and (self.finetune.mode != "released" or not self.probe.eval_root):
            raise ConfigError(
                "data.dataset='nyu' has no multi-view scenes to lift: it needs finetune.mode='released' "
                "(FiT3D's checkpoint) and probe.eval_root (the official evaluation data, e.g. 'eval_data')"
            )


# ----------------------------------------------------------------------------------------------------------------
# The two profiles
# ----------------------------------------------------------------------------------------------------------------

# smoke: the dataclass defaults, plus the smoke-only departures from the official stage-2 recipe.
SMOKE = Profile(
    name="smoke",
    # lr 1e-5 (official) barely moves a model in the ~36 steps of a smoke epoch; smoke uses 1e-4 so the before/after
    # difference is visible. The paper profile keeps the official 1e-5.
    finetune=FinetuneConfig(lr=1e-4),
)

PAPER = Profile(
    name="paper",
    on_missing="error",  # hours per stage: never recompute an upstream stage silently
    backbone=BackboneConfig(precision="fp32"),
    data=DataConfig(
        dataset="scannetpp",
        root="data/scannetpp",
        n_train=230,
        n_val=50,
        n_val_lift=50,
        n_views=0,
        width=876,
        height=584,
        max_depth=20.0,
        include_test_frames=True,
    ),
    lift=LiftConfig(
        iterations=30_000,
        sh_degree=3,
        max_init_points=10_000_000,
        train_downscale=1,
        feature_factor=0,
        holdout_every=0,
        near_plane=0.2,
        max_alpha=0.99,
        lr_means=1.6e-4,
        lr_means_final=1.6e-6,
        lr_sh0=2.5e-3,
        lr_scales=5e-3,
        lr_features=6.25e-5,
        lr_decoder=6.25e-5,
        densify_from=500,
        densify_until=15_000,
        max_gaussians=10_000_000,
        checkpoint_every=2000,
        strategy="gsplat",
    ),
    finetune=FinetuneConfig(),
    probe=ProbeConfig(
        protocol="official",
        eval_root="eval_data",
        num_workers=2,
        seg_steps=40_000,
        depth_steps=38_400,
        seg_batch_size=8,
        depth_batch_size=16,
        lr_depth=1e-4,
    ),
)

# One Colab GPU, about an hour: FiT3D's released weights vs DINOv2 on NYUv2 (segmentation, 13 classes; depth), with
# the official evaluation protocol at a shortened schedule (3000 steps each, 7.5 % / 7.8 % of the official 40k / 38.4k
# steps at the official batch sizes). The README (section Colab) derives the hour.
NYU = Profile(
    name="nyu",
    on_missing="error",
    backbone=BackboneConfig(precision="fp32"),
    data=DataConfig(
        dataset="nyu", root="eval_data", n_train=1, n_val=1, n_val_lift=0, n_views=0, width=640, height=480
    ),
    finetune=FinetuneConfig(mode="released"),
    probe=ProbeConfig(
        protocol="official",
        eval_root="eval_data",
        seg_steps=3000,
        depth_steps=3000,
        seg_batch_size=8,
        depth_batch_size=16,
        lr_depth=1e-4,
        num_workers=2,
        variants=("original", "concat"),
    ),
)

# Your own capture (notebook 07, fit3d_helpers.capture) on a laptop: smoke everywhere but the lift. SfM or points
# triangulated from known poses give a few hundred to a few thousand points, not the 15k depth points of a synthetic
# room, and at the smoke lift (one densification, 200 iterations) they never grow: a poses-only room reached 24.3 dB
# held-out. Three times the iterations, densifying every 50 from iteration 50 to 400 at half the gradient threshold,
# grows them to ~20k Gaussians (35.3 dB on the same room). docs/capture.md has the measured table and times.
CAPTURE = Profile(
    name="capture",
    finetune=FinetuneConfig(lr=1e-4),  # as smoke
    lift=LiftConfig(
        iterations=600,
        densify_from=40,
        densify_until=450,
        densify_every=50,
        densify_grad_threshold=1e-4,
        max_gaussians=25_000,  # a laptop's budget: time per iteration grows with the count
    ),
)

PROFILES: dict[str, Profile] = {"smoke": SMOKE, "paper": PAPER, "nyu": NYU, "capture": CAPTURE}


# ----------------------------------------------------------------------------------------------------------------
# Dotted keys: listing, parsing, overriding
# ----------------------------------------------------------------------------------------------------------------


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def setting_types(cls: type = Profile, prefix: str = "") -> dict[str, Any]:
    """Every dotted setting key → its type (sections are walked, ``name`` is not a setting)."""
    out: dict[str, Any] = {}
    hints = _hints(cls)
    for f in fields(cls):
        if cls is Profile and f.name == "name":
            continue
        t = hints[f.name]
        if isinstance(t, type) and is_dataclass(t):
            out.update(setting_types(t, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = t
    return out


def settings(profile: Profile) -> dict[str, Any]:
    """The profile as a flat ``{dotted key: value}`` dict (for tables, the CLI's ``params`` and docs)."""
    out: dict[str, Any] = {}
    for key in setting_types():
        obj: Any = profile
        for part in key.split("."):
            obj = getattr(obj, part)
        out[key] = obj
    return out


def type_name(t: Any) -> str:
    """``int``, ``float``, ``str``, ``bool``, ``tuple[int, ...]`` — how errors and docs spell a setting's type."""
    if isinstance(t, type):
        return t.__name__
    return str(t).replace("typing.", "")


def coerce(key: str, value: Any, t: Any) -> Any:
    """``value`` (a Python value, or text from the command line) as type ``t``; ConfigError when it does not fit."""
    if isinstance(value, str) and t is not str:
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ConfigError(f"{key}: cannot parse {value!r} as {type_name(t)}") from None
    origin = typing.get_origin(t)
    if t is bool:
        if isinstance(value, bool):
            return value
    elif t is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif t is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif t is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        (elem, *_rest) = typing.get_args(t)
        if isinstance(value, (list, tuple)):
            return tuple(coerce(f"{key}[{i}]", v, elem) for i, v in enumerate(value))
    elif origin in (typing.Union, types.UnionType):
        for option in typing.get_args(t):
            if option is type(None) and value is None:
                return None
            try:
                return coerce(key, value, option)
            except ConfigError:
                continue
    raise ConfigError(f"{key} expects {type_name(t)}, got {value!r} ({type(value).__name__})")


def valid_keys_text() -> str:
    """Every setting with its type, as error messages list them."""
    types_ = setting_types()
    return ", ".join(f"{k} ({type_name(t)})" for k, t in types_.items())


def apply_overrides(profile: Profile, overrides: dict[str, Any] | None) -> Profile:
    """``profile`` with ``{"lift.iterations": 2000, ...}`` applied (values or command-line text), validated."""
    if not overrides:
        return profile
    types_ = setting_types()
    unknown = [k for k in overrides if k not in types_]
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}. Valid keys: {valid_keys_text()}")
    by_section: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        v = coerce(key, value, types_[key])
        if "." in key:
            section, name = key.split(".", 1)
            by_section.setdefault(section, {})[name] = v
        else:
            top[key] = v
    for section, values in by_section.items():
        top[section] = replace(getattr(profile, section), **values)
    return replace(profile, **top)


def load_profile(name: str | Profile = "smoke", overrides: dict[str, Any] | None = None) -> Profile:
    """The named profile (``"smoke"`` or ``"paper"``) with ``overrides`` (dotted keys) applied and validated."""
    if isinstance(name, Profile):
        base = name
    elif name in PROFILES:
        base = PROFILES[name]
    else:
        raise ConfigError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(
            f"overrides must be a dict of dotted keys, e.g. {{'lift.iterations': 2000}}; got {overrides!r}"
        )
    return apply_overrides(base, overrides)


# ----------------------------------------------------------------------------------------------------------------
# Command-line text: --set overrides and notebook parameters (parsed to values, never run as code)
# ----------------------------------------------------------------------------------------------------------------


class ParameterError(ValueError):
    """A bad ``--set`` item, ``--only`` selection or notebook parameter; the message names it and what is valid."""


def parse_value(text: str) -> Any:
    """A ``--set`` value: a Python literal (``3``, ``1e-4``, ``True``, ``None``, ``[1, 2]``, ``'x'``), else text.

    ``ast.literal_eval`` reads literals only (no names, calls or operators), so no value can run code."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["lift.iterations=300", "02.scene_index=1"]`` (or a dict of the same keys) → ``{key: value}``.

    Three kinds of key: a profile setting (``lift.iterations``, ``seed``: every notebook gets it in its ``overrides``
    dict, parsed to the setting's type), ``NN.knob`` (notebook NN's own parameter) and a plain ``knob`` (every
    selected notebook that defines it). Values are Python literals, else text (:func:`parse_value`).
    """
    if items is None:
        return {}
    if isinstance(items, Mapping):
        pairs = [(str(k), v) for k, v in items.items()]
    elif isinstance(items, str):
        raise ParameterError(f"--set takes a list of key=value items; got one string {items!r}")
    else:
        pairs = []
        for item in items:
            if "=" not in item:
                raise ParameterError(
                    f"--set takes key=value (a profile setting such as lift.iterations=2000, or NN.knob=value "
                    f"for notebook NN's own parameter); got {item!r}"
                )
            k, v = item.split("=", 1)
            pairs.append((k.strip(), parse_value(v.strip())))
    out: dict[str, Any] = {}
    for k, v in pairs:
        first, _, rest = k.partition(".")
        if first.isdigit() and rest:
            if not rest.isidentifier():
                raise ParameterError(
                    f"--set {k}: {rest!r} is not a notebook parameter name (profile settings take no NN. "
                    "prefix: they reach every notebook, so each stage finds the one before)"
                )
            k = f"{int(first):02d}.{rest}"
        elif not k or not all(part.isidentifier() for part in k.split(".")):
            raise ParameterError(f"--set key {k!r} is neither a profile setting (section.name) nor NN.knob")
        if k.rpartition(".")[2] in ("profile", "overrides"):
            raise ParameterError("set the profile with --profile, and profile settings with --set section.name=value")
        out[k] = v
    return out


_KNOB_TYPES: dict[str, Any] = {"bool": bool, "int": int, "float": float, "str": str, "list": list, "dict": dict}


def _annotation_type(annotation: str) -> Any:
    """``"int"``, ``"str | None"`` … as a type; None when it is not one of the simple types a knob may have."""
    parts = annotation.replace(" ", "").split("|")
    if not all(p in _KNOB_TYPES or p == "None" for p in parts):
        return None
    opts = [type(None) if p == "None" else _KNOB_TYPES[p] for p in parts]
    t = opts[0]
    for o in opts[1:]:
        t = t | o
    return t


def knob_type(default: Any, annotation: str | None = None) -> Any:
    """The declared type of a notebook parameter: its annotation (``max_side: int = 518``) when it has one, else the
    type of its default; a ``None`` default declares ``str | None`` (a path or name that may be absent). None when
    neither says (any literal value is then accepted)."""
    if annotation:
        t = _annotation_type(annotation)
        if t is not None:
            return t
    if default is None:
        return str | None
    if isinstance(default, tuple):
        return list
    return type(default) if type(default) in _KNOB_TYPES.values() else None


def check_knob(key: str, value: Any, t: Any) -> Any:
    """A notebook parameter as its declared type ``t`` (:func:`knob_type`); :class:`ParameterError` naming the key,
    the expected type and the value otherwise. ``t`` = None accepts any literal value."""
    if t is None:
        return value
    if isinstance(value, str) and str in typing.get_args(t):  # text for a `str | None` knob is that text
        return value
    if t in (list, dict):
        if isinstance(value, tuple) and t is list:
            value = list(value)
        if not isinstance(value, t):
            raise ParameterError(f"{key} expects {t.__name__}, got {value!r} ({type(value).__name__})")
        return value
    try:
        return coerce(key, value, t)
    except ConfigError as e:
        raise ParameterError(str(e)) from None


def check_knobs(namespace: Mapping[str, Any], where: str = "this notebook") -> None:
    """Check a notebook's annotated parameters (``max_side: int = 518`` in its ``parameters`` cell) in its namespace
    (``globals()``), so a value injected by papermill (``papermill -p max_side abc``) or typed by hand stops the
    notebook before any work, naming the key, the expected type and the valid keys."""
    declared = dict(namespace.get("__annotations__") or {})
    problems = []
    for name, t in declared.items():
        if isinstance(t, str):  # a notebook with ``from __future__ import annotations``
            t = declared[name] = _annotation_type(t)
        if name in namespace:
            try:
                check_knob(name, namespace[name], t)
            except ParameterError as e:
                problems.append(str(e))
    if problems:
        valid = ", ".join(f"{k} ({type_name(t)})" for k, t in declared.items())
        raise ParameterError(f"{where}: " + "; ".join(problems) + f". Its parameters: {valid}")
