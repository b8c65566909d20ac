"""Differentiable Gaussian-splatting rasterizer: gsplat on CUDA, a pure-PyTorch renderer everywhere else.

One call, gsplat's argument names and shapes::

    renders, alphas = rasterize(means, quats, scales, opacities, colors, viewmats, Ks, width, height)
    # means [N,3], quats [N,4] (wxyz, normalised inside), scales [N,3] (positive), opacities [N] (0..1),
    # colors [N,D] or [C,N,D] (any D), viewmats [C,4,4] world-to-camera (OpenCV: x right, y down, z forward),
    # Ks [C,3,3]  ->  renders [C,H,W,D], alphas [C,H,W,1]

``rasterize_with_info`` also returns gsplat's ``meta`` dictionary (``radii [C,N,2]``, ``means2d [C,N,2]`` with
``retain_grad()`` already called, ``depths``, ``conics``, ...), in the unpacked layout on both backends, and
``means2d_grad_stats`` turns it into the per-Gaussian screen-space gradient that densification uses.

What the PyTorch renderer computes (the same as gsplat 1.5.3's "classic" 3DGS mode, checked in
``tests/test_render.py`` against an independent per-pixel renderer and, where CUDA exists, against gsplat):

1. **Projection (EWA).** Covariance ``Σ = R S Sᵀ Rᵀ`` from the normalised quaternion, moved to the camera,
   projected with the perspective Jacobian (whose ``x/z, y/z`` are clamped to 1.3× the field of view, as gsplat
   does), plus the 0.3 px² low-pass ``eps2d`` on the diagonal. No antialiasing opacity compensation.
   Culled: depth ``z < near`` or ``z > far``, opacity ``< 1/255``, and footprints that miss the image.
2. **Footprint.** gsplat's opacity-aware box: half-width ``min(3.33, sqrt(2 ln(255·opacity)))·sqrt(Σ₂ₓₓ)``
   (and ``Σ₂ᵧᵧ`` for the height). That box holds exactly the pixels where ``opacity·exp(-σ) ≥ 1/255``, so the
   per-pixel rule below is all that decides which Gaussians touch a pixel, as in gsplat's tile loop.
3. **Per pixel, front to back by camera depth** (pixel centres at ``(x+0.5, y+0.5)``):
   ``α = min(0.999, opacity·exp(-σ))``; pairs with ``α < 1/255`` are skipped; a Gaussian whose contribution would
   take the transmittance ``T`` to ``≤ 1e-4`` is not composited and the pixel stops there;
   ``render = Σ αᵢ Tᵢ cᵢ``, ``alpha = 1 - T_final``, and ``render += (1 - alpha)·background``.

Two implementations, the same numbers (``tests/test_render_paths.py``):

**The compiled kernel** (``render_kernel.py`` and ``render_kernel.cpp``, the default on a CPU where a C++ compiler
works; built once per machine in a few seconds from the package's own source, no download). Step 1 is one pass per
Gaussian each way, its backward written out (``project_gaussians`` below stays the readable version and the
fallback, and the kernel's test reference). The visible Gaussians, already in (camera, depth)
order, are binned into 8x8-pixel tiles in that order (a counting sort, so each tile's list is depth-sorted);
per tile row, each listed Gaussian's row terms of ``σ`` are computed once and its alphas at the tile's 8 columns in
one vector; each pixel then walks its non-zero alphas front to back (``T`` in float64), and the backward walks them
back to front, recovering ``T`` by division, with ``q = <∂L/∂render, colour>`` and the same formulas as below.
Colours are gathered per tile and the gradients accumulated per tile, so pixels read them from cache. Threads
(``torch.get_num_threads()``, on torch's own OpenMP pool where torch has one) take tiles one at a time.
``FIT3D_RENDER_KERNEL=torch`` switches it off.

**The pure-PyTorch path** (the fallback, and any non-CPU device), vectorised with no Python loop over pixels,
tiles or Gaussians:

* every footprint box is covered by 4x4 pixel blocks anchored at its corner; all blocks of all Gaussians are
  evaluated as one dense tensor and the (pixel, Gaussian) pairs with ``α ≥ 1/255`` are kept;
* one integer sort orders the pairs by (pixel, depth rank) (``key = pixel·n_gaussians + depth_rank``);
* the transmittance is an exclusive *segmented* cumulative sum of ``log(1-α)`` **in float64** (float32 drifts by
  about 1 % over a million pairs); the ``T ≤ 1e-4`` stop is a mask on the inclusive sum (``T`` only falls along
  a pixel's list, so the kept pairs are exactly a prefix of it, as in gsplat);
* colours, with an extra all-ones channel that yields the alpha, are summed per pixel with
  ``F.embedding_bag(mode="sum", per_sample_weights=α·T)``. A custom autograd function does the backward pass
  analytically: the per-pair dot products ``<∂L/∂render, colour>`` as a sampled sparse-dense product
  (the pairs are a CSR matrix), the colour gradient as another embedding-bag over the pairs grouped by
  Gaussian, and the gradients of the 2D means, conics and opacities with one ``index_add_`` each; no
  ``pairs × channels`` tensor is formed in either direction;
* the image is processed in bands of rows so that at most ``chunk_pairs`` candidate pairs exist at once; the
  result does not depend on the band split (the kernel renders the same bands, one call each).

Cost, forward + backward at 67 channels, projection included, on the issue-20 case of
``benchmarks/bench_render.py`` (10k Gaussians, 160x112, ~25 pairs per pixel): the kernel ~20 ms of one core
(~13 ms on two), the pure-PyTorch path ~68 ms (``docs/speed.md`` has the phases and the comparison with a public
PyTorch renderer).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from . import render_kernel
from .utils import tensor_digest

__all__ = [
    "ALPHA_THRESHOLD",
    "DEFAULT_CHUNK_PAIRS",
    "EPS2D",
    "MAX_ALPHA",
    "TRANSMITTANCE_THRESHOLD",
    "Compositor",
    "composite_weights",
    "frozen_weights",
    "geometry_digest",
    "gsplat_available",
    "means2d_grad_stats",
    "project_gaussians",
    "quat_to_rotmat",
    "rasterize",
    "rasterize_with_info",
    "resolve_backend",
]

# gsplat 1.5.3 constants (gsplat/cuda/include/Common.h, RasterizeToPixels3DGSFwd.cu, ProjectionEWA3DGSFused.cu).
ALPHA_THRESHOLD = 1.0 / 255.0  # pairs with a smaller alpha are skipped
MAX_ALPHA = 0.999  # alpha clamp (the original Inria 3DGS code uses 0.99; gsplat uses 0.999)
TRANSMITTANCE_THRESHOLD = 1e-4  # a pixel stops before the Gaussian that would take T to <= this
EPS2D = 0.3  # low-pass filter added to the 2D covariance diagonal, in px^2
MAX_EXTEND = 3.33  # footprint half-size cap, in standard deviations
FOV_CLAMP = 0.3  # the Jacobian's x/z, y/z are clamped to the image plus 30 % of the half field of view
# Candidate pairs (footprint-box pixels) per band of rows. Bands bound the working memory, and smaller ones are
# faster too (cache-sized sorts, int32 keys): at 100k Gaussians, 320x240, 2^20 took 0.7 s and +0.47 GB where one
# band took 1.0 s and +1.0 GB (forward + backward, 1 thread); much smaller bands add per-band overhead.
DEFAULT_CHUNK_PAIRS = 1 << 20

_LOG_T_MIN = math.log(TRANSMITTANCE_THRESHOLD)
_FAR_OFFSET = 1.0e6  # pixel offset that makes sigma huge (alpha 0) for padded block cells
_COMPACT_BELOW = 0.8  # drop the pairs cut by the transmittance stop when fewer than this fraction survive


# ----------------------------------------------------------------------------------------------------------
# gsplat backend
# ----------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def gsplat_available() -> bool:
    """True when gsplat imports, CUDA is usable *and* its CUDA kernels load.

    gsplat 1.5.3 compiles its kernels with nvcc on first use (a few minutes, once per machine or Colab runtime). When
    that fails, the course warns once and renders with its PyTorch renderer instead (on the GPU too; slower), rather
    than crash: ``backend="auto"`` then picks ``"torch"``.
    """
    if not torch.cuda.is_available():
        return False
    try:
        from gsplat.cuda._backend import _C  # triggers the JIT build the first time
    except Exception as err:  # ImportError, a broken install, or a failed nvcc build
        warnings.warn(
            f"gsplat is unusable here ({type(err).__name__}: {str(err)[:300]}); rendering with the course's "
            "PyTorch renderer instead (slower). README, 'Colab', says how to retry the build.",
            stacklevel=2,
        )
        return False
    if _C is None:
        warnings.warn(
            "gsplat found no CUDA toolkit (nvcc), so its kernels cannot be built; rendering with the course's "
            "PyTorch renderer instead (slower).",
            stacklevel=2,
        )
        return False
    return True


def _gsplat_rasterize(means, quats, scales, opacities, colors, viewmats, Ks, width, height, near, far, background):
    if not gsplat_available():
        raise RuntimeError(
            "backend='gsplat' needs the gsplat package and a CUDA device (torch.cuda.is_available() is "
            f"{torch.cuda.is_available()}); use backend='torch' or 'auto' to render with the PyTorch renderer."
        )
    if means.device.type != "cuda":
        raise RuntimeError("backend='gsplat' needs CUDA tensors; move the Gaussians and cameras to the GPU first.")
    import gsplat

    C = viewmats.shape[0]
    backgrounds = None
    if background is not None:
        backgrounds = background.to(means.device, colors.dtype)
        if backgrounds.dim() == 1:
            backgrounds = backgrounds.expand(C, -1)
        backgrounds = backgrounds.contiguous()
    renders, alphas, meta = gsplat.rasterization(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmats,
        Ks,
        width,
        height,
        near_plane=near,
        far_plane=far,
        eps2d=EPS2D,
        packed=False,  # dense [C, N, ...] meta, the same layout as the torch backend
        rasterize_mode="classic",
        backgrounds=backgrounds,
    )
    info = dict(meta)
    info["backend"] = "gsplat"
    info.setdefault("n_cameras", C)
    info.setdefault("width", width)
    info.setdefault("height", height)
    info["visible"] = (info["radii"] > 0).all(dim=-1)
    if info["means2d"].requires_grad:
        info["means2d"].retain_grad()
    return renders, alphas, info


# ----------------------------------------------------------------------------------------------------------
# Projection
# ----------------------------------------------------------------------------------------------------------
def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[..., 4] quaternions (w, x, y, z), any norm, to [..., 3, 3] rotation matrices."""
    w, x, y, z = F.normalize(quats, p=2, dim=-1).unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )  # fmt: skip
    return R.reshape(quats.shape[:-1] + (3, 3))


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = EPS2D,
) -> dict[str, Tensor]:
    """EWA projection of N Gaussians into C pinhole cameras, as gsplat's ``fully_fused_projection``.

    Returns a dict of ``[C, N, ...]`` tensors: ``means2d [C,N,2]``, ``conics [C,N,3]`` (inverse 2D covariance
    a, b, c with ``sigma = 0.5(a dx² + c dy²) + b dx dy``), ``cov2d [C,N,3]`` (xx, xy, yy, blur included),
    ``depths [C,N]``, ``radii [C,N,2]`` (int32, gsplat's ceil'd opacity-aware half box, 0 = culled) and
    ``extents [C,N,2]`` (the same half box before ``ceil``). Differentiable in everything but radii/extents.
    """
    C = viewmats.shape[0]
    Rv = viewmats[:, :3, :3]  # [C, 3, 3]
    tv = viewmats[:, :3, 3]  # [C, 3]
    means_c = torch.einsum("cij,nj->cni", Rv, means) + tv[:, None, :]  # [C, N, 3]
    x, y, z = means_c.unbind(-1)
    depth_ok = (z >= near) & (z <= far)
    # Culled Gaussians get a harmless depth so that nothing below makes inf/NaN (NaN would leak into gradients).
    zs = torch.where(depth_ok, z, torch.ones_like(z))
    rz = 1.0 / zs

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + FOV_CLAMP * tan_fovx
    lim_x_neg = cx / fx + FOV_CLAMP * tan_fovx
    lim_y_pos = (height - cy) / fy + FOV_CLAMP * tan_fovy
    lim_y_neg = cy / fy + FOV_CLAMP * tan_fovy
    tx = zs * torch.minimum(torch.maximum(x * rz, -lim_x_neg), lim_x_pos)
    ty = zs * torch.minimum(torch.maximum(y * rz, -lim_y_neg), lim_y_pos)

    # cov2d = A Aᵀ with A = J · Rv · R · S  (J the 2x3 perspective Jacobian).
    M = quat_to_rotmat(quats) * scales[:, None, :]  # [N, 3, 3] = R S
    RM = torch.einsum("cij,njk->cnik", Rv, M)  # [C, N, 3, 3]
    r0, r1, r2 = RM.unbind(-2)  # rows, each [C, N, 3]
    A0 = (fx * rz)[..., None] * r0 - (fx * tx * rz * rz)[..., None] * r2
    A1 = (fy * rz)[..., None] * r1 - (fy * ty * rz * rz)[..., None] * r2
    cxx = (A0 * A0).sum(-1) + eps2d
    cxy = (A0 * A1).sum(-1)
    cyy = (A1 * A1).sum(-1) + eps2d
    det = cxx * cyy - cxy * cxy
    det_ok = det > 0
    inv_det = 1.0 / torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack([cyy * inv_det, -cxy * inv_det, cxx * inv_det], dim=-1)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)

    with torch.no_grad():
        op = opacities.detach().expand(C, -1)
        op_ok = op >= ALPHA_THRESHOLD
        extend = torch.sqrt(2.0 * torch.log(op.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)).clamp_max(MAX_EXTEND)
        ext = torch.stack([extend * cxx.detach().sqrt(), extend * cyy.detach().sqrt()], dim=-1)  # [C, N, 2]
        rad = torch.ceil(ext)
        m2 = means2d.detach()
        inside = (
            (m2[..., 0] + rad[..., 0] > 0)
            & (m2[..., 0] - rad[..., 0] < width)
            & (m2[..., 1] + rad[..., 1] > 0)
            & (m2[..., 1] - rad[..., 1] < height)
        )
        valid = depth_ok & det_ok & op_ok & inside & ((rad[..., 0] > 0) | (rad[..., 1] > 0))
        valid &= torch.isfinite(ext).all(-1) & torch.isfinite(m2).all(-1)
        radii = torch.where(valid[..., None], rad, torch.zeros_like(rad)).to(torch.int32)
        ext = torch.where(valid[..., None], ext, torch.zeros_like(ext))
    return {
        "means2d": means2d,
        "conics": conics,
        "cov2d": torch.stack([cxx, cxy, cyy], dim=-1),
        "depths": z,
        "radii": radii,
        "extents": ext,
        "valid": valid,
    }


# ----------------------------------------------------------------------------------------------------------
# Compositing: a custom autograd function over (pixel, Gaussian) pairs sorted by pixel then depth
# ----------------------------------------------------------------------------------------------------------
def _segment_offsets(seg: Tensor, n_seg: int) -> tuple[Tensor, Tensor]:
    counts = torch.bincount(seg, minlength=n_seg)
    return counts, torch.cumsum(counts, 0) - counts


def _segment_exclusive_cumsum(x: Tensor, counts: Tensor) -> Tensor:
    """Σ_{j<i} x_j within each segment (segments contiguous, sizes ``counts``); float64 to stay exact."""
    cs = torch.cumsum(x, 0)
    excl = cs - x
    starts = torch.cumsum(counts, 0) - counts
    nonempty = counts > 0
    base = torch.zeros_like(counts, dtype=x.dtype)
    base[nonempty] = excl[starts[nonempty]]
    return excl - torch.repeat_interleave(base, counts, output_size=x.shape[0])


def _segment_exclusive_suffix_sum(x: Tensor, counts: Tensor) -> Tensor:
    """Σ_{j>i} x_j within each segment (= the segment's last inclusive cumsum minus this one's)."""
    cs = torch.cumsum(x, 0)
    ends = torch.cumsum(counts, 0)
    nonempty = counts > 0
    last = torch.zeros_like(counts, dtype=x.dtype)
    last[nonempty] = cs[ends[nonempty] - 1]
    return torch.repeat_interleave(last, counts, output_size=x.shape[0]) - cs


try:  # fallback for the per-pair dot products (no pairs x channels tensor either)
    _eb_psw_backward = torch.ops.aten._embedding_bag_per_sample_weights_backward
except (AttributeError, RuntimeError):  # pragma: no cover - very old or very new torch
    _eb_psw_backward = None


def _pair_dots(grad_out: Tensor, table: Tensor, vis: Tensor, offsets: Tensor, pix: Tensor) -> Tensor:
    """q_i = <grad_out[pix_i], table[vis_i]> for pairs sorted by pixel (columns ascending within a pixel).

    The pairs form a CSR matrix [pixels x Gaussians], so this is a sampled dense-dense product (SDDMM), about
    2x faster than embedding_bag's own per-sample-weight backward on CPU.
    """
    n = vis.shape[0]
    try:
        crow = torch.cat([offsets, torch.tensor([n], dtype=offsets.dtype, device=offsets.device)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            values = torch.zeros(n, dtype=table.dtype, device=table.device)
            mask = torch.sparse_csr_tensor(crow, vis, values, size=(grad_out.shape[0], table.shape[0]))
            return torch.sparse.sampled_addmm(mask, grad_out, table.t(), beta=0.0).values()
    except (RuntimeError, NotImplementedError, AttributeError):  # pragma: no cover - builds without it
        pass
    if _eb_psw_backward is not None:
        return _eb_psw_backward(grad_out, table, vis, offsets, pix, 0, -1)
    out = torch.empty(n, dtype=table.dtype, device=table.device)  # pragma: no cover
    step = 1 << 16
    for s in range(0, n, step):
        out[s : s + step] = (grad_out[pix[s : s + step]] * table[vis[s : s + step]]).sum(-1)
    return out


class _Composite(torch.autograd.Function):
    """Front-to-back compositing of (pixel, Gaussian) pairs sorted by pixel, then depth.

    Differentiable inputs: ``params [6, G]`` (rows: mean x, mean y, conic a, b, c, opacity) and ``table [G, D']``
    (colours) of the visible Gaussians. Per pair: ``vis`` (column of ``params`` / row of ``table``), ``pix``
    (pixel index in the band), ``alpha`` and ``T`` (computed without grad by ``_band_pairs`` from the same
    parameters). Output ``out [n_pix, D']`` with ``out[p] = Σ_i α_i T_i table[vis_i]`` over the pairs of pixel p.

    Backward, with ``w = αT`` and ``q_i = <∂L/∂out[p_i], table[vis_i]>``:
    ``∂L/∂α_i = T_i q_i - (Σ_{j>i} w_j q_j) / (1 - α_i)`` (zero where α was clamped to 0.999), then through
    ``α = o·exp(-σ)``, ``σ = ½(a dx² + c dy²) + b dx dy``, ``dx = px + ½ - mean_x``, ``dy = py + ½ - mean_y``;
    ``∂L/∂table[g] = Σ_{i: vis_i = g} w_i ∂L/∂out[p_i]`` (an embedding-bag over the pairs grouped by Gaussian).
    No ``pairs × channels`` tensor is formed in either direction.
    """

    @staticmethod
    def forward(ctx, params, table, vis, pix, alpha, T, gorder, n_pix, pix0, width, height, geo_channels, max_alpha):
        counts, offsets = _segment_offsets(pix, n_pix)
        out = F.embedding_bag(vis, table, offsets, mode="sum", per_sample_weights=alpha * T)
        ctx.save_for_backward(params, table, vis, pix, alpha, T, gorder, counts, offsets)
        ctx.geometry = (pix0, width, height, geo_channels, max_alpha)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        params, table, vis, pix, alpha, T, gorder, counts, offsets = ctx.saved_tensors
        pix0, width, height, geo_channels, max_alpha = ctx.geometry
        grad_out = grad_out.contiguous()
        grad_params = grad_table = None
        w = alpha * T
        if ctx.needs_input_grad[0]:
            if geo_channels is None:
                q = _pair_dots(grad_out, table, vis, offsets, pix)
            else:  # only these colour channels (and the alpha channel, last) move the geometry
                cols = list(range(geo_channels)) + [table.shape[1] - 1]
                idx = torch.tensor(cols, device=table.device)
                q = _pair_dots(grad_out.index_select(1, idx), table.index_select(1, idx), vis, offsets, pix)
            suffix = _segment_exclusive_suffix_sum((w * q).double(), counts).to(alpha.dtype)
            g_alpha = T * q - suffix / (1.0 - alpha)
            live = (alpha < max_alpha) & (alpha > 0)  # clamped: no gradient; alpha 0: not composited
            g_alpha = torch.where(live, g_alpha, torch.zeros((), dtype=alpha.dtype, device=alpha.device))
            mx, my, a, b, c, op = params.index_select(1, vis).unbind(0)  # contiguous rows
            gpix = pix + pix0
            row = torch.div(gpix, width, rounding_mode="floor")
            dx = (gpix - row * width).to(alpha.dtype) + (0.5 - mx)
            dy = (row % height).to(alpha.dtype) + (0.5 - my)
            g_op = g_alpha * alpha
            t_x = g_op * dx  # -dL/dsigma * dx
            t_y = g_op * dy
            rows = (
                a * t_x + b * t_y,  # dL/d mean_x = -dL/dsigma * dsigma/d mean_x
                c * t_y + b * t_x,  # dL/d mean_y
                -0.5 * dx * t_x,  # dL/d conic a
                -dx * t_y,  # dL/d conic b
                -0.5 * dy * t_y,  # dL/d conic c
                g_op / op,  # dL/d opacity (= g_alpha exp(-sigma) where not clamped)
            )
            grad_params = torch.stack(
                [torch.zeros_like(params[0]).index_add_(0, vis, r) for r in rows], dim=0
            )  # 1-D index_add is faster than one [P, 6] index_add
        if ctx.needs_input_grad[1]:
            # pairs grouped by Gaussian (gorder lists them Gaussian by Gaussian, in ascending vis)
            _, goffsets = _segment_offsets(vis, table.shape[0])
            grad_table = F.embedding_bag(
                pix.index_select(0, gorder),
                grad_out,
                goffsets,
                mode="sum",
                per_sample_weights=w.index_select(0, gorder),
            )
        return grad_params, grad_table, None, None, None, None, None, None, None, None, None, None, None


# ----------------------------------------------------------------------------------------------------------
# Pair generation (no grad)
# ----------------------------------------------------------------------------------------------------------
TILE = 4  # footprint boxes are covered by TILE x TILE blocks anchored at the box corner
_CELL = torch.arange(TILE * TILE)


@torch.no_grad()
def _band_pairs(g: dict[str, Tensor], r0: int, r1: int, width: int):
    """The composited (Gaussian, pixel) pairs of global rows [r0, r1), sorted by pixel then depth.

    ``g`` holds the visible Gaussians in (camera, depth) order with their footprint boxes, in global rows
    (row = camera * height + y). Each box is covered by TILE x TILE blocks anchored at its top-left corner; all
    blocks are evaluated as one dense tensor; the pairs with alpha >= 1/255 are sorted by one integer key
    (pixel, depth rank); their transmittance is a float64 segmented cumsum of log(1 - alpha), and the pairs at
    and after the one that would take T to <= 1e-4 are dropped (or kept with zero weight when they are few).
    Returns ``(gauss, pix, alpha, T, gorder, n_composited)`` (``gauss`` indexes ``g``, ``pix`` is local to the
    band, ``gorder`` lists the pairs grouped by Gaussian) or None when nothing is composited.
    """
    gy0, gy1 = g["gy0"], g["gy1"]
    sel = torch.nonzero((gy0 < r1) & (gy1 >= r0)).squeeze(1)
    n_sel = sel.numel()
    if n_sel == 0:
        return None
    dev = gy0.device
    y0 = gy0.index_select(0, sel).clamp_min(r0)
    y1 = gy1.index_select(0, sel).clamp_max(r1 - 1)
    x0, x1 = g["x0"].index_select(0, sel), g["x1"].index_select(0, sel)
    ntx = torch.div(x1 - x0 + TILE, TILE, rounding_mode="floor").clamp_min(0)  # ceil(box width / TILE)
    nty = torch.div(y1 - y0 + TILE, TILE, rounding_mode="floor").clamp_min(0)
    ntiles = ntx * nty
    n_t = int(ntiles.sum())
    if n_t == 0:
        return None
    gi = torch.repeat_interleave(torch.arange(n_sel, device=dev), ntiles, output_size=n_t)  # tile -> gaussian
    local = torch.arange(n_t, device=dev) - (torch.cumsum(ntiles, 0) - ntiles).index_select(0, gi)
    ntx_t = ntx.index_select(0, gi)
    ty = torch.div(local, ntx_t, rounding_mode="floor")
    xs = x0.index_select(0, gi) + (local - ty * ntx_t) * TILE  # tile's first pixel column
    ys = y0.index_select(0, gi) + ty * TILE  # tile's first global row
    gsel = sel.index_select(0, gi)

    def per_tile(name):
        return g[name].index_select(0, gsel)

    dtype = g["mx"].dtype
    far = torch.full((), _FAR_OFFSET, dtype=dtype, device=dev)
    o = torch.arange(TILE, device=dev)
    # pixel-centre offsets from the mean; cells beyond the box get a huge offset, hence alpha 0
    cx = xs[:, None] + o
    dx = torch.where(cx <= x1.index_select(0, gi)[:, None], (cx.to(dtype) + 0.5) - per_tile("mx")[:, None], far)
    cy = ys[:, None] + o
    cy_img = (cy - per_tile("ycam")[:, None]).to(dtype)  # image row
    dy = torch.where(cy <= y1.index_select(0, gi)[:, None], (cy_img + 0.5) - per_tile("my")[:, None], far)
    sx = (0.5 * per_tile("ca"))[:, None] * dx * dx  # [n_t, TILE] (columns)
    sy = (0.5 * per_tile("cc"))[:, None] * dy * dy  # [n_t, TILE] (rows)
    sigma = sy.unsqueeze(2) + sx.unsqueeze(1)
    sigma.addcmul_((per_tile("cb")[:, None] * dy).unsqueeze(2), dx.unsqueeze(1))  # [n_t, rows, cols]
    # alpha = o exp(-sigma) >= 1/255  <=>  sigma <= ln(255 o): test sigma on the block (a hair loose), take exp
    # of the survivors only, and apply the exact alpha test there (failures get alpha 0: never composited)
    flat = torch.nonzero((sigma <= per_tile("lnthr")[:, None, None]).view(-1)).squeeze(1)
    if flat.numel() == 0:
        return None
    tile = torch.div(flat, TILE * TILE, rounding_mode="floor")
    alpha = torch.exp(-sigma.view(-1).index_select(0, flat)).mul_(per_tile("op").index_select(0, tile))
    alpha.clamp_max_(g["max_alpha"])
    alpha = torch.where(alpha >= ALPHA_THRESHOLD, alpha, torch.zeros((), dtype=dtype, device=dev))
    n_pix = (r1 - r0) * width
    # one sort key per pair: (pixel, depth rank among the band's Gaussians); int32 when it fits
    kd = torch.int64 if n_pix * n_sel >= 2**31 - 1 else torch.int32
    keybase = (((ys - r0) * width + xs) * n_sel + gi).to(kd)  # [n_t]
    cell_key = ((_CELL.to(dev) // TILE * width + _CELL.to(dev) % TILE) * n_sel).to(kd)  # [TILE * TILE]
    key = keybase.index_select(0, tile) + cell_key.index_select(0, flat - tile * (TILE * TILE))
    del sigma, dx, dy, sx, sy, keybase, tile, flat
    key, perm = torch.sort(key)  # keys are unique
    alpha = alpha.index_select(0, perm)
    key = key.long()
    pix = torch.div(key, n_sel, rounding_mode="floor")
    gauss = sel.index_select(0, key - pix * n_sel)
    # transmittance: float64 segmented cumsum (float32 drifts by ~1 % over 1e6 pairs); the cut-off keeps the
    # prefix of each pixel's list whose inclusive T stays above 1e-4, whose exclusive T does not change
    counts = torch.bincount(pix, minlength=n_pix)
    log1m = torch.log(1.0 - alpha).double()  # the (1 - alpha) gsplat multiplies T by, summed in float64
    log_t = _segment_exclusive_cumsum(log1m, counts)
    keep = (log_t + log1m) > _LOG_T_MIN
    # T in float32 is exact enough once the sum is done; clamp first so exp never makes slow subnormals
    T = torch.exp(log_t.to(alpha.dtype).clamp_min_(-30.0))
    # ``gorder``: the pairs grouped by Gaussian, for the colour gradient. The order before the sort was tile
    # order, i.e. Gaussian by Gaussian, so it is the inverse of the sort permutation.
    n_pairs = perm.numel()
    n_keep = int(keep.sum())
    n_composited = int((keep & (alpha > 0)).sum())
    if n_keep >= _COMPACT_BELOW * n_pairs:
        # few pairs cut: keep them with zero weight (their gradient is zero too: alpha = 0 and nothing composited
        # after them), which is cheaper than compacting
        if n_keep < n_pairs:
            zero = torch.zeros((), dtype=alpha.dtype, device=dev)
            alpha = torch.where(keep, alpha, zero)
            T = torch.where(keep, T, zero)
        gorder = torch.empty_like(perm).index_copy_(0, perm, torch.arange(n_pairs, device=dev))
    else:
        idx = torch.nonzero(keep).squeeze(1)
        gauss, pix, alpha, T = (t.index_select(0, idx) for t in (gauss, pix, alpha, T))
        rank = torch.full((n_pairs,), -1, dtype=torch.int64, device=dev)
        rank.index_copy_(0, perm.index_select(0, idx), torch.arange(idx.numel(), device=dev))
        gorder = rank[rank >= 0]
    return gauss, pix, alpha, T, gorder, n_composited


def _plan_bands(g: dict[str, Tensor], n_rows: int, chunk_pairs: int) -> list[tuple[int, int]]:
    """Split the C*H global rows into bands of at most ~chunk_pairs candidate pairs (at least one row each)."""
    if g["gy0"].numel() == 0:
        return [(0, n_rows)]
    nonempty = (g["x1"] >= g["x0"]) & (g["gy1"] >= g["gy0"])
    bw = torch.where(nonempty, g["x1"] - g["x0"] + 1, torch.zeros_like(g["x0"])).to(torch.int64)
    diff = torch.zeros(n_rows + 1, dtype=torch.int64, device=bw.device)
    diff.index_add_(0, g["gy0"].clamp(0, n_rows), bw)
    diff.index_add_(0, (g["gy1"] + 1).clamp(0, n_rows), -bw)
    per_row = torch.cumsum(diff[:-1], 0).tolist()
    if sum(per_row) <= chunk_pairs:
        return [(0, n_rows)]
    bands, start, acc = [], 0, 0
    for r, n in enumerate(per_row):
        if acc + n > chunk_pairs and r > start:
            bands.append((start, r))
            start, acc = r, 0
        acc += n
    bands.append((start, n_rows))
    return bands


# ----------------------------------------------------------------------------------------------------------
# PyTorch backend
# ----------------------------------------------------------------------------------------------------------
def _setup(means, quats, scales, opacities, viewmats, Ks, width, height, near, far, chunk_pairs, max_alpha):
    """Projection, the visible (camera, Gaussian) list in depth order, their footprint boxes and the row bands."""
    C, N = viewmats.shape[0], means.shape[0]
    device = means.device
    if render_kernel.available(device) and not (viewmats.requires_grad or Ks.requires_grad):
        # the same projection compiled (one pass each way instead of ~100 tensor ops; no cov2d, depths constant)
        proj = render_kernel.project(means, quats, scales, opacities, viewmats, Ks, width, height, near, far,
                                     EPS2D, FOV_CLAMP, ALPHA_THRESHOLD, MAX_EXTEND)  # fmt: skip
    else:
        proj = project_gaussians(means, quats, scales, opacities, viewmats, Ks, width, height, near=near, far=far)
    means2d, conics, depths, valid = proj["means2d"], proj["conics"], proj["depths"], proj["valid"]
    if means2d.requires_grad:
        means2d.retain_grad()
    op_cn = opacities.expand(C, -1)
    with torch.no_grad():
        flat = torch.nonzero(valid.reshape(-1)).squeeze(1)  # visible (camera, gaussian) as c*N + g
        # depth order within each camera (stable, as gsplat's radix sort over depth bits is)
        order = torch.sort(depths.detach().reshape(-1).index_select(0, flat), stable=True).indices
        if C > 1:  # then camera-major (one camera: already)
            cam = torch.div(flat, N, rounding_mode="floor").index_select(0, order)
            order = order.index_select(0, torch.sort(cam, stable=True).indices)
        flat = flat.index_select(0, order)
        cam = torch.div(flat, N, rounding_mode="floor")
        m2 = means2d.detach().reshape(-1, 2).index_select(0, flat)
        # footprint box: pixel indices j with |j + 0.5 - mean| <= extent (slightly widened), clipped to the image
        ex = proj["extents"].reshape(-1, 2).index_select(0, flat) * (1 + 1e-5) + 1e-4
        lo = torch.ceil(m2 - ex - 0.5)
        hi = torch.floor(m2 + ex - 0.5)
        lim = torch.tensor([width - 1, height - 1], dtype=lo.dtype, device=device)
        lo = torch.minimum(torch.maximum(lo, torch.zeros_like(lo)), lim + 1).long()
        hi = torch.minimum(torch.maximum(hi, torch.full_like(hi, -1)), lim).long()
        cd = conics.detach().reshape(-1, 3).index_select(0, flat)
        ycam = cam * height
        g = {
            "x0": lo[:, 0].contiguous(), "x1": hi[:, 0].contiguous(),
            "gy0": lo[:, 1] + ycam, "gy1": hi[:, 1] + ycam, "ycam": ycam,
            "mx": m2[:, 0].contiguous(), "my": m2[:, 1].contiguous(),
            "ca": cd[:, 0].contiguous(), "cb": cd[:, 1].contiguous(), "cc": cd[:, 2].contiguous(),
            "op": op_cn.detach().reshape(-1).index_select(0, flat).to(m2.dtype),
        }  # fmt: skip
        g["lnthr"] = torch.log(g["op"] * (1.0 / ALPHA_THRESHOLD)) * (1 + 1e-6) + 1e-6
        g["max_alpha"] = float(max_alpha)
        bands = _plan_bands(g, C * height, int(chunk_pairs))
    return proj, flat, cam, g, bands


@torch.no_grad()
def composite_weights(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    *,
    near: float = 0.01,
    far: float = 1e10,
    max_alpha: float = MAX_ALPHA,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
) -> tuple[Tensor, Tensor, Tensor]:
    """One camera's compositing weights as sparse triples: (pixel [P] = row·W + col, Gaussian [P], weight αT [P]),
    sorted by pixel (int32 indices). With the geometry frozen they do not change: a feature refit computes them once
    per view (:func:`frozen_weights`) and renders any colours with them (:class:`Compositor`), the same numbers as
    ``rasterize`` with no pair work per step."""
    viewmats, Ks = viewmat.reshape(1, 4, 4), K.reshape(1, 3, 3)
    N = means.shape[0]
    proj, flat, cam, g, bands = _setup(
        means, quats, scales, opacities, viewmats, Ks, int(width), int(height), near, far, chunk_pairs, max_alpha
    )
    pixels, gauss, weights = [], [], []
    for r0, r1 in bands:
        res = _band_pairs(g, r0, r1, int(width)) if flat.numel() else None
        if res is None:
            continue
        vis, pix, alpha, T, _, _ = res
        w = alpha * T
        keep = w > 0
        pixels.append((pix[keep] + r0 * int(width)).int())
        gauss.append((flat - cam * N).index_select(0, vis[keep]).int())
        weights.append(w[keep])
    if not pixels:
        empty = torch.zeros(0, dtype=torch.int32, device=means.device)
        return empty, empty, torch.zeros(0, dtype=means.dtype, device=means.device)
    return torch.cat(pixels), torch.cat(gauss), torch.cat(weights)


# Compositing weights of frozen geometry, kept between calls: the feature refits of one lift (every dimension and
# feature path of notebook 05) and the fine-tuning targets rendered from them share their geometry, so each view's
# pair work is done once per process. Keyed by content (a digest of the geometry and camera), bounded in bytes.
WEIGHTS_CACHE_BYTES = 3 << 29  # 1.5 GiB
_WEIGHTS_CACHE: OrderedDict[tuple, Compositor] = OrderedDict()


def geometry_digest(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor) -> str:
    """The key :func:`frozen_weights` remembers a geometry by (compute it once per loop, pass it as ``geometry``)."""
    return tensor_digest(means, quats, scales, opacities)


def frozen_weights(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    *,
    near: float = 0.01,
    max_alpha: float = MAX_ALPHA,
    geometry: str | None = None,
) -> Compositor:
    """:func:`composite_weights` as a :class:`Compositor`, remembered (up to ``WEIGHTS_CACHE_BYTES``) for the next call
    with the same geometry and camera. ``geometry`` is the digest of (means, quats, scales, opacities) when the caller
    already has it."""
    geometry = geometry or geometry_digest(means, quats, scales, opacities)
    camera = tensor_digest(viewmat, K)
    key = (geometry, camera, int(width), int(height), float(near), float(max_alpha), str(means.device))
    hit = _WEIGHTS_CACHE.get(key)
    if hit is not None:
        _WEIGHTS_CACHE.move_to_end(key)
        return hit
    weights = composite_weights(
        means, quats, scales, opacities, viewmat, K, width, height, near=near, max_alpha=max_alpha
    )
    comp = Compositor(weights, means.shape[0], width, height)
    total = sum(c.nbytes for c in _WEIGHTS_CACHE.values()) + comp.nbytes
    # over budget: drop other geometries' views, oldest first; never this geometry's (its views come round in a
    # cycle, which an LRU would evict just before each is needed again): past the budget they are not kept
    for k in [k for k in _WEIGHTS_CACHE if k[0] != geometry]:
        if total <= WEIGHTS_CACHE_BYTES:
            break
        total -= _WEIGHTS_CACHE.pop(k).nbytes
    if total <= WEIGHTS_CACHE_BYTES:
        _WEIGHTS_CACHE[key] = comp
    return comp


class _SparseComposite(torch.autograd.Function):
    """``A @ colors`` with the backward ``Aᵀ @ grad`` from a prepared transpose (both CSR: one sparse product each
    way; PyTorch's own backward of a CSR product, or an embedding-bag's, is 4× slower on a CPU)."""

    @staticmethod
    def forward(ctx: Any, colors: Tensor, A: Tensor, At: Tensor) -> Tensor:
        ctx.At = At
        return A @ colors

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return ctx.At @ grad.contiguous(), None, None


class Compositor:
    """A view's fixed compositing weights as a sparse matrix: ``image [H·W, D] = A [H·W, N] @ colors [N, D]``.

    Built once from :func:`composite_weights`' triples (``A`` and its transpose, CSR with int32 indices); calling it
    renders any colours with frozen geometry, differentiably in the colours."""

    def __init__(self, weights: tuple[Tensor, Tensor, Tensor], n_gaussians: int, width: int, height: int) -> None:
        pix, gauss, w = weights
        self.width, self.height, self.n_gaussians = int(width), int(height), int(n_gaussians)
        n_pix, dev = self.width * self.height, w.device
        pix, gauss = pix.to(torch.int32), gauss.to(torch.int32)
        rows = torch.zeros(n_pix + 1, dtype=torch.int32, device=dev)
        rows[1:] = torch.cumsum(torch.bincount(pix, minlength=n_pix), 0)
        order = torch.argsort(gauss, stable=True)
        cols = torch.zeros(self.n_gaussians + 1, dtype=torch.int32, device=dev)
        cols[1:] = torch.cumsum(torch.bincount(gauss, minlength=self.n_gaussians), 0)
        pix_t, w_t = pix.index_select(0, order), w.index_select(0, order)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": the products used here are tested
            warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
            self.A = torch.sparse_csr_tensor(rows, gauss, w, (n_pix, self.n_gaussians), check_invariants=False)
            self.At = torch.sparse_csr_tensor(cols, pix_t, w_t, (self.n_gaussians, n_pix), check_invariants=False)
        self.nbytes = sum(
            t.numel() * t.element_size()
            for m in (self.A, self.At)
            for t in (m.crow_indices(), m.col_indices(), m.values())
        )

    def __call__(self, colors: Tensor) -> Tensor:
        """``colors [N, D]`` -> ``[H, W, D]``."""
        if colors.shape[0] != self.n_gaussians:
            raise ValueError(f"colors must be [{self.n_gaussians}, D], got {tuple(colors.shape)}")
        out = _SparseComposite.apply(colors, self.A.to(colors.dtype), self.At.to(colors.dtype))  # [H·W, D]
        return out.view(self.height, self.width, -1)


def _torch_rasterize(
    means,
    quats,
    scales,
    opacities,
    colors,
    viewmats,
    Ks,
    width,
    height,
    near,
    far,
    background,
    chunk_pairs,
    geometry_channels=None,
    max_alpha=MAX_ALPHA,
):
    C, N = viewmats.shape[0], means.shape[0]
    device = means.device
    proj, flat, cam, g, bands = _setup(
        means, quats, scales, opacities, viewmats, Ks, width, height, near, far, chunk_pairs, max_alpha
    )
    means2d, conics, depths, valid = proj["means2d"], proj["conics"], proj["depths"], proj["valid"]
    op_cn = opacities.expand(C, -1)
    D = colors.shape[-1]

    outs, n_pairs = [], 0
    if flat.numel() > 0 and render_kernel.available(device):
        # the compiled per-pixel loops (render_kernel.py): the same numbers as the bands below, ~3x less CPU
        renders, alphas, n_pairs = render_kernel.rasterize_visible(
            means2d, conics, opacities, colors, g, flat, bands, width, height, geometry_channels, max_alpha
        )
        bands_torch: list[tuple[int, int]] = []
    else:  # pure PyTorch: (pixel, Gaussian) pair tensors, band by band
        bands_torch = bands
        # differentiable tables of the visible Gaussians, in the same order as g: params [6, G], colours [G, D+1]
        params = (
            torch.stack(
                [means2d[..., 0], means2d[..., 1], conics[..., 0], conics[..., 1], conics[..., 2],
                 op_cn.to(means2d.dtype)]
            )
            .reshape(6, -1)
            .index_select(1, flat)
        )  # fmt: skip
        col1 = torch.cat([colors, torch.ones(colors.shape[:-1] + (1,), dtype=colors.dtype, device=device)], dim=-1)
        col_rows = col1.reshape(-1, D + 1).index_select(0, flat if colors.dim() == 3 else flat - cam * N)
    for r0, r1 in bands_torch:
        res = _band_pairs(g, r0, r1, width) if flat.numel() else None
        n_pix = (r1 - r0) * width
        if res is None:  # nothing here: zeros, still attached to the graph so that backward() works
            outs.append(col_rows.new_zeros(n_pix, D + 1) + 0.0 * col_rows.sum() + 0.0 * params.sum())
            continue
        vis, pix, alpha, T, gorder, n_comp = res
        n_pairs += n_comp
        outs.append(
            _Composite.apply(
                params,
                col_rows,
                vis,
                pix,
                alpha,
                T,
                gorder,
                n_pix,
                r0 * width,
                width,
                height,
                geometry_channels,
                float(max_alpha),
            )
        )
    if bands_torch:
        out = torch.cat(outs, 0) if len(outs) > 1 else outs[0]
        out = out.view(C, height, width, D + 1)
        renders, alphas = out[..., :D], out[..., D:]
    if background is not None:
        bg = background.to(device=device, dtype=renders.dtype)
        bg = bg.view(1, 1, 1, D) if bg.dim() == 1 else bg.view(C, 1, 1, D)
        if geometry_channels is None:
            renders = renders + (1.0 - alphas) * bg
        else:  # the other channels' background term must not move the geometry either
            k = geometry_channels
            geo = renders[..., :k] + (1.0 - alphas) * bg[..., :k]
            rest = renders[..., k:] + (1.0 - alphas.detach()) * bg[..., k:]
            renders = torch.cat([geo, rest], dim=-1)
    info = {
        "backend": "torch",
        "radii": proj["radii"],
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": op_cn,
        "visible": valid,
        "width": width,
        "height": height,
        "n_cameras": C,
        "camera_ids": None,
        "gaussian_ids": None,
        "n_bands": len(bands),
        "n_pairs": n_pairs,  # (pixel, Gaussian) pairs composited
    }
    return renders, alphas, info


# ----------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------
def _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height):
    N = means.shape[0]
    if means.shape != (N, 3) or quats.shape != (N, 4) or scales.shape != (N, 3):
        shapes = f"{tuple(means.shape)}, {tuple(quats.shape)}, {tuple(scales.shape)}"
        raise ValueError(f"means/quats/scales must be [N,3]/[N,4]/[N,3], got {shapes}")
    C = viewmats.shape[0]
    if viewmats.shape != (C, 4, 4) or Ks.shape != (C, 3, 3):
        raise ValueError(f"viewmats/Ks must be [C,4,4]/[C,3,3], got {viewmats.shape}, {Ks.shape}")
    if opacities.shape != (N,):
        raise ValueError(f"opacities must be [N], got {opacities.shape}")
    if colors.dim() not in (2, 3) or colors.shape[-2] != N or (colors.dim() == 3 and colors.shape[0] != C):
        raise ValueError(f"colors must be [N,D] or [C,N,D], got {colors.shape}")
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """``"auto"``: gsplat for tensors on CUDA when its kernels load, else the PyTorch renderer."""
    if backend == "auto":
        return "gsplat" if (torch.device(device).type == "cuda" and gsplat_available()) else "torch"
    return backend


def rasterize_with_info(
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
    backend: str = "auto",
    near: float = 0.01,
    far: float = 1e10,
    background: Tensor | None = None,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
    geometry_channels: int | None = None,
    max_alpha: float = MAX_ALPHA,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """``rasterize`` plus gsplat's ``meta`` dict (unpacked layout on both backends).

    ``info`` keys: ``radii [C,N,2]`` int32 (0 = culled), ``visible [C,N]`` bool, ``means2d [C,N,2]`` (a non-leaf
    tensor with ``retain_grad()`` called when it requires grad: after ``backward()`` its ``.grad`` is the
    screen-space gradient densification uses, see ``means2d_grad_stats``), ``depths [C,N]``, ``conics [C,N,3]``,
    ``opacities [C,N]``, ``width``, ``height``, ``n_cameras``, ``backend``; torch backend also ``n_pairs`` (pairs
    composited) and ``n_bands``.

    ``geometry_channels=k``: only colour channels ``[:k]`` (and the alpha) send gradients to the geometry (means,
    quats, scales, opacities); channels ``[k:]`` only to their colours. One call then does what FiT3D does with two
    renders (RGB moves the geometry, features rendered with detached geometry do not), and shares the pair work.
    """
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height)
    width, height = int(width), int(height)
    D = colors.shape[-1]
    if geometry_channels is not None and not 0 <= int(geometry_channels) <= D:
        raise ValueError(f"geometry_channels must be in [0, {D}], got {geometry_channels}")
    if geometry_channels is not None and int(geometry_channels) == D:
        geometry_channels = None
    backend = resolve_backend(backend, means.device)
    if backend == "gsplat":
        if abs(max_alpha - MAX_ALPHA) > 1e-12:
            _warn_gsplat_alpha(max_alpha)
        if geometry_channels is None:
            return _gsplat_rasterize(
                means, quats, scales, opacities, colors, viewmats, Ks, width, height, near, far, background
            )
        # two calls: the first channels with the geometry's gradients, the rest with the geometry detached
        k = int(geometry_channels)
        bg = background
        bg_geo = None if bg is None else bg[..., :k]
        bg_rest = None if bg is None else bg[..., k:]
        geo = [means, quats, scales, opacities]
        r1, a1, info = _gsplat_rasterize(*geo, colors[..., :k], viewmats, Ks, width, height, near, far, bg_geo)
        r2, _, _ = _gsplat_rasterize(
            *[t.detach() for t in geo], colors[..., k:], viewmats, Ks, width, height, near, far, bg_rest
        )
        return torch.cat([r1, r2], dim=-1), a1, info
    if backend != "torch":
        raise ValueError(f"backend must be 'auto', 'torch' or 'gsplat', got {backend!r}")
    return _torch_rasterize(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, near, far, background, chunk_pairs,
        None if geometry_channels is None else int(geometry_channels), max_alpha,
    )  # fmt: skip


@functools.cache
def _warn_gsplat_alpha(max_alpha: float) -> None:
    warnings.warn(
        f"alpha clamp {max_alpha} was asked for, but gsplat's kernels clamp at {MAX_ALPHA}: the gsplat backend "
        "renders with 0.999 (backend='torch' honours the setting)",
        stacklevel=3,
    )


def rasterize(
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
    backend: str = "auto",
    near: float = 0.01,
    far: float = 1e10,
    background: Tensor | None = None,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
    geometry_channels: int | None = None,
    max_alpha: float = MAX_ALPHA,
) -> tuple[Tensor, Tensor]:
    """Render N Gaussians into C cameras: ``renders [C,H,W,D]``, ``alphas [C,H,W,1]``.

    ``backend``: ``"gsplat"`` (CUDA only), ``"torch"`` (this module's renderer, any device) or ``"auto"`` (gsplat
    when it is usable and the inputs are on CUDA, else torch). ``background`` is ``[D]`` or ``[C,D]`` and is
    composited as ``render + (1 - alpha)·background``. ``chunk_pairs`` (torch backend) bounds the candidate
    pairs handled at once; it changes memory and speed, never the result. ``geometry_channels``: see
    ``rasterize_with_info``.
    """
    renders, alphas, _ = rasterize_with_info(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, backend=backend, near=near, far=far,
        background=background, chunk_pairs=chunk_pairs, geometry_channels=geometry_channels, max_alpha=max_alpha,
    )  # fmt: skip
    return renders, alphas


def means2d_grad_stats(info: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Per-Gaussian densification statistics after ``loss.backward()``, as gsplat's ``DefaultStrategy``.

    Returns ``(grad_norm_sum [N], count [N])``: for every camera where the Gaussian is visible (radii > 0), the
    norm of ``∂loss/∂means2d`` scaled to [-1, 1] screen units and by the number of cameras
    (``grad_x · W/2 · C``, ``grad_y · H/2 · C``), summed; and the number of such cameras. Accumulate both over
    iterations and compare ``grad_norm_sum / count`` with the threshold (2e-4 in 3DGS).
    """
    means2d = info["means2d"]
    if means2d.grad is None:
        raise RuntimeError("means2d has no gradient: call loss.backward() first (with grad enabled).")
    grads = means2d.grad.detach().clone()
    grads[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
    grads[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
    sel = (info["radii"] > 0).all(dim=-1)  # [C, N]
    gs_ids = torch.where(sel)[1]
    N = means2d.shape[1]
    norm_sum = torch.zeros(N, dtype=grads.dtype, device=grads.device)
    norm_sum.index_add_(0, gs_ids, grads[sel].norm(dim=-1))
    count = torch.zeros(N, dtype=grads.dtype, device=grads.device)
    count.index_add_(0, gs_ids, torch.ones_like(gs_ids, dtype=grads.dtype))
    return norm_sum, count
