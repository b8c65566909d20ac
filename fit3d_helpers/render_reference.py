"""What a Gaussian rasterizer computes, written to be read: one pixel grid, one Gaussian at a time, front to back.

``render_reference`` takes gsplat's arguments (``means [N,3]``, ``quats [N,4]`` wxyz, ``scales [N,3]``,
``opacities [N]``, ``colors [N,D]`` or ``[C,N,D]``, ``viewmats [C,4,4]`` world-to-camera (OpenCV), ``Ks [C,3,3]``,
``width``, ``height``) and returns ``renders [C,H,W,D]``, ``alphas [C,H,W,1]``. It is slow on purpose (a Python loop
over the Gaussians of each camera, every pixel against every Gaussian) and shares no code with
:mod:`fit3d_helpers.render`, so the fast renderer can be tested against it; autograd through it (in float64) gives
the reference gradients. Keep it for tiny inputs (tens to a few thousand Gaussians, images of a few thousand pixels).

Two sets of rules (:class:`RasterRules`), because the two rasterizers the course meets differ in small ways:

* :data:`GSPLAT_RULES`: gsplat 1.5.3 "classic", which the course's fast renderer (``render.rasterize``) reproduces:
  alpha clamp 0.999, stop when ``T <= 1e-4``, near plane 0.01 (``z < near`` culled), the Jacobian's ``x/z, y/z``
  clamped to the image plus 30 % of the half field of view on each side of the principal point, and no footprint
  box beyond the ``alpha >= 1/255`` rule (gsplat's opacity-aware box holds exactly those pixels).
* :data:`OFFICIAL_RULES`: Inria's ``diff-gaussian-rasterization`` as FiT3D ships it
  (``submodules/diff-feature-gaussian-rasterization`` in ywyue/FiT3D; lines below are of its
  ``cuda_rasterizer/forward.cu`` and of Inria's ``cuda_rasterizer/auxiliary.h``, which FiT3D does not store):

  - near plane: ``p_view.z <= 0.2f`` is culled (``auxiliary.h:154``, ``in_frustum``; called at ``forward.cu:198``);
  - EWA Jacobian with ``x/z, y/z`` clamped to ``±1.3·tan_fov`` about the optical axis (``forward.cu:87-92``);
  - low-pass: ``0.3`` added to the 2D covariance diagonal (``forward.cu:115-116``); ``det == 0`` culled (``:225``);
  - footprint: radius ``ceil(3·sqrt(λ_max))`` with ``λ = mid ± sqrt(max(0.1, mid² - det))`` (``forward.cu:234-237``),
    and the Gaussian is evaluated on **every pixel of every 16×16 tile** its square ``[p-r, p+r]`` touches
    (``auxiliary.h:46-56`` ``getRect``, ``BLOCK_X = BLOCK_Y = 16`` in ``config.h``); none if that is zero tiles
    (``forward.cu:240-242``);
  - per pixel, in the tile's depth order (key ``tile | depth``, ``rasterizer_impl.cu`` ``duplicateWithKeys``; a stable
    radix sort, so equal depths keep the Gaussian order): skip ``power > 0`` (``forward.cu:346``),
    ``alpha = min(0.99, o·exp(power))`` (``:353``), skip ``alpha < 1/255`` (``:354``), and stop *before* a Gaussian
    with ``T·(1-alpha) < 1e-4`` (``:356-360``, strict ``<``);
  - pixel coordinates: the kernel evaluates integer pixel ``(x, y)`` (``forward.cu:289``) against the mean from
    ``ndc2Pix(v, S) = ((v + 1)·S - 1)/2`` (``auxiliary.h:41-44``), i.e. pixel centres ``x + 0.5`` against
    ``fx·X/Z + cx`` with ``cx = W/2``: FiT3D's cameras carry a field of view only (``scene/cameras.py``,
    ``getProjectionMatrix``), so its principal point is the image centre. Here ``Ks`` is used as given; pass a
    centred ``K`` to reproduce that too.

  Not modelled: float32 fast-math, the ``1e-7`` added to ``w`` in the projection (``forward.cu:204``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import Tensor

__all__ = ["GSPLAT_RULES", "OFFICIAL_RULES", "RasterRules", "render_reference"]


@dataclasses.dataclass(frozen=True)
class RasterRules:
    """The constants and conventions in which rasterizers differ (see the module docstring for their sources)."""

    name: str
    near: float  # Gaussians closer than this (camera z) are culled
    near_inclusive: bool  # True: z == near is culled too (official ``z <= 0.2``); False: only z < near (gsplat)
    max_alpha: float  # alpha clamp
    t_stop: float  # a pixel stops before the Gaussian that takes T below this ...
    t_stop_inclusive: bool  # ... or to exactly this (gsplat ``<=``; official ``<``)
    # "image": gsplat's asymmetric clamp about the principal point; "symmetric": ±1.3 tan_fov (official)
    fov_clamp: Literal["image", "symmetric"]
    # "alpha": every pixel with alpha >= 1/255 (gsplat); "tiles": the official 3-sigma square on whole tiles
    footprint: Literal["alpha", "tiles"]
    eps2d: float = 0.3  # low-pass added to the 2D covariance diagonal, px²
    alpha_threshold: float = 1.0 / 255.0  # pairs with a smaller alpha are skipped
    tile: int = 16  # tile size for ``footprint="tiles"``
    far: float = 1e10


GSPLAT_RULES = RasterRules("gsplat", 0.01, False, 0.999, 1e-4, True, "image", "alpha")
OFFICIAL_RULES = RasterRules("official", 0.2, True, 0.99, 1e-4, False, "symmetric", "tiles")


def _rotation(q: Tensor) -> Tensor:
    """[N, 4] quaternions (w, x, y, z), any norm -> [N, 3, 3] rotation matrices."""
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def _tile_mask(mean2d: Tensor, cov2d: Tensor, width: int, height: int, tile: int) -> Tensor | None:
    """The official footprint: pixels of the tiles touched by the square of radius ceil(3 sqrt(lambda_max)) around
    the mean (forward.cu:234-242, auxiliary.h getRect); ``None`` when it touches no tile. [H, W] bool."""
    a, b, c = float(cov2d[0, 0]), float(cov2d[0, 1]), float(cov2d[1, 1])
    det, mid = a * c - b * b, 0.5 * (a + c)
    lam = mid + math.sqrt(max(0.1, mid * mid - det))  # the larger eigenvalue (floored as the kernel does)
    r = math.ceil(3.0 * math.sqrt(lam))
    px, py = float(mean2d[0]) - 0.5, float(mean2d[1]) - 0.5  # ndc2Pix coordinates: pixel centres on integers
    gx, gy = (width + tile - 1) // tile, (height + tile - 1) // tile

    def span(p: float, n_tiles: int) -> tuple[int, int]:  # C's (int) truncates toward zero, then clamp to the grid
        lo = min(n_tiles, max(0, int((p - r) / tile)))
        hi = min(n_tiles, max(0, int((p + r + tile - 1) / tile)))
        return lo, hi

    (x0, x1), (y0, y1) = span(px, gx), span(py, gy)
    if (x1 - x0) * (y1 - y0) == 0:
        return None
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[y0 * tile : y1 * tile, x0 * tile : x1 * tile] = True
    return mask


def render_reference(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    rules: RasterRules = GSPLAT_RULES,
    background: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Render N Gaussians into C cameras by the letter of ``rules``: ``renders [C,H,W,D]``, ``alphas [C,H,W,1]``.

    Computed in the inputs' dtype (pass float64 for reference gradients), on their device. ``background`` ([D] or
    [C,D]) is composited as ``render + (1 - alpha)·background``. Override one rule with
    ``dataclasses.replace(GSPLAT_RULES, near=2.5)``.
    """
    dt, dev = means.dtype, means.device
    C = viewmats.shape[0]
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dt, device=dev) + 0.5, torch.arange(width, dtype=dt, device=dev) + 0.5, indexing="ij"
    )  # pixel centres, [H, W] each
    R = _rotation(quats)  # [N, 3, 3]
    cov_world = R @ torch.diag_embed(scales**2) @ R.transpose(-1, -2)  # [N, 3, 3] = R S Sᵀ Rᵀ
    renders, alphas = [], []
    for c in range(C):
        Rw, tw = viewmats[c, :3, :3], viewmats[c, :3, 3]
        fx, fy, cx, cy = Ks[c, 0, 0], Ks[c, 1, 1], Ks[c, 0, 2], Ks[c, 1, 2]
        p = means @ Rw.T + tw  # [N, 3] camera coordinates
        cov_cam = Rw @ cov_world @ Rw.T  # [N, 3, 3]
        tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
        if rules.fov_clamp == "symmetric":  # forward.cu:87-92
            lo_x, hi_x, lo_y, hi_y = -1.3 * tan_x, 1.3 * tan_x, -1.3 * tan_y, 1.3 * tan_y
        else:  # gsplat: the image's own extent on each side of the principal point, plus 30 % of the half FoV
            lo_x, hi_x = -(cx / fx + 0.3 * tan_x), (width - cx) / fx + 0.3 * tan_x
            lo_y, hi_y = -(cy / fy + 0.3 * tan_y), (height - cy) / fy + 0.3 * tan_y
        z = p[:, 2].detach()
        keep = ((z > rules.near) if rules.near_inclusive else (z >= rules.near)) & (z <= rules.far)
        zs = torch.where(keep, p[:, 2], torch.ones_like(p[:, 2]))  # culled ones get a harmless depth (no NaN)
        u = torch.clamp(p[:, 0] / zs, lo_x, hi_x)  # [N], the clamped x/z the Jacobian uses
        v = torch.clamp(p[:, 1] / zs, lo_y, hi_y)
        zero = torch.zeros_like(zs)
        J = torch.stack(
            [torch.stack([fx / zs, zero, -fx * u / zs], -1), torch.stack([zero, fy / zs, -fy * v / zs], -1)], -2
        )  # [N, 2, 3] perspective Jacobian (EWA)
        cov2d = J @ cov_cam @ J.transpose(-1, -2) + rules.eps2d * torch.eye(2, dtype=dt, device=dev)  # [N, 2, 2]
        keep = keep & (torch.linalg.det(cov2d.detach()) > 0)
        conics = torch.linalg.inv(torch.where(keep[:, None, None], cov2d, torch.eye(2, dtype=dt, device=dev)))
        means2d = torch.stack([fx * p[:, 0] / zs + cx, fy * p[:, 1] / zs + cy], -1)  # [N, 2]
        splats = []  # (depth, index, footprint mask or None) of the Gaussians this camera renders
        for i in torch.nonzero(keep).flatten().tolist():
            where = None
            if rules.footprint == "tiles":
                where = _tile_mask(means2d[i].detach().cpu(), cov2d[i].detach().cpu(), width, height, rules.tile)
                if where is None:
                    continue
            splats.append((float(z[i]), i, where))
        splats.sort(key=lambda s: (s[0], s[1]))  # front to back; equal depths keep the Gaussian order
        idx = torch.tensor([s[1] for s in splats], dtype=torch.long, device=dev)  # [G]

        # every pixel against every Gaussian: sigma = ½ dᵀ Σ₂⁻¹ d (the kernel's -power), [G, H, W]
        dx = xs - means2d[idx, 0, None, None]
        dy = ys - means2d[idx, 1, None, None]
        q = conics[idx, :, :, None, None]  # [G, 2, 2, 1, 1]
        sigma = 0.5 * (q[:, 0, 0] * dx * dx + q[:, 1, 1] * dy * dy) + q[:, 0, 1] * dx * dy
        alpha = torch.clamp(opacities[idx, None, None] * torch.exp(-sigma), max=rules.max_alpha)
        counts = (alpha >= rules.alpha_threshold) & (sigma >= 0)
        if rules.footprint == "tiles" and splats:
            counts = counts & torch.stack([s[2] for s in splats]).to(dev)
        col = (colors[c] if colors.dim() == 3 else colors)[idx]  # [G, D]

        # front to back, one Gaussian at a time, every pixel at once
        T = torch.ones(height, width, dtype=dt, device=dev)  # transmittance
        done = torch.zeros(height, width, dtype=torch.bool, device=dev)
        weights = []  # each Gaussian's alpha·T per pixel
        for alpha_g, counts_g in zip(alpha.unbind(0), counts.unbind(0)):
            live = counts_g & ~done
            next_T = T * (1 - alpha_g)
            stop = live & ((next_T <= rules.t_stop) if rules.t_stop_inclusive else (next_T < rules.t_stop))
            done = done | stop
            use = live & ~stop
            weights.append(torch.where(use, alpha_g * T, torch.zeros_like(T)))
            T = torch.where(use, next_T, T)
        w = torch.stack(weights) if weights else alpha  # [G, H, W] (G = 0: nothing rendered, alpha is empty)
        out = torch.einsum("ghw,gd->hwd", w, col)  # [H, W, D] = Σ alpha·T·colour
        a = (1 - T)[..., None]  # [H, W, 1]
        if background is not None:
            out = out + (1 - a) * (background if background.dim() == 1 else background[c])
        renders.append(out)
        alphas.append(a)
    return torch.stack(renders), torch.stack(alphas)
