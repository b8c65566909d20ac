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
from dataclasses import dataclass, field
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
from .checkpoint import Checkpointer
from .data import Scene, check_resolution, load_scene
from .gaussians import activated, init_gaussians, sh_to_rgb
from .lift_inputs import (  # noqa: F401  (re-exported: the lift's public names)
    LiftError,
    PreparedScene,
    feature_camera,
    feature_masks,
    points_in_view_volume,
    prepare_scene,
    scene_features,
    scene_points,
    soft_view_masks,
    view_masks,
)
from .profiles import LiftConfig
from .render import frozen_weights, geometry_digest, rasterize_with_info, resolve_backend
from .strategy import make_optimizers, make_strategy, state_to
from .utils import (
    DEFAULT_ARTIFACTS,
    progress,
    save_torch,
    seed_everything,
    write_json,
)

# 3: + RNG states (a resumed fit equals an uninterrupted one); 4: + the view stack; 5: the Checkpointer's layout
_CHECKPOINT_FORMAT = 5
_REFIT_CHECKPOINT_FORMAT = 1  # the feature refits' checkpoints


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


# ----------------------------------------------------------------------------------------------------------------
# Checks: the inputs before the fit, the parameters during it and before anything is committed
# ----------------------------------------------------------------------------------------------------------------

# the setting that sets each parameter's step size: what to lower when it goes non-finite
LR_SETTING = {
    "means": "lift.lr_means",
    "quats": "lift.lr_quats",
    "log_scales": "lift.lr_scales",
    "opacity_logits": "lift.lr_opacity",
    "sh0": "lift.lr_sh0",
    "shN": "lift.lr_shN",
    "features": "lift.lr_features",
    "decoder": "lift.lr_decoder",
}
_MAX_FOV_DEG = 170.0  # a wider field of view is a focal length in the wrong unit (or a typo), not a camera
_MIN_RENDER_PX = 8  # the smallest training render (width and height) a fit can learn anything from


def nonfinite_rows(params: dict[str, Tensor]) -> dict[str, int]:
    """Per parameter, the rows (Gaussians) with a NaN/inf entry, only those with any. ``log_scales`` above 88 count
    too: their scale ``exp(·)`` is inf in float32."""
    bad = {}
    for k, v in params.items():
        if not torch.is_tensor(v) or v.ndim == 0:
            continue
        rows = ~torch.isfinite(v).reshape(v.shape[0], -1).all(1)  # [N]
        if k == "log_scales":
            rows |= (v.detach() > 88).reshape(v.shape[0], -1).any(1)
        n = int(rows.sum())
        if n:
            bad[k] = n
    return bad


@torch.no_grad()
def check_fit_finite(scene_name: str, params: dict[str, Tensor], decoder: nn.Module, it: int) -> None:
    """Stop a fit whose Gaussians (or decoder) went non-finite, naming the scene, the iteration and the settings to
    lower. Cheap (one pass over the parameters): the loop calls it every densification interval and at the end."""
    bad = nonfinite_rows(params)
    if not bool(torch.isfinite(decoder.weight).all()):
        bad["decoder"] = int(decoder.weight.shape[0])
    if bad:
        n = int(params["means"].shape[0])
        rows = ", ".join(f"{k} {c} of {n if k != 'decoder' else c}" for k, c in bad.items())
        lower = ", ".join(dict.fromkeys(LR_SETTING[k] for k in bad if k in LR_SETTING))
        raise LiftError(
            f"scene {scene_name}: at iteration {it} the fit is not finite (rows with NaN/inf: {rows}); no artifact "
            f"was written. Lower {lower} (a step size too large for this scene) and run again."
        )


def check_lift_finite(lift: LiftResult, needed_by: str = "stage 2") -> None:
    """Refuse a lift artifact with non-finite Gaussians (written before the fit checked them): its renders would be
    garbage. Names the artifact and how to redo it."""
    bad = nonfinite_rows({k: v for k, v in lift.params.items() if k != "sh_degree"})
    if not bool(torch.isfinite(lift.decoder.weight).all()):
        bad["decoder"] = int(lift.decoder.weight.shape[0])
    if bad:
        scene = lift.stats.get("scene", "?")
        lower = ", ".join(dict.fromkeys(LR_SETTING[k] for k in bad if k in LR_SETTING))
        raise LiftError(
            f"{needed_by} cannot use the lift artifact {lift.path} (scene {scene}): its parameters are not finite "
            f"(rows with NaN/inf: {bad}). Refit that scene with lower learning rates ({lower}): notebook 02 with "
            "force=True, or lift_scene(scene, ..., force=True)."
        )


def _camera_file(scene: Scene) -> str:
    """The file a scene's intrinsics came from, for messages."""
    ns = "nerfstudio/transforms_undistorted.json"
    for rel in ("transforms.json", ns, f"dslr/{ns}", "cameras.txt", "sparse/0/cameras.txt", "sparse/cameras.txt"):
        if (Path(scene.root) / rel).is_file():
            return str(Path(scene.root) / rel)
    return f"the camera file of {scene.root}"


def check_cameras(scene: Scene, cfg: LiftConfig, grid_hw: tuple[int, int]) -> None:
    """Stop before any work on intrinsics no camera has (a focal length far below the image size: a field of view
    near 180°, e.g. ``fl_x = 1e-9``) or on images too small to fit (``lift.train_downscale`` leaves < 8 px, or the
    backbone sees no token): both otherwise fail deep inside the renderer. Names the scene file and the fix."""
    for v in scene.views:
        fx, fy, cx, cy = (float(v.K[0, 0]), float(v.K[1, 1]), float(v.K[0, 2]), float(v.K[1, 2]))
        fov = [
            math.degrees(2 * math.atan(size / (2 * f))) if f > 0 else 180.0
            for size, f in ((v.width, fx), (v.height, fy))
        ]
        centred = -0.5 * v.width <= cx <= 1.5 * v.width and -0.5 * v.height <= cy <= 1.5 * v.height
        if not all(map(math.isfinite, (fx, fy, cx, cy))) or max(fov) > _MAX_FOV_DEG or not centred:
            raise LiftError(
                f"scene {scene.name}: view {v.name} has intrinsics fx={fx:g}, fy={fy:g}, cx={cx:g}, cy={cy:g} px for "
                f"a {v.width}×{v.height} image (a {max(fov):.1f}° field of view; at most {_MAX_FOV_DEG:.0f}° and a "
                f"principal point near the image are accepted). Fix 'fl_x', 'fl_y', 'cx', 'cy' in "
                f"{_camera_file(scene)}: they are in pixels of the image they describe."
            )
    W, H = scene.views[0].width, scene.views[0].height
    tw, th = W // cfg.train_downscale, H // cfg.train_downscale
    if min(tw, th) < _MIN_RENDER_PX or min(grid_hw) < 1 or min(W, H) < 14:
        raise LiftError(
            f"scene {scene.name}: its {W}×{H} images are too small to fit (training renders {tw}×{th} px with "
            f"lift.train_downscale={cfg.train_downscale}; at least {_MIN_RENDER_PX}×{_MIN_RENDER_PX} px and one "
            "14-px backbone patch are needed). Use larger images (data.width / data.height) or a smaller "
            "lift.train_downscale."
        )


@torch.no_grad()
def check_start(scene_name: str, params: dict[str, Tensor], prep: PreparedScene, near: float = 0.01) -> None:
    """Stop before fitting garbage: non-finite initial Gaussians, or training views that see none of them."""
    bad = nonfinite_rows(params)
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


def optimizer_steps(optimizers: dict[str, torch.optim.Optimizer], scene_name: str, it: int) -> None:
    """``step()`` then ``zero_grad()`` of each optimiser, in order; an overflowing step (a learning rate near float32's
    limit, e.g. ``lift.lr_means=1e38``) becomes a LiftError naming the setting instead of Adam's anonymous one."""
    for name, opt in optimizers.items():
        try:
            opt.step()
        except RuntimeError as err:
            if "overflow" not in str(err):
                raise
            raise LiftError(
                f"scene {scene_name}: at iteration {it} the {name} optimiser step overflows float32 ({err}); no "
                f"artifact was written. Lower {LR_SETTING.get(name, 'its learning rate')}."
            ) from None
        opt.zero_grad(set_to_none=True)


# ----------------------------------------------------------------------------------------------------------------
# Stage 1: the fit (the official train_feat_gaussian.py)
# ----------------------------------------------------------------------------------------------------------------


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
        stop = Checkpointer(resume / "checkpoint.pt", _CHECKPOINT_FORMAT, every=cfg.checkpoint_every,
                            total=cfg.iterations, what=f"the lift of {key['scene']}", stop_after=stop_after,
                            max_seconds=max_seconds)  # fmt: skip
        return _fit(Path(scene_path), backbone, cfg, out, stop, backend, include_test_frames, expected_wh)

    art = cache.build("lift", key, root, make, force=force, what=f"the lift of {key['scene']}")
    return load_lift(art, expect_dim=backbone.dim, expect_feature_dim=cfg.feature_dim, scene_path=scene_path)


@dataclass
class _Fit:
    """What one stage-1 fit trains, and what its checkpoint saves."""

    params: dict[str, nn.Parameter]  # the Gaussians (PARAM_NAMES), unactivated
    decoder: nn.Conv2d
    strategy: Any  # densification (strategy.make_strategy)
    strategy_state: dict[str, Any]
    views: torch.Generator  # which training view comes next
    stack: list[int] = field(default_factory=list)  # views left in this pass over the training views
    losses: dict[str, list] = field(
        default_factory=lambda: {"iteration": [], "rgb": [], "feature": [], "n_gaussians": []}
    )
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)  # one Adam per parameter + "decoder"

    def state(self) -> dict[str, Any]:
        """The checkpoint's payload (the Checkpointer adds the step, time and RNG states)."""
        return {
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "decoder": self.decoder.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items() if k != "decoder"},
            "decoder_optimizer": self.optimizers["decoder"].state_dict(),
            "strategy_state": state_to(self.strategy_state, "cpu"),
            "losses": self.losses,
            "view_stack": list(self.stack),
        }

    def restore(self, ck: dict[str, Any] | None, cfg: LiftConfig, extent: float) -> None:
        """Take a checkpoint's state (if any), then build the optimisers (on the restored parameters)."""
        dev = self.params["means"].device
        if ck is not None:
            self.params = {k: nn.Parameter(v.to(dev)) for k, v in ck["params"].items()}
            self.decoder.load_state_dict(ck["decoder"])
            self.strategy_state = state_to(ck["strategy_state"], dev)
            self.losses, self.stack = ck["losses"], list(ck["view_stack"])
        self.optimizers = {
            **_optimizers(self.params, cfg, extent),  # one Adam per Gaussian parameter (gsplat's layout)
            "decoder": torch.optim.Adam(self.decoder.parameters(), lr=cfg.lr_decoder, eps=1e-15),
        }
        if ck is not None:
            for name, opt in self.optimizers.items():
                opt.load_state_dict(ck["optimizers"][name] if name != "decoder" else ck["decoder_optimizer"])
        self.strategy.check_sanity(self.params, {k: o for k, o in self.optimizers.items() if k != "decoder"})


def _start_fit(
    scene_path: Path,
    backbone: Backbone,
    cfg: LiftConfig,
    include_test_frames: bool,
    expected_wh: tuple[int, int] | None,
) -> tuple[Scene, PreparedScene, int, _Fit]:
    """Read and check the scene, compute the backbone targets and the initial Gaussians: (scene, prep, points, fit)."""
    scene = load_scene(scene_path, include_test_frames=include_test_frames)
    if expected_wh is not None:
        check_resolution(scene, expected_wh)
    check_cameras(scene, cfg, backbone.grid_size(scene.views[0].height, scene.views[0].width))
    prep = prepare_scene(scene, backbone, cfg)
    pts, cols = scene_points(scene, cfg.max_init_points, cfg.seed)
    dev = backbone.device
    decoder = make_decoder(cfg.feature_dim, backbone.dim).to(dev)
    params = {
        k: nn.Parameter(v.to(dev))
        for k, v in init_gaussians(pts, cols, feature_dim=cfg.feature_dim, sh_degree=cfg.sh_degree).items()
    }
    check_start(scene.name, params, prep)
    strategy = make_strategy(cfg)
    fit = _Fit(params, decoder, strategy, strategy.initialize_state(scene_scale=prep.extent),
               torch.Generator().manual_seed(cfg.seed))  # fmt: skip
    return scene, prep, int(pts.shape[0]), fit


def _lift_step(
    fit: _Fit, prep: PreparedScene, feat_masks: Tensor, cfg: LiftConfig, it: int, backend: str, scene_name: str
) -> str:
    """One iteration: a random training view, RGB + feature losses, backward, Adam, densification. Returns the
    renderer's backend. ``feat_masks`` [V, 1, fh, fw]: :func:`feature_masks` of the scene."""
    H, W = prep.images.shape[-2:]
    h, w = prep.targets.shape[-2:]
    i = next_view(fit.stack, prep.train_ids, fit.views)
    fit.optimizers["means"].param_groups[0]["lr"] = _means_lr(cfg, prep.extent, it)
    sh_deg = min(cfg.sh_degree, it // cfg.sh_degree_every)
    rgb, feats, info = render_rgb_and_features(fit.params, prep.viewmats[i : i + 1], prep.Ks[i : i + 1], W, H, sh_deg,
                                               backend, near=cfg.near_plane, max_alpha=cfg.max_alpha)  # fmt: skip
    loss_rgb = masked_rgb_loss(rgb.permute(0, 3, 1, 2), prep.images[i : i + 1], prep.masks[i : i + 1])
    decoded = decode(fit.decoder, feats, (h, w), cfg.feature_factor)  # [1, D, fh, fw]
    loss_feat = feature_loss(decoded, prep.targets[i : i + 1], feat_masks[i : i + 1])
    _check_finite(it, rgb=loss_rgb, feature=loss_feat)
    gaussian_opts = {k: o for k, o in fit.optimizers.items() if k != "decoder"}
    fit.strategy.step_pre_backward(fit.params, gaussian_opts, fit.strategy_state, it, info)
    (loss_rgb + cfg.feature_weight * loss_feat).backward()
    optimizer_steps(fit.optimizers, scene_name, it)
    # densification reads info["means2d"].grad, which only the RGB channels fed (geometry_channels=3)
    fit.strategy.step_post_backward(fit.params, gaussian_opts, fit.strategy_state, it, info)
    fit.losses["iteration"].append(it)
    fit.losses["rgb"].append(loss_rgb.item())
    fit.losses["feature"].append(loss_feat.item())
    fit.losses["n_gaussians"].append(int(fit.params["means"].shape[0]))
    return info["backend"]


def _fit(
    scene_path: Path,
    backbone: Backbone,
    cfg: LiftConfig,
    out: Path,
    ckpt: Checkpointer,
    backend: str,
    include_test_frames: bool = False,
    expected_wh: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The stage-1 loop; writes gaussians.pt, decoder.pt, losses.json into ``out`` and returns the stats."""
    seed_everything(cfg.seed)
    scene, prep, n_points, fit = _start_fit(scene_path, backbone, cfg, include_test_frames, expected_wh)
    ckpt.generators["views"] = fit.views
    fit.restore(ckpt.resume(), cfg, prep.extent)
    _, feat_masks = feature_masks(prep, cfg.feature_factor)  # [V, 1, fh, fw]
    render_backend = None
    bar = progress(range(ckpt.start, cfg.iterations), desc=f"lift {scene.name}", initial=ckpt.start,
                   total=cfg.iterations)  # fmt: skip
    for it in bar:
        n_before = fit.params["means"].shape[0]
        render_backend = _lift_step(fit, prep, feat_masks, cfg, it, backend, scene.name)
        if fit.params["means"].shape[0] != n_before:
            bar.set_postfix(n=int(fit.params["means"].shape[0]))
        if (it + 1) % cfg.densify_every == 0 or (it + 1) % cfg.checkpoint_every == 0:
            check_fit_finite(scene.name, fit.params, fit.decoder, it + 1)  # a checkpoint never holds NaN either
        ckpt.after_step(it + 1, fit.state)
    bar.close()
    check_fit_finite(scene.name, fit.params, fit.decoder, cfg.iterations)  # nothing non-finite is committed
    return _finish_fit(scene, prep, fit, n_points, cfg, out, backbone, backend, ckpt.wall_seconds(), render_backend)


def _finish_fit(
    scene: Scene,
    prep: PreparedScene,
    fit: _Fit,
    n_points: int,
    cfg: LiftConfig,
    out: Path,
    backbone: Backbone,
    backend: str,
    wall: float,
    render_backend: str | None,
) -> dict[str, Any]:
    """Held-out metrics, the artifact's files, and its stats."""
    final = {k: v.detach() for k, v in fit.params.items()}
    metrics = evaluate(final, fit.decoder, prep, prep.holdout_ids, cfg, backend)
    final = {k: v.cpu() for k, v in final.items()}
    save_torch(out / "gaussians.pt", {**final, "sh_degree": torch.tensor(cfg.sh_degree)})
    save_torch(out / "decoder.pt", fit.decoder.cpu().state_dict())
    write_json(out / "losses.json", fit.losses)
    H, W = prep.images.shape[-2:]
    fh, fw = feature_masks(prep, cfg.feature_factor)[0]
    return {
        "stage": "lift",
        "scene": scene.name,
        **backbone.describe(),
        **{f"heldout_{k}": v for k, v in metrics.items()},
        "n_gaussians": int(final["means"].shape[0]),
        "n_init_points": n_points,
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


# ----------------------------------------------------------------------------------------------------------------
# Feature refits on a frozen geometry (the feature-dimension ablation)
# ----------------------------------------------------------------------------------------------------------------


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
    stop_after: int | None = None,
) -> LiftResult:
    """Fit new ``feature_dim``-d features (and decoder) on the *frozen* geometry of an existing lift.

    Why this is the same experiment as refitting from scratch: the feature loss never moves geometry or opacity
    (features are rendered with detached geometry, and densification reads only the RGB pass's gradients), so
    a fit with another feature dimension ends with the same Gaussians. Only features and decoder need fitting,
    which skips the RGB pass and makes the feature-dimension ablation affordable on a CPU. ``stop_after`` stops early
    with a checkpoint (TimeoutError), as in :func:`lift_scene`.
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
    what = f"{feature_dim}-d, ×{factor} features of {base.stats.get('scene')}"

    def make(out: Path, resume: Path) -> dict[str, Any]:
        ckpt = Checkpointer(resume / "checkpoint.pt", _REFIT_CHECKPOINT_FORMAT, every=cfg.checkpoint_every,
                            total=cfg.iterations, what=f"the refit of {what}", stop_after=stop_after)  # fmt: skip
        return _refit(base, backbone, cfg, out, ckpt, backend)

    art = cache.build("lift_features", key, root, make, force=force, what=what)
    res = load_lift(art, expect_dim=backbone.dim, expect_feature_dim=feature_dim, scene_path=base.scene_path)
    res.config = {**base.config, "lift": dataclasses.asdict(cfg), "derived": key}
    return res


def _refit(base: LiftResult, backbone: Backbone, cfg: LiftConfig, out: Path, ckpt: Checkpointer, backend: str) -> dict:
    """The feature refit loop: features and decoder only, on the frozen compositing weights of each view."""
    seed_everything(cfg.seed)
    scene = load_scene(base.scene_path, include_test_frames=bool(base.config.get("test_frames")))
    prep = prepare_scene(scene, backbone, cfg, remember=True)
    dev = backbone.device
    geometry = {k: v.to(dev) for k, v in base.params.items() if k not in ("features", "sh_degree")}
    n = geometry["means"].shape[0]
    features = nn.Parameter(torch.zeros(n, cfg.feature_dim, device=dev))  # [N, F], as the official init
    decoder = make_decoder(cfg.feature_dim, backbone.dim).to(dev)
    optimizer = torch.optim.Adam(
        [{"params": [features], "lr": cfg.lr_features}, {"params": decoder.parameters(), "lr": cfg.lr_decoder}],
        eps=1e-15,
    )
    H, W = prep.images.shape[-2:]
    h, w = prep.targets.shape[-2:]
    _, feat_masks = feature_masks(prep, cfg.feature_factor)
    ckpt.generators["views"] = torch.Generator().manual_seed(cfg.seed)
    stack: list[int] = []
    losses: dict[str, list[float]] = {"iteration": [], "rgb": [], "feature": [], "n_gaussians": []}
    ck = ckpt.resume()
    if ck is not None:  # in place: the optimiser holds these tensors
        features.data.copy_(ck["features"])
        decoder.load_state_dict(ck["decoder"])
        optimizer.load_state_dict(ck["optimizer"])
        losses, stack = ck["losses"], list(ck["view_stack"])
    # the geometry is frozen, so every view's compositing weights are too: compute them once (the pair work of a
    # render; remembered across the refits of this lift), then each step only composites the features (same
    # numbers as render_features)
    act = activated(geometry)
    geo = geometry_key(geometry)
    for it in progress(range(ckpt.start, cfg.iterations), desc=f"features {cfg.feature_dim}-d {scene.name}"):
        i = next_view(stack, prep.train_ids, ckpt.generators["views"])
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
        ckpt.after_step(it + 1, lambda: {"features": features.detach().cpu(), "decoder": decoder.state_dict(),
                                         "optimizer": optimizer.state_dict(), "losses": losses,
                                         "view_stack": list(stack)})  # fmt: skip
    params = {**geometry, "features": features.detach()}
    check_fit_finite(scene.name, params, decoder, cfg.iterations)
    metrics = evaluate(params, decoder, prep, prep.holdout_ids, cfg, backend)
    save_torch(out / "gaussians.pt", {k: v.cpu() for k, v in params.items()})
    save_torch(out / "decoder.pt", decoder.cpu().state_dict())
    write_json(out / "losses.json", losses)
    return {
        **base.stats,
        **{f"heldout_{k}": v for k, v in metrics.items()},
        "stage": "lift_features",
        "feature_dim": cfg.feature_dim,
        "iterations": cfg.iterations,
        "wall_seconds": round(ckpt.wall_seconds(), 1),
        "base_lift": base.hash,
        "feature_bytes": int(n * cfg.feature_dim * 4 + decoder.weight.numel() * 4),
    }
