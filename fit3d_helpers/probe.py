"""Linear probing of frozen features: semantic segmentation and monocular depth (stage 04).

Why probe: FiT3D's claim is that fine-tuning on multi-view-consistent features makes the *frozen* features
better for dense 3D-aware tasks. A probe keeps the backbone frozen and trains only a tiny head on cached
features, so any difference between "original" and "fine-tuned" features shows up directly in the metrics.

What follows the official code (ywyue/FiT3D ``evaluation/configs/*_linear_config.py``, which reuse DINOv2's
mmseg/depth evaluation):

- Segmentation head: BatchNorm then a 1x1 conv (mmseg ``BNHead`` -> ``conv_seg``, dropout 0), logits resized
  bilinearly to the label size, cross-entropy with ignore index 255. AdamW lr 1e-3, weight decay 1e-4,
  poly schedule (power 1) with a linear warm-up of 1,500 of 40,000 iterations from ratio 1e-6.
- Depth head (DINOv2 ``BNHead`` with ``classify=True``, no batch norm): patch tokens concatenated with the CLS
  token broadcast over the grid, bilinear x4 upsample, 1x1 conv to 256 bins, bins ``linspace(min, max, 256)``
  ("UD"), probabilities by the "linear" norm strategy (``relu(logit) + 0.1`` then divide by the sum; the
  config's ``norm_strategy="linear"``, not a softmax; softmax is available as an option). Loss
  ``SigLoss + 0.5 * GradientLoss``. AdamW lr 1e-4, weight decay 0.01, gradient-norm clip 35, cosine schedule
  with a linear warm-up over the first third (12,800 of 38,400 iterations, ratio 1e-3). SigLoss warm-up: its
  first 100 iterations use only the ``0.15 * mean(g)^2`` term. ScanNet++ uses min/max depth 1e-3 / 20 m.
  Evaluation: pixels with ``min < gt < max``, prediction clamped to that range, metrics per image, averaged.
- DINOv2's ``GradientLoss`` indexes ``[B, 1, H, W]`` tensors as if they were ``[H, W]`` (it slices the batch
  and channel axes), so in the official runs (2 images per GPU) that term is zero. ``gradient_loss`` here
  applies it to the image axes as intended; ``grad_loss_weight=0`` reproduces the official behaviour.
- In FiT3D the depth head's CLS token is the *original* model's CLS token (``prefix_tokens = vit_outputs[1]``),
  even when the patch tokens are original ⊕ fine-tuned; so ``DepthHead`` takes a separate ``cls_dim``.
- Linear fusion in FiT3D (``linear_evaluate_fit3d.py``, commented out as "strategy 3") is
  ``nn.Linear(2 * embed_dim, embed_dim)`` applied to the channel-last concatenation [orig, fine-tuned]: a 1x1
  conv with bias from 2D to D, which is what ``FeatureAssembly("linear", D)`` is.

Schedules are expressed as fractions of the run length, so the paper profile (40k / 38.4k steps) reproduces
the official schedule and a few-hundred-step smoke run gets the same shape.

Two protocols (``ProbeConfig.protocol``): ``"cached"`` trains the heads on features computed once from the
un-augmented images (``train_seg_probe`` / ``train_depth_probe``; the smoke profile). ``"official"``
(``train_probes_official``) runs the official evaluation: every step augments a batch with the official pipelines
(:mod:`fit3d_helpers.augment`), runs the frozen backbones on it (CenterPadding), and tests with mmseg's sliding
window (segmentation) or flip averaging at native size (depth), on our scenes or the official evaluation sets
(``SceneSource`` / ``EvalSetSource``). Each official setting cites its source next to ``OfficialSettings``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .utils import progress, resolve_device, seed_everything, write_json

ASSEMBLY_MODES = ("original", "finetuned", "concat", "add", "linear")

# Official schedule constants (FiT3D / DINOv2 linear-probe configs).
SEG_WARMUP_FRAC = 1500 / 40000
SEG_WARMUP_RATIO = 1e-6
DEPTH_WARMUP_FRAC = 12800 / 38400
DEPTH_WARMUP_RATIO = 1e-3
DEPTH_MIN_LR_RATIO = 1e-8
SIGLOSS_WARMUP_ITERS_OFFICIAL = 100  # of 38,400 iterations

# Features can be one tensor or an (original, fine-tuned) pair to be assembled inside the probe.
Feats = Tensor | tuple[Tensor, Tensor]


# ---------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """Confusion matrix ``[C, C]`` (rows = target class, columns = predicted class), int64.

    Sum the matrices of several batches to evaluate a whole split without holding all predictions.
    Pixels whose target is ``ignore_index`` (or outside ``[0, C)``) are dropped.
    """
    pred = torch.as_tensor(pred).reshape(-1).long()  # [P]
    target = torch.as_tensor(target).reshape(-1).long().to(pred.device)  # [P]
    if pred.shape != target.shape:
        raise ValueError(f"pred has {pred.numel()} pixels, target {target.numel()}")
    keep = (target != ignore_index) & (target >= 0) & (target < num_classes)
    pred, target = pred[keep], target[keep]
    if pred.numel() and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predictions must lie in [0, {num_classes}); got [{int(pred.min())}, {int(pred.max())}]")
    flat = target * num_classes + pred  # [P']
    cm = torch.bincount(flat, minlength=num_classes * num_classes)
    return cm.reshape(num_classes, num_classes).cpu()


def per_class_iou(cm: Tensor) -> Tensor:
    """IoU per class ``[C]`` float64; NaN for classes absent from both prediction and target."""
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def metrics_from_confusion(cm: Tensor) -> dict[str, float]:
    """mIoU, mAcc, aAcc (fractions in 0..1) from a confusion matrix, as mmseg reports them.

    mIoU averages over classes present in the prediction or the target (the others have no IoU);
    mAcc averages per-class recall over classes present in the target; aAcc is pixel accuracy.
    """
    cm = cm.double()
    tp = cm.diag()
    gt_count = cm.sum(1)
    total = cm.sum()
    iou = per_class_iou(cm)
    present = ~torch.isnan(iou)
    miou = float(iou[present].mean()) if present.any() else float("nan")
    in_target = gt_count > 0
    macc = float((tp[in_target] / gt_count[in_target]).mean()) if in_target.any() else float("nan")
    aacc = float(tp.sum() / total) if total > 0 else float("nan")
    return {"miou": miou, "macc": macc, "aacc": aacc}


def segmentation_metrics(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> dict[str, float]:
    """mIoU / mAcc / aAcc of label maps ``pred`` and ``target`` (same shape, e.g. [N, H, W])."""
    return metrics_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index))


def sigloss_warmup(steps: int) -> int:
    """SigLoss's warm-up steps: the official 100 of 38,400 iterations, scaled to a run of ``steps``."""
    return int(round(SIGLOSS_WARMUP_ITERS_OFFICIAL * steps / 38400))


def mean_over_images(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per-image depth metrics averaged over the images with a valid pixel (``nanmean`` of the official toolbox);
    ``n_valid`` sums their pixels. NaN metrics when no image has one."""
    rows = [r for r in rows if r["n_valid"] > 0]
    if not rows:
        return {"rmse": float("nan"), "absrel": float("nan"), "delta1": float("nan"), "n_valid": 0}
    out: dict[str, float] = {k: float(np.mean([r[k] for r in rows])) for k in ("rmse", "absrel", "delta1")}
    out["n_valid"] = int(sum(r["n_valid"] for r in rows))
    return out


def depth_metrics(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, *, per_image: bool = False
) -> dict[str, float]:
    """RMSE (m), AbsRel and δ<1.25 over pixels with a valid target (``> 0``, finite, and ``mask``).

    ``per_image=False`` pools all valid pixels. ``per_image=True`` (pred/target ``[N, H, W]``) computes each
    image's metrics and averages over images with at least one valid pixel, as the DINOv2/FiT3D depth
    toolbox does (``pre_eval`` per image, then ``nanmean``). ``n_valid`` is the number of pixels used.
    """
    pred = torch.as_tensor(pred).double()
    target = torch.as_tensor(target).double().to(pred.device)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    valid = torch.isfinite(target) & (target > 0)
    if mask is not None:
        valid &= torch.as_tensor(mask, dtype=torch.bool, device=pred.device)
    if per_image:
        if pred.ndim < 2:
            raise ValueError("per_image=True needs a leading image dimension: [N, H, W]")
        return mean_over_images([depth_metrics(p, t, v) for p, t, v in zip(pred, target, valid)])
    p, t = pred[valid], target[valid]
    n = int(valid.sum())
    if n == 0:
        return {"rmse": float("nan"), "absrel": float("nan"), "delta1": float("nan"), "n_valid": 0}
    ratio = torch.maximum(p / t, t / p)
    return {
        "rmse": float(((p - t) ** 2).mean().sqrt()),
        "absrel": float(((p - t).abs() / t).mean()),
        "delta1": float((ratio < 1.25).double().mean()),
        "n_valid": n,
    }


# ---------------------------------------------------------------------------------------------------------
# Feature assembly
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------------------------------------


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


def seg_loss(logits: Tensor, labels: Tensor, ignore_index: int = 255, *, avg_non_ignore: bool = True) -> Tensor:
    """Cross-entropy of token-grid logits ``[B, C, h, w]`` resized bilinearly to ``labels [B, H, W]``.

    Same value as mmseg (resize, then CE with ignore index); computed channels-last because a flat
    ``[P, C]`` cross-entropy is ~2x faster on CPU than the NCHW one. ``avg_non_ignore=True`` averages over the
    non-ignored pixels (PyTorch's default, the cached protocol); ``False`` divides the sum by *all* ``B*H*W`` pixels,
    as mmseg 0.x's ``CrossEntropyLoss`` does by default (``avg_non_ignore=False``: ignored and padded pixels count in
    the denominator with loss 0), which the official configs use (``loss_decode=dict(type="CrossEntropyLoss",
    use_sigmoid=False, loss_weight=1.0)``, vits_scannetpp_sem_linear_config.py:111 (v)).
    """
    up = resize_bilinear_cl(logits.permute(0, 2, 3, 1), tuple(labels.shape[-2:]))  # [B, H, W, C]
    flat, target = up.reshape(-1, up.shape[-1]), labels.reshape(-1)
    if avg_non_ignore:
        return F.cross_entropy(flat, target, ignore_index=ignore_index)
    return F.cross_entropy(flat, target, ignore_index=ignore_index, reduction="sum") / max(target.numel(), 1)


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


# ---------------------------------------------------------------------------------------------------------
# Depth losses
# ---------------------------------------------------------------------------------------------------------


def _log_diff(pred: Tensor, target: Tensor, valid: Tensor | None, eps: float) -> tuple[Tensor, Tensor]:
    """``g = (log(pred+eps) - log(target+eps)) * mask`` and the float mask (target > 0 & finite & valid).

    Invalid targets are replaced by 1 before the log, so a 0 or NaN there cannot leak through ``0 * nan``.
    """
    m = torch.isfinite(target) & (target > 0)
    if valid is not None:
        m = m & valid.to(torch.bool)
    mf = m.to(pred.dtype)
    safe_t = torch.where(m, target, torch.ones_like(target))
    return (torch.log(pred + eps) - torch.log(safe_t + eps)) * mf, mf


def _sigloss_from(g: Tensor, mf: Tensor, warm_up: bool) -> Tensor:
    n = mf.sum()
    if n < 2:
        return g.sum() * 0.0
    mean = g.sum() / n
    if warm_up:
        return torch.sqrt(0.15 * mean**2)
    var = (((g - mean) * mf) ** 2).sum() / (n - 1)  # unbiased, as torch.var
    return torch.sqrt(var + 0.15 * mean**2)


def _gradient_loss_from(g: Tensor, mf: Tensor) -> Tensor:
    total = g.sum() * 0.0
    for stride in (1, 2, 4, 6):
        d = g[..., ::stride, ::stride]  # [B, H', W']; log of a strided slice = strided slice of the log
        m = mf[..., ::stride, ::stride]
        n = m.sum()
        if n == 0:
            continue
        v = (d[..., :-2, :] - d[..., 2:, :]).abs() * m[..., :-2, :] * m[..., 2:, :]
        h = (d[..., :, :-2] - d[..., :, 2:]).abs() * m[..., :, :-2] * m[..., :, 2:]
        total = total + (v.sum() + h.sum()) / n
    return total


def _squeeze_channel(x: Tensor | None) -> Tensor | None:
    return x[:, 0] if x is not None and x.ndim == 4 else x


def sigloss(
    pred: Tensor, target: Tensor, valid: Tensor | None = None, *, eps: float = 1e-3, warm_up: bool = False
) -> Tensor:
    """DINOv2's ``SigLoss``: ``sqrt(Var(g) + 0.15 * mean(g)^2)``, ``g = log(pred+eps) - log(target+eps)``.

    Pooled over all valid pixels of the batch (target > 0 and finite, and ``valid``); ``Var`` is the
    unbiased variance (``torch.var``). ``Var(g)`` ignores a global scale of the prediction, the
    ``0.15 * mean(g)^2`` term does not: for ``pred = s * target`` the loss is ``sqrt(0.15) * |log s|``
    (up to eps). ``warm_up=True`` returns ``sqrt(0.15 * mean(g)^2)``, what DINOv2 uses for its first 100
    iterations. Masked sums instead of boolean indexing: same value, cheaper backward.
    """
    g, mf = _log_diff(pred, target, valid, eps)
    return _sigloss_from(g, mf, warm_up)


def gradient_loss(pred: Tensor, target: Tensor, valid: Tensor | None = None, *, eps: float = 1e-3) -> Tensor:
    """Multi-scale log-depth gradient matching (MegaDepth), DINOv2's ``GradientLoss`` applied per image.

    ``pred``/``target`` ``[B, H, W]`` (or ``[B, 1, H, W]``). For strides 1, 2, 4, 6:
    ``d = (log(pred+eps) - log(target+eps)) * mask``; the sum over the batch of ``|d[y] - d[y+2]|`` and
    ``|d[x] - d[x+2]|`` where both pixels are valid, divided by the number of valid pixels at that stride.
    DINOv2 slices ``input[::2i, ::2i]`` and ``d[0:-2, :]`` on the ``[B, 1, H, W]`` tensors its head gives
    it, i.e. on the batch and channel axes; at FiT3D's batch of 2 per GPU that term is identically zero.
    We slice the image axes (the evident intent); pass weight 0 to mimic the official runs.
    """
    g, mf = _log_diff(_squeeze_channel(pred), _squeeze_channel(target), _squeeze_channel(valid), eps)
    return _gradient_loss_from(g, mf)


def depth_loss(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    *,
    grad_weight: float = 0.5,
    warm_up: bool = False,
    eps: float = 1e-3,
) -> Tensor:
    """``sigloss + grad_weight * gradient_loss`` sharing one log-difference map (the probe's loss)."""
    g, mf = _log_diff(_squeeze_channel(pred), _squeeze_channel(target), _squeeze_channel(valid), eps)
    loss = _sigloss_from(g, mf, warm_up)
    if grad_weight:
        loss = loss + grad_weight * _gradient_loss_from(g, mf)
    return loss


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ProbeResult:
    """What one probe run gives back.

    metrics: validation metrics (seg: miou, macc, aacc; depth: rmse, absrel, delta1, n_valid).
    losses: training loss per step. head_state: ``state_dict`` of ``model`` (keys ``assembly.*``, ``head.*``).
    model: the trained ``ProbeModel`` on CPU in eval mode. examples: ``index [k]``, ``pred [k, H, W]``,
    ``target [k, H, W]`` for a few validation images (for plots). config: the settings used. seconds: wall time.
    """

    metrics: dict[str, float]
    losses: list[float]
    head_state: dict[str, Tensor]
    model: nn.Module
    examples: dict[str, Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class ProbeModel(nn.Module):
    """Assembly + head, so a state dict holds both (linear fusion weights train with the head)."""

    def __init__(self, assembly: FeatureAssembly, head: nn.Module) -> None:
        super().__init__()
        self.assembly = assembly
        self.head = head

    def forward(self, orig: Tensor, ft: Tensor | None, *args: Any, **kwargs: Any) -> Tensor:
        return self.head(self.assembly(orig, ft), *args, **kwargs)


def _progress(it: Iterable[Any], show: bool, **kwargs: Any) -> Iterable[Any]:
    """utils.progress, or the bare iterable when the caller asked for silence."""
    return progress(it, **kwargs) if show else it


def _split_feats(feats: Feats, assembly: str | None) -> tuple[Tensor, Tensor | None, str]:
    """Normalise the ``feats`` argument to ``(orig, ft or None, mode)``."""
    if isinstance(feats, (tuple, list)):
        orig, ft = feats
        if orig.shape != ft.shape:
            raise ValueError(f"original {tuple(orig.shape)} and fine-tuned {tuple(ft.shape)} features differ")
        return orig, ft, assembly or "concat"
    if assembly not in (None, "original"):
        raise ValueError(f"assembly={assembly!r} needs features as an (original, fine-tuned) pair")
    return feats, None, "original"


def _lr_factor(step: int, total: int, warmup: int, warmup_ratio: float, policy: str, min_ratio: float = 0.0) -> float:
    """mmcv-style LR multiplier: poly (power 1) or cosine, with a linear warm-up from ``warmup_ratio``."""
    t = min(step, total) / max(total, 1)
    if policy == "poly":
        base = (1.0 - t) * (1.0 - min_ratio) + min_ratio
    elif policy == "cosine":
        base = min_ratio + 0.5 * (1.0 - min_ratio) * (1.0 + math.cos(math.pi * t))
    else:
        raise ValueError(policy)
    if step < warmup:
        k = (1.0 - step / warmup) * (1.0 - warmup_ratio)
        return base * (1.0 - k)
    return base


def _batches(n: int, batch_size: int, steps: int, gen: torch.Generator) -> Any:
    """Indices for ``steps`` mini-batches, reshuffling after each pass (no replacement within a pass)."""
    perm = torch.randperm(n, generator=gen)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm = torch.randperm(n, generator=gen)
            pos = 0
        yield perm[pos : pos + batch_size]
        pos += batch_size


def _subsample(maps: Tensor, k: int) -> Tensor:
    """Every k-th pixel of [N, H, W] maps from the middle of each k×k cell (nearest: no value is invented)."""
    return maps[..., k // 2 :: k, k // 2 :: k].contiguous()


def _example_indices(n: int, k: int) -> Tensor:
    return torch.unique(torch.linspace(0, n - 1, min(k, n)).round().long())


@torch.no_grad()
def predict_seg(
    model: ProbeModel,
    feats: Feats,
    out_hw: tuple[int, int],
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Label maps ``[N, H, W]`` (int64, CPU) from a trained segmentation probe."""
    device = resolve_device(device)
    orig, ft, _ = _split_feats(feats, model.assembly.mode if isinstance(feats, (tuple, list)) else None)
    model.eval().to(device)
    out = []
    for s in range(0, orig.shape[0], batch_size):
        o = orig[s : s + batch_size].to(device)
        f = ft[s : s + batch_size].to(device) if ft is not None else None
        out.append(model(o, f, out_hw=out_hw).argmax(1).cpu())
    return torch.cat(out)


@torch.no_grad()
def predict_depth(
    model: ProbeModel,
    feats: Feats,
    cls: Tensor | None,
    out_hw: tuple[int, int],
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Depth maps ``[N, H, W]`` in metres (float32, CPU) from a trained depth probe."""
    device = resolve_device(device)
    orig, ft, _ = _split_feats(feats, model.assembly.mode if isinstance(feats, (tuple, list)) else None)
    model.eval().to(device)
    out = []
    for s in range(0, orig.shape[0], batch_size):
        o = orig[s : s + batch_size].to(device)
        f = ft[s : s + batch_size].to(device) if ft is not None else None
        c = cls[s : s + batch_size].to(device) if cls is not None else None
        d = model(o, f, c, out_hw=out_hw)[:, 0]  # [B, H, W]
        out.append(d.clamp(model.head.min_depth, model.head.max_depth).cpu())
    return torch.cat(out)


def train_seg_probe(
    train_feats: Feats,
    train_labels: Tensor,
    val_feats: Feats,
    val_labels: Tensor,
    num_classes: int,
    *,
    steps: int = 300,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    seed: int = 0,
    assembly: str | None = None,
    ignore_index: int = 255,
    warmup_frac: float = SEG_WARMUP_FRAC,
    n_examples: int = 4,
    eval_batch_size: int = 8,
    show_progress: bool = True,
    loss_downscale: int = 1,
) -> ProbeResult:
    """Train ``SegHead`` (and linear fusion weights, if any) on cached features; evaluate on val.

    ``loss_downscale`` k > 1 computes the training loss on labels subsampled by k (nearest; evaluation stays at full
    resolution): k² fewer pixels per step, the smoke profile's CPU budget.

    Features ``[N, D, h, w]`` or an ``(original, fine-tuned)`` pair with ``assembly`` in
    original/finetuned/concat/add/linear (default concat for pairs). Labels ``[N, H, W]`` int64 with
    ``ignore_index``. Official settings: AdamW(lr 1e-3, wd 1e-4), poly schedule with linear warm-up.
    """
    t0 = time.perf_counter()
    device = resolve_device(device)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    orig, ft, mode = _split_feats(train_feats, assembly)
    v_orig, v_ft, _ = _split_feats(val_feats, assembly)
    train_labels = torch.as_tensor(train_labels).long()
    val_labels = torch.as_tensor(val_labels).long()
    if loss_downscale > 1:
        train_labels = _subsample(train_labels, loss_downscale)

    asm = FeatureAssembly(mode, orig.shape[1])
    model = ProbeModel(asm, SegHead(asm.out_dim, num_classes)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999))
    warmup = int(round(warmup_frac * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps, warmup, SEG_WARMUP_RATIO, "poly"))

    losses: list[float] = []
    model.train()
    bar = _progress(
        _batches(orig.shape[0], min(batch_size, orig.shape[0]), steps, gen),
        show_progress,
        total=steps,
        desc=f"seg probe ({mode})",
    )
    for idx in bar:
        o = orig[idx].to(device)  # [B, D, h, w]
        f = ft[idx].to(device) if ft is not None else None
        y = train_labels[idx].to(device)  # [B, H, W]
        logits = model(o, f)  # [B, C, h, w]
        loss = seg_loss(logits, y, ignore_index)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))

    model.eval()
    val_out_hw = tuple(val_labels.shape[-2:])
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    ex_idx = _example_indices(v_orig.shape[0], n_examples)
    ex_pred = []
    eval_bs = eval_batch_size
    for s in range(0, v_orig.shape[0], eval_bs):
        vf = (v_orig[s : s + eval_bs], v_ft[s : s + eval_bs]) if v_ft is not None else v_orig[s : s + eval_bs]
        pred = predict_seg(model, vf, val_out_hw, batch_size=eval_bs, device=device)  # [b, H, W]
        cm += confusion_matrix(pred, val_labels[s : s + eval_bs], num_classes, ignore_index)
        for i in ex_idx.tolist():
            if s <= i < s + eval_bs:
                ex_pred.append(pred[i - s])
    metrics = metrics_from_confusion(cm)
    model.cpu()
    config = dict(
        task="seg",
        steps=steps,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        seed=seed,
        assembly=mode,
        num_classes=num_classes,
        warmup_steps=warmup,
        schedule="poly",
    )
    return ProbeResult(
        metrics=metrics,
        losses=losses,
        head_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        model=model,
        examples={"index": ex_idx, "pred": torch.stack(ex_pred), "target": val_labels[ex_idx]},
        config=config,
        seconds=time.perf_counter() - t0,
    )


def train_depth_probe(
    train_feats: Feats,
    train_cls: Tensor | None,
    train_depth: Tensor,
    val_feats: Feats,
    val_cls: Tensor | None,
    val_depth: Tensor,
    *,
    steps: int = 300,
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    batch_size: int = 8,
    min_depth: float = 1e-3,
    max_depth: float = 10.0,
    n_bins: int = 256,
    grad_loss_weight: float = 0.5,
    grad_clip: float | None = 35.0,
    warmup_frac: float = DEPTH_WARMUP_FRAC,
    sigloss_warmup_steps: int | None = None,
    norm_strategy: str = "linear",
    device: str | torch.device = "cpu",
    seed: int = 0,
    assembly: str | None = None,
    n_examples: int = 4,
    eval_batch_size: int = 8,
    show_progress: bool = True,
    loss_downscale: int = 1,
) -> ProbeResult:
    """Train ``DepthHead`` (and linear fusion weights, if any) on cached features; evaluate on val.

    ``loss_downscale`` k > 1: the training loss on depth subsampled by k (nearest: no depth is invented at edges).

    ``*_cls [N, Dc]`` is the CLS token (FiT3D: the original model's), or None for a head without it.
    ``*_depth [N, H, W]`` metres, 0 (or non-finite) = invalid. Official settings: AdamW(lr 1e-4, wd 0.01),
    grad clip 35, cosine schedule with linear warm-up over a third of the run, SigLoss + 0.5 GradientLoss;
    ``sigloss_warmup_steps`` defaults to the official 100 of 38,400 iterations scaled to ``steps``.
    Validation: pixels with ``min_depth < gt < max_depth``, prediction clamped to that range, metrics per
    image then averaged (as the official toolbox).
    """
    t0 = time.perf_counter()
    device = resolve_device(device)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    orig, ft, mode = _split_feats(train_feats, assembly)
    v_orig, v_ft, _ = _split_feats(val_feats, assembly)
    train_depth = torch.nan_to_num(torch.as_tensor(train_depth).float(), nan=0.0, posinf=0.0, neginf=0.0)
    if loss_downscale > 1:
        train_depth = _subsample(train_depth, loss_downscale)
    val_depth = torch.as_tensor(val_depth).float()
    out_hw = tuple(train_depth.shape[-2:])
    cls_dim = 0 if train_cls is None else train_cls.shape[1]

    asm = FeatureAssembly(mode, orig.shape[1])
    head = DepthHead(
        asm.out_dim, cls_dim, n_bins=n_bins, min_depth=min_depth, max_depth=max_depth, norm_strategy=norm_strategy
    )
    model = ProbeModel(asm, head).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999))
    warmup = int(round(warmup_frac * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, steps, warmup, DEPTH_WARMUP_RATIO, "cosine", DEPTH_MIN_LR_RATIO)
    )
    if sigloss_warmup_steps is None:
        sigloss_warmup_steps = sigloss_warmup(steps)

    losses: list[float] = []
    model.train()
    bar = _progress(
        _batches(orig.shape[0], min(batch_size, orig.shape[0]), steps, gen),
        show_progress,
        total=steps,
        desc=f"depth probe ({mode})",
    )
    for step, idx in enumerate(bar):
        o = orig[idx].to(device)  # [B, D, h, w]
        f = ft[idx].to(device) if ft is not None else None
        c = train_cls[idx].to(device) if train_cls is not None else None
        y = train_depth[idx].to(device)  # [B, H, W]
        pred = model(o, f, c, out_hw=out_hw)[:, 0]  # [B, H, W]
        loss = depth_loss(pred, y, grad_weight=grad_loss_weight, warm_up=step < sigloss_warmup_steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))

    model.eval()
    val_hw = tuple(val_depth.shape[-2:])
    vf = (v_orig, v_ft) if v_ft is not None else v_orig
    pred = predict_depth(model, vf, val_cls, val_hw, batch_size=eval_batch_size, device=device)  # [N, H, W]
    eval_mask = (val_depth > min_depth) & (val_depth < max_depth)
    metrics = depth_metrics(pred, val_depth, eval_mask, per_image=True)
    ex_idx = _example_indices(v_orig.shape[0], n_examples)
    model.cpu()
    config = dict(
        task="depth",
        steps=steps,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        seed=seed,
        assembly=mode,
        min_depth=min_depth,
        max_depth=max_depth,
        n_bins=n_bins,
        grad_loss_weight=grad_loss_weight,
        grad_clip=grad_clip,
        warmup_steps=warmup,
        sigloss_warmup_steps=sigloss_warmup_steps,
        norm_strategy=norm_strategy,
        schedule="cosine",
        cls_dim=cls_dim,
    )
    return ProbeResult(
        metrics=metrics,
        losses=losses,
        head_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        model=model,
        examples={"index": ex_idx, "pred": pred[ex_idx], "target": val_depth[ex_idx]},
        config=config,
        seconds=time.perf_counter() - t0,
    )


# ---------------------------------------------------------------------------------------------------------
# The probe stage: data, frozen-feature cache, every variant and task, the 3D-awareness check
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ProbeData:
    """Images, labels and depth of a list of scenes, stacked (views of all scenes)."""

    images: Tensor  # [N, H, W, 3]
    labels: Tensor  # [N, H, W] int64, 255 ignore
    depth: Tensor  # [N, H, W] metres, 0 invalid
    scene_of: list[int]  # scene index of each view
    views: list  # data.View objects (poses, for the 3D-awareness check)
    classes: list[str]


def probe_data(scenes: list[Path], max_depth: float = 10.0) -> ProbeData:
    """Stack the views of ``scenes``; checks label ids against the class table and masks depth beyond ``max_depth``."""
    from .data import load_scene

    images, labels, depth, scene_of, views, classes = [], [], [], [], [], None
    for si, path in enumerate(scenes):
        scene = load_scene(path)
        classes = classes or scene.classes
        for v in scene.views:
            if v.labels is None or v.depth is None:
                raise ValueError(f"{scene.name}/{v.name}: probing needs labels and depth for every view")
            bad = (v.labels != 255) & ((v.labels < 0) | (v.labels >= len(scene.classes or [])))
            if bad.any():
                raise ValueError(
                    f"{scene.name}/{v.name}: label ids {sorted(set(v.labels[bad].tolist()))[:5]} are outside the class "
                    f"table (0..{len(scene.classes or []) - 1}, 255 = ignore)"
                )
            images.append(torch.as_tensor(v.image))
            labels.append(torch.as_tensor(v.labels).long())
            d = torch.as_tensor(v.depth).float()
            depth.append(torch.where(torch.isfinite(d) & (d > 0) & (d <= max_depth), d, torch.zeros_like(d)))
            scene_of.append(si)
            views.append(v)
    return ProbeData(torch.stack(images), torch.stack(labels), torch.stack(depth), scene_of, views, list(classes or []))


def cached_features(backbone: Any, scenes: list[Path], images: Tensor, root: str | Path) -> dict[str, Tensor]:
    """Frozen features of ``images``, computed once per (model identity, scenes) with one forward for both kinds the
    probes read: after the final LayerNorm (``"patch" [N, D, h, w]``, ``"cls" [N, D]``; segmentation) and before it
    (``"patch_pre"``, ``"cls_pre"``; the official depth probe)."""
    from . import cache

    key = {"stage": "features", "model": backbone.identity(), "scenes": [cache.scene_id(p) for p in scenes]}

    def make(out: Path, resume: Path) -> dict[str, Any]:
        t0 = time.time()
        patch, cls, patch_pre, cls_pre = backbone.features_pre_and_post_norm(images.permute(0, 3, 1, 2), batch_size=8)
        torch.save({"patch": patch, "cls": cls, "patch_pre": patch_pre, "cls_pre": cls_pre}, out / "features.pt")
        return {
            "stage": "features",
            "n": int(patch.shape[0]),
            "seconds": round(time.time() - t0, 1),
            **backbone.describe(),
        }

    return cache.build("features", key, root, make, what="frozen features").torch("features.pt")


def _awareness(val: ProbeData, orig_val: Tensor, ft_val: Tensor, seed: int) -> dict[str, dict[str, float]]:
    """The 3D-correspondence check on the held-out views: covisible pairs within each scene, matched with the
    original, fine-tuned and concatenated features (``*_val [N, D, h, w]``)."""
    from . import awareness as A

    grid = tuple(orig_val.shape[-2:])
    pairs = []
    for si in sorted(set(val.scene_of)):
        ids = [i for i, s in enumerate(val.scene_of) if s == si]
        pairs += [
            (ids[a], ids[b], ov) for a, b, ov in A.covisible_pairs([val.views[i] for i in ids], grid, max_pairs=12)
        ]
    feats = {"original": orig_val, "finetuned": ft_val, "concat": torch.cat([orig_val, ft_val], 1)}
    return A.awareness_table(val.views, pairs, feats, seed=seed)


def probe_settings_key(cfg: Any) -> dict[str, Any]:
    """The probe settings that change results (a ``ProbeConfig`` as a dict without where the data lie and how many
    loader workers run: moving ``eval_data`` or adding workers keeps the artifact)."""
    import dataclasses as _dc

    return {k: v for k, v in _dc.asdict(cfg).items() if k not in ("eval_root", "num_workers")}


def _variant_features(variant: str, orig: Tensor, ft: Tensor) -> tuple[Feats, str | None]:
    """What the probe trainers take for a variant: one tensor, or a pair + assembly. ``dup`` is the paper's control
    (arXiv 2407.20229v1, Table 13): the original features concatenated with themselves, as wide as FiT3D's."""
    if variant == "original":
        return orig, None
    if variant == "finetuned":
        return ft, None
    if variant == "dup":
        return (orig, orig), "concat"
    return (orig, ft), variant


def run_probes(
    cfg: Any,
    train_scenes: list[Path],
    val_scenes: list[Path],
    original: Any,
    finetuned: Any,
    root: str | Path,
    *,
    max_depth: float,
    device: str = "auto",
    seed: int = 0,
    force: bool = False,
    tag: dict[str, Any] | None = None,
    profile_name: str = "",
    seg_sets: tuple[Any, Any] | None = None,
    depth_sets: tuple[Any, Any] | None = None,
    official: OfficialSettings | None = None,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Linear probes (seg, depth) and the 3D-awareness check for each of ``cfg.variants`` (a ``ProbeConfig``).

    Heads train on ``train_scenes`` and are evaluated on ``val_scenes`` (never fine-tuned on). Cached by the
    identities of both models, the scenes and the settings; ``tag`` (e.g. ``{"headline": True}``) only labels the
    stats for the report, so equal runs are shared. Returns the stats plus ``path`` (the artifact folder).

    ``cfg.protocol == "cached"``: heads on features computed once from the un-augmented scene images (unchanged).
    ``cfg.protocol == "official"``: the official evaluation (:func:`train_probes_official`): augmented batches through
    the frozen backbones at every step, sliding-window / flip-averaged testing. Only there: ``seg_sets`` /
    ``depth_sets`` = ``(train, val)`` pairs of :class:`fit3d_helpers.evaldata.EvalSet` (or any :class:`ProbeSource`)
    replace the scenes for that task (e.g. ``(nyuv2_seg(root, "train"), nyuv2_seg(root, "val"))``); ``official``
    overrides the official sizes (tests use :meth:`OfficialSettings.scaled`); ``num_workers`` loads and augments
    batches in DataLoader workers (0: in the main process, on the training device; the results do not depend on it
    beyond float rounding, each sample's augmentation being seeded by (seed, task, step, slot)).
    """

    from . import cache

    if cfg.protocol == "official":
        return _run_probes_official(
            cfg,
            train_scenes,
            val_scenes,
            original,
            finetuned,
            root,
            max_depth=max_depth,
            device=device,
            seed=seed,
            force=force,
            tag=tag,
            profile_name=profile_name,
            seg_sets=seg_sets,
            depth_sets=depth_sets,
            settings=official or OfficialSettings(),
            num_workers=num_workers,
        )
    if seg_sets is not None or depth_sets is not None or official is not None:
        raise ValueError(
            "seg_sets / depth_sets / official apply to probe.protocol='official' only; the cached protocol probes the "
            "scenes' un-augmented images. Set probe.protocol='official' to probe the evaluation sets."
        )

    key = {
        "stage": "probe",
        "original": original.identity(),
        "finetuned": finetuned.identity(),
        "train": [cache.scene_id(p) for p in train_scenes],
        "val": [cache.scene_id(p) for p in val_scenes],
        "probe": probe_settings_key(cfg),
        "max_depth": max_depth,
        "seed": seed,
    }

    def make(out: Path, resume: Path) -> dict[str, Any]:
        t0 = time.time()
        train, val = probe_data(train_scenes, max_depth), probe_data(val_scenes, max_depth)
        splits = ((train_scenes, train), (val_scenes, val))
        orig_tv = [cached_features(original, scenes, data.images, root) for scenes, data in splits]
        ft_tv = [cached_features(finetuned, scenes, data.images, root) for scenes, data in splits]
        (orig_train, orig_val), (ft_train, ft_val) = ([f["patch"] for f in fs] for fs in (orig_tv, ft_tv))
        pre = "" if cfg.depth_final_norm else "_pre"  # the depth probe reads features before the final LayerNorm
        d_orig_train, d_orig_val = (f["patch" + pre] for f in orig_tv)
        d_orig_cls_train, d_orig_cls_val = (f["cls" + pre] for f in orig_tv)
        d_ft_train, d_ft_val = (f["patch" + pre] for f in ft_tv)
        d_ft_cls_train, d_ft_cls_val = (f["cls" + pre] for f in ft_tv)
        results: dict[str, dict[str, dict[str, float]]] = {"seg": {}, "depth": {}}
        examples: dict[str, dict[str, Tensor]] = {}
        curves: dict[str, list[float]] = {}
        for variant in cfg.variants:
            feats_train, asm = _variant_features(variant, orig_train, ft_train)
            feats_val, _ = _variant_features(variant, orig_val, ft_val)
            r = train_seg_probe(
                feats_train,
                train.labels,
                feats_val,
                val.labels,
                len(train.classes),
                steps=cfg.seg_steps,
                lr=cfg.lr_seg,
                batch_size=cfg.seg_batch_size,
                device=device,
                seed=seed,
                assembly=asm,
                loss_downscale=cfg.loss_downscale,
            )
            results["seg"][variant] = dict(r.metrics)
            examples[f"seg/{variant}"], curves[f"seg/{variant}"] = r.examples, r.losses
            # the CLS token: the fine-tuned model's for "finetuned", else the original's (as FiT3D's assembled heads)
            cls_train, cls_val = (
                (d_ft_cls_train, d_ft_cls_val) if variant == "finetuned" else (d_orig_cls_train, d_orig_cls_val)
            )
            feats_train, _ = _variant_features(variant, d_orig_train, d_ft_train)
            feats_val, _ = _variant_features(variant, d_orig_val, d_ft_val)
            r = train_depth_probe(
                feats_train,
                cls_train,
                train.depth,
                feats_val,
                cls_val,
                val.depth,
                steps=cfg.depth_steps,
                lr=cfg.lr_depth,
                batch_size=cfg.depth_batch_size,
                grad_loss_weight=cfg.depth_grad_weight,
                max_depth=max_depth,
                device=device,
                seed=seed,
                assembly=asm,
                loss_downscale=cfg.loss_downscale,
            )
            results["depth"][variant] = dict(r.metrics)
            examples[f"depth/{variant}"], curves[f"depth/{variant}"] = r.examples, r.losses
        aware = _awareness(val, orig_val, ft_val, seed) if cfg.awareness else {}
        idx = next(iter(examples.values()))["index"]
        torch.save(
            {
                "examples": examples,
                "index": idx,
                "images": val.images[idx],
                "depth": val.depth[idx],
                "labels": val.labels[idx],
            },
            out / "examples.pt",
        )
        write_json(out / "curves.json", curves)
        return {
            "stage": "probe",
            "profile": profile_name,
            **(tag or {}),
            **{k: v for k, v in original.describe().items() if k in ("backbone", "weights")},
            "finetuned": finetuned.identity()["weights"],
            "train_views": int(train.images.shape[0]),
            "val_views": int(val.images.shape[0]),
            "depth_pixels_masked_val": int((val.depth == 0).sum()),
            "classes": train.classes,
            "results": results,
            "awareness": aware,
            "wall_seconds": round(time.time() - t0, 1),
        }

    art = cache.build("probe", key, root, make, force=force, what="the probes")
    return {**art.stats, "path": str(art.path)}


# ---------------------------------------------------------------------------------------------------------
# The official protocol: augmented batches through the frozen backbones, sliding-window / flip-averaged tests
# ---------------------------------------------------------------------------------------------------------
#
# Citations: "sem" = ywyue/FiT3D@1d7c532 evaluation/configs/vits_scannetpp_sem_linear_config.py (NYUv2: same line
# layout); "depth" = evaluation/configs/vits_nyu_depth_linear_config.py (ScanNet++: +2 lines from :11 on); both (v).
# mmcv = open-mmlab/mmcv@0665222 mmcv/runner/hooks/momentum_updater.py (OneCycleMomentumUpdaterHook; (h));
# mmseg slide = ywyue/FiT3D@1d7c532 mmsegmentation/mmseg/models/segmentors/encoder_decoder.py (slide_inference,
# inference; (h)); dinov2 depther = facebookresearch/dinov2@d5c376b dinov2/eval/depth/models/depther/
# encoder_decoder.py (encode_decode, inference, aug_test; (h)).

# OneCycle momentum, mmcv OneCycleMomentumUpdaterHook.__init__ defaults (the depth configs give only
# ``momentum_config = dict(policy="OneCycle")``, depth :209): base_momentum=0.85, max_momentum=0.95, pct_start=0.3,
# anneal_strategy="cos", three_phase=False; on AdamW it drives beta1 (``use_beta1 = 'betas' in optim.defaults``).
ONECYCLE_BASE_MOMENTUM = 0.85
ONECYCLE_MAX_MOMENTUM = 0.95
ONECYCLE_PCT_START = 0.3


def onecycle_momentum(
    step: int,
    total: int,
    base: float = ONECYCLE_BASE_MOMENTUM,
    peak: float = ONECYCLE_MAX_MOMENTUM,
    pct_start: float = ONECYCLE_PCT_START,
) -> float:
    """Adam beta1 at iteration ``step`` of ``total`` under mmcv's ``OneCycleMomentumUpdaterHook`` (two phases).

    ``before_run`` sets beta1 to ``max_momentum`` and the phases ``end_iter = pct_start * max_iters - 1`` (max ->
    base) and ``max_iters - 1`` (base -> max); ``get_momentum`` anneals with ``annealing_cos(start, end, pct)
    = end + (start - end) / 2 * (cos(pi * pct) + 1)``, ``pct`` measured from the previous phase's end. So beta1 is
    0.95 at step 0, 0.85 at step ``0.3 * total - 1`` and back to 0.95 at ``total - 1``. Note the official lr
    peaks at the end of its 12,800-iteration warm-up (1/3 of 38,400), the momentum trough at 11,519 (30 %): mmcv's
    default ``pct_start``, not matched to the lr schedule. (mmcv divides by zero when a phase has zero length; here
    such a phase returns its end value.)
    """
    end1 = float(pct_start * total) - 1
    phases = ((end1, peak, base), (total - 1, base, peak))
    start = 0.0
    for i, (end, m0, m1) in enumerate(phases):
        if step <= end or i == len(phases) - 1:
            pct = (step - start) / (end - start) if end != start else 1.0
            return m1 + 0.5 * (m0 - m1) * (math.cos(math.pi * pct) + 1)
        start = end
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class OfficialSettings:
    """Sizes and probabilities of the official probe protocol (defaults = the FiT3D configs; see augment.py).

    :meth:`scaled` shrinks every pixel size by one factor, for tests and quick looks on small images (an extension:
    the official code only runs the defaults)."""

    seg_img_scale: tuple[int, int] = (2048, 512)  # sem :15
    seg_ratio_range: tuple[float, float] = (0.5, 2.0)  # sem :15
    seg_crop: tuple[int, int] = (512, 512)  # sem :11, :16, :20
    seg_cat_max_ratio: float = 0.75  # sem :16
    seg_flip_prob: float = 0.5  # sem :17
    seg_photometric: bool = True  # sem :18
    seg_test_scale: tuple[int, int] = (2048, 512)  # sem :28 (img_ratios 1.0, :29; Resize keep_ratio, :32)
    seg_stride: tuple[int, int] = (341, 341)  # sem :113 test_cfg=dict(mode="slide", crop_size=(512, 512), stride=...)
    depth_crop: tuple[int, int] = (416, 544)  # depth :8, :15
    depth_rotate_prob: float = 0.5  # depth :13
    depth_rotate_degree: float = 2.5  # depth :13
    depth_flip_prob: float = 0.5  # depth :14
    depth_color_prob: float = 0.5  # depth :16-22 ColorAug(prob=0.5, gamma [0.9, 1.1], brightness [0.75, 1.25],
    depth_gamma_range: tuple[float, float] = (0.9, 1.1)  # color [0.9, 1.1])
    depth_brightness_range: tuple[float, float] = (0.75, 1.25)
    depth_color_range: tuple[float, float] = (0.9, 1.1)
    depth_test_flip: bool = True  # depth :47-48 MultiScaleFlipAug(flip=True, flip_direction="horizontal")
    depth_samples_per_gpu: int = 2  # depth :100 samples_per_gpu=2: SigLoss is computed per GPU (2 images), averaged
    momentum: tuple[float, float, float] = (ONECYCLE_BASE_MOMENTUM, ONECYCLE_MAX_MOMENTUM, ONECYCLE_PCT_START)

    def scaled(self, factor: float) -> OfficialSettings:
        """The same protocol with every pixel size multiplied by ``factor`` (at least 1 pixel)."""

        def sc(t: tuple[int, int]) -> tuple[int, int]:
            return (max(1, int(round(t[0] * factor))), max(1, int(round(t[1] * factor))))

        return dataclasses.replace(
            self,
            seg_img_scale=sc(self.seg_img_scale),
            seg_crop=sc(self.seg_crop),
            seg_test_scale=sc(self.seg_test_scale),
            seg_stride=sc(self.seg_stride),
            depth_crop=sc(self.depth_crop),
        )


# --- data sources ------------------------------------------------------------------------------------------


class SceneSource:
    """Probe samples from our scene folders (the synthetic rooms): every view, with labels and depth.

    Loaded on first use (``load_scene`` reads a whole scene) and kept as ``uint8`` images, labels and float depth;
    these are the small synthetic sets the cached protocol already holds in memory. Depth beyond ``max_depth`` is
    0 (invalid), as :func:`probe_data`. Views keep their poses, for the 3D-awareness check."""

    kind = "scenes"
    has_labels = True
    has_depth = True
    nyu = False  # no NYUCrop

    def __init__(self, scenes: list[Path], max_depth: float = 10.0, min_depth: float = 1e-3) -> None:
        self.scenes = [Path(p) for p in scenes]
        self.max_depth = float(max_depth)
        self.min_depth = float(min_depth)
        self._data: ProbeData | None = None
        self._images: Tensor | None = None

    def _loaded(self) -> ProbeData:
        if self._data is None:
            data = probe_data(self.scenes, self.max_depth)
            self._images = (data.images * 255.0).round().clamp(0, 255).to(torch.uint8)  # [N, H, W, 3]
            self._data = dataclasses.replace(data, images=torch.empty(0))  # drop the float copy
        return self._data

    def __len__(self) -> int:
        return len(self._loaded().scene_of)

    @property
    def classes(self) -> list[str]:
        return list(self._loaded().classes)

    @property
    def views(self) -> list:
        return self._loaded().views

    def load(self, i: int) -> dict[str, Any]:
        d = self._loaded()
        assert self._images is not None
        return {"image": self._images[i].numpy(), "labels": d.labels[i].numpy(), "depth": d.depth[i].numpy()}

    def eval_mask(self, depth: np.ndarray) -> np.ndarray:
        depth = np.asarray(depth)
        return (depth > self.min_depth) & (depth < self.max_depth)

    def key(self) -> dict[str, Any]:
        from . import cache

        return {"kind": "scenes", "scenes": [cache.scene_id(p) for p in self.scenes], "max_depth": self.max_depth}

    def __repr__(self) -> str:
        return f"SceneSource({[p.name for p in self.scenes]}, max_depth={self.max_depth})"


class EvalSetSource:
    """Probe samples of an official evaluation split (:class:`fit3d_helpers.evaldata.EvalSet`), read one at a time
    from disk. Training depth is the raw ground truth (0 = invalid; the official SigLoss masks ``gt > 0`` only,
    dinov2 losses/sigloss.py:44 (h)); evaluation uses the set's official mask (range + NYU's Eigen crop)."""

    kind = "evalset"

    def __init__(self, evalset: Any) -> None:
        self.set = evalset
        self.has_labels = bool(evalset.has_labels)
        self.has_depth = bool(evalset.has_depth)
        self.min_depth = float(evalset.min_depth)
        self.max_depth = float(evalset.max_depth)
        self.nyu = evalset.train_crop is not None  # only NYU depth has the NYUCrop in its training pipeline

    def __len__(self) -> int:
        return len(self.set)

    @property
    def classes(self) -> list[str]:
        return list(self.set.classes)

    views: list = []

    def load(self, i: int) -> dict[str, Any]:
        s = self.set.load(i)
        if s["labels"] is not None:
            self.set.check_label_ids(s["labels"], self.set.items[i].label_path)
        return s

    def eval_mask(self, depth: np.ndarray) -> np.ndarray:
        return self.set.eval_mask(depth)

    def key(self) -> dict[str, Any]:
        """Portable: the set's name, split file/folder and length, and a digest of its samples' root-relative paths."""
        import hashlib

        root = self.set.root
        rels = []
        for it in self.set.items:
            for p in (it.image_path, it.label_path, it.depth_path):
                if p is None:
                    continue
                try:
                    rels.append(str(Path(p).relative_to(root)) if root is not None else Path(p).name)
                except ValueError:
                    rels.append(Path(p).name)
        digest = hashlib.sha256("\n".join(rels).encode()).hexdigest()[:12]
        return {"kind": "evalset", "name": self.set.name, "split": str(self.set.split), "n": len(self), "items": digest}

    def __repr__(self) -> str:
        return f"EvalSetSource({self.set.name!r}, split={self.set.split!r}, n={len(self)})"


def as_probe_source(obj: Any, max_depth: float = 10.0) -> Any:
    """A probe source from an :class:`~fit3d_helpers.evaldata.EvalSet`, a list of scene folders, or a source."""
    if hasattr(obj, "load") and hasattr(obj, "key") and hasattr(obj, "eval_mask"):
        return obj
    if hasattr(obj, "items") and hasattr(obj, "has_labels"):  # an EvalSet
        return EvalSetSource(obj)
    if isinstance(obj, (list, tuple)):
        return SceneSource(list(obj), max_depth)
    raise TypeError(f"cannot probe {type(obj).__name__}: pass an EvalSet, scene folders or a probe source")


# --- batches -------------------------------------------------------------------------------------------------

_TASK_ID = {"seg": 0, "depth": 1}


def sample_rng(seed: int, task: str, step: int, slot: int) -> np.random.Generator:
    """The augmentation RNG of one sample: seeded by (seed, task, step, slot), so a batch is the same whatever the
    number of loader workers."""
    return np.random.default_rng([int(seed), _TASK_ID[task], int(step), int(slot)])


def augment_sample(
    task: str,
    sample: dict[str, Any],
    rng: np.random.Generator,
    settings: OfficialSettings,
    *,
    nyu: bool = False,
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """One training sample through the official pipeline: ``(image [3, h, w] 0..1, labels [h, w] | depth [h, w])``."""
    from . import augment as AUG

    if task == "seg":
        return AUG.seg_train_augment(
            sample["image"],
            sample["labels"],
            rng,
            img_scale=settings.seg_img_scale,
            ratio_range=settings.seg_ratio_range,
            crop_size=settings.seg_crop,
            cat_max_ratio=settings.seg_cat_max_ratio,
            flip_prob=settings.seg_flip_prob,
            photometric=settings.seg_photometric,
            device=device,
        )
    return AUG.depth_train_augment(
        sample["image"],
        sample["depth"],
        rng,
        nyu=nyu,
        crop_size=settings.depth_crop,
        rotate_prob=settings.depth_rotate_prob,
        rotate_degree=settings.depth_rotate_degree,
        flip_prob=settings.depth_flip_prob,
        color_prob=settings.depth_color_prob,
        gamma_range=settings.depth_gamma_range,
        brightness_range=settings.depth_brightness_range,
        color_range=settings.depth_color_range,
        device=device,
    )


def collate_official(task: str, items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Stack augmented samples; different sizes are padded at the bottom/right (image: ImageNet mean, i.e. 0 after
    normalisation, as mmcv's collate pads the normalised tensors with 0; labels 255; depth 0 = invalid)."""
    from .augment import pad_to

    h = max(int(x.shape[-2]) for x, _ in items)
    w = max(int(x.shape[-1]) for x, _ in items)
    imgs, targets = [], []
    for x, y in items:
        if task == "seg":
            x, y = pad_to(x, y, (h, w))
        elif tuple(x.shape[-2:]) != (h, w):
            x, _ = pad_to(x, None, (h, w))
            y = F.pad(y, (0, w - y.shape[-1], 0, h - y.shape[-2]))
        imgs.append(x)
        targets.append(y)
    return torch.stack(imgs), torch.stack(targets)


def make_batch(
    task: str,
    source: Any,
    indices: Iterable[int],
    step: int,
    settings: OfficialSettings,
    seed: int,
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """The augmented batch of training ``step``: ``(images [B, 3, h, w] 0..1, labels [B, h, w] | depth [B, h, w])``."""
    items = [
        augment_sample(
            task, source.load(int(i)), sample_rng(seed, task, step, j), settings, nyu=source.nyu, device=device
        )
        for j, i in enumerate(indices)
    ]
    return collate_official(task, items)


class _Jobs(torch.utils.data.Dataset):
    """(sample index, step, slot) jobs for DataLoader workers; each job is augmented on the CPU."""

    def __init__(self, task: str, source: Any, order: list[list[int]], settings: OfficialSettings, seed: int) -> None:
        self.task, self.source, self.settings, self.seed = task, source, settings, seed
        self.jobs = [(i, s, j) for s, idx in enumerate(order) for j, i in enumerate(idx)]

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        i, s, j = self.jobs[k]
        rng = sample_rng(self.seed, self.task, s, j)
        return augment_sample(self.task, self.source.load(i), rng, self.settings, nyu=self.source.nyu)


def _batch_stream(
    task: str, source: Any, order: list[list[int]], settings: OfficialSettings, seed: int, device, num_workers: int
) -> Iterable[tuple[Tensor, Tensor]]:
    if num_workers <= 0:
        for step, idx in enumerate(order):
            yield make_batch(task, source, idx, step, settings, seed, device=device)
        return
    sizes = {len(idx) for idx in order}
    if len(sizes) != 1:
        raise ValueError("batches must have one size")
    loader = torch.utils.data.DataLoader(
        _Jobs(task, source, order, settings, seed),
        batch_size=sizes.pop(),
        shuffle=False,
        num_workers=num_workers,
        collate_fn=functools.partial(collate_official, task),
        persistent_workers=False,
    )
    yield from loader


# --- frozen features -----------------------------------------------------------------------------------------


@torch.no_grad()
def frozen_tokens(backbone: Any, images: Tensor, *, norm: bool = True) -> tuple[Tensor, Tensor]:
    """``backbone.forward_tokens(images, norm=norm, fit="pad")`` in eval mode without gradients, as float32: the
    official ``CenterPadding`` to a multiple of the patch size (misc.py:15-33, 47-50, 87-91) and the frozen backbone
    (misc.py:38-39, 62-63, 71-72). Nothing is cached: every call runs the backbone."""
    model = getattr(backbone, "model", None)
    was_training = bool(model.training) if model is not None else False
    if model is not None:
        model.eval()
    try:
        patch, cls = backbone.forward_tokens(images, norm=norm, fit="pad")
    finally:
        if model is not None and was_training:
            model.train()
    return patch.float(), cls.float()


def _needs(variants: Iterable[str]) -> tuple[bool, bool]:
    vs = set(variants)
    return bool(vs - {"finetuned"}), bool(vs & {"finetuned", "concat", "add", "linear"})


def batch_features(
    original: Any, finetuned: Any, images: Tensor, variants: Iterable[str], *, norm: bool = True
) -> dict[str, Tensor | None]:
    """Frozen tokens of ``images`` from the models the variants need: ``{"po", "co", "pf", "cf"}`` (patch / CLS of
    the original and fine-tuned models; None where not needed)."""
    need_o, need_f = _needs(variants)
    po = co = pf = cf = None
    if need_o:
        po, co = frozen_tokens(original, images, norm=norm)
    if need_f:
        pf, cf = frozen_tokens(finetuned, images, norm=norm)
    return {"po": po, "co": co, "pf": pf, "cf": cf}


def _variant_inputs(variant: str, f: dict[str, Tensor | None]) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(first features, second features or None, CLS) of a variant: ``dup`` = original ⊕ original; the CLS is the
    fine-tuned model's for ``finetuned``, else the original's (FiT3D: ``prefix_tokens = vit_outputs[1]``,
    linear_evaluate_fit3d.py:88 (v))."""
    if variant == "original":
        return f["po"], None, f["co"]
    if variant == "finetuned":
        return f["pf"], None, f["cf"]
    if variant == "dup":
        return f["po"], f["po"], f["co"]
    return f["po"], f["pf"], f["co"]


def _variant_mode(variant: str) -> str:
    return {"original": "original", "finetuned": "original", "dup": "concat"}.get(variant, variant)


# --- test-time inference -------------------------------------------------------------------------------------


def slide_inference(
    img: Tensor,
    dense_fn: Any,
    crop_size: tuple[int, int] = (512, 512),
    stride: tuple[int, int] = (341, 341),
) -> list[Tensor]:
    """mmseg ``EncoderDecoder.slide_inference`` (FiT3D's mmsegmentation encoder_decoder.py): windows of
    ``crop_size`` every ``stride``, ``h_grids = max(H - h_crop + h_stride - 1, 0) // h_stride + 1``; a window that
    would leave the image is moved back inside (``y1 = max(min(y1 + h_crop, H) - h_crop, 0)``), so an image smaller
    than the window is decoded whole, without padding (as mmseg: "the small patch will be used to decode without
    padding"); outputs are summed into place and divided by the per-pixel window count.

    ``dense_fn(crop [B, 3, h, w]) -> Tensor | list[Tensor]`` gives ``[B, C, h, w]`` outputs at the crop's size
    (mmseg ``encode_decode``). Returns a list (one accumulator per output of ``dense_fn``) of ``[B, C, H, W]``.
    """
    h_stride, w_stride = stride
    h_crop, w_crop = crop_size
    b, _, h_img, w_img = img.shape
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    preds: list[Tensor] | None = None
    count = img.new_zeros((b, 1, h_img, w_img))
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * h_stride, w_idx * w_stride
            y2, x2 = min(y1 + h_crop, h_img), min(x1 + w_crop, w_img)
            y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
            out = dense_fn(img[:, :, y1:y2, x1:x2])
            outs = list(out) if isinstance(out, (list, tuple)) else [out]
            if preds is None:
                preds = [img.new_zeros((b, o.shape[1], h_img, w_img)) for o in outs]
            for acc, o in zip(preds, outs):
                acc[:, :, y1:y2, x1:x2] += o
            count[:, :, y1:y2, x1:x2] += 1
    assert preds is not None and bool((count > 0).all())
    return [p / count for p in preds]


def flip_average(img: Tensor, dense_fn: Any) -> list[Tensor]:
    """dinov2 depther ``aug_test`` with ``MultiScaleFlipAug(flip=True)``: the prediction of the image and of its
    horizontal mirror, the latter flipped back (``inference``: ``output.flip(dims=(3,))``), averaged.
    ``dense_fn(img) -> Tensor | list[Tensor]`` of ``[B, C, H, W]``."""
    a = dense_fn(img)
    b = dense_fn(img.flip(-1))
    a = list(a) if isinstance(a, (list, tuple)) else [a]
    b = list(b) if isinstance(b, (list, tuple)) else [b]
    return [(x + y.flip(-1)) / 2 for x, y in zip(a, b)]


# --- training and evaluation ---------------------------------------------------------------------------------


def _stack_or_list(xs: list[Tensor]) -> Tensor | list[Tensor]:
    return torch.stack(xs) if xs and all(x.shape == xs[0].shape for x in xs) else list(xs)


def train_probes_official(
    task: str,
    train_src: Any,
    val_src: Any,
    original: Any,
    finetuned: Any,
    variants: Iterable[str],
    *,
    steps: int,
    lr: float,
    batch_size: int,
    settings: OfficialSettings | None = None,
    grad_loss_weight: float = 0.0,
    final_norm: bool = False,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    num_workers: int = 0,
    n_examples: int = 4,
    show_progress: bool = True,
) -> dict[str, ProbeResult]:
    """Train one head per variant under the official protocol and evaluate them the official way.

    Every step draws ``batch_size`` samples (reshuffled each pass), augments them with the official pipeline
    (:mod:`fit3d_helpers.augment`), runs the frozen backbones on the augmented images (:func:`batch_features`,
    ``fit="pad"``; segmentation after the final LayerNorm; depth with ``norm=final_norm``) and gives every variant's
    head one optimiser step on that batch. The variants share the augmented batches and the backbone forwards (one
    forward per model per step instead of one per variant): each head still sees the official sample distribution.

    * seg (``task="seg"``): ``SegHead`` (BN + 1x1 conv), AdamW lr, wd 1e-4, betas (0.9, 0.999) (sem :73), poly
      power 1 with linear warm-up 1500/40000 from 1e-6 (sem :82-88), no clip (sem :77); CE over all pixels
      (mmseg ``avg_non_ignore=False``). Test: ``Resize`` keep-ratio to (2048, 512), :func:`slide_inference`
      512/341 (sem :113), logits bilinear to the label size (``rescale``), argmax, mIoU over the split.
    * depth (``task="depth"``): ``DepthHead`` (+ CLS), AdamW lr, wd 0.01 (depth :187-199), grad clip 35 (:210),
      cosine with warm-up 12800/38400 from 1e-3 to 1e-8 (:201-208), **OneCycle beta1** (:209, mmcv defaults,
      :func:`onecycle_momentum`), SigLoss (warm-up 100 of 38,400 steps scaled) + ``grad_loss_weight`` x
      :func:`gradient_loss`, per GPU chunk of ``settings.depth_samples_per_gpu`` images then averaged (DDP). Test:
      native size, CenterPadding, head output clamped to (min, max) then bilinear to the image size (dinov2
      ``encode_decode``), averaged with the flipped prediction (:func:`flip_average`), per-image metrics over
      ``val_src.eval_mask`` (range + NYU Eigen crop), averaged over images.
    """
    if task not in ("seg", "depth"):
        raise ValueError(f"task must be 'seg' or 'depth', got {task!r}")
    settings = settings or OfficialSettings()
    variants = list(variants)
    t0 = time.perf_counter()
    device = resolve_device(device)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    norm = True if task == "seg" else bool(final_norm)
    dim = int(original.dim)
    if task == "seg":
        num_classes = int(num_classes if num_classes is not None else len(train_src.classes))
        if num_classes <= 0:
            raise ValueError("segmentation needs a class table (num_classes > 0)")
    min_depth, max_depth = (float(val_src.min_depth), float(val_src.max_depth)) if task == "depth" else (0.0, 0.0)

    models: dict[str, ProbeModel] = {}
    opts: dict[str, torch.optim.Optimizer] = {}
    scheds: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
    if task == "seg":
        warmup = int(round(SEG_WARMUP_FRAC * steps))
        factor = functools.partial(_lr_factor, total=steps, warmup=warmup, warmup_ratio=SEG_WARMUP_RATIO, policy="poly")
        wd = 1e-4
    else:
        warmup = int(round(DEPTH_WARMUP_FRAC * steps))
        factor = functools.partial(
            _lr_factor,
            total=steps,
            warmup=warmup,
            warmup_ratio=DEPTH_WARMUP_RATIO,
            policy="cosine",
            min_ratio=DEPTH_MIN_LR_RATIO,
        )
        wd = 0.01
    for v in variants:
        asm = FeatureAssembly(_variant_mode(v), dim)
        if task == "seg":
            head: nn.Module = SegHead(asm.out_dim, num_classes)
        else:
            head = DepthHead(asm.out_dim, dim, min_depth=min_depth, max_depth=max_depth)
        models[v] = ProbeModel(asm, head).to(device).train()
        opts[v] = torch.optim.AdamW(models[v].parameters(), lr=lr, weight_decay=wd, betas=(0.9, 0.999))
        scheds[v] = torch.optim.lr_scheduler.LambdaLR(opts[v], lambda s, f=factor: f(s))
    sig_warm = sigloss_warmup(steps)
    chunk = max(1, int(settings.depth_samples_per_gpu))

    n_train = len(train_src)
    if n_train == 0:
        raise ValueError(f"{train_src!r} has no samples")
    order = [idx.tolist() for idx in _batches(n_train, min(batch_size, n_train), steps, gen)]
    aug_device = device if num_workers <= 0 else None
    stream = _batch_stream(task, train_src, order, settings, seed, aug_device, num_workers)
    losses: dict[str, list[float]] = {v: [] for v in variants}
    t_data = t_feat = t_head = 0.0
    tick = time.perf_counter()
    for step, (images, target) in enumerate(_progress(stream, show_progress, total=steps, desc=f"{task} (official)")):
        images, target = images.to(device), target.to(device)
        t_data += time.perf_counter() - tick
        tick = time.perf_counter()
        feats = batch_features(original, finetuned, images, variants, norm=norm)
        t_feat += time.perf_counter() - tick
        tick = time.perf_counter()
        for v in variants:
            a, b, c = _variant_inputs(v, feats)
            if task == "seg":
                logits = models[v](a, b)  # [B, C, h, w]
                loss = seg_loss(logits, target, IGNORE_INDEX_SEG, avg_non_ignore=False)
            else:
                mom = onecycle_momentum(step, steps, *settings.momentum)
                for g in opts[v].param_groups:
                    g["betas"] = (mom, g["betas"][1])
                pred = models[v](a, b, c, out_hw=tuple(target.shape[-2:]))[:, 0]  # [B, h, w]
                parts = [
                    depth_loss(
                        pred[s : s + chunk],
                        target[s : s + chunk],
                        grad_weight=grad_loss_weight,
                        warm_up=step < sig_warm,
                    )
                    for s in range(0, pred.shape[0], chunk)
                ]
                loss = torch.stack(parts).mean()
            opts[v].zero_grad(set_to_none=True)
            loss.backward()
            if task == "depth":
                nn.utils.clip_grad_norm_(models[v].parameters(), 35.0)
            opts[v].step()
            scheds[v].step()
            losses[v].append(float(loss.detach()))
        t_head += time.perf_counter() - tick
        tick = time.perf_counter()
    t_train = time.perf_counter() - t0

    # ---- evaluation on the validation split, one image at a time ----
    t1 = time.perf_counter()
    for m in models.values():
        m.eval()
    n_val = len(val_src)
    ex_idx = _example_indices(n_val, n_examples)
    ex_set = set(ex_idx.tolist())
    ex_pred: dict[str, list[Tensor]] = {v: [] for v in variants}
    ex_target: list[Tensor] = []
    ex_image: list[Tensor] = []
    cms = {v: torch.zeros(num_classes or 1, num_classes or 1, dtype=torch.long) for v in variants}
    rows: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    n_invalid = 0
    from . import augment as AUG

    with torch.no_grad():
        for i in range(n_val):
            s = val_src.load(i)
            ori_hw = tuple(s["image"].shape[:2])
            if i in ex_set:
                ex_image.append(torch.as_tensor(AUG.as_uint8_image(s["image"])).float() / 255.0)
            if task == "seg":
                labels = torch.as_tensor(s["labels"]).long()
                img = AUG.seg_test_resize(s["image"], settings.seg_test_scale, device=device)[None]

                def dense(crop: Tensor) -> list[Tensor]:
                    f = batch_features(original, finetuned, crop, variants, norm=True)
                    hw = tuple(crop.shape[-2:])
                    return [resize_bilinear(models[v](*_variant_inputs(v, f)[:2]), hw) for v in variants]

                accs = slide_inference(img, dense, settings.seg_crop, settings.seg_stride)
                for v, acc in zip(variants, accs):
                    pred = resize_bilinear(acc, ori_hw).argmax(1)[0].cpu()  # [H, W]
                    cms[v] += confusion_matrix(pred, labels, num_classes, IGNORE_INDEX_SEG)
                    if i in ex_set:
                        ex_pred[v].append(pred)
                if i in ex_set:
                    ex_target.append(labels)
            else:
                gt = torch.as_tensor(s["depth"]).float()
                mask = torch.as_tensor(val_src.eval_mask(s["depth"]))
                n_invalid += int((gt <= 0).sum())
                img = AUG.to_float_chw(AUG.as_uint8_image(s["image"], device))[None]

                def dense(x: Tensor, out_hw: tuple[int, int] = ori_hw) -> list[Tensor]:
                    f = batch_features(original, finetuned, x, variants, norm=norm)
                    outs = []
                    for v in variants:
                        d = models[v](*_variant_inputs(v, f))  # [1, 1, 4h, 4w]
                        outs.append(resize_bilinear(d.clamp(min_depth, max_depth), out_hw))
                    return outs

                preds = flip_average(img, dense) if settings.depth_test_flip else dense(img)
                for v, p in zip(variants, preds):
                    p = p[0, 0].cpu()
                    rows[v].append(depth_metrics(p, gt, mask))
                    if i in ex_set:
                        ex_pred[v].append(p)
                if i in ex_set:
                    ex_target.append(gt)
    t_eval = time.perf_counter() - t1

    results: dict[str, ProbeResult] = {}
    for v in variants:
        if task == "seg":
            metrics = metrics_from_confusion(cms[v])
        else:
            metrics = mean_over_images(rows[v])
        models[v].cpu()
        config = dict(
            task=task,
            protocol="official",
            steps=steps,
            lr=lr,
            weight_decay=wd,
            batch_size=batch_size,
            seed=seed,
            assembly=_variant_mode(v),
            variant=v,
            warmup_steps=warmup,
            schedule="poly" if task == "seg" else "cosine",
            settings=dataclasses.asdict(settings),
            seconds_train=round(t_train, 2),
            seconds_eval=round(t_eval, 2),
            seconds_data=round(t_data, 2),
            seconds_backbone=round(t_feat, 2),
            seconds_heads=round(t_head, 2),
        )
        if task == "seg":
            config.update(num_classes=num_classes, loss="CE sum / all pixels (mmseg avg_non_ignore=False)")
        else:
            config.update(
                min_depth=min_depth,
                max_depth=max_depth,
                grad_loss_weight=grad_loss_weight,
                grad_clip=35.0,
                sigloss_warmup_steps=sig_warm,
                final_norm=final_norm,
                momentum="OneCycle",
                invalid_pixels_val=n_invalid,
            )
        results[v] = ProbeResult(
            metrics=metrics,
            losses=losses[v],
            head_state={k: t.detach().cpu().clone() for k, t in models[v].state_dict().items()},
            model=models[v],
            examples={
                "index": ex_idx,
                "pred": _stack_or_list(ex_pred[v]),
                "target": _stack_or_list(ex_target),
                "image": _stack_or_list(ex_image),
            },
            config=config,
            seconds=time.perf_counter() - t0,
        )
    return results


IGNORE_INDEX_SEG = 255


def _run_probes_official(
    cfg: Any,
    train_scenes: list[Path],
    val_scenes: list[Path],
    original: Any,
    finetuned: Any,
    root: str | Path,
    *,
    max_depth: float,
    device: str,
    seed: int,
    force: bool,
    tag: dict[str, Any] | None,
    profile_name: str,
    seg_sets: tuple[Any, Any] | None,
    depth_sets: tuple[Any, Any] | None,
    settings: OfficialSettings,
    num_workers: int,
) -> dict[str, Any]:
    """``run_probes`` under ``protocol == "official"`` (see there)."""
    from . import cache

    def pair(sets: tuple[Any, Any] | None) -> tuple[Any, Any]:
        if sets is None:
            return SceneSource(train_scenes, max_depth), SceneSource(val_scenes, max_depth)
        if len(sets) != 2:
            raise ValueError("pass the sets as a (train, val) pair")
        return as_probe_source(sets[0], max_depth), as_probe_source(sets[1], max_depth)

    seg_tr, seg_va = pair(seg_sets)
    dep_tr, dep_va = pair(depth_sets)
    for src, need in ((seg_tr, "has_labels"), (seg_va, "has_labels"), (dep_tr, "has_depth"), (dep_va, "has_depth")):
        if not getattr(src, need):
            raise ValueError(f"{src!r} cannot be used for {'segmentation' if need == 'has_labels' else 'depth'}")
    use_scenes = seg_sets is None or depth_sets is None
    run_awareness = bool(cfg.awareness) and use_scenes and len(val_scenes) > 0
    key: dict[str, Any] = {
        "stage": "probe",
        "original": original.identity(),
        "finetuned": finetuned.identity(),
        "probe": probe_settings_key(cfg),
        "seed": seed,
        "official": dataclasses.asdict(settings),
        "seg_sets": [seg_tr.key(), seg_va.key()],
        "depth_sets": [dep_tr.key(), dep_va.key()],
    }
    if run_awareness:
        key["awareness_scenes"] = [cache.scene_id(p) for p in val_scenes]
        key["max_depth"] = max_depth

    def make(out: Path, resume: Path) -> dict[str, Any]:
        t0 = time.time()
        common = dict(device=device, seed=seed, num_workers=num_workers, settings=settings)
        seg = train_probes_official(
            "seg",
            seg_tr,
            seg_va,
            original,
            finetuned,
            cfg.variants,
            steps=cfg.seg_steps,
            lr=cfg.lr_seg,
            batch_size=cfg.seg_batch_size,
            **common,
        )
        dep = train_probes_official(
            "depth",
            dep_tr,
            dep_va,
            original,
            finetuned,
            cfg.variants,
            steps=cfg.depth_steps,
            lr=cfg.lr_depth,
            batch_size=cfg.depth_batch_size,
            grad_loss_weight=cfg.depth_grad_weight,
            final_norm=cfg.depth_final_norm,
            **common,
        )
        results = {
            "seg": {v: dict(r.metrics) for v, r in seg.items()},
            "depth": {v: dict(r.metrics) for v, r in dep.items()},
        }
        examples: dict[str, dict[str, Any]] = {}
        curves: dict[str, list[float]] = {}
        for task, res in (("seg", seg), ("depth", dep)):
            for v, r in res.items():
                examples[f"{task}/{v}"] = {k: r.examples[k] for k in ("index", "pred", "target")}
                curves[f"{task}/{v}"] = r.losses
        aware: dict[str, dict[str, float]] = {}
        if run_awareness:
            val = probe_data(val_scenes, max_depth)
            orig_val = cached_features(original, val_scenes, val.images, root)["patch"]
            ft_val = cached_features(finetuned, val_scenes, val.images, root)["patch"]
            aware = _awareness(val, orig_val, ft_val, seed)
        s0, d0 = next(iter(seg.values())), next(iter(dep.values()))
        torch.save(
            {
                "examples": examples,
                "index": s0.examples["index"],
                "images": s0.examples["image"],  # the segmentation val images
                "labels": s0.examples["target"],
                "depth": d0.examples["target"],
                "depth_images": d0.examples["image"],  # the depth val images (other samples when the sets differ)
                "depth_index": d0.examples["index"],
            },
            out / "examples.pt",
        )
        write_json(out / "curves.json", curves)
        timing = {
            task: {k: r.config[k] for k in r.config if k.startswith("seconds_")}
            for task, r in (("seg", s0), ("depth", d0))
        }
        return {
            "stage": "probe",
            "protocol": "official",
            "profile": profile_name,
            **(tag or {}),
            **{k: v for k, v in original.describe().items() if k in ("backbone", "weights")},
            "finetuned": finetuned.identity()["weights"],
            "sets": {"seg": [seg_tr.key(), seg_va.key()], "depth": [dep_tr.key(), dep_va.key()]},
            "train_views": len(seg_tr),
            "val_views": len(seg_va),
            "depth_train_views": len(dep_tr),
            "depth_val_views": len(dep_va),
            "depth_pixels_masked_val": int(d0.config["invalid_pixels_val"]),  # GT == 0 in the depth val split
            "classes": seg_tr.classes,
            "results": results,
            "awareness": aware,
            "timing": timing,
            "official": dataclasses.asdict(settings),
            "wall_seconds": round(time.time() - t0, 1),
        }

    art = cache.build("probe", key, root, make, force=force, what="the probes (official protocol)")
    return {**art.stats, "path": str(art.path)}


__all__ = [
    "ASSEMBLY_MODES",
    "DepthHead",
    "FeatureAssembly",
    "ProbeModel",
    "ProbeResult",
    "SegHead",
    "assemble",
    "confusion_matrix",
    "depth_loss",
    "depth_metrics",
    "gradient_loss",
    "metrics_from_confusion",
    "per_class_iou",
    "predict_depth",
    "ProbeData",
    "cached_features",
    "predict_seg",
    "probe_data",
    "run_probes",
    "resize_bilinear",
    "resize_bilinear_cl",
    "seg_loss",
    "segmentation_metrics",
    "sigloss",
    "train_depth_probe",
    "train_seg_probe",
    "EvalSetSource",
    "OfficialSettings",
    "SceneSource",
    "as_probe_source",
    "batch_features",
    "collate_official",
    "flip_average",
    "frozen_tokens",
    "make_batch",
    "onecycle_momentum",
    "sample_rng",
    "slide_inference",
    "train_probes_official",
]
