"""Probe heads and feature assembly: mmseg's ``BNHead`` (segmentation), DINOv2's linear depth head, and how the
original and fine-tuned features are combined (FiT3D: concatenation). See :mod:`fit3d_helpers.probe` for the
official settings each follows."""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ASSEMBLY_MODES = ("original", "finetuned", "concat", "add", "linear")

# Features can be one tensor or an (original, fine-tuned) pair to be assembled inside the probe.
Feats = Tensor | tuple[Tensor, Tensor]


def assemble(orig: Tensor | None, ft: Tensor | None, mode: str) -> Tensor:
    """Combine original ``[B, D, h, w]`` and fine-tuned ``[B, D, h, w]`` features without parameters.

    Modes: ``original``, ``finetuned``, ``concat`` (-> 2D channels, FiT3D's default), ``add``.
    ``linear`` has weights: use ``FeatureAssembly("linear", D)``.
    """
    if mode == "original":
        assert orig is not None
        return orig
    if mode == "finetuned":
        assert ft is not None
        return ft
    assert orig is not None and ft is not None and orig.shape == ft.shape, "orig and ft must match"
    if mode == "concat":
        return torch.cat([orig, ft], dim=1)  # [B, 2D, h, w]
    if mode == "add":
        return orig + ft  # [B, D, h, w]
    if mode == "linear":
        raise ValueError("'linear' fusion has weights; use FeatureAssembly('linear', dim)")
    raise ValueError(f"unknown assembly mode {mode!r}; choose from {ASSEMBLY_MODES}")


class FeatureAssembly(nn.Module):
    """The assembly as a module, so "linear" fusion trains jointly with the probe head.

    ``linear`` = FiT3D's commented-out ``nn.Linear(2D, D)`` over the channel concatenation, i.e. a 1x1 conv
    with bias from 2D to D channels. The other modes have no parameters.
    """

    def __init__(self, mode: str, dim: int) -> None:
        super().__init__()
        if mode not in ASSEMBLY_MODES:
            raise ValueError(f"unknown assembly mode {mode!r}; choose from {ASSEMBLY_MODES}")
        self.mode = mode
        self.dim = dim
        self.fuse = nn.Conv2d(2 * dim, dim, kernel_size=1) if mode == "linear" else None

    @property
    def out_dim(self) -> int:
        return 2 * self.dim if self.mode == "concat" else self.dim

    def forward(self, orig: Tensor | None, ft: Tensor | None = None) -> Tensor:
        if self.fuse is not None:
            return self.fuse(torch.cat([orig, ft], dim=1))  # [B, 2D, h, w] -> [B, D, h, w]
        return assemble(orig, ft, self.mode)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, dim={self.dim}"


@functools.lru_cache(maxsize=64)
def _interp_matrix(n_in: int, n_out: int) -> Tensor:
    """``[n_out, n_in]`` matrix of 1-D bilinear resizing (align_corners=False), built by resizing an identity."""
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, n_in, 1)
    cols = F.interpolate(eye, size=(n_out, 1), mode="bilinear", align_corners=False)  # [n_in, 1, n_out, 1]
    return cols[:, 0, :, 0].T.contiguous()


def resize_bilinear(x: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """``F.interpolate(x, out_hw, mode="bilinear", align_corners=False)`` for ``x [..., C, h, w]``, as matmuls.

    Bilinear resizing is separable, so it is ``A_h @ x @ A_w^T``; on CPU this is ~2x faster than
    ``F.interpolate`` forward + backward and gives the same numbers (to float rounding).
    """
    h, w = x.shape[-2:]
    H, W = int(out_hw[0]), int(out_hw[1])
    if (h, w) == (H, W):
        return x
    a_h = _interp_matrix(h, H).to(device=x.device, dtype=x.dtype)  # [H, h]
    a_w = _interp_matrix(w, W).to(device=x.device, dtype=x.dtype)  # [W, w]
    return torch.matmul(a_h, torch.matmul(x, a_w.T))  # [..., C, H, W]


def resize_bilinear_cl(x: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """The same resize for channels-last maps: ``x [B, h, w, C]`` -> ``[B, H, W, C]`` (contiguous).

    Per-pixel work over many channels (cross-entropy over classes, the depth head's 256 bins) is
    memory-bound on CPU; keeping channels last makes it contiguous GEMMs and row-wise ops.
    """
    b, h, w, c = x.shape
    H, W = int(out_hw[0]), int(out_hw[1])
    a_h = _interp_matrix(h, H).to(device=x.device, dtype=x.dtype)  # [H, h]
    a_w = _interp_matrix(w, W).to(device=x.device, dtype=x.dtype)  # [W, w]
    t = torch.matmul(a_w, x)  # [B, h, W, C]
    return torch.matmul(a_h, t.reshape(b, h, W * c)).reshape(b, H, W, c)


class SegHead(nn.Module):
    """Linear segmentation probe: BatchNorm2d then 1x1 conv (mmseg ``BNHead`` as in DINOv2/FiT3D)."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_dim)
        self.conv_seg = nn.Conv2d(in_dim, num_classes, kernel_size=1)
        # mmseg's BaseDecodeHead.init_weights: normal(std=0.01), bias 0.
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, x: Tensor, out_hw: tuple[int, int] | None = None) -> Tensor:
        """``x [B, D, h, w]`` -> logits ``[B, C, h, w]``, or ``[B, C, H, W]`` when ``out_hw`` is given."""
        logits = self.conv_seg(self.bn(x))  # [B, C, h, w]
        if out_hw is not None:
            logits = resize_bilinear(logits, out_hw)  # [B, C, H, W]
        return logits


class DepthHead(nn.Module):
    """DINOv2's linear depth probe (``BNHead``, ``classify=True``, uniform bins; no batch norm).

    Input: patch tokens ``[B, D, h, w]`` and a CLS token ``[B, Dc]`` broadcast over the grid (DINOv2 uses
    D == Dc; FiT3D concatenates the original model's CLS to original ⊕ fine-tuned tokens, so Dc may differ).

    Efficiency (same numbers, less work): DINOv2 upsamples the (D + Dc)-channel map x4 and then applies the
    1x1 conv. Bilinear resizing (weights summing to one) and an affine 1x1 conv commute, so we apply the conv
    on the token grid and upsample the bin logits instead: 16x fewer multiply-adds. The CLS part of the conv
    is one matrix-vector product per image. The per-pixel bin normalisation happens after the upsample, as in
    the original, channels-last (contiguous over the 256 bins), which is what the CPU is fast at.
    """

    def __init__(
        self,
        in_dim: int,
        cls_dim: int | None = None,
        n_bins: int = 256,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        upsample: int = 4,
        norm_strategy: str = "linear",
    ) -> None:
        super().__init__()
        if norm_strategy not in ("linear", "softmax", "sigmoid"):
            raise ValueError(f"norm_strategy must be linear/softmax/sigmoid, got {norm_strategy!r}")
        self.in_dim = in_dim
        self.cls_dim = in_dim if cls_dim is None else cls_dim
        self.n_bins = n_bins
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.upsample = upsample
        self.norm_strategy = norm_strategy
        self.conv_depth = nn.Conv2d(in_dim + self.cls_dim, n_bins, kernel_size=1)
        # DINOv2 "UD" bins: linspace(min_depth, max_depth, n_bins) (end points included).
        self.register_buffer("bins", torch.linspace(self.min_depth, self.max_depth, n_bins), persistent=False)

    def bin_logits(self, x: Tensor, cls: Tensor | None) -> Tensor:
        """Bin logits on the token grid, channels last: ``x [B, D, h, w]``, ``cls [B, Dc]`` -> ``[B, h, w, n_bins]``."""
        w = self.conv_depth.weight[:, :, 0, 0]  # [n_bins, D + Dc]
        w_patch, w_cls = w[:, : self.in_dim], w[:, self.in_dim :]
        logits = torch.matmul(x.permute(0, 2, 3, 1), w_patch.T)  # [B, h, w, n_bins]
        bias = self.conv_depth.bias.expand(x.shape[0], -1)  # [B, n_bins]
        if self.cls_dim > 0:
            if cls is None:
                raise ValueError("this DepthHead was built with a CLS token (cls_dim > 0): pass cls [B, Dc]")
            bias = bias + cls @ w_cls.T  # [B, n_bins]
        return logits + bias[:, None, None, :]

    def forward(self, x: Tensor, cls: Tensor | None = None, out_hw: tuple[int, int] | None = None) -> Tensor:
        """Depth in metres ``[B, 1, 4h, 4w]``, or ``[B, 1, H, W]`` when ``out_hw`` is given."""
        logits = self.bin_logits(x, cls)  # [B, h, w, n_bins]
        h, w = logits.shape[1:3]
        up_hw = (h * self.upsample, w * self.upsample)
        basis = torch.stack([self.bins, torch.ones_like(self.bins)], dim=1).to(logits.dtype)  # [n_bins, 2]
        t = resize_bilinear_cl(logits, up_hw)  # [B, 4h, 4w, n_bins]
        # depth = sum_k p_k * bin_k with p = weight / sum(weight): one GEMM against [bins, ones] gives
        # numerator and denominator together.
        if self.norm_strategy == "linear":
            # DINOv2/AdaBins: weight = relu(t) + 0.1. The constant 0.1 is added after the contraction
            # (0.1 * [sum(bins), n_bins]) instead of to every one of the B * 4h * 4w * 256 entries.
            num_den = torch.matmul(torch.relu(t), basis) + 0.1 * basis.sum(0)  # [B, 4h, 4w, 2]
        elif self.norm_strategy == "softmax":  # exp / sum, shifted for stability
            num_den = torch.matmul(torch.exp(t - t.amax(dim=-1, keepdim=True)), basis)
        else:
            num_den = torch.matmul(torch.sigmoid(t), basis)
        depth = (num_den[..., 0] / num_den[..., 1]).unsqueeze(1)  # [B, 1, 4h, 4w]
        if out_hw is not None:
            depth = resize_bilinear(depth, out_hw)  # [B, 1, H, W]
        return depth


class ProbeModel(nn.Module):
    """Assembly + head, so a state dict holds both (linear fusion weights train with the head)."""

    def __init__(self, assembly: FeatureAssembly, head: nn.Module) -> None:
        super().__init__()
        self.assembly = assembly
        self.head = head

    def forward(self, orig: Tensor, ft: Tensor | None, *args: Any, **kwargs: Any) -> Tensor:
        return self.head(self.assembly(orig, ft), *args, **kwargs)
