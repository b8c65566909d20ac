"""Feature Gaussians: parameters, initialisation and spherical harmonics (densification: ``strategy``).

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
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)

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


def knn_mean_sq_distance(points: Tensor, k: int = 3, chunk: int = 2048) -> Tensor:
    """Mean *squared* distance to the k nearest other points (Inria's ``distCUDA2``), in chunks, plain torch.
    points [N, 3] -> [N]."""
    out = torch.empty(points.shape[0], dtype=points.dtype, device=points.device)
    for i in range(0, points.shape[0], chunk):
        d = torch.cdist(points[i : i + chunk], points)  # [c, N]
        d[torch.arange(d.shape[0]), torch.arange(i, i + d.shape[0])] = float("inf")  # not itself
        out[i : i + chunk] = d.topk(min(k, points.shape[0] - 1), largest=False).values.square().mean(-1)
    return out


def init_gaussians(
    points: Tensor, colors: Tensor, *, feature_dim: int, sh_degree: int, init_opacity: float = 0.1
) -> dict[str, Tensor]:
    """Gaussians at ``points`` [N, 3] with ``colors`` [N, 3], initialised as the official code: scales
    ``sqrt(mean squared 3-NN distance)`` (clamped at 1e-7 before the root), identity rotations, opacity 0.1, SH from
    the colours, features zero."""
    if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] < 4:
        raise ValueError(f"need a point cloud [N >= 4, 3] to initialise Gaussians, got {tuple(points.shape)}")
    points = points.float()
    n = points.shape[0]
    dist = torch.sqrt(knn_mean_sq_distance(points).clamp_min(1e-7))
    return {
        "means": points.clone(),  # [N, 3]
        "quats": torch.cat([torch.ones(n, 1), torch.zeros(n, 3)], 1),  # [N, 4] wxyz identity
        "log_scales": torch.log(dist)[:, None].repeat(1, 3),  # [N, 3]
        "opacity_logits": torch.full((n,), math.log(init_opacity / (1 - init_opacity))),  # [N]
        "sh0": rgb_to_sh(colors.float().clamp(0, 1))[:, None, :],  # [N, 1, 3]
        "shN": torch.zeros(n, num_sh_bases(sh_degree) - 1, 3),  # [N, K-1, 3]
        "features": torch.zeros(n, feature_dim),  # [N, F]
    }


def activated(params: dict[str, Tensor]) -> dict[str, Tensor]:
    """gsplat-ready tensors: means [N,3], quats [N,4], scales [N,3], opacities [N]."""
    return {
        "means": params["means"],
        "quats": params["quats"],
        "scales": torch.exp(params["log_scales"]),
        "opacities": torch.sigmoid(params["opacity_logits"]),
    }
