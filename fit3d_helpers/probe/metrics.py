"""Probe metrics: mIoU / mAcc / aAcc from confusion matrices (mmseg), per-image depth metrics (DINOv2 toolbox).

Why separate: the metrics are the numbers the course reports; they depend on nothing but tensors and are tested
against independent computations (tests/test_probe.py)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


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
