"""Stage 1: lift a backbone's 2D features of one scene into 3D feature Gaussians.

Per scene we fit Gaussians whose rendered colour matches the photos (``0.8·L1 + 0.2·(1−SSIM)``) and whose
rendered low-dimensional features, decoded by a 3×3 conv to the backbone's width, match the backbone's patch
features (L1). As in the official FiT3D code, the feature loss cannot move geometry or opacity: features are
rendered with *detached* means/quats/scales/opacities, so the geometry comes from RGB alone.

The artifact of one scene (``artifacts/lift/<hash>/``, see :mod:`fit3d_helpers.cache`) holds ``gaussians.pt``,
``decoder.pt``, ``losses.json``, ``config.json`` and ``stats.json``. An interrupted fit resumes from the key's
``.resume/checkpoint.pt``, with the RNG states, so it ends exactly where an uninterrupted fit would.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import cache
from .backbone import Backbone
from .cache import Artifact, scene_id
from .data import Scene, check_resolution, load_scene, project
from .gaussians import activated, init_gaussians, sh_to_rgb
from .profiles import LiftConfig, holdout_split
from .render import frozen_weights, geometry_digest, rasterize_with_info, resolve_backend
from .strategy import make_optimizers, make_strategy, state_to
from .utils import (
    DEFAULT_ARTIFACTS,
    progress,
    rng_state,
    save_torch,
    seed_everything,
    set_rng_state,
    tensor_digest,
    write_json,
)

_CHECKPOINT_FORMAT = 4  # 3: + RNG states (a resumed fit equals an uninterrupted one); 4: + the view stack


class LiftError(RuntimeError):
    """Stage-1 failure with the iteration / scene / file named."""


def lift_key(
    scene: str | Path, backbone: Backbone, cfg: LiftConfig, include_test_frames: bool = False
) -> dict[str, Any]:
    """The config whose hash names a scene's lift artifact: portable (the scene by :func:`cache.scene_id`)."""
    key = {"stage": "lift", "scene": scene_id(scene), **backbone.identity(), "lift": dataclasses.asdict(cfg)}
    if include_test_frames:  # ScanNet++'s test_frames are trained on too (the official stage 1)
        key["test_frames"] = True
    return key


# ----------------------------------------------------------------------------------------------------------------
# Losses and metrics
# ----------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _gauss_1d(size: int, sigma: float, dtype: torch.dtype, device: str) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim(img: Tensor, ref: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """SSIM as the official code computes it (Inria 3DGS ``utils/loss_utils.py``): an 11×11 Gaussian window (σ 1.5)
    with zero padding, C1 = 0.01², C2 = 0.03², averaged over pixels and channels. img, ref [B, C, H, W] in 0..1.

    The window is separable, so it runs as two 1-D convolutions (≈ 5× fewer operations than the 11×11 one; a test
    checks both give the same map)."""
    c = img.shape[1]
    g = _gauss_1d(window, sigma, img.dtype, str(img.device))
    kx = g.view(1, 1, 1, window).expand(5 * c, 1, 1, window)
    ky = g.view(1, 1, window, 1).expand(5 * c, 1, window, 1)
    stack = torch.cat([img, ref, img * img, ref * ref, img * ref], dim=1)  # [B, 5C, H, W]
    blur = F.conv2d(
        F.conv2d(stack, kx, padding=(0, window // 2), groups=5 * c), ky, padding=(window // 2, 0), groups=5 * c
    )
    mu1, mu2, e11, e22, e12 = blur.split(c, dim=1)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu12 + c1) * (2 * (e12 - mu12) + c2)) / (
        (mu1_sq + mu2_sq + c1) * (e11 - mu1_sq + e22 - mu2_sq + c2)
    )
    return ssim_map.mean()


def psnr(img: Tensor, ref: Tensor) -> float:
    mse = F.mse_loss(img, ref).item()
    return float(10 * math.log10(1.0 / max(mse, 1e-12)))


def rgb_loss(img: Tensor, ref: Tensor) -> Tensor:
    """The 3DGS photometric loss, 0.8·L1 + 0.2·(1−SSIM). img, ref [B, 3, H, W]."""
    return 0.8 * F.l1_loss(img, ref) + 0.2 * (1 - ssim(img, ref))


def _check_finite(it: int, **terms: Tensor) -> None:
    for name, value in terms.items():
        if not torch.isfinite(value).all():
            raise LiftError(
                f"iteration {it}: the {name} loss is {value.item()} (not finite); no artifact was written. "
                "Lower the learning rates or check the inputs for NaN."
            )


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
    masks: Tensor  # [V, 1, H, W] bool at training resolution: True = use the pixel (anonymisation masks: False)
    train_ids: list[int]
    holdout_ids: list[int]
    extent: float  # scene radius (3DGS's cameras_extent)


def feature_masks(prep: PreparedScene, factor: int) -> tuple[tuple[int, int], Tensor]:
    """Where the feature loss compares (``factor`` × the token grid, or the render size for 0) and the views' masks
    there: ``((fh, fw), masks [V, 1, fh, fw] bool)``."""
    H, W = prep.images.shape[-2:]
    h, w = prep.targets.shape[-2:]
    fh, fw = (h * factor, w * factor) if factor else (H, W)
    if (fh, fw) == (H, W):
        return (fh, fw), prep.masks
    return (fh, fw), F.interpolate(prep.masks.float(), size=(fh, fw), mode="area") > 0.5


def scene_points(scene: Scene, max_points: int, seed: int) -> tuple[Tensor, Tensor]:
    """COLMAP points if the scene has them, else depth unprojected and subsampled."""
    if scene.points is not None and len(scene.points) >= 4:
        pts, cols = (
            scene.points,
            scene.point_colors if scene.point_colors is not None else np.full_like(scene.points, 0.5),
        )
        if len(pts) > max_points:
            idx = np.random.default_rng(seed).choice(len(pts), max_points, replace=False)
            pts, cols = pts[idx], cols[idx]
    elif any(v.depth is not None for v in scene.views):
        pts, cols = scene.points_from_depth(max_points=max_points, seed=seed)
    else:  # poses only (an instant-ngp / nerfstudio capture): random points where the cameras look, as 3DGS does
        pts, cols = points_in_view_volume(scene, min(max_points, 20_000), seed)
    return torch.as_tensor(pts, dtype=torch.float32), torch.as_tensor(cols, dtype=torch.float32)


def points_in_view_volume(scene: Scene, n: int, seed: int, min_share: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random points seen by at least ``min_share`` of the cameras, grey: the start of a poses-only capture.

    3DGS starts synthetic scenes from random points in a cube; a real capture has no known cube, so we sample
    where the cameras look: a random pixel of a random camera, at a random depth between 0.2 and 2 times the distance
    from the cameras to the point closest to all their optical axes, kept when it lies inside the image of at least
    ``min_share`` of the cameras. Returns ``(xyz [n, 3], rgb [n, 3])`` float32.
    """
    rng = np.random.default_rng(seed)
    c2w = np.stack([v.cam_to_world for v in scene.views])  # [V, 4, 4]
    centres, axes = c2w[:, :3, 3], c2w[:, :3, 2]  # [V, 3] camera centres and optical axes (OpenCV z forward)
    # least-squares point closest to every optical axis: sum_i (I - a a^T)(x - c_i) = 0
    proj = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]  # [V, 3, 3]
    A, b = proj.sum(0), np.einsum("vij,vj->i", proj, centres)
    focus = np.linalg.lstsq(A, b, rcond=None)[0]
    dist = float(np.median(np.linalg.norm(centres - focus, axis=1)))
    if not np.isfinite(dist) or dist <= 0:
        dist = float(np.linalg.norm(centres - centres.mean(0), axis=1).mean()) or 1.0
    keep: list[np.ndarray] = []
    K_inv_views = np.linalg.inv(np.stack([v.K for v in scene.views]))  # [V, 3, 3]
    for _ in range(50):
        m = 4 * n
        cam = rng.integers(0, len(scene.views), m)
        uv = rng.random((m, 2)) * np.array([[scene.views[0].width, scene.views[0].height]])
        K_inv = K_inv_views[cam]  # [m, 3, 3]
        rays = np.einsum("mij,mj->mi", K_inv, np.concatenate([uv, np.ones((m, 1))], 1))  # camera frame, z = 1
        z = rng.uniform(0.2, 2.0, m) * dist
        pts = np.einsum("mij,mj->mi", c2w[cam, :3, :3], rays * z[:, None]) + c2w[cam, :3, 3]
        seen = np.zeros(m)
        for v in scene.views:
            uvv, zz = project(pts, v.K, v.world_to_cam)
            with np.errstate(invalid="ignore"):
                seen += (zz > 0) & (uvv[:, 0] >= 0) & (uvv[:, 0] < v.width) & (uvv[:, 1] >= 0) & (uvv[:, 1] < v.height)
        keep.append(pts[seen >= min_share * len(scene.views)])
        if sum(len(k) for k in keep) >= n:
            break
    xyz = np.concatenate(keep)[:n]
    if len(xyz) < 4:
        raise LiftError(
            f"scene {scene.name}: no point is seen by {min_share:.0%} of the cameras; the poses do not look at a "
            "common volume (check the camera convention: transforms.json is OpenGL)"
        )
    return xyz.astype(np.float32), np.full_like(xyz, 0.5, dtype=np.float32)


# The backbone's features of a few scenes' views, kept in this process: notebook 05 refits every lift six times and
# each refit needs the same targets. Keyed by the model's state (Backbone.state_version) and the images' content.
_FEATURES_MEMO: OrderedDict[tuple, Tensor] = OrderedDict()
_FEATURES_MEMO_SCENES = 8


def scene_features(backbone: Backbone, images: Tensor) -> Tensor:
    """``backbone.features`` of ``images [V, 3, H, W]`` -> ``[V, D, h, w]``, remembered for the next call."""
    key = (backbone.state_version(), tensor_digest(images))
    if key in _FEATURES_MEMO:
        _FEATURES_MEMO.move_to_end(key)
        return _FEATURES_MEMO[key]
    feats, _ = backbone.features(images, batch_size=4)
    _FEATURES_MEMO[key] = feats
    while len(_FEATURES_MEMO) > _FEATURES_MEMO_SCENES:
        _FEATURES_MEMO.popitem(last=False)
    return feats


def prepare_scene(scene: Scene, backbone: Backbone, cfg: LiftConfig, *, remember: bool = False) -> PreparedScene:
    """Resize images to the training resolution and compute the backbone's target features once (``remember``: keep
    them in this process for the next call, as the feature refits of one scene do)."""
    images_full = torch.stack(
        [torch.as_tensor(v.image, dtype=torch.float32).permute(2, 0, 1) for v in scene.views]
    )  # [V, 3, H, W]
    H, W = images_full.shape[-2:]
    th, tw = H // cfg.train_downscale, W // cfg.train_downscale
    images = F.interpolate(images_full, size=(th, tw), mode="area") if cfg.train_downscale > 1 else images_full
    Ks = torch.stack([torch.as_tensor(v.K, dtype=torch.float32) for v in scene.views]).clone()
    Ks[:, 0] *= tw / W
    Ks[:, 1] *= th / H
    viewmats = torch.stack([torch.as_tensor(v.world_to_cam, dtype=torch.float32) for v in scene.views])
    if remember:
        targets = scene_features(backbone, images_full)  # [V, D, h, w]
    else:
        targets, _ = backbone.features(images_full, batch_size=4)  # [V, D, h, w]
    masks = view_masks(scene, (th, tw))  # [V, 1, th, tw]
    train, holdout = holdout_split(len(scene.views), cfg.holdout_every)
    centres = torch.stack([torch.as_tensor(v.cam_to_world[:3, 3], dtype=torch.float32) for v in scene.views])
    extent = float((centres - centres.mean(0)).norm(dim=-1).max()) * 1.1
    dev = backbone.device  # the fit runs where the backbone runs ("auto": CUDA when present)
    return PreparedScene(
        images.to(dev), viewmats.to(dev), Ks.to(dev), targets.to(dev), masks.to(dev), train, holdout, max(extent, 1e-2)
    )


def soft_view_masks(scene: Scene, size_hw: tuple[int, int]) -> Tensor:
    """[V, 1, H, W] float: the views' validity masks (ScanNet++ anonymisation; 1 = use) resized bilinearly to
    ``size_hw``, as the official loader does for the fine-tuning loss. Views without a mask: all ones."""
    out = []
    for v in scene.views:
        m = getattr(v, "mask", None)
        if m is None:
            out.append(torch.ones(1, *size_hw))
        else:
            t = torch.as_tensor(np.asarray(m, dtype=np.float32))[None, None]  # [1, 1, H, W]
            out.append(F.interpolate(t, size=size_hw, mode="bilinear", align_corners=False)[0])
    return torch.stack(out)


def view_masks(scene: Scene, size_hw: tuple[int, int]) -> Tensor:
    """[V, 1, H, W] bool: :func:`soft_view_masks` where non-zero (as the official reader: resize, then any non-zero
    value counts as valid). Views without a mask: all True."""
    return soft_view_masks(scene, size_hw) > 0


def feature_camera(K: Tensor, image_hw: tuple[int, int], out_hw: tuple[int, int]) -> Tensor:
    """Intrinsics [.., 3, 3] rescaled from an image of size image_hw to a render of size out_hw."""
    K = K.clone()
    K[..., 0, :] *= out_hw[1] / image_hw[1]
    K[..., 1, :] *= out_hw[0] / image_hw[0]
    return K


# ----------------------------------------------------------------------------------------------------------------
# Rendering a fitted scene (used by the lift loop, the notebooks and the fine-tuning targets)
# ----------------------------------------------------------------------------------------------------------------


def render_rgb_and_features(
    params: dict[str, Tensor],
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: int,
    backend: str = "auto",
    *,
    near: float = 0.01,
    max_alpha: float = 0.999,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
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
    both, _, info = rasterize_with_info(
        g["means"],
        g["quats"],
        g["scales"],
        g["opacities"],
        torch.cat([colors, params["features"]], 1),
        viewmats,
        Ks,
        width,
        height,
        backend=backend,
        geometry_channels=3,
        near=near,
        max_alpha=max_alpha,
    )
    return both[..., :3], both[..., 3:].permute(0, 3, 1, 2), info


def render_features(
    params: dict[str, Tensor],
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    detach_geometry: bool = True,
    backend: str = "auto",
    near: float = 0.01,
    max_alpha: float = 0.999,
    remember: bool = False,
    geometry: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Low-dim features of C cameras with (by default) detached geometry: -> ([C, F, H, W], alphas [C, 1, H, W]).

    ``remember=True`` (frozen geometry rendered again and again, e.g. the fine-tuning targets of every feature refit
    of one lift): on the PyTorch backend each view's compositing weights are kept (:func:`render.frozen_weights`)
    and only the features are composited; the same numbers as a full render. ``geometry``: :func:`geometry_key` of
    ``params`` when the caller renders many views of it (computed here otherwise).
    """
    g = activated(params)
    if detach_geometry:
        g = {k: v.detach() for k, v in g.items()}
    if remember and detach_geometry and resolve_backend(backend, g["means"].device) == "torch":
        geo = geometry or geometry_key(params)
        ones = torch.ones_like(params["features"][:, :1])
        colors = torch.cat([params["features"], ones], dim=1)  # [N, F + 1]: the last channel composites the alpha
        both = torch.stack(
            [
                frozen_weights(
                    g["means"],
                    g["quats"],
                    g["scales"],
                    g["opacities"],
                    vm,
                    K,
                    width,
                    height,
                    near=near,
                    max_alpha=max_alpha,
                    geometry=geo,
                )(colors)
                for vm, K in zip(viewmats, Ks)
            ]
        ).permute(0, 3, 1, 2)  # [C, F + 1, H, W]
        return both[:, :-1], both[:, -1:]
    feats, alphas, _ = rasterize_with_info(
        g["means"],
        g["quats"],
        g["scales"],
        g["opacities"],
        params["features"],
        viewmats,
        Ks,
        width,
        height,
        backend=backend,
        near=near,
        max_alpha=max_alpha,
    )
    return feats.permute(0, 3, 1, 2), alphas.permute(0, 3, 1, 2)


def geometry_key(params: dict[str, Tensor]) -> str:
    """The key under which :func:`render.frozen_weights` keeps the compositing weights of these Gaussians' geometry."""
    g = activated(params)
    return geometry_digest(g["means"], g["quats"], g["scales"], g["opacities"])


def decode(decoder: nn.Module, feats: Tensor, grid_hw: tuple[int, int], factor: int) -> Tensor:
    """The feature path of both stages: rendered low-dim features [C, F, H, W] -> decoded [C, D, H', W'].

    ``factor`` 0 is the official construction: the decoder runs on the full-size render. ``factor`` k >= 1 is the
    cheaper path of the smoke profile: the render is area-pooled to k × the token grid first (a 3×3 decoder costs
    ≈ 222 ms per step at 160×120 on a CPU, ≈ 11 ms at 32×32). Stage 1 compares the output with the backbone's map
    upsampled to its size (:func:`feature_loss`); stage 2 resizes it to the token grid (:func:`decode_to_grid`). Both
    stages call this function with the lift's own factor, so the decoder sees at fine-tuning time what it was fitted on.
    """
    if factor > 0:
        h, w = grid_hw
        feats = F.interpolate(feats, size=(h * factor, w * factor), mode="area")
    return decoder(feats)


def decode_to_grid(decoder: nn.Module, feats: Tensor, grid_hw: tuple[int, int], factor: int) -> Tensor:
    """Stage 2's target: :func:`decode`, then bilinear (align_corners False) to the token grid [C, D, h, w]."""
    return F.interpolate(decode(decoder, feats, grid_hw, factor), size=grid_hw, mode="bilinear", align_corners=False)


def feature_loss(decoded: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Stage 1's feature L1: ``decoded [1, D, H', W']`` vs the backbone map ``targets [1, D, h, w]`` upsampled
    (align_corners False) to H'×W'. Masked pixels (``mask [1, 1, H', W']`` False) take the detached prediction as their
    target, as the official code does: no loss and no gradient there, but they still count in the mean."""
    tgt = F.interpolate(targets, size=decoded.shape[-2:], mode="bilinear", align_corners=False)
    if mask is not None and not bool(mask.all()):
        tgt = torch.where(mask, tgt, decoded.detach())
    return F.l1_loss(decoded, tgt)


def masked_rgb_loss(img: Tensor, ref: Tensor, mask: Tensor | None = None) -> Tensor:
    """:func:`rgb_loss` with anonymised pixels (``mask`` False) replaced by the detached render (official)."""
    if mask is not None and not bool(mask.all()):
        ref = torch.where(mask, ref, img.detach())
    return rgb_loss(img, ref)


def make_decoder(feature_dim: int, out_dim: int) -> nn.Conv2d:
    """The official decoder: one 3×3 conv from the low-dim rendered features to the backbone's width."""
    return nn.Conv2d(feature_dim, out_dim, kernel_size=3, padding=1, bias=False)


# ----------------------------------------------------------------------------------------------------------------
# The fit
# ----------------------------------------------------------------------------------------------------------------


def next_view(stack: list[int], train_ids: list[int], gen: torch.Generator) -> int:
    """The next training view, drawn without replacement; the stack refills when empty (the official loop:
    ``viewpoint_stack.pop(randint(...))``)."""
    if not stack:
        stack.extend(train_ids[j] for j in torch.randperm(len(train_ids), generator=gen).tolist())
    return stack.pop()


def _optimizers(params: dict[str, nn.Parameter], cfg: LiftConfig, extent: float) -> dict[str, torch.optim.Adam]:
    """One Adam (eps 1e-15) per Gaussian parameter, at the official learning rates (gsplat's layout)."""
    lrs = {
        "means": cfg.lr_means * extent,
        "quats": cfg.lr_quats,
        "log_scales": cfg.lr_scales,
        "opacity_logits": cfg.lr_opacity,
        "sh0": cfg.lr_sh0,
        "shN": cfg.lr_shN,
        "features": cfg.lr_features,
    }
    return make_optimizers(params, lrs, eps=1e-15)


def _means_lr(cfg: LiftConfig, extent: float, it: int) -> float:
    t = min(it / max(cfg.iterations, 1), 1.0)
    return math.exp((1 - t) * math.log(cfg.lr_means * extent) + t * math.log(cfg.lr_means_final * extent))


@torch.no_grad()
def render_view(
    params: dict[str, Tensor], decoder: nn.Module, prep: PreparedScene, i: int, cfg: LiftConfig, backend: str = "auto"
) -> tuple[Tensor, Tensor]:
    """View ``i`` of a fitted scene: RGB [3, H, W] at training size and decoded features [D, h, w] on the token grid."""
    H, W = prep.images.shape[-2:]
    h, w = prep.targets.shape[-2:]
    rgb, feats, _ = render_rgb_and_features(
        params,
        prep.viewmats[i : i + 1],
        prep.Ks[i : i + 1],
        W,
        H,
        cfg.sh_degree,
        backend,
        near=cfg.near_plane,
        max_alpha=cfg.max_alpha,
    )
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
def evaluate(
    params: dict[str, Tensor],
    decoder: nn.Module,
    prep: PreparedScene,
    ids: list[int],
    cfg: LiftConfig,
    backend: str = "auto",
) -> dict[str, float]:
    """Held-out PSNR/SSIM of RGB, and L1 / cosine of the decoded renders against the backbone's, on the token grid."""
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
    return {
        "psnr": float(np.mean(psnrs)),
        "ssim": float(np.mean(ssims)),
        "feature_l1": float(np.mean(l1s)),
        "feature_cosine": float(np.mean(coss)),
        "feature_cosine_centered": float(np.mean(coss_c)),
    }


@dataclass
class LiftResult:
    """A fitted scene: its artifact, the Gaussians and decoder, and where the scene was read from."""

    artifact: Artifact
    params: dict[str, Tensor]
    decoder: nn.Conv2d
    stats: dict[str, Any]
    losses: dict[str, list[float]]
    config: dict[str, Any]
    scene_path: Path | None = None  # the scene folder this run read (not part of the key: keys are portable)

    @property
    def path(self) -> Path:
        return self.artifact.path

    @property
    def hash(self) -> str:
        return self.artifact.hash


def load_lift(
    artifact: Artifact | str | Path,
    *,
    expect_dim: int | None = None,
    expect_feature_dim: int | None = None,
    scene_path: str | Path | None = None,
) -> LiftResult:
    """Load a finished lift artifact (or its key folder); checks the decoder width and feature dimension."""
    if not isinstance(artifact, Artifact):
        found = cache.lookup_dir(artifact, "lift")
        if found is None:
            raise LiftError(
                f"no finished lift artifact at {artifact}: run fit3d_helpers.lift.lift_scene(...) "
                "(notebook 02) for that scene first."
            )
        artifact = found
    g = artifact.torch("gaussians.pt")
    dec_sd = artifact.torch("decoder.pt")
    fdim, out_dim = g["features"].shape[1], dec_sd["weight"].shape[0]
    where = artifact.path
    if dec_sd["weight"].shape[1] != fdim:
        raise LiftError(
            f"{where}: decoder expects {dec_sd['weight'].shape[1]}-d features but the Gaussians carry {fdim}-d ones"
        )
    if expect_feature_dim is not None and fdim != expect_feature_dim:
        raise LiftError(
            f"{where}: saved Gaussians carry {fdim}-d features, but feature_dim={expect_feature_dim} was asked for"
        )
    if expect_dim is not None and out_dim != expect_dim:
        raise LiftError(
            f"{where}: the decoder outputs {out_dim} channels but the backbone is {expect_dim}-d: "
            "this artifact was fitted for another backbone/width"
        )
    decoder = make_decoder(fdim, out_dim)
    decoder.load_state_dict(dec_sd)
    return LiftResult(
        artifact,
        g,
        decoder,
        artifact.stats,
        artifact.json("losses.json"),
        artifact.config,
        Path(scene_path) if scene_path is not None else None,
    )


@torch.no_grad()
def check_start(scene_name: str, params: dict[str, Tensor], prep: PreparedScene, near: float = 0.01) -> None:
    """Stop before fitting garbage: non-finite initial Gaussians, or training views that see none of them."""
    bad = {k: int((~torch.isfinite(v)).reshape(v.shape[0], -1).any(1).sum()) for k, v in params.items()}
    bad = {k: n for k, n in bad.items() if n}
    if bad:
        raise LiftError(
            f"scene {scene_name}: the initial Gaussians are not finite ({bad} rows); check the scene's "
            "point cloud / depth maps and poses for NaN or inf"
        )
    means = params["means"]  # [N, 3]
    blind = []
    H, W = prep.images.shape[-2:]
    for i in prep.train_ids:
        cam = means @ prep.viewmats[i, :3, :3].T + prep.viewmats[i, :3, 3]  # [N, 3]
        uvw = cam @ prep.Ks[i].T  # [N, 3]
        z = cam[:, 2]
        u, v = uvw[:, 0] / z.clamp_min(1e-9), uvw[:, 1] / z.clamp_min(1e-9)
        if not bool(((z > near) & (u >= 0) & (u < W) & (v >= 0) & (v < H)).any()):
            blind.append(i)
    if blind:
        raise LiftError(
            f"scene {scene_name}: training view(s) {blind[:10]} of {len(prep.train_ids)} see none of the "
            f"{means.shape[0]} initial Gaussians. The poses and the point cloud disagree: check the camera "
            "convention (transforms.json is OpenGL, COLMAP is OpenCV) and the units of the depth maps."
        )


def lift_scene(
    scene_path: str | Path,
    backbone: Backbone,
    cfg: LiftConfig | None = None,
    *,
    root: str | Path | None = None,
    backend: str = "auto",
    force: bool = False,
    stop_after: int | None = None,
    max_seconds: float | None = None,
    include_test_frames: bool = False,
    expected_wh: tuple[int, int] | None = None,
) -> LiftResult:
    """Fit (or load) the feature Gaussians of one scene, cached by :func:`lift_key` (see :mod:`fit3d_helpers.cache`).

    ``stop_after`` (iterations) or ``max_seconds`` stop early with a checkpoint and raise TimeoutError: calling again
    resumes, and the result equals an uninterrupted fit. ``expected_wh`` stops a scene whose images have another
    size (the paper profile: ScanNet++ at the official 876×584).
    """
    cfg = cfg or LiftConfig()
    root = Path(root) if root is not None else DEFAULT_ARTIFACTS
    key = lift_key(scene_path, backbone, cfg, include_test_frames)

    def make(out: Path, resume: Path) -> dict[str, Any]:
        return _fit(
            Path(scene_path),
            backbone,
            cfg,
            out,
            resume,
            backend,
            stop_after,
            max_seconds,
            include_test_frames,
            expected_wh,
        )

    art = cache.build("lift", key, root, make, force=force, what=f"the lift of {key['scene']}")
    return load_lift(art, expect_dim=backbone.dim, expect_feature_dim=cfg.feature_dim, scene_path=scene_path)


def _fit(
    scene_path: Path,
    backbone: Backbone,
    cfg: LiftConfig,
    out: Path,
    resume: Path,
    backend: str,
    stop_after: int | None,
    max_seconds: float | None,
    include_test_frames: bool = False,
    expected_wh: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The stage-1 loop; writes gaussians.pt, decoder.pt, losses.json into ``out`` and returns the stats."""
    seed_everything(cfg.seed)
    scene = load_scene(scene_path, include_test_frames=include_test_frames)
    if expected_wh is not None:
        check_resolution(scene, expected_wh)
    prep = prepare_scene(scene, backbone, cfg)
    pts, cols = scene_points(scene, cfg.max_init_points, cfg.seed)
    ckpt_path = resume / "checkpoint.pt"
    dev = backbone.device
    decoder = make_decoder(cfg.feature_dim, backbone.dim).to(dev)
    params = {
        k: nn.Parameter(v.to(dev))
        for k, v in init_gaussians(pts, cols, feature_dim=cfg.feature_dim, sh_degree=cfg.sh_degree).items()
    }
    check_start(scene.name, params, prep)
    start, losses, elapsed = 0, {"iteration": [], "rgb": [], "feature": [], "n_gaussians": []}, 0.0
    strategy = make_strategy(cfg)
    strategy_state = strategy.initialize_state(scene_scale=prep.extent)
    gen = torch.Generator().manual_seed(cfg.seed)  # which training view each iteration fits
    stack: list[int] = []  # views left in this pass over the training views
    ck = cache.load_resume(ckpt_path)
    if ck is not None and ck.get("format") != _CHECKPOINT_FORMAT:
        warnings.warn(
            f"{ckpt_path} was written by another version of the course; starting this fit from scratch", stacklevel=2
        )
        ck = None
    if ck is not None:
        params = {k: nn.Parameter(v.to(dev)) for k, v in ck["params"].items()}
        decoder.load_state_dict(ck["decoder"])
        start, losses, elapsed = ck["iteration"], ck["losses"], ck["elapsed"]
        strategy_state = state_to(ck["strategy_state"], dev)
        gen.set_state(ck["rng"]["views"])
        set_rng_state(ck["rng"]["global"])
        stack = list(ck["view_stack"])
    optimizers = _optimizers(params, cfg, prep.extent)  # one Adam per Gaussian parameter (gsplat's layout)
    decoder_opt = torch.optim.Adam(decoder.parameters(), lr=cfg.lr_decoder, eps=1e-15)
    if ck is not None:
        for name, opt in optimizers.items():
            opt.load_state_dict(ck["optimizers"][name])
        decoder_opt.load_state_dict(ck["decoder_optimizer"])
    strategy.check_sanity(params, optimizers)
    H, W = prep.images.shape[-2:]
    h, w = prep.targets.shape[-2:]
    (fh, fw), feat_masks = feature_masks(prep, cfg.feature_factor)
    render_backend = None
    t0 = time.time()
    bar = progress(range(start, cfg.iterations), desc=f"lift {scene.name}", initial=start, total=cfg.iterations)
    for it in bar:
        i = next_view(stack, prep.train_ids, gen)
        optimizers["means"].param_groups[0]["lr"] = _means_lr(cfg, prep.extent, it)
        sh_deg = min(cfg.sh_degree, it // cfg.sh_degree_every)
        rgb, feats, info = render_rgb_and_features(
            params,
            prep.viewmats[i : i + 1],
            prep.Ks[i : i + 1],
            W,
            H,
            sh_deg,
            backend,
            near=cfg.near_plane,
            max_alpha=cfg.max_alpha,
        )
        render_backend = info["backend"]
        loss_rgb = masked_rgb_loss(rgb.permute(0, 3, 1, 2), prep.images[i : i + 1], prep.masks[i : i + 1])
        decoded = decode(decoder, feats, (h, w), cfg.feature_factor)  # [1, D, fh, fw]
        loss_feat = feature_loss(decoded, prep.targets[i : i + 1], feat_masks[i : i + 1])
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
        stop_early = (stop_after is not None and it + 1 >= stop_after) or (
            max_seconds is not None and time.time() - t0 > max_seconds
        )
        if (it + 1) % cfg.checkpoint_every == 0 or stop_early:
            save_torch(
                ckpt_path,
                {
                    "format": _CHECKPOINT_FORMAT,
                    "iteration": it + 1,
                    "params": {k: v.detach().cpu() for k, v in params.items()},
                    "decoder": decoder.state_dict(),
                    "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                    "decoder_optimizer": decoder_opt.state_dict(),
                    "strategy_state": state_to(strategy_state, "cpu"),
                    "losses": losses,
                    "elapsed": elapsed + time.time() - t0,
                    "rng": {"views": gen.get_state(), "global": rng_state()},
                    "view_stack": list(stack),
                },
            )
        if stop_early and not done:
            raise TimeoutError(
                f"lift of {scene.name} stopped at iteration {it + 1}; call again to resume from {ckpt_path}"
            )
    bar.close()
    wall = elapsed + time.time() - t0
    final = {k: v.detach() for k, v in params.items()}
    metrics = evaluate(final, decoder, prep, prep.holdout_ids, cfg, backend)
    final = {k: v.cpu() for k, v in final.items()}
    save_torch(out / "gaussians.pt", {**final, "sh_degree": torch.tensor(cfg.sh_degree)})
    save_torch(out / "decoder.pt", decoder.cpu().state_dict())
    write_json(out / "losses.json", losses)
    return {
        "stage": "lift",
        "scene": scene.name,
        **backbone.describe(),
        **{f"heldout_{k}": v for k, v in metrics.items()},
        "n_gaussians": int(final["means"].shape[0]),
        "n_init_points": int(pts.shape[0]),
        "iterations": cfg.iterations,
        "feature_dim": cfg.feature_dim,
        "wall_seconds": round(wall, 1),
        "train_views": len(prep.train_ids),
        "heldout_views": len(prep.holdout_ids),
        "render_hw": [H, W],
        "feature_hw": [fh, fw],
        "extent": prep.extent,
        "strategy": cfg.strategy,
        "render_backend": render_backend,
    }


def refit_features(
    base: LiftResult,
    backbone: Backbone,
    feature_dim: int,
    *,
    feature_factor: int | None = None,
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
    if base.scene_path is None:
        raise LiftError(
            f"refit_features needs the scene the lift {base.hash} was fitted on: load it with lift_scene(scene, ...)"
        )
    base_cfg = LiftConfig(**base.config["lift"])
    factor = base_cfg.feature_factor if feature_factor is None else feature_factor
    cfg = dataclasses.replace(
        base_cfg, feature_dim=feature_dim, feature_factor=factor, iterations=iterations or base_cfg.iterations
    )
    key = {
        "stage": "lift_features",
        "base": base.hash,
        "feature_dim": feature_dim,
        "feature_factor": factor,
        "iterations": cfg.iterations,
    }
    root = Path(root) if root is not None else DEFAULT_ARTIFACTS

    def make(out: Path, resume: Path) -> dict[str, Any]:
        seed_everything(cfg.seed)
        scene = load_scene(base.scene_path, include_test_frames=bool(base.config.get("test_frames")))
        prep = prepare_scene(scene, backbone, cfg, remember=True)
        dev = backbone.device
        geometry = {k: v.to(dev) for k, v in base.params.items() if k not in ("features", "sh_degree")}
        n = geometry["means"].shape[0]
        features = nn.Parameter(torch.zeros(n, feature_dim, device=dev))  # as the official init
        decoder = make_decoder(feature_dim, backbone.dim).to(dev)
        optimizer = torch.optim.Adam(
            [{"params": [features], "lr": cfg.lr_features}, {"params": decoder.parameters(), "lr": cfg.lr_decoder}],
            eps=1e-15,
        )
        H, W = prep.images.shape[-2:]
        h, w = prep.targets.shape[-2:]
        _, feat_masks = feature_masks(prep, cfg.feature_factor)
        gen = torch.Generator().manual_seed(cfg.seed)
        stack: list[int] = []
        losses: dict[str, list[float]] = {"iteration": [], "rgb": [], "feature": [], "n_gaussians": []}
        t0 = time.time()
        # the geometry is frozen, so every view's compositing weights are too: compute them once (the pair work of a
        # render; remembered across the refits of this lift), then each step only composites the features (same
        # numbers as render_features)
        act = activated(geometry)
        geo = geometry_key(geometry)
        for it in progress(range(cfg.iterations), desc=f"features {feature_dim}-d {scene.name}"):
            i = next_view(stack, prep.train_ids, gen)
            view = frozen_weights(act["means"], act["quats"], act["scales"], act["opacities"], prep.viewmats[i],
                                  prep.Ks[i], W, H, near=cfg.near_plane, max_alpha=cfg.max_alpha,
                                  geometry=geo)  # fmt: skip
            feats = view(features).permute(2, 0, 1)[None]  # [1, F, H, W]
            loss = feature_loss(
                decode(decoder, feats, (h, w), cfg.feature_factor), prep.targets[i : i + 1], feat_masks[i : i + 1]
            )
            _check_finite(it, feature=loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses["iteration"].append(it)
            losses["feature"].append(float(loss.detach()))
            losses["n_gaussians"].append(n)
        params = {**geometry, "features": features.detach()}
        metrics = evaluate(params, decoder, prep, prep.holdout_ids, cfg, backend)
        save_torch(out / "gaussians.pt", {k: v.cpu() for k, v in params.items()})
        save_torch(out / "decoder.pt", decoder.cpu().state_dict())
        write_json(out / "losses.json", losses)
        return {
            **base.stats,
            **{f"heldout_{k}": v for k, v in metrics.items()},
            "stage": "lift_features",
            "feature_dim": feature_dim,
            "iterations": cfg.iterations,
            "wall_seconds": round(time.time() - t0, 1),
            "base_lift": base.hash,
            "feature_bytes": int(n * feature_dim * 4 + decoder.weight.numel() * 4),
        }

    art = cache.build(
        "lift_features",
        key,
        root,
        make,
        force=force,
        what=f"{feature_dim}-d, ×{factor} features of {base.stats.get('scene')}",
    )
    res = load_lift(art, expect_dim=backbone.dim, expect_feature_dim=feature_dim, scene_path=base.scene_path)
    res.config = {**base.config, "lift": dataclasses.asdict(cfg), "derived": key}
    return res
