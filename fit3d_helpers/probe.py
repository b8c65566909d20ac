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
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .utils import progress, resolve_device, seed_everything

ASSEMBLY_MODES = ("original", "finetuned", "concat", "add", "linear")

# Official schedule constants (FiT3D / DINOv2 linear-probe configs).
SEG_WARMUP_FRAC = 1500 / 40000
SEG_WARMUP_RATIO = 1e-6
DEPTH_WARMUP_FRAC = 12800 / 38400
DEPTH_WARMUP_RATIO = 1e-3
DEPTH_MIN_LR_RATIO = 1e-8
SIGLOSS_WARMUP_ITERS_OFFICIAL = 100  # of 38,400 iterations

# Features can be one tensor or an (original, fine-tuned) pair to be assembled inside the probe.
Feats = Union[Tensor, tuple[Tensor, Tensor]]


# ---------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------


def confusion_matrix(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255
) -> Tensor:
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


def segmentation_metrics(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255
) -> dict[str, float]:
    """mIoU / mAcc / aAcc of label maps ``pred`` and ``target`` (same shape, e.g. [N, H, W])."""
    return metrics_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index))


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
        rows = [depth_metrics(p, t, v) for p, t, v in zip(pred, target, valid)]
        rows = [r for r in rows if r["n_valid"] > 0]
        if not rows:
            return {"rmse": float("nan"), "absrel": float("nan"), "delta1": float("nan"), "n_valid": 0}
        out = {k: float(np.mean([r[k] for r in rows])) for k in ("rmse", "absrel", "delta1")}
        out["n_valid"] = int(sum(r["n_valid"] for r in rows))
        return out
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


def seg_loss(logits: Tensor, labels: Tensor, ignore_index: int = 255) -> Tensor:
    """Cross-entropy of token-grid logits ``[B, C, h, w]`` resized bilinearly to ``labels [B, H, W]``.

    Same value as mmseg (resize, then CE with ignore index); computed channels-last because a flat
    ``[P, C]`` cross-entropy is ~2x faster on CPU than the NCHW one.
    """
    up = resize_bilinear_cl(logits.permute(0, 2, 3, 1), tuple(labels.shape[-2:]))  # [B, H, W, C]
    return F.cross_entropy(up.reshape(-1, up.shape[-1]), labels.reshape(-1), ignore_index=ignore_index)


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
# Feature extraction
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def extract_features(
    model_fn: Callable[[Tensor], tuple[Tensor, Tensor]],
    images: Tensor | np.ndarray,
    batch_size: int,
    device: str | torch.device = "cpu",
    *,
    show_progress: bool = True,
) -> tuple[Tensor, Tensor]:
    """Run a frozen backbone once over ``images [N, H, W, 3]`` (float, 0..1) and keep its features on CPU.

    ``model_fn`` maps a ``[B, 3, H, W]`` batch on ``device`` to ``(patch [B, D, h, w], cls [B, D])``.
    Returns ``(patch [N, D, h, w], cls [N, D])`` float32 on CPU, ready to cache and to probe.
    """
    device = resolve_device(device)
    images = torch.as_tensor(images)
    patches: list[Tensor] = []
    clss: list[Tensor] = []
    starts = range(0, images.shape[0], batch_size)
    for s in _progress(starts, show_progress, desc="features"):
        batch = images[s : s + batch_size].to(device=device, dtype=torch.float32)
        batch = batch.permute(0, 3, 1, 2).contiguous()  # [B, 3, H, W]
        patch, cls = model_fn(batch)
        patches.append(patch.float().cpu())
        clss.append(cls.float().cpu())
    return torch.cat(patches), torch.cat(clss)


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
) -> ProbeResult:
    """Train ``SegHead`` (and linear fusion weights, if any) on cached features; evaluate on val.

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
    out_hw = tuple(train_labels.shape[-2:])

    asm = FeatureAssembly(mode, orig.shape[1])
    model = ProbeModel(asm, SegHead(asm.out_dim, num_classes)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999))
    warmup = int(round(warmup_frac * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, steps, warmup, SEG_WARMUP_RATIO, "poly")
    )

    losses: list[float] = []
    model.train()
    bar = _progress(_batches(orig.shape[0], min(batch_size, orig.shape[0]), steps, gen), show_progress,
                    total=steps, desc=f"seg probe ({mode})")
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
    config = dict(task="seg", steps=steps, lr=lr, weight_decay=weight_decay, batch_size=batch_size, seed=seed,
                  assembly=mode, num_classes=num_classes, warmup_steps=warmup, schedule="poly")
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
) -> ProbeResult:
    """Train ``DepthHead`` (and linear fusion weights, if any) on cached features; evaluate on val.

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
    val_depth = torch.as_tensor(val_depth).float()
    out_hw = tuple(train_depth.shape[-2:])
    cls_dim = 0 if train_cls is None else train_cls.shape[1]

    asm = FeatureAssembly(mode, orig.shape[1])
    head = DepthHead(asm.out_dim, cls_dim, n_bins=n_bins, min_depth=min_depth, max_depth=max_depth,
                     norm_strategy=norm_strategy)
    model = ProbeModel(asm, head).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999))
    warmup = int(round(warmup_frac * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, steps, warmup, DEPTH_WARMUP_RATIO, "cosine", DEPTH_MIN_LR_RATIO)
    )
    if sigloss_warmup_steps is None:
        sigloss_warmup_steps = int(round(SIGLOSS_WARMUP_ITERS_OFFICIAL * steps / 38400))

    losses: list[float] = []
    model.train()
    bar = _progress(_batches(orig.shape[0], min(batch_size, orig.shape[0]), steps, gen), show_progress,
                    total=steps, desc=f"depth probe ({mode})")
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
    config = dict(task="depth", steps=steps, lr=lr, weight_decay=weight_decay, batch_size=batch_size, seed=seed,
                  assembly=mode, min_depth=min_depth, max_depth=max_depth, n_bins=n_bins,
                  grad_loss_weight=grad_loss_weight, grad_clip=grad_clip, warmup_steps=warmup,
                  sigloss_warmup_steps=sigloss_warmup_steps, norm_strategy=norm_strategy, schedule="cosine",
                  cls_dim=cls_dim)
    return ProbeResult(
        metrics=metrics,
        losses=losses,
        head_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        model=model,
        examples={"index": ex_idx, "pred": pred[ex_idx], "target": val_depth[ex_idx]},
        config=config,
        seconds=time.perf_counter() - t0,
    )


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
    "extract_features",
    "gradient_loss",
    "metrics_from_confusion",
    "per_class_iou",
    "predict_depth",
    "predict_seg",
    "resize_bilinear",
    "resize_bilinear_cl",
    "seg_loss",
    "segmentation_metrics",
    "sigloss",
    "train_depth_probe",
    "train_seg_probe",
]
