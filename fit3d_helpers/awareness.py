"""The 3D-awareness check: do features of the same 3D point match across views?

Why: FiT3D fine-tunes features towards a 3D-consistent target. A direct test that needs no training is
multi-view correspondence: take a held-out scene with depth and poses, find where each token of view A lands
in view B (geometry gives the ground truth), and ask whether A's feature finds that spot among B's features
by cosine nearest neighbour. A later paper found that fine-tuned features *alone* lose some of this, which is
why FiT3D concatenates original and fine-tuned features; this module lets the course show it.

Conventions (those of ``fit3d_helpers.data``):
- ``cam_to_world [4, 4]`` is OpenCV (x right, y down, z forward); depth is planar ``z`` in metres,
  0 (or non-finite) = invalid, at the image resolution ``[H, W]``.
- Pixel ``(row r, col c)`` covers ``[c, c+1) x [r, r+1)`` in continuous coordinates, so its centre is
  ``(c + 0.5, r + 0.5)``; ``K`` maps camera points to these coordinates. Points are ``uv = (x, y)`` in them.
- A token grid ``[h, w]`` spans the whole image, so token ``(i, j)`` covers ``W / w`` by ``H / h`` pixels and
  its centre is ``((j + 0.5) * W / w, (i + 0.5) * H / h)`` (what ``grid_sample`` with
  ``align_corners=False`` and bilinear resizing assume).

Main API:
- ``correspondences(...)`` -> ``(uv_a [M, 2], uv_b [M, 2])``: ground-truth matches of A's token centres.
- ``correspondence_scores(feat_a, feat_b, uv_a, uv_b, image_hw)`` -> recall at pixel thresholds, chance level,
  cosine of true pairs vs random pairs, for one view pair and one feature variant.
- ``awareness_table(views, pairs, variants)`` -> ``{variant: {metric: value}}`` pooled over pairs, with the
  same correspondences for every variant. ``views`` are anything with ``.depth``, ``.K`` and
  ``.cam_to_world`` (``fit3d_helpers.data.View`` works as is) or ``(depth, K, cam_to_world)`` tuples.
- ``covisible_pairs(views, grid_hw)`` picks view pairs that overlap enough to be worth testing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .data import project

ArrayLike = Tensor | np.ndarray
# A variant's features: a tensor [N_views, D, h, w], a list of [D, h, w], or a function view index -> [D, h, w].
FeatureSource = Tensor | Sequence[Tensor] | Callable[[int], Tensor]


def _t(x: ArrayLike, dtype: torch.dtype = torch.float64) -> Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).to(dtype=dtype, device="cpu")


def token_centres(grid_hw: tuple[int, int], image_hw: tuple[int, int]) -> Tensor:
    """Pixel coordinates ``(x, y)`` of the token centres of a ``[h, w]`` grid over an ``[H, W]`` image.

    Returns ``[h * w, 2]`` float64 in row-major token order.
    """
    h, w = grid_hw
    H, W = image_hw
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) * H / h
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) * W / w
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def _pixel_index(uv: Tensor) -> Tensor:
    """Integer index ``(col, row)`` of the pixel containing ``uv`` (its centre is the nearest one)."""
    return torch.floor(uv).long()


def unproject(uv: Tensor, z: Tensor, K: Tensor, cam_to_world: Tensor) -> Tensor:
    """Pixels ``uv [M, 2]`` with planar depth ``z [M]`` -> world points ``[M, 3]``."""
    ones = torch.ones_like(uv[:, :1])
    rays = torch.linalg.solve(K, torch.cat([uv, ones], dim=1).T).T  # [M, 3], z-component 1
    cam = rays * z[:, None]  # [M, 3]
    return cam @ cam_to_world[:3, :3].T + cam_to_world[:3, 3]


def correspondences(
    depth_a: ArrayLike,
    K_a: ArrayLike,
    c2w_a: ArrayLike,
    depth_b: ArrayLike,
    K_b: ArrayLike,
    c2w_b: ArrayLike,
    grid_hw: tuple[int, int],
    image_hw: tuple[int, int] | None = None,
    occlusion_threshold: float = 0.05,
    relative_threshold: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Ground-truth matches in view B of the token centres of view A.

    For each token of A: take the pixel containing its centre, that pixel's depth (must be > 0 and finite),
    unproject the pixel centre with ``K_a``/``c2w_a``, project into B. Keep it when it lands inside B in front
    of the camera and is not occluded: ``|z_in_B - depth_b[pixel there]| < occlusion_threshold +
    relative_threshold * z`` (metres; ``depth_b`` there must be valid).

    ``image_hw`` defaults to the depth maps' shape (K, depth and image share one pixel frame; both depth maps
    must have that shape). Returns ``uv_a [M, 2]`` (the pixel centres unprojected, half a pixel at most from
    the token centres) and ``uv_b [M, 2]`` (continuous positions in B), float32, ``(x, y)`` order.
    """
    depth_a, depth_b = _t(depth_a), _t(depth_b)
    K_a, K_b, c2w_a, c2w_b = _t(K_a), _t(K_b), _t(c2w_a), _t(c2w_b)
    if image_hw is None:
        image_hw = tuple(depth_a.shape)
    H, W = image_hw
    if tuple(depth_a.shape) != (H, W) or tuple(depth_b.shape) != (H, W):
        raise ValueError(f"depth maps {tuple(depth_a.shape)}, {tuple(depth_b.shape)} must be image_hw {image_hw}")

    uv_a, world = _token_points(depth_a, K_a, c2w_a, grid_hw)
    uv_b, visible = _visible_in(world, depth_b, K_b, torch.linalg.inv(c2w_b), occlusion_threshold, relative_threshold)
    return uv_a[visible].float(), uv_b[visible].float()


def _token_points(depth: Tensor, K: Tensor, c2w: Tensor, grid_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Centres of the pixels under the token centres that have valid depth ``[M, 2]``, and their world points."""
    H, W = depth.shape
    pix = _pixel_index(token_centres(grid_hw, (H, W)))  # [h*w, 2] integer (col, row)
    pix[:, 0].clamp_(0, W - 1)
    pix[:, 1].clamp_(0, H - 1)
    z = depth[pix[:, 1], pix[:, 0]]  # [h*w]
    ok = torch.isfinite(z) & (z > 0)
    uv = pix[ok].double() + 0.5  # pixel centres
    return uv, unproject(uv, z[ok], K, c2w)


def _visible_in(
    world: Tensor, depth_b: Tensor, K_b: Tensor, w2c_b: Tensor, occlusion_threshold: float, relative_threshold: float
) -> tuple[Tensor, Tensor]:
    """Project world points ``[M, 3]`` into view B: ``uv_b [M, 2]`` and a visibility mask ``[M]``."""
    H, W = depth_b.shape
    uv_np, z_np = project(world.numpy(), K_b.numpy(), w2c_b.numpy())  # the course's one projection (NaN behind)
    uv_b, z_b = torch.from_numpy(uv_np), torch.from_numpy(z_np)
    inside = (z_b > 1e-6) & (uv_b[:, 0] >= 0) & (uv_b[:, 0] < W)
    inside &= (uv_b[:, 1] >= 0) & (uv_b[:, 1] < H)
    inside &= torch.isfinite(uv_b).all(dim=1)
    pix_b = _pixel_index(torch.nan_to_num(uv_b))
    pix_b[:, 0].clamp_(0, W - 1)
    pix_b[:, 1].clamp_(0, H - 1)
    d_b = depth_b[pix_b[:, 1], pix_b[:, 0]]
    visible = inside & torch.isfinite(d_b) & (d_b > 0)
    visible &= (z_b - d_b).abs() < occlusion_threshold + relative_threshold * z_b.abs()
    return uv_b, visible


def sample_features(feat: Tensor, uv: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """Bilinearly sample ``feat [D, h, w]`` (a grid spanning the image) at pixels ``uv [M, 2]`` -> ``[M, D]``."""
    H, W = image_hw
    grid = torch.empty(1, uv.shape[0], 1, 2, dtype=feat.dtype, device=feat.device)
    grid[0, :, 0, 0] = uv[:, 0].to(feat) / W * 2 - 1  # image edges 0 and W -> -1 and 1
    grid[0, :, 0, 1] = uv[:, 1].to(feat) / H * 2 - 1
    out = F.grid_sample(feat[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, :, 0].T  # [M, D]


def _key(t: float) -> str:
    return f"{t:g}px"


def _match_stats(
    feat_a: Tensor,
    feat_b: Tensor,
    uv_a: Tensor,
    uv_b: Tensor,
    image_hw: tuple[int, int],
    px_thresholds: Sequence[float],
    b_upsample: int,
    seed: int,
) -> dict[str, Tensor]:
    """Per-correspondence raw numbers (so several pairs can be pooled exactly)."""
    feat_a = feat_a.float().cpu()
    feat_b = feat_b.float().cpu()
    uv_a = uv_a.float().cpu()
    uv_b = uv_b.float().cpu()
    m = uv_a.shape[0]

    fa = F.normalize(sample_features(feat_a, uv_a, image_hw), dim=1)  # [M, D]
    cand = feat_b
    if b_upsample > 1:
        cand = F.interpolate(feat_b[None], scale_factor=b_upsample, mode="bilinear", align_corners=False)[0]
    cand_uv = token_centres(tuple(cand.shape[-2:]), image_hw).float()  # [P, 2]
    fb = F.normalize(cand.reshape(cand.shape[0], -1).T, dim=1)  # [P, D]

    sim = fa @ fb.T  # [M, P]
    err = (cand_uv[sim.argmax(dim=1)] - uv_b).norm(dim=1)  # [M] px from the true position
    dist_all = torch.cdist(uv_b, cand_uv)  # [M, P]
    chance = torch.stack([(dist_all <= t).float().mean(dim=1) for t in px_thresholds], dim=1)  # [M, T]
    fb_true = F.normalize(sample_features(feat_b, uv_b, image_hw), dim=1)  # [M, D]
    cos_true = (fa * fb_true).sum(1)  # [M]

    far = dist_all > max(px_thresholds)  # [M, P]
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(far.shape, generator=gen)
    pick = torch.where(far, noise, torch.full_like(noise, -1.0)).argmax(dim=1)  # one random far candidate
    cos_random = torch.where(far.any(dim=1), sim[torch.arange(m), pick], torch.full((m,), float("nan")))
    return {"err": err, "chance": chance, "cos_true": cos_true, "cos_random": cos_random}


def _summarise(stats: dict[str, Tensor], px_thresholds: Sequence[float]) -> dict[str, float]:
    err = stats["err"]
    m = int(err.numel())
    nan = float("nan")
    out: dict[str, float] = {}
    for t in px_thresholds:
        out[f"recall@{_key(t)}"] = float((err <= t).float().mean()) if m else nan
    for i, t in enumerate(px_thresholds):
        out[f"chance@{_key(t)}"] = float(stats["chance"][:, i].mean()) if m else nan
    out["median_px_error"] = float(err.median()) if m else nan
    out["cos_true"] = float(stats["cos_true"].mean()) if m else nan
    cr = stats["cos_random"][~torch.isnan(stats["cos_random"])]
    out["cos_random"] = float(cr.mean()) if cr.numel() else nan
    out["n"] = m
    return out


def correspondence_scores(
    feat_a: Tensor,
    feat_b: Tensor,
    uv_a: Tensor,
    uv_b: Tensor,
    image_hw: tuple[int, int],
    px_thresholds: Sequence[float] = (14, 28),
    *,
    b_upsample: int = 1,
    seed: int = 0,
) -> dict[str, float]:
    """How well A's features find their true match in B by cosine nearest neighbour.

    ``feat_a``, ``feat_b``: ``[D, h, w]`` token grids over ``image_hw`` images; ``uv_a``, ``uv_b``: ``[M, 2]``
    from ``correspondences``. A's feature is sampled bilinearly at ``uv_a``; the candidates are B's tokens
    (or B's features bilinearly upsampled ``b_upsample`` times, for sub-token matching).

    Returns (``T`` per threshold, in image pixels of B):
    - ``recall@Tpx``: fraction whose nearest neighbour lies within T px of the true position;
    - ``chance@Tpx``: the same for a uniformly random candidate (the floor to compare with);
    - ``median_px_error``: median distance of the nearest neighbour to the true position;
    - ``cos_true``: mean cosine between A's feature and B's feature sampled at the true position;
    - ``cos_random``: mean cosine between A's feature and a random B candidate farther than max(T) px from
      the true position (one per correspondence, drawn with ``seed``);
    - ``n``: number of correspondences M.
    """
    ths = [float(t) for t in px_thresholds]
    if uv_a.shape[0] == 0:
        empty = {
            "err": torch.zeros(0),
            "chance": torch.zeros(0, len(ths)),
            "cos_true": torch.zeros(0),
            "cos_random": torch.zeros(0),
        }
        return _summarise(empty, ths)
    return _summarise(_match_stats(feat_a, feat_b, uv_a, uv_b, image_hw, ths, b_upsample, seed), ths)


def _geometry(view: Any) -> tuple[Tensor, Tensor, Tensor]:
    """``(depth [H, W], K [3, 3], cam_to_world [4, 4])`` from a View-like object or a 3-tuple."""
    if isinstance(view, (tuple, list)):
        depth, K, c2w = view
    else:
        depth, K, c2w = view.depth, view.K, view.cam_to_world
    if depth is None:
        raise ValueError("the 3D-awareness check needs depth for every view it uses")
    return _t(depth), _t(K), _t(c2w)


def _view_features(source: FeatureSource, i: int) -> Tensor:
    f = source(i) if callable(source) else source[i]
    f = torch.as_tensor(f)
    if f.ndim != 3:
        raise ValueError(f"features of one view must be [D, h, w], got {tuple(f.shape)}")
    return f


def covisible_pairs(
    views: Sequence[Any],
    grid_hw: tuple[int, int],
    *,
    min_overlap: float = 0.3,
    max_overlap: float = 0.95,
    max_pairs: int | None = None,
    occlusion_threshold: float = 0.05,
    relative_threshold: float = 0.0,
) -> list[tuple[int, int, float]]:
    """Ordered view pairs ``(a, b, overlap)`` where ``overlap`` = share of A's valid tokens visible in B.

    Pairs seeing too little of each other test nothing; near-identical views test nothing 3D either, hence
    ``max_overlap``. Sorted by overlap, largest first. ``max_pairs`` keeps that many spread evenly over the
    sorted list, so wide and narrow baselines both stay in the test (the first ones alone would be the
    nearest neighbours in the capture order).
    """
    geoms = [_geometry(v) for v in views]
    points = [_token_points(d, K, T, grid_hw)[1] for d, K, T in geoms]  # world points of each view's tokens
    w2cs = [torch.linalg.inv(T) for _, _, T in geoms]
    out = []
    for a in range(len(geoms)):
        n_tok = points[a].shape[0]
        if n_tok == 0:
            continue
        for b in range(len(geoms)):
            if a == b:
                continue
            db, Kb, _ = geoms[b]
            if db.shape != geoms[a][0].shape:
                raise ValueError("covisible_pairs expects all views at one image size")
            _, vis = _visible_in(points[a], db, Kb, w2cs[b], occlusion_threshold, relative_threshold)
            ov = float(vis.sum()) / n_tok
            if min_overlap <= ov <= max_overlap:
                out.append((a, b, ov))
    out.sort(key=lambda p: -p[2])
    if max_pairs is not None and len(out) > max_pairs:
        keep = np.unique(np.round(np.linspace(0, len(out) - 1, max_pairs)).astype(int))
        out = [out[i] for i in keep]
    return out


def awareness_table(
    views: Sequence[Any],
    pairs: Sequence[tuple[int, int]] | Sequence[tuple[int, int, float]],
    variants: Mapping[str, FeatureSource],
    *,
    px_thresholds: Sequence[float] = (14, 28),
    occlusion_threshold: float = 0.05,
    relative_threshold: float = 0.0,
    b_upsample: int = 1,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Correspondence scores of several feature variants on the same view pairs.

    ``views``: View-like objects (``.depth``, ``.K``, ``.cam_to_world``) or ``(depth, K, c2w)`` tuples.
    ``pairs``: ``(a, b)`` view indices (extra entries, like ``covisible_pairs``' overlap, are ignored).
    ``variants``: name -> features per view: a tensor ``[N_views, D, h, w]``, a list of ``[D, h, w]``, or a
    function ``view index -> [D, h, w]`` (e.g. a backbone call). Variants may have different token grids;
    pixel thresholds are in image pixels, so the numbers stay comparable.

    Scores are pooled over all correspondences of all pairs (pairs with more matches weigh more; the median
    is over all of them); every variant uses the same correspondences for a given token grid. Returns
    ``{variant: {metric: value}}`` with the keys of ``correspondence_scores`` plus ``n_pairs``.

    A concatenated variant (original ⊕ fine-tuned) is scored by the cosine of the concatenation, so each half
    counts in proportion to its norm; DINOv2's normed tokens have similar norms before and after fine-tuning.

    Example::

        pairs = covisible_pairs(scene.views, grid_hw=(12, 16), max_pairs=20)
        table = awareness_table(scene.views, pairs, {"DINOv2": feats_orig, "FiT3D": feats_cat})
    """
    ths = [float(t) for t in px_thresholds]
    geoms = [_geometry(v) for v in views]
    corr_cache: dict[tuple[int, int, tuple[int, int]], tuple[Tensor, Tensor]] = {}
    table: dict[str, dict[str, float]] = {}
    for name, source in variants.items():
        pooled: dict[str, list[Tensor]] = {"err": [], "chance": [], "cos_true": [], "cos_random": []}
        n_pairs = 0
        for k, pair in enumerate(pairs):
            a, b = int(pair[0]), int(pair[1])
            fa, fb = _view_features(source, a), _view_features(source, b)
            grid_hw = tuple(fa.shape[-2:])
            da, Ka, Ta = geoms[a]
            db, Kb, Tb = geoms[b]
            image_hw = tuple(da.shape)
            key = (a, b, grid_hw)
            if key not in corr_cache:
                corr_cache[key] = correspondences(
                    da, Ka, Ta, db, Kb, Tb, grid_hw, image_hw, occlusion_threshold, relative_threshold
                )
            uv_a, uv_b = corr_cache[key]
            if uv_a.shape[0] == 0:
                continue
            n_pairs += 1
            st = _match_stats(fa, fb, uv_a, uv_b, image_hw, ths, b_upsample, seed + k)
            for key_s, val in st.items():
                pooled[key_s].append(val)
        if n_pairs:
            merged = {key_s: torch.cat(v) for key_s, v in pooled.items()}
        else:
            merged = {
                "err": torch.zeros(0),
                "chance": torch.zeros(0, len(ths)),
                "cos_true": torch.zeros(0),
                "cos_random": torch.zeros(0),
            }
        row = _summarise(merged, ths)
        row["n_pairs"] = n_pairs
        table[name] = row
    return table


__all__ = [
    "awareness_table",
    "correspondence_scores",
    "correspondences",
    "covisible_pairs",
    "project",
    "sample_features",
    "token_centres",
    "unproject",
]
