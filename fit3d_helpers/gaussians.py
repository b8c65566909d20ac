"""Feature Gaussians: parameters, initialisation, spherical harmonics and densification.

A scene is represented by N Gaussians with gsplat's parameter names. The optimised tensors are stored
*unactivated* (log scales, raw quaternions, opacity logits), as in 3DGS and gsplat's examples:
``scales = exp(log_scales)``, ``opacities = sigmoid(opacity_logits)``, quaternions normalised by the renderer.
Each Gaussian also carries a low-dimensional feature (``feature_dim``, 64 by default) that the lift stage
renders and decodes to the backbone's width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658, 1.445305721320277, -0.5900435899266435)

PARAM_NAMES = ("means", "quats", "log_scales", "opacity_logits", "sh0", "shN", "features")


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """DC coefficient that renders ``rgb`` (colours are ``SH·C0 + 0.5``, as in 3DGS)."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh0: Tensor, shN: Tensor, dirs: Tensor, degree: int) -> Tensor:
    """Evaluate SH colours. sh0 [N, 1, 3], shN [N, K-1, 3], dirs [N, 3] (need not be unit) -> rgb [N, 3] >= 0."""
    result = SH_C0 * sh0[:, 0]  # [N, 3]
    if degree > 0:
        d = F.normalize(dirs, dim=-1)
        x, y, z = d[:, 0:1], d[:, 1:2], d[:, 2:3]
        result = result - SH_C1 * y * shN[:, 0] + SH_C1 * z * shN[:, 1] - SH_C1 * x * shN[:, 2]
        if degree > 1:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            result = (
                result
                + SH_C2[0] * xy * shN[:, 3]
                + SH_C2[1] * yz * shN[:, 4]
                + SH_C2[2] * (2 * zz - xx - yy) * shN[:, 5]
                + SH_C2[3] * xz * shN[:, 6]
                + SH_C2[4] * (xx - yy) * shN[:, 7]
            )
            if degree > 2:
                result = (
                    result
                    + SH_C3[0] * y * (3 * xx - yy) * shN[:, 8]
                    + SH_C3[1] * xy * z * shN[:, 9]
                    + SH_C3[2] * y * (4 * zz - xx - yy) * shN[:, 10]
                    + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * shN[:, 11]
                    + SH_C3[4] * x * (4 * zz - xx - yy) * shN[:, 12]
                    + SH_C3[5] * z * (xx - yy) * shN[:, 13]
                    + SH_C3[6] * x * (xx - 3 * yy) * shN[:, 14]
                )
    return torch.clamp_min(result + 0.5, 0.0)


def knn_mean_distance(points: Tensor, k: int = 3, chunk: int = 2048) -> Tensor:
    """Mean distance to the k nearest other points, in chunks (plain torch, no CUDA k-NN). points [N, 3] -> [N]."""
    out = torch.empty(points.shape[0], dtype=points.dtype)
    for i in range(0, points.shape[0], chunk):
        d = torch.cdist(points[i : i + chunk], points)  # [c, N]
        d[torch.arange(d.shape[0]), torch.arange(i, i + d.shape[0])] = float("inf")  # not itself
        out[i : i + chunk] = d.topk(min(k, points.shape[0] - 1), largest=False).values.mean(-1)
    return out


def init_gaussians(points: Tensor, colors: Tensor, *, feature_dim: int, sh_degree: int, init_opacity: float = 0.1, seed: int = 0) -> dict[str, Tensor]:
    """Gaussians at ``points`` [N, 3] with ``colors`` [N, 3]; scales from the k-NN distance, as 3DGS does."""
    if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] < 4:
        raise ValueError(f"need a point cloud [N >= 4, 3] to initialise Gaussians, got {tuple(points.shape)}")
    gen = torch.Generator().manual_seed(seed)
    points = points.float()
    n = points.shape[0]
    dist = knn_mean_distance(points).clamp_min(1e-4)
    return {
        "means": points.clone(),  # [N, 3]
        "quats": torch.cat([torch.ones(n, 1), torch.zeros(n, 3)], 1),  # [N, 4] wxyz identity
        "log_scales": torch.log(dist)[:, None].repeat(1, 3),  # [N, 3]
        "opacity_logits": torch.full((n,), math.log(init_opacity / (1 - init_opacity))),  # [N]
        "sh0": rgb_to_sh(colors.float().clamp(0, 1))[:, None, :],  # [N, 1, 3]
        "shN": torch.zeros(n, num_sh_bases(sh_degree) - 1, 3),  # [N, K-1, 3]
        "features": 0.01 * torch.randn(n, feature_dim, generator=gen),  # [N, F]
    }


def activated(params: dict[str, Tensor]) -> dict[str, Tensor]:
    """gsplat-ready tensors: means [N,3], quats [N,4], scales [N,3], opacities [N]."""
    return {
        "means": params["means"],
        "quats": params["quats"],
        "scales": torch.exp(params["log_scales"]),
        "opacities": torch.sigmoid(params["opacity_logits"]),
    }


# ----------------------------------------------------------------------------------------------------------------
# Densification (a simple CPU version of 3DGS's / gsplat DefaultStrategy's clone-split-prune)
# ----------------------------------------------------------------------------------------------------------------


def _edit_params(params: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer, keep: Tensor, extra: dict[str, Tensor] | None) -> None:
    """Keep rows ``keep`` [N] bool of every parameter, append ``extra`` rows, and fix Adam's state to match."""
    for group in optimizer.param_groups:
        name = group["name"]
        if name not in params:
            continue
        old = group["params"][0]
        new_data = old.data[keep]
        if extra is not None:
            new_data = torch.cat([new_data, extra[name].to(new_data)], 0)
        new_param = torch.nn.Parameter(new_data)
        state = optimizer.state.pop(old, None)
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                v = state[key][keep]
                if extra is not None:
                    v = torch.cat([v, torch.zeros_like(extra[name]).to(v)], 0)
                state[key] = v
            optimizer.state[new_param] = state
        group["params"][0] = new_param
        params[name] = new_param


def _quat_to_rotmat(quats: Tensor) -> Tensor:
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(-1, 3, 3)


@torch.no_grad()
def densify_and_prune(
    params: dict[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    grad_mean: Tensor,
    *,
    grad_threshold: float,
    scene_extent: float,
    percent_dense: float = 0.01,
    min_opacity: float = 0.005,
    max_gaussians: int = 200_000,
    generator: torch.Generator | None = None,
) -> dict[str, int]:
    """Clone small, split large high-gradient Gaussians; prune transparent ones. grad_mean [N]: mean |∂L/∂means2d|."""
    scales = torch.exp(params["log_scales"].data)  # [N, 3]
    n = scales.shape[0]
    big = scales.max(-1).values > percent_dense * scene_extent
    candidates = grad_mean >= grad_threshold
    room = max(0, max_gaussians - n)
    if candidates.sum() > room // 2:  # keep the budget: densify the strongest gradients first
        top = grad_mean.topk(room // 2).indices if room >= 2 else grad_mean.new_zeros(0, dtype=torch.long)
        candidates = torch.zeros_like(candidates)
        candidates[top] = True
    clone, split = candidates & ~big, candidates & big
    extra: dict[str, list[Tensor]] = {k: [] for k in params}
    for name in params:
        extra[name].append(params[name].data[clone])
    if split.any():
        rot = _quat_to_rotmat(params["quats"].data[split])  # [S, 3, 3]
        s = scales[split]
        for _ in range(2):  # two children per split Gaussian, sampled inside the parent, 1/1.6 the size
            offset = torch.randn(s.shape, generator=generator).to(s.device) * s
            for name in params:
                v = params[name].data[split]
                if name == "means":
                    v = v + (rot @ offset[..., None])[..., 0]
                elif name == "log_scales":
                    v = v - math.log(1.6)
                extra[name].append(v)
    keep = ~split
    stacked = {k: torch.cat(v, 0) for k, v in extra.items()}
    _edit_params(params, optimizer, keep, stacked)
    # prune: transparent, or absurdly large
    opac = torch.sigmoid(params["opacity_logits"].data)
    too_big = torch.exp(params["log_scales"].data).max(-1).values > 0.5 * scene_extent
    prune = (opac < min_opacity) | too_big
    if prune.all():
        prune[:] = False
    _edit_params(params, optimizer, ~prune, None)
    return {"cloned": int(clone.sum()), "split": int(split.sum()), "pruned": int(prune.sum()), "total": int(params["means"].shape[0])}


@torch.no_grad()
def reset_opacity(params: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer, value: float = 0.01) -> None:
    """3DGS's periodic opacity reset: clamp opacities down so floaters must earn their opacity back."""
    logit = math.log(value / (1 - value))
    params["opacity_logits"].data.clamp_(max=logit)
    for group in optimizer.param_groups:
        if group["name"] == "opacity_logits":
            state = optimizer.state.get(group["params"][0])
            if state:
                state["exp_avg"].zero_()
                state["exp_avg_sq"].zero_()
