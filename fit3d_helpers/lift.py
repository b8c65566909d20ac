"""Stage 1: lift a backbone's 2D features of one scene into 3D feature Gaussians.

Per scene we fit Gaussians whose rendered colour matches the photos (``0.8·L1 + 0.2·(1−SSIM)``) and whose
rendered low-dimensional features, decoded by a 3×3 conv to the backbone's width, match the backbone's patch
features (L1). As in the official FiT3D code, the feature loss cannot move geometry or opacity: features are
rendered with *detached* means/quats/scales/opacities, so the geometry comes from RGB alone.

The artifact of one scene lives in ``artifacts/lift/<hash>/`` (hash of :func:`lift_key`): ``gaussians.pt``,
``decoder.pt``, ``config.json``, ``stats.json``, ``losses.json``. An interrupted fit resumes from
``artifacts/lift/.partial-<hash>/checkpoint.pt``.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .backbone import Backbone
from .data import Scene, load_scene
from .gaussians import activated, init_gaussians, sh_to_rgb
from .render import rasterize_with_info
from .strategy import make_optimizers, make_strategy, state_to
from .utils import DEFAULT_ARTIFACTS, artifact_complete, atomic_dir, config_hash, progress, read_json, save_torch, seed_everything, write_json


_CHECKPOINT_FORMAT = 2  # 2: one Adam per parameter + the densification strategy's state


class LiftError(RuntimeError):
    """Stage-1 failure with the iteration / scene / file named."""


@dataclass
class LiftConfig:
    """Stage-1 settings. Defaults are the smoke profile (CPU, minutes); :meth:`paper` gives the official schedule."""

    iterations: int = 300  # official: 30_000
    feature_dim: int = 64  # low-dim feature per Gaussian (ablation: 16/32/64/128)
    sh_degree: int = 0  # official: 3 (raised by one every `sh_degree_every` iterations)
    sh_degree_every: int = 1000
    max_init_points: int = 15_000  # points unprojected from depth (or COLMAP points) to start from
    train_downscale: int = 2  # RGB is fitted at image size / train_downscale (smoke: 112×84; official: full size)
    feature_factor: int = 2  # features are compared at token grid × feature_factor (DESIGN §6: near the grid)
    feature_weight: float = 1.0  # weight of the feature L1 against the RGB loss
    holdout_every: int = 8  # every n-th view is held out for evaluation (never trained on)
    # learning rates (official values in comments)
    lr_means: float = 1.6e-4  # × scene extent, decays exponentially to lr_means_final
    lr_means_final: float = 1.6e-6
    lr_sh0: float = 2.5e-3
    lr_shN: float = 1.25e-4
    lr_features: float = 6.25e-5 * 80  # official 6.25e-5 over 30k iterations; scaled for the short smoke budget
    lr_decoder: float = 6.25e-5 * 80
    lr_opacity: float = 0.05
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    # densification (official: from 500 to 15_000 every 100, threshold 2e-4, opacity reset every 3000); gsplat's
    # 0-based schedule: refine when densify_from < it < densify_until and it % densify_every == 0
    strategy: str = "simple"  # "simple" (ours, plain torch) or "gsplat" (gsplat.strategy.DefaultStrategy); see strategy.py
    densify_from: int = 100
    densify_until: int = 250
    densify_every: int = 100
    densify_grad_threshold: float = 2e-4
    prune_opacity: float = 0.005
    opacity_reset_every: int = 3000
    max_gaussians: int = 60_000  # budget of the "simple" strategy (gsplat's has none)
    checkpoint_every: int = 200
    seed: int = 0

    @classmethod
    def paper(cls, **overrides: Any) -> LiftConfig:
        """The official 30k-iteration schedule (one GPU)."""
        base = dict(iterations=30_000, sh_degree=3, max_init_points=200_000, train_downscale=1, lr_features=6.25e-5, lr_decoder=6.25e-5,
                    densify_from=500, densify_until=15_000, max_gaussians=3_000_000, checkpoint_every=2000, strategy="gsplat")
        base.update(overrides)
        return cls(**base)


def lift_key(scene_path: str | Path, backbone: Backbone | dict[str, Any], cfg: LiftConfig) -> dict[str, Any]:
    """The config whose hash names a scene's lift artifact. Stage 2 rebuilds it to find the artifact."""
    desc = backbone.describe() if isinstance(backbone, Backbone) else dict(backbone)
    return {"stage": "lift", "scene": str(Path(scene_path).resolve()), "backbone": desc["backbone"], "weights": desc["weights"], "lift": dataclasses.asdict(cfg)}


def lift_dir(scene_path: str | Path, backbone: Backbone | dict[str, Any], cfg: LiftConfig, root: str | Path | None = None) -> Path:
    root = Path(root) if root is not None else DEFAULT_ARTIFACTS
    return root / "lift" / config_hash(lift_key(scene_path, backbone, cfg))


# ----------------------------------------------------------------------------------------------------------------
# Losses and metrics
# ----------------------------------------------------------------------------------------------------------------


def ssim(img: Tensor, ref: Tensor) -> Tensor:
    """SSIM (11×11 Gaussian window, σ 1.5) from torchmetrics; img, ref [B, 3, H, W] in 0..1."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(img, ref, data_range=1.0)


def psnr(img: Tensor, ref: Tensor) -> float:
    mse = F.mse_loss(img, ref).item()
    return float(10 * math.log10(1.0 / max(mse, 1e-12)))


def rgb_loss(img: Tensor, ref: Tensor) -> Tensor:
    """The 3DGS photometric loss, 0.8·L1 + 0.2·(1−SSIM). img, ref [B, 3, H, W]."""
    return 0.8 * F.l1_loss(img, ref) + 0.2 * (1 - ssim(img, ref))


def _check_finite(it: int, **terms: Tensor) -> None:
    for name, value in terms.items():
        if not torch.isfinite(value).all():
            raise LiftError(f"iteration {it}: the {name} loss is {value.item()} (not finite); no artifact was written. "
                            "Lower the learning rates or check the inputs for NaN.")


# ----------------------------------------------------------------------------------------------------------------
# Scene preparation
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class PreparedScene:
    """Tensors of one scene at training resolution, plus the backbone targets (computed once)."""

    images: Tensor  # [V, 3, H, W] training-resolution RGB
    viewmats: Tensor  # [V, 4, 4] world-to-camera (OpenCV)
    Ks: Tensor  # [V, 3, 3] at training resolution
    targets: Tensor  # [V, D, h, w] backbone patch features on the token grid
    train_ids: list[int]
    holdout_ids: list[int]
    extent: float  # scene radius (3DGS's cameras_extent)


def scene_points(scene: Scene, max_points: int, seed: int) -> tuple[Tensor, Tensor]:
    """COLMAP points if the scene has them, else depth unprojected and subsampled."""
    if scene.points is not None and len(scene.points) >= 4:
        pts, cols = scene.points, scene.point_colors if scene.point_colors is not None else np.full_like(scene.points, 0.5)
        if len(pts) > max_points:
            idx = np.random.default_rng(seed).choice(len(pts), max_points, replace=False)
            pts, cols = pts[idx], cols[idx]
    else:
        if all(v.depth is None for v in scene.views):
            raise LiftError(f"scene {scene.name} has no point cloud and no depth maps: add a COLMAP points3D.txt "
                            "(or a ply_file_path in transforms.json), or provide depth maps (depth_file_path per frame).")
        pts, cols = scene.points_from_depth(max_points=max_points, seed=seed)
    return torch.as_tensor(pts, dtype=torch.float32), torch.as_tensor(cols, dtype=torch.float32)


def prepare_scene(scene: Scene, backbone: Backbone, cfg: LiftConfig) -> PreparedScene:
    """Resize images to the training resolution and compute the backbone's target features once."""
    images_full = torch.stack([torch.as_tensor(v.image, dtype=torch.float32).permute(2, 0, 1) for v in scene.views])  # [V, 3, H, W]
    H, W = images_full.shape[-2:]
    th, tw = H // cfg.train_downscale, W // cfg.train_downscale
    images = F.interpolate(images_full, size=(th, tw), mode="area") if cfg.train_downscale > 1 else images_full
    Ks = torch.stack([torch.as_tensor(v.K, dtype=torch.float32) for v in scene.views]).clone()
    Ks[:, 0] *= tw / W
    Ks[:, 1] *= th / H
    viewmats = torch.stack([torch.as_tensor(v.world_to_cam, dtype=torch.float32) for v in scene.views])
    targets, _ = backbone.features(images_full, batch_size=4)  # [V, D, h, w]
    ids = list(range(len(scene.views)))
    holdout = ids[cfg.holdout_every // 2 :: cfg.holdout_every] if cfg.holdout_every > 0 else []
    train = [i for i in ids if i not in holdout]
    centres = torch.stack([torch.as_tensor(v.cam_to_world[:3, 3], dtype=torch.float32) for v in scene.views])
    extent = float((centres - centres.mean(0)).norm(dim=-1).max()) * 1.1
    dev = backbone.device  # the fit runs where the backbone runs ("auto": CUDA when present)
    return PreparedScene(images.to(dev), viewmats.to(dev), Ks.to(dev), targets.to(dev), train, holdout, max(extent, 1e-2))


def feature_camera(K: Tensor, image_hw: tuple[int, int], out_hw: tuple[int, int]) -> Tensor:
    """Intrinsics [.., 3, 3] rescaled from an image of size image_hw to a render of size out_hw."""
    K = K.clone()
    K[..., 0, :] *= out_hw[1] / image_hw[1]
    K[..., 1, :] *= out_hw[0] / image_hw[0]
    return K


# ----------------------------------------------------------------------------------------------------------------
# Rendering a fitted scene (used by the lift loop, the notebooks and the fine-tuning targets)
# ----------------------------------------------------------------------------------------------------------------


def render_rgb_and_features(params: dict[str, Tensor], viewmats: Tensor, Ks: Tensor, width: int, height: int, sh_degree: int,
                            backend: str = "auto") -> tuple[Tensor, Tensor, dict[str, Any]]:
    """One pass for both: rgb [C, H, W, 3] and low-dim features [C, F, H, W], plus the renderer's info.

    Only the RGB channels send gradients to the geometry (``geometry_channels=3``): the features are composited
    with the same weights but as if the geometry were detached, exactly the two-render routing of the official
    code, at the cost of one render.
    """
    g = activated(params)
    if sh_degree > 0:
        campos = torch.linalg.inv(viewmats[0])[:3, 3]
        colors = sh_to_rgb(params["sh0"], params["shN"][:, : (sh_degree + 1) ** 2 - 1], g["means"] - campos, sh_degree)
    else:
        colors = sh_to_rgb(params["sh0"], params["shN"], g["means"], 0)
    both, _, info = rasterize_with_info(g["means"], g["quats"], g["scales"], g["opacities"], torch.cat([colors, params["features"]], 1),
                                        viewmats, Ks, width, height, backend=backend, geometry_channels=3)
    return both[..., :3], both[..., 3:].permute(0, 3, 1, 2), info


def render_features(params: dict[str, Tensor], viewmats: Tensor, Ks: Tensor, width: int, height: int, *, detach_geometry: bool = True, backend: str = "auto") -> tuple[Tensor, Tensor]:
    """Low-dim features of C cameras with (by default) detached geometry: -> ([C, F, H, W], alphas [C, 1, H, W])."""
    g = activated(params)
    if detach_geometry:
        g = {k: v.detach() for k, v in g.items()}
    feats, alphas, _ = rasterize_with_info(g["means"], g["quats"], g["scales"], g["opacities"], params["features"], viewmats, Ks, width, height, backend=backend)
    return feats.permute(0, 3, 1, 2), alphas.permute(0, 3, 1, 2)


def decode_to_grid(decoder: nn.Module, feats: Tensor, grid_hw: tuple[int, int], factor: int) -> Tensor:
    """Rendered low-dim features [C, F, H, W] -> area-pooled to grid × factor -> decoded -> bilinear to the grid [C, D, h, w].

    Decoding near the token grid instead of at full resolution (the official code decodes the full-size render)
    keeps the 3×3 decoder cheap (DESIGN.md §6: 222 ms per step at 160×120, 11 ms at 32×32).
    """
    h, w = grid_hw
    pooled = F.interpolate(feats, size=(h * factor, w * factor), mode="area")
    return F.interpolate(decoder(pooled), size=(h, w), mode="bilinear", align_corners=False)


def make_decoder(feature_dim: int, out_dim: int) -> nn.Conv2d:
    """The official decoder: one 3×3 conv from the low-dim rendered features to the backbone's width."""
    return nn.Conv2d(feature_dim, out_dim, kernel_size=3, padding=1, bias=False)


# ----------------------------------------------------------------------------------------------------------------
# The fit
# ----------------------------------------------------------------------------------------------------------------


def _optimizers(params: dict[str, nn.Parameter], cfg: LiftConfig, extent: float) -> dict[str, torch.optim.Adam]:
    """One Adam (eps 1e-15) per Gaussian parameter, at the official learning rates (gsplat's layout)."""
    lrs = {"means": cfg.lr_means * extent, "quats": cfg.lr_quats, "log_scales": cfg.lr_scales, "opacity_logits": cfg.lr_opacity,
           "sh0": cfg.lr_sh0, "shN": cfg.lr_shN, "features": cfg.lr_features}
    return make_optimizers(params, lrs, eps=1e-15)


def _means_lr(cfg: LiftConfig, extent: float, it: int) -> float:
    t = min(it / max(cfg.iterations, 1), 1.0)
    return math.exp((1 - t) * math.log(cfg.lr_means * extent) + t * math.log(cfg.lr_means_final * extent))


@torch.no_grad()
def render_view(params: dict[str, Tensor], decoder: nn.Module, prep: PreparedScene, i: int, cfg: LiftConfig, backend: str = "auto") -> tuple[Tensor, Tensor]:
    """View ``i`` of a fitted scene: RGB [3, H, W] at training size and decoded features [D, h, w] on the token grid."""
    H, W = prep.images.shape[-2:]
    h, w = prep.targets.shape[-2:]
    rgb, feats, _ = render_rgb_and_features(params, prep.viewmats[i : i + 1], prep.Ks[i : i + 1], W, H, cfg.sh_degree, backend)
    dec = decode_to_grid(decoder, feats, (h, w), cfg.feature_factor)[0]  # [D, h, w]
    return rgb[0].permute(2, 0, 1).clamp(0, 1), dec


def render_views(result: LiftResult, prep: PreparedScene, ids: list[int], cfg: LiftConfig) -> dict[str, list]:
    """For the notebooks: RGB images [H, W, 3] (numpy) and decoded features [D, h, w] of views ``ids``."""
    out: dict[str, list] = {"rgb": [], "features": []}
    dev = prep.images.device
    params = {k: v.to(dev) for k, v in result.params.items()}
    decoder = result.decoder.to(dev)
    for i in ids:
        rgb, dec = render_view(params, decoder, prep, i, cfg)
        out["rgb"].append(rgb.permute(1, 2, 0).cpu().numpy())
        out["features"].append(dec.cpu())
    return out


@torch.no_grad()
def evaluate(params: dict[str, Tensor], decoder: nn.Module, prep: PreparedScene, ids: list[int], cfg: LiftConfig, backend: str = "auto") -> dict[str, float]:
    """Held-out PSNR/SSIM of RGB, and L1 / cosine of decoded rendered features against the backbone's, on the token grid."""
    if not ids:
        return {}
    psnrs, ssims, l1s, coss, coss_c = [], [], [], [], []
    for i in ids:
        pred, dec = render_view(params, decoder, prep, i, cfg, backend)
        pred, ref = pred[None], prep.images[i : i + 1]
        psnrs.append(psnr(pred, ref))
        ssims.append(float(ssim(pred, ref)))
        tgt = prep.targets[i]  # [D, h, w]
        l1s.append(float((dec - tgt).abs().mean()))
        coss.append(float(F.cosine_similarity(dec, tgt, dim=0).mean()))
        mu = tgt.mean((1, 2), keepdim=True)  # centred cosine: does the render explain what varies across the view?
        coss_c.append(float(F.cosine_similarity(dec - mu, tgt - mu, dim=0).mean()))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "feature_l1": float(np.mean(l1s)),
            "feature_cosine": float(np.mean(coss)), "feature_cosine_centered": float(np.mean(coss_c))}


@dataclass
class LiftResult:
    path: Path
    params: dict[str, Tensor]
    decoder: nn.Conv2d
    stats: dict[str, Any]
    losses: dict[str, list[float]]
    config: dict[str, Any]


def load_lift(path: str | Path, *, expect_dim: int | None = None, expect_feature_dim: int | None = None) -> LiftResult:
    """Load a finished lift artifact; checks the decoder width and feature dimension against what the caller needs."""
    path = Path(path)
    if not artifact_complete(path):
        raise LiftError(f"no finished lift artifact at {path}: run fit3d_helpers.lift.lift_scene(...) (notebook 02) for that scene first.")
    g = torch.load(path / "gaussians.pt", map_location="cpu", weights_only=True)
    dec_sd = torch.load(path / "decoder.pt", map_location="cpu", weights_only=True)
    fdim, out_dim = g["features"].shape[1], dec_sd["weight"].shape[0]
    if dec_sd["weight"].shape[1] != fdim:
        raise LiftError(f"{path}: decoder expects {dec_sd['weight'].shape[1]}-d features but the Gaussians carry {fdim}-d ones")
    if expect_feature_dim is not None and fdim != expect_feature_dim:
        raise LiftError(f"{path}: saved Gaussians carry {fdim}-d features, but feature_dim={expect_feature_dim} was asked for")
    if expect_dim is not None and out_dim != expect_dim:
        raise LiftError(f"{path}: the decoder outputs {out_dim} channels but the backbone is {expect_dim}-d: "
                        "this artifact was fitted for another backbone/width")
    decoder = make_decoder(fdim, out_dim)
    decoder.load_state_dict(dec_sd)
    return LiftResult(path, g, decoder, read_json(path / "stats.json"), read_json(path / "losses.json"), read_json(path / "config.json"))


def lift_scene(
    scene_path: str | Path,
    backbone: Backbone,
    cfg: LiftConfig | None = None,
    *,
    root: str | Path | None = None,
    backend: str = "auto",
    force: bool = False,
    downscale: int = 1,
    max_seconds: float | None = None,
) -> LiftResult:
    """Fit (or load) the feature Gaussians of one scene. ``max_seconds`` stops early with a checkpoint (to test resume)."""
    cfg = cfg or LiftConfig()
    key = lift_key(scene_path, backbone, cfg)
    out = lift_dir(scene_path, backbone, cfg, root)
    if artifact_complete(out) and not force:
        return load_lift(out, expect_dim=backbone.dim, expect_feature_dim=cfg.feature_dim)
    seed_everything(cfg.seed)
    scene = load_scene(scene_path, downscale=downscale)
    prep = prepare_scene(scene, backbone, cfg)
    pts, cols = scene_points(scene, cfg.max_init_points, cfg.seed)
    partial = out.parent / f".partial-{out.name}"
    ckpt_path = partial / "checkpoint.pt"
    dev = backbone.device
    decoder = make_decoder(cfg.feature_dim, backbone.dim).to(dev)
    params = {k: nn.Parameter(v.to(dev)) for k, v in init_gaussians(pts, cols, feature_dim=cfg.feature_dim, sh_degree=cfg.sh_degree, seed=cfg.seed).items()}
    start, losses, elapsed = 0, {"iteration": [], "rgb": [], "feature": [], "n_gaussians": []}, 0.0
    strategy = make_strategy(cfg)
    strategy_state = strategy.initialize_state(scene_scale=prep.extent)
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False) if ckpt_path.is_file() and not force else None
    if ck is not None and ck.get("format") != _CHECKPOINT_FORMAT:
        warnings.warn(f"{ckpt_path} was written by an older version of the course; starting this fit from scratch")
        ck = None
    if ck is not None:
        params = {k: nn.Parameter(v.to(dev)) for k, v in ck["params"].items()}
        decoder.load_state_dict(ck["decoder"])
        start, losses, elapsed = ck["iteration"], ck["losses"], ck["elapsed"]
        strategy_state = state_to(ck["strategy_state"], dev)
    optimizers = _optimizers(params, cfg, prep.extent)  # one Adam per Gaussian parameter (gsplat's layout)
    decoder_opt = torch.optim.Adam(decoder.parameters(), lr=cfg.lr_decoder, eps=1e-15)
    if ck is not None:
        for name, opt in optimizers.items():
            opt.load_state_dict(ck["optimizers"][name])
        decoder_opt.load_state_dict(ck["decoder_optimizer"])
    strategy.check_sanity(params, optimizers)
    gen = torch.Generator().manual_seed(cfg.seed + start)
    H, W = prep.images.shape[-2:]
    h, w = prep.targets.shape[-2:]
    fh, fw = h * cfg.feature_factor, w * cfg.feature_factor
    targets_up = F.interpolate(prep.targets, size=(fh, fw), mode="bilinear", align_corners=False)  # [V, D, fh, fw], once
    render_backend = None
    t0 = time.time()
    bar = progress(range(start, cfg.iterations), desc=f"lift {scene.name}", initial=start, total=cfg.iterations)
    for it in bar:
        i = prep.train_ids[int(torch.randint(len(prep.train_ids), (1,), generator=gen))]
        optimizers["means"].param_groups[0]["lr"] = _means_lr(cfg, prep.extent, it)
        sh_deg = min(cfg.sh_degree, it // cfg.sh_degree_every)
        rgb, feats, info = render_rgb_and_features(params, prep.viewmats[i : i + 1], prep.Ks[i : i + 1], W, H, sh_deg, backend)
        render_backend = info["backend"]
        loss_rgb = rgb_loss(rgb.permute(0, 3, 1, 2), prep.images[i : i + 1])
        pooled = F.interpolate(feats, size=(fh, fw), mode="area")  # [1, F, fh, fw]
        loss_feat = F.l1_loss(decoder(pooled), targets_up[i : i + 1])
        _check_finite(it, rgb=loss_rgb, feature=loss_feat)
        strategy.step_pre_backward(params, optimizers, strategy_state, it, info)
        (loss_rgb + cfg.feature_weight * loss_feat).backward()
        for opt in (*optimizers.values(), decoder_opt):
            opt.step()
            opt.zero_grad(set_to_none=True)
        n_before = params["means"].shape[0]
        # densification reads info["means2d"].grad, which only the RGB channels fed (geometry_channels=3)
        strategy.step_post_backward(params, optimizers, strategy_state, it, info)
        if params["means"].shape[0] != n_before:
            bar.set_postfix(n=int(params["means"].shape[0]))
        losses["iteration"].append(it)
        losses["rgb"].append(loss_rgb.item())
        losses["feature"].append(loss_feat.item())
        losses["n_gaussians"].append(int(params["means"].shape[0]))
        done = it + 1 == cfg.iterations
        stop_early = max_seconds is not None and time.time() - t0 > max_seconds
        if (it + 1) % cfg.checkpoint_every == 0 or stop_early:
            save_torch(ckpt_path, {"format": _CHECKPOINT_FORMAT, "iteration": it + 1,
                                   "params": {k: v.detach().cpu() for k, v in params.items()}, "decoder": decoder.state_dict(),
                                   "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                                   "decoder_optimizer": decoder_opt.state_dict(), "strategy_state": state_to(strategy_state, "cpu"),
                                   "losses": losses, "elapsed": elapsed + time.time() - t0})
        if stop_early and not done:
            raise TimeoutError(f"lift of {scene.name} stopped at iteration {it + 1} (max_seconds); call again to resume from {ckpt_path}")
    bar.close()
    wall = elapsed + time.time() - t0
    final = {k: v.detach() for k, v in params.items()}
    metrics = evaluate(final, decoder, prep, prep.holdout_ids, cfg, backend)
    final = {k: v.cpu() for k, v in final.items()}
    decoder = decoder.cpu()
    stats = {"stage": "lift", "scene": scene.name, **backbone.describe(), **{f"heldout_{k}": v for k, v in metrics.items()},
             "n_gaussians": int(final["means"].shape[0]), "n_init_points": int(pts.shape[0]), "iterations": cfg.iterations,
             "feature_dim": cfg.feature_dim, "wall_seconds": round(wall, 1), "train_views": len(prep.train_ids),
             "heldout_views": len(prep.holdout_ids), "render_hw": [H, W], "feature_hw": [fh, fw], "extent": prep.extent,
             "strategy": cfg.strategy, "render_backend": render_backend}
    with atomic_dir(out, overwrite=True) as tmp:
        save_torch(tmp / "gaussians.pt", {**final, "sh_degree": torch.tensor(cfg.sh_degree)})
        save_torch(tmp / "decoder.pt", decoder.state_dict())
        write_json(tmp / "config.json", key)
        write_json(tmp / "losses.json", losses)
        write_json(tmp / "stats.json", stats)
    shutil.rmtree(partial, ignore_errors=True)
    return load_lift(out, expect_dim=backbone.dim, expect_feature_dim=cfg.feature_dim)


def refit_features(
    base: LiftResult,
    backbone: Backbone,
    feature_dim: int,
    *,
    iterations: int | None = None,
    root: str | Path | None = None,
    backend: str = "auto",
    force: bool = False,
) -> LiftResult:
    """Fit new ``feature_dim``-d features (and decoder) on the *frozen* geometry of an existing lift.

    Why this is the same experiment as refitting from scratch: the feature loss never moves geometry or opacity
    (features are rendered with detached geometry, and densification reads only the RGB pass's gradients), so
    a fit with another feature dimension ends with the same Gaussians. Only features and decoder need fitting,
    which skips the RGB pass and makes the feature-dimension ablation affordable on a CPU.
    """
    base_cfg = LiftConfig(**base.config["lift"])
    cfg = dataclasses.replace(base_cfg, feature_dim=feature_dim, iterations=iterations or base_cfg.iterations)
    key = {"stage": "lift_features", "base": base.path.name, "feature_dim": feature_dim, "iterations": cfg.iterations}
    root = Path(root) if root is not None else DEFAULT_ARTIFACTS
    out = root / "lift_features" / config_hash(key)
    if artifact_complete(out) and not force:
        return load_lift(out, expect_dim=backbone.dim, expect_feature_dim=feature_dim)
    seed_everything(cfg.seed)
    scene = load_scene(base.config["scene"])
    prep = prepare_scene(scene, backbone, cfg)
    dev = backbone.device
    geometry = {k: v.to(dev) for k, v in base.params.items() if k != "features"}
    n = geometry["means"].shape[0]
    features = nn.Parameter(0.01 * torch.randn(n, feature_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(dev))
    decoder = make_decoder(feature_dim, backbone.dim).to(dev)
    optimizer = torch.optim.Adam([{"params": [features], "lr": cfg.lr_features}, {"params": decoder.parameters(), "lr": cfg.lr_decoder}], eps=1e-15)
    H, W = prep.images.shape[-2:]
    h, w = prep.targets.shape[-2:]
    fh, fw = h * cfg.feature_factor, w * cfg.feature_factor
    targets_up = F.interpolate(prep.targets, size=(fh, fw), mode="bilinear", align_corners=False)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: dict[str, list[float]] = {"iteration": [], "rgb": [], "feature": [], "n_gaussians": []}
    t0 = time.time()
    for it in progress(range(cfg.iterations), desc=f"features {feature_dim}-d {scene.name}"):
        i = prep.train_ids[int(torch.randint(len(prep.train_ids), (1,), generator=gen))]
        feats, _ = render_features({**geometry, "features": features}, prep.viewmats[i : i + 1], prep.Ks[i : i + 1], W, H, backend=backend)
        loss = F.l1_loss(decoder(F.interpolate(feats, size=(fh, fw), mode="area")), targets_up[i : i + 1])
        _check_finite(it, feature=loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses["iteration"].append(it)
        losses["feature"].append(float(loss.detach()))
        losses["n_gaussians"].append(n)
    params = {**geometry, "features": features.detach()}
    metrics = evaluate(params, decoder, prep, prep.holdout_ids, cfg, backend)
    params = {k: v.cpu() for k, v in params.items()}
    decoder = decoder.cpu()
    stats = {**base.stats, **{f"heldout_{k}": v for k, v in metrics.items()}, "stage": "lift_features", "feature_dim": feature_dim,
             "iterations": cfg.iterations, "wall_seconds": round(time.time() - t0, 1), "base_lift": base.path.name,
             "feature_bytes": int(n * feature_dim * 4 + decoder.weight.numel() * 4)}
    with atomic_dir(out, overwrite=True) as tmp:
        save_torch(tmp / "gaussians.pt", params)
        save_torch(tmp / "decoder.pt", decoder.state_dict())
        write_json(tmp / "config.json", {**base.config, "lift": dataclasses.asdict(cfg), "derived": key})
        write_json(tmp / "losses.json", losses)
        write_json(tmp / "stats.json", stats)
    return load_lift(out, expect_dim=backbone.dim, expect_feature_dim=feature_dim)
