"""Ablations: one setting changed at a time, every stage reused from disk when its config hash already exists.

Each point is (lift) -> fine-tune -> probe with ``prof.ablations.variants``. **Every point of a sweep has the same
budget**: the feature-dimension and feature-path sweeps refit features and decoder on the baseline's frozen geometry
for ``ablations.refit_iterations`` at *every* point, the profile's own value included (not read from notebook 02's
joint fit); every point's probes train for ``ablations.probe_steps``. So the baseline row of a sweep is recomputed at
the sweep's budget and compares fairly with its neighbours (it is not the headline probe of notebook 04).

Timing is kept out of the result rows (``row["cost"]``): wall time on a shared 2-core machine is noise.

**Is it just smoothing?** (``ablations.smoothing_control``; a control the paper does not have.) The rendered targets
are smoother than the backbone's own features, so a gain could come from learning smooth features rather than
3D-consistent ones. The control fine-tunes on the backbone's *own* normed tokens, blurred in 2D on the token grid
(no 3D), at the same budget (same views, steps, lr, flips, masks; only the targets differ). The blur's sigma is
chosen per scene so the blurred features are exactly as smooth as that scene's rendered targets by one statistic:
the mean cosine similarity of neighbouring tokens. Why that one: the loss compares tokens on this grid, the cosine
ignores the decoder's feature scale (rendered and own tokens differ in norm), and a wider blur raises it
monotonically, so bisection finds one sigma. The high-frequency energy fraction of both is stored as a check that
was not matched.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import cache, pipeline
from .backbone import Backbone
from .finetune import Targets, finetune, scene_targets
from .lift import LiftResult, refit_features
from .probe import probe_settings_key
from .profiles import Profile
from .scenes import SceneSplit

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
    "targets": (
        "the fine-tuning targets: rendered from the 3D Gaussians vs the backbone's own features blurred in 2D to the "
        "same neighbour-token cosine (same views, steps, lr, masks)",
        "the course's own control (the paper has none)",
    ),
}
RENDERED = "3D-aware targets (rendered)"
SMOOTHED = "2D-smoothed own features (control)"


def grid_of(prof: Profile) -> dict[str, list[Any]]:
    """The sweep of ``prof.ablations``: {ablation: [values]}."""
    a = prof.ablations
    grid: dict[str, list[Any]] = {
        "feature_dim": list(a.feature_dims),
        "epochs": list(a.epochs),
        "mode": list(a.modes),
        "feature_factor": list(a.feature_factors),
    }
    if a.smoothing_control:
        grid["targets"] = [RENDERED, SMOOTHED]
    return grid


# ----------------------------------------------------------------------------------------------------------------
# The smoothing control
# ----------------------------------------------------------------------------------------------------------------


def _blur_matrix(n: int, sigma: float, dtype: torch.dtype) -> Tensor:
    """[n, n] matrix of a 1D Gaussian blur with replicate padding (row i: the weights of output i)."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()  # [2r+1]
    src = (torch.arange(n)[:, None] + torch.arange(-r, r + 1)[None, :]).clamp(0, n - 1)  # [n, 2r+1]
    m = torch.zeros(n, n, dtype=torch.float64)
    m.scatter_add_(1, src, k.expand(n, -1).contiguous())
    return m.to(dtype)


def blur_tokens(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of token maps x [N, D, h, w] with ``sigma`` in tokens (0: unchanged); replicate
    padding, so a kernel wider than the grid is fine. Two small matrix products (a conv over N·D one-channel maps
    is ~100× slower on a CPU, and the bisection blurs 20 times per scene)."""
    if sigma <= 0:
        return x
    mh, mw = _blur_matrix(x.shape[-2], sigma, x.dtype), _blur_matrix(x.shape[-1], sigma, x.dtype)
    return mh @ x @ mw.T  # [N, D, h, w]


def neighbour_cosine(x: Tensor, weight: Tensor | None = None) -> float:
    """Mean cosine similarity of horizontally and vertically neighbouring tokens of x [N, D, h, w]; a pair counts by
    the product of its two tokens' loss weights [N, 1, h, w] (anonymised tokens are not in the loss either)."""
    w = torch.ones_like(x[:, :1]) if weight is None else weight.to(x.dtype)
    ch = F.cosine_similarity(x[..., :, 1:], x[..., :, :-1], dim=1, eps=1e-8)  # [N, h, w-1]
    cv = F.cosine_similarity(x[..., 1:, :], x[..., :-1, :], dim=1, eps=1e-8)  # [N, h-1, w]
    wh = (w[..., :, 1:] * w[..., :, :-1])[:, 0]
    wv = (w[..., 1:, :] * w[..., :-1, :])[:, 0]
    return float(((ch * wh).sum() + (cv * wv).sum()) / (wh.sum() + wv.sum()).clamp_min(1e-12))


def high_freq_fraction(x: Tensor) -> float:
    """Share of the spectral energy of x [N, D, h, w] (each channel's mean removed) above half the Nyquist radius."""
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    e = torch.fft.rfft2(x.float()).abs().pow(2).sum(dim=(0, 1))  # [h, w//2+1]
    fy = torch.fft.fftfreq(x.shape[-2]).abs()[:, None]  # cycles per token, up to 0.5
    fx = torch.fft.rfftfreq(x.shape[-1])[None, :]
    high = torch.sqrt(fy**2 + fx**2) > 0.25
    return float(e[high].sum() / e.sum().clamp_min(1e-12))


def match_sigma(own: Tensor, goal: float, weight: Tensor | None = None, *, sigma_max: float = 8.0,
                iters: int = 24) -> float:  # fmt: skip
    """The blur sigma (tokens) at which ``neighbour_cosine(blur_tokens(own, sigma))`` equals ``goal``, by bisection;
    0 when the own features are already as smooth, ``sigma_max`` when no blur up to it is smooth enough."""
    if neighbour_cosine(own, weight) >= goal:
        return 0.0
    if neighbour_cosine(blur_tokens(own, sigma_max), weight) <= goal:
        return sigma_max
    lo, hi = 0.0, sigma_max
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if neighbour_cosine(blur_tokens(own, mid), weight) < goal else (lo, mid)
    return 0.5 * (lo + hi)


@dataclasses.dataclass(frozen=True)
class SmoothedOwnFeatures:
    """A :class:`finetune.TargetSource`: each scene's rendered targets replaced by the original backbone's own normed
    tokens of the same views, blurred to the rendered targets' neighbour-token cosine (sigma per scene)."""

    sigma_max: float = 8.0
    batch: int = 8

    def key(self) -> dict[str, Any]:
        return {"kind": "smoothed_own_features", "statistic": "neighbour_cosine", "sigma_max": self.sigma_max}

    def __call__(self, train: list[Targets], backbone: Backbone) -> tuple[list[Targets], dict[str, Any]]:
        was = backbone.model.training
        backbone.model.eval()
        out, per_scene = [], {}
        with torch.no_grad():
            for t in train:
                own = torch.cat(
                    [backbone.forward_tokens(t.images[i : i + self.batch])[0].cpu()
                     for i in range(0, t.images.shape[0], self.batch)]
                )  # fmt: skip  # [V, D, h, w], the normed tokens stage 2 trains
                goal = neighbour_cosine(t.targets, t.masks)
                sigma = match_sigma(own, goal, t.masks, sigma_max=self.sigma_max)
                smooth = blur_tokens(own, sigma)
                out.append(Targets(t.images, smooth, t.masks, t.scene))
                per_scene[t.scene] = {
                    "sigma_tokens": sigma,
                    "neighbour_cosine_rendered": goal,
                    "neighbour_cosine_smoothed": neighbour_cosine(smooth, t.masks),
                    "neighbour_cosine_own": neighbour_cosine(own, t.masks),
                    "high_freq_fraction_rendered": high_freq_fraction(t.targets),
                    "high_freq_fraction_smoothed": high_freq_fraction(smooth),
                }
        backbone.model.train(was)
        sigmas = [s["sigma_tokens"] for s in per_scene.values()]
        return out, {**self.key(), "sigma_tokens_mean": float(np.mean(sigmas)), "per_scene": per_scene}


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
    elif ablation == "targets" and value in (RENDERED, SMOOTHED):
        train_lifts, val_lifts = base  # the profile's fine-tune (RENDERED is notebook 03's model, read from disk)
    else:
        raise ValueError(f"unknown ablation point {ablation}={value!r}; choose one of {sorted(ABLATIONS)}")
    tuned = pipeline.backbone_for(
        point, device, weights=original.weights[5:] if original.weights.startswith("file:") else original.weights
    )
    if ablation == "targets" and value == SMOOTHED:  # the same budget as the profile's fine-tune, other targets
        ft = finetune(train_lifts, tuned, point.finetune, val_lifts=val_lifts, root=artifacts_dir,
                      targets_from=SmoothedOwnFeatures())  # fmt: skip
    else:
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
    if ablation == "targets":  # the smoothness the fine-tune was trained towards, and the matched blur
        row.update(_target_smoothness(ft.stats, train_lifts, tuned, point, artifacts_dir))
    for variant in a.variants:
        row[f"seg_miou_{variant}"] = probe["results"]["seg"][variant]["miou"]
        row[f"depth_rmse_{variant}"] = probe["results"]["depth"][variant]["rmse"]
        row[f"recall14_{variant}"] = probe["awareness"].get(variant, {}).get("recall@14px")
    row["cost"] = {"ft_seconds_per_step": ft.stats["seconds_per_step"], "point_seconds": round(time.time() - t0, 1)}
    return row


def _target_smoothness(
    ft_stats: dict[str, Any], lifts: list[LiftResult], backbone: Backbone, prof: Profile, root: str | Path
) -> dict[str, Any]:
    """The targets axis's extra columns: the training targets' mean neighbour-token cosine and the blur sigma (none
    for the rendered targets, which are read from their cache)."""
    src = ft_stats.get("targets_from")
    if src is not None:
        scenes = src["per_scene"].values()
        return {
            "target_neighbour_cosine": float(np.mean([s["neighbour_cosine_smoothed"] for s in scenes])),
            "smooth_sigma_tokens": src["sigma_tokens_mean"],
        }
    ts = [scene_targets(lf, backbone, mask=prof.finetune.mask, root=root)[0] for lf in lifts]
    return {
        "target_neighbour_cosine": float(np.mean([neighbour_cosine(t.targets, t.masks) for t in ts])),
        "smooth_sigma_tokens": None,
    }


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
