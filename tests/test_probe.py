"""Tests of the probing stage: metrics against independent computations, heads against DINOv2's naive
formulation, losses against DINOv2's definitions, and probes that must learn easy synthetic tasks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fit3d_helpers.probe import (
    DepthHead,
    FeatureAssembly,
    SegHead,
    assemble,
    confusion_matrix,
    depth_loss,
    depth_metrics,
    gradient_loss,
    metrics_from_confusion,
    per_class_iou,
    resize_bilinear,
    resize_bilinear_cl,
    seg_loss,
    segmentation_metrics,
    sigloss,
    train_depth_probe,
    train_seg_probe,
)
from fit3d_helpers.probe.task import _lr_factor

# ----------------------------------------------------------------------------------------------- metrics


def _random_seg_case(seed: int = 0):
    """Random labels with ignore pixels, one class only predicted, one only in the target, one absent."""
    g = np.random.default_rng(seed)
    c = 7
    target = g.integers(0, 4, size=(3, 20, 24))  # classes 0..3 in target
    pred = np.where(g.random(target.shape) < 0.6, target, g.integers(0, 4, size=target.shape))
    pred[g.random(pred.shape) < 0.05] = 5  # class 5: only in the prediction
    target[0, :2] = 4  # class 4: only in the target (never predicted: pred there is 0..3 or 5)
    pred[0, :2] = np.where(pred[0, :2] == 4, 0, pred[0, :2])
    target[g.random(target.shape) < 0.1] = 255  # ignore
    # class 6: absent from both
    return pred, target, c


def _reference_metrics(pred: np.ndarray, target: np.ndarray, c: int) -> dict[str, float]:
    """Independent path: sklearn's confusion matrix and the mmseg rules written out in numpy."""
    from sklearn.metrics import confusion_matrix as sk_cm

    keep = target != 255
    cm = sk_cm(target[keep], pred[keep], labels=list(range(c))).astype(np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    present = union > 0
    iou = tp[present] / union[present]
    in_target = cm.sum(1) > 0
    acc = tp[in_target] / cm.sum(1)[in_target]
    return {"miou": iou.mean(), "macc": acc.mean(), "aacc": tp.sum() / cm.sum()}


def test_segmentation_metrics_match_sklearn_reference():
    pred, target, c = _random_seg_case()
    got = segmentation_metrics(torch.from_numpy(pred), torch.from_numpy(target), c)
    ref = _reference_metrics(pred, target, c)
    for k in ("miou", "macc", "aacc"):
        assert got[k] == pytest.approx(ref[k], abs=1e-12), k
    # The "absent from both" rule matters here: averaging class 6 in as 0 would give a different mIoU.
    iou = per_class_iou(confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), c))
    assert torch.isnan(iou[6]) and iou[5] == 0 and iou[4] == 0
    assert got["miou"] != pytest.approx(float(torch.nan_to_num(iou).sum() / c))


def test_segmentation_metrics_match_torchmetrics():
    from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

    pred, target, c = _random_seg_case(seed=3)
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    tm_iou = MulticlassJaccardIndex(num_classes=c, average=None, ignore_index=255)(p, t)
    iou = per_class_iou(confusion_matrix(p, t, c))
    present = ~torch.isnan(iou)
    assert torch.allclose(iou[present].float(), tm_iou[present], atol=1e-6)
    aacc = MulticlassAccuracy(num_classes=c, average="micro", ignore_index=255)(p, t)
    assert segmentation_metrics(p, t, c)["aacc"] == pytest.approx(float(aacc), abs=1e-6)


def test_segmentation_metrics_hand_checked():
    target = torch.tensor([[0, 0], [1, 255]])
    pred = torch.tensor([[0, 1], [1, 1]])
    m = segmentation_metrics(pred, target, num_classes=3)
    # cm rows=target: class 0 -> {0: 1, 1: 1}; class 1 -> {1: 1}; class 2 absent from both.
    assert m["miou"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert m["macc"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["aacc"] == pytest.approx(2 / 3)


def test_confusion_matrix_streams_over_batches():
    pred, target, c = _random_seg_case(seed=1)
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    whole = confusion_matrix(p, t, c)
    parts = sum(confusion_matrix(p[i : i + 1], t[i : i + 1], c) for i in range(p.shape[0]))
    assert torch.equal(whole, parts)
    assert metrics_from_confusion(parts) == segmentation_metrics(p, t, c)
    with pytest.raises(ValueError):
        confusion_matrix(torch.tensor([c]), torch.tensor([0]), c)


def test_depth_metrics_hand_checked():
    target = torch.tensor([2.0, 0.0, float("nan"), 4.0, 1.0])
    pred = torch.tensor([1.0, 5.0, 5.0, 4.0, 1.2])
    m = depth_metrics(pred, target)
    assert m["n_valid"] == 3
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 0 + 0.04) / 3))
    assert m["absrel"] == pytest.approx((0.5 + 0 + 0.2) / 3)
    assert m["delta1"] == pytest.approx(2 / 3)
    m = depth_metrics(pred, target, mask=torch.tensor([True, True, True, True, False]))
    assert m["n_valid"] == 2 and m["rmse"] == pytest.approx(math.sqrt(0.5)) and m["delta1"] == pytest.approx(0.5)


def test_depth_metrics_per_image_averages_images():
    target = torch.tensor([[2.0, 2.0, 2.0, 2.0], [1.0, 0.0, 0.0, 0.0]])
    pred = torch.tensor([[2.0, 2.0, 2.0, 2.0], [2.0, 9.0, 9.0, 9.0]])
    per_img = depth_metrics(pred, target, per_image=True)
    assert per_img["rmse"] == pytest.approx(0.5)  # (0 + 1) / 2, not sqrt(1/5) pooled
    assert per_img["absrel"] == pytest.approx(0.5)
    assert per_img["n_valid"] == 5
    assert depth_metrics(pred, target)["rmse"] == pytest.approx(math.sqrt(1 / 5))


# ----------------------------------------------------------------------------------------------- losses


def _dinov2_sigloss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DINOv2's SigLoss, transcribed (boolean indexing, torch.var)."""
    valid = target > 0
    g = torch.log(pred[valid] + 1e-3) - torch.log(target[valid] + 1e-3)
    return torch.sqrt(torch.var(g) + 0.15 * torch.pow(torch.mean(g), 2))


def _dinov2_gradient_loss_2d(inp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DINOv2's GradientLoss transcribed for one [H, W] image (the shape its slicing was written for)."""
    eps = 1e-3
    ins = [inp] + [inp[:: 2 * i, :: 2 * i] for i in range(1, 4)]
    tgs = [target] + [target[:: 2 * i, :: 2 * i] for i in range(1, 4)]
    loss = 0
    for x, t in zip(ins, tgs):
        mask = t > 0
        n = torch.sum(mask)
        d = (torch.log(x + eps) - torch.log(t + eps)) * mask
        v = torch.abs(d[0:-2, :] - d[2:, :]) * (mask[0:-2, :] * mask[2:, :])
        h = torch.abs(d[:, 0:-2] - d[:, 2:]) * (mask[:, 0:-2] * mask[:, 2:])
        loss += (torch.sum(h) + torch.sum(v)) / n
    return loss


def test_sigloss_matches_dinov2_and_its_invariances():
    g = torch.Generator().manual_seed(0)
    target = 1 + 4 * torch.rand(2, 12, 16, generator=g)
    target[0, :3] = 0  # invalid
    pred = target * torch.exp(0.2 * torch.randn(2, 12, 16, generator=g)) + 0.05
    assert float(sigloss(pred, target)) == pytest.approx(float(_dinov2_sigloss(pred, target)), rel=1e-5)
    # Zero for a perfect prediction; invalid pixels do not count.
    garbage = pred.clone()
    garbage[0, :3] = 123.0
    exact = torch.where(target > 0, target, garbage)
    assert float(sigloss(exact, target)) < 1e-6
    # A global scale s is penalised only through 0.15 * mean(g)^2: loss = sqrt(0.15) * |log s|.
    for s in (0.5, 2.0):
        assert float(sigloss(s * target, target)) == pytest.approx(math.sqrt(0.15) * abs(math.log(s)), abs=2e-3)
    # Warm-up form: only the mean term.
    gg = torch.log(pred[target > 0] + 1e-3) - torch.log(target[target > 0] + 1e-3)
    warm = math.sqrt(0.15) * abs(float(gg.mean()))
    assert float(sigloss(pred, target, warm_up=True)) == pytest.approx(warm, rel=1e-5)
    # NaN targets are invalid too.
    t_nan = target.clone()
    t_nan[0, :3] = float("nan")
    assert float(sigloss(pred, t_nan)) == pytest.approx(float(sigloss(pred, target)), rel=1e-6)


def test_gradient_loss_matches_dinov2_per_image_and_is_scale_invariant():
    g = torch.Generator().manual_seed(1)
    target = 1 + 3 * torch.rand(2, 20, 26, generator=g)
    target[1, 5:9, 4:10] = 0
    pred = target * torch.exp(0.3 * torch.randn(2, 20, 26, generator=g))
    for b in range(2):
        ref = _dinov2_gradient_loss_2d(pred[b], target[b])
        assert float(gradient_loss(pred[b : b + 1], target[b : b + 1])) == pytest.approx(float(ref), rel=1e-5)
    assert float(gradient_loss(pred[:, None], target[:, None])) == pytest.approx(float(gradient_loss(pred, target)))
    # Only log-depth *gradients* count: a global scale costs (almost, eps aside) nothing.
    assert float(gradient_loss(3.0 * target, target)) < 1e-3
    assert float(gradient_loss(pred, target)) > 0.1
    combined = depth_loss(pred, target, grad_weight=0.5)
    assert float(combined) == pytest.approx(float(sigloss(pred, target) + 0.5 * gradient_loss(pred, target)), rel=1e-6)


# ----------------------------------------------------------------------------------------------- heads


def test_resize_matches_interpolate():
    x = torch.randn(2, 5, 6, 7, dtype=torch.float64)
    for hw in ((24, 28), (13, 9), (6, 7)):
        ref = F.interpolate(x, size=hw, mode="bilinear", align_corners=False)
        assert torch.allclose(resize_bilinear(x, hw), ref, atol=1e-12)
        assert torch.allclose(resize_bilinear_cl(x.permute(0, 2, 3, 1), hw), ref.permute(0, 2, 3, 1), atol=1e-12)


def test_seg_head_and_loss():
    head = SegHead(16, 5)
    x = torch.randn(2, 16, 4, 6)
    assert head(x).shape == (2, 5, 4, 6)
    logits = head(x, out_hw=(30, 44))
    assert logits.shape == (2, 5, 30, 44)
    assert isinstance(head.bn, torch.nn.BatchNorm2d) and head.conv_seg.kernel_size == (1, 1)
    labels = torch.randint(0, 5, (2, 30, 44))
    labels[:, :3] = 255
    up = F.interpolate(head(x), (30, 44), mode="bilinear", align_corners=False)
    ref = F.cross_entropy(up, labels, ignore_index=255)
    assert float(seg_loss(head(x), labels).detach()) == pytest.approx(float(ref.detach()), rel=1e-5)


@pytest.mark.parametrize("norm", ["linear", "softmax"])
def test_depth_head_equals_dinov2_formulation(norm):
    torch.manual_seed(0)
    d, dc, bins = 12, 8, 32
    head = DepthHead(d, dc, n_bins=bins, min_depth=0.1, max_depth=5.0, norm_strategy=norm).double()
    x = torch.randn(3, d, 4, 5, dtype=torch.float64)
    cls = torch.randn(3, dc, dtype=torch.float64)
    out = head(x, cls)
    assert out.shape == (3, 1, 16, 20)
    # DINOv2: concat CLS over the grid, x4 bilinear, 1x1 conv, normalise over bins, weighted sum of linspace.
    feat = torch.cat([x, cls[:, :, None, None].expand(-1, -1, 4, 5)], dim=1)
    feat = F.interpolate(feat, scale_factor=4, mode="bilinear", align_corners=False)
    logit = head.conv_depth(feat)
    if norm == "linear":
        p = torch.relu(logit) + 0.1
        p = p / p.sum(1, keepdim=True)
    else:
        p = torch.softmax(logit, 1)
    ref = torch.einsum("ikmn,k->imn", p, torch.linspace(0.1, 5.0, bins, dtype=torch.float64)).unsqueeze(1)
    assert torch.allclose(out, ref, atol=1e-10)
    with torch.no_grad():
        full = head(x, cls, out_hw=(30, 37))
    assert full.shape == (3, 1, 30, 37)
    assert float(full.min()) >= 0.1 - 1e-9 and float(full.max()) <= 5.0 + 1e-9
    with pytest.raises(ValueError):
        head(x, None)
    assert DepthHead(d, 0)(x.float()).shape == (3, 1, 16, 20)  # a head without CLS token


def test_feature_assembly_modes():
    o, f = torch.randn(2, 6, 3, 4), torch.randn(2, 6, 3, 4)
    assert torch.equal(assemble(o, f, "original"), o)
    assert torch.equal(assemble(o, f, "finetuned"), f)
    assert torch.equal(assemble(o, f, "add"), o + f)
    cat = assemble(o, f, "concat")
    assert cat.shape == (2, 12, 3, 4) and torch.equal(cat[:, :6], o) and torch.equal(cat[:, 6:], f)
    with pytest.raises(ValueError):
        assemble(o, f, "linear")
    for mode, dim in (("original", 6), ("finetuned", 6), ("concat", 12), ("add", 6), ("linear", 6)):
        m = FeatureAssembly(mode, 6)
        assert m.out_dim == dim and m(o, f).shape == (2, dim, 3, 4)
        assert (sum(p.numel() for p in m.parameters()) > 0) == (mode == "linear")
    lin = FeatureAssembly("linear", 6)
    w = lin.fuse.weight[:, :, 0, 0]
    ref = torch.einsum("kc,bchw->bkhw", w, cat) + lin.fuse.bias[None, :, None, None]
    assert torch.allclose(lin(o, f), ref, atol=1e-6)


def test_lr_schedule_shapes():
    assert _lr_factor(0, 100, 10, 1e-6, "poly") == pytest.approx(1e-6, rel=1e-3)
    assert _lr_factor(10, 100, 10, 1e-6, "poly") == pytest.approx(0.9)
    assert _lr_factor(100, 100, 10, 1e-6, "poly") == pytest.approx(0.0)
    assert _lr_factor(50, 100, 0, 1e-3, "cosine") == pytest.approx(0.5, abs=1e-6)


# ----------------------------------------------------------------------------------------------- probes


def _separable_seg_data(n: int, d: int, c: int, seed: int):
    """Token features = class prototype + noise; labels = token classes on blocks, 4x the grid."""
    g = torch.Generator().manual_seed(seed)
    h, w = 6, 8
    coarse = torch.randint(0, c, (n, h // 2, w // 2), generator=g)
    tok = coarse.repeat_interleave(2, 1).repeat_interleave(2, 2)  # [n, h, w], 2x2-token regions
    proto = 3 * torch.randn(c, d, generator=g)
    feats = proto[tok].permute(0, 3, 1, 2) + 0.3 * torch.randn(n, d, h, w, generator=g)
    labels = tok.repeat_interleave(4, 1).repeat_interleave(4, 2)  # [n, 24, 32]
    labels[:, 0, :] = 255
    return feats, labels


def test_seg_probe_learns_separable_features():
    c = 4
    feats, labels = _separable_seg_data(32, 16, c, seed=0)
    tr_f, tr_l, va_f, va_l = feats[:24], labels[:24], feats[24:], labels[24:]
    res = train_seg_probe(tr_f, tr_l, va_f, va_l, c, steps=60, batch_size=8, device="cpu", seed=0, show_progress=False)
    assert res.metrics["miou"] > 0.9, res.metrics
    assert len(res.losses) == 60 and res.losses[-1] < res.losses[0]
    assert res.examples["pred"].shape[1:] == (24, 32) and res.examples["target"].shape == res.examples["pred"].shape
    assert set(res.head_state) >= {"head.bn.weight", "head.conv_seg.weight"}


def test_seg_probe_with_pairs_trains_linear_fusion():
    c = 3
    tr_f, tr_l = _separable_seg_data(16, 8, c, seed=1)
    ft = tr_f.flip(1)  # a different view of the same information
    res = train_seg_probe(
        (tr_f, ft),
        tr_l,
        (tr_f[:4], ft[:4]),
        tr_l[:4],
        c,
        steps=20,
        batch_size=8,
        assembly="linear",
        show_progress=False,
    )
    assert res.config["assembly"] == "linear"
    assert res.head_state["assembly.fuse.weight"].shape == (8, 16, 1, 1)
    assert res.head_state["head.conv_seg.weight"].shape == (c, 8, 1, 1)
    # the same seed and no step gives the fusion's initial weights: training moved them (the fusion is trained)
    res0 = train_seg_probe(
        (tr_f, ft), tr_l, (tr_f[:4], ft[:4]), tr_l[:4], c, steps=0, batch_size=8, assembly="linear", show_progress=False
    )
    moved = (res.head_state["assembly.fuse.weight"] - res0.head_state["assembly.fuse.weight"]).abs().max()
    assert float(moved) > 1e-3
    res_cat = train_seg_probe(
        (tr_f, ft), tr_l, (tr_f[:4], ft[:4]), tr_l[:4], c, steps=5, batch_size=8, show_progress=False
    )
    assert res_cat.config["assembly"] == "concat" and res_cat.head_state["head.bn.weight"].shape == (16,)
    with pytest.raises(ValueError):
        train_seg_probe(tr_f, tr_l, tr_f, tr_l, c, steps=1, assembly="concat", show_progress=False)


def test_depth_probe_learns_a_linear_depth_map():
    g = torch.Generator().manual_seed(0)
    n, d, h, w = 20, 16, 6, 8
    feats = torch.randn(n, d, h, w, generator=g)
    cls = torch.randn(n, 4, generator=g)
    direction = torch.randn(d, generator=g) / d**0.5
    tok_depth = 1.0 + 3.0 * torch.sigmoid(torch.einsum("d,ndhw->nhw", direction, feats))  # [n, h, w]
    depth = F.interpolate(tok_depth[:, None], size=(24, 32), mode="bilinear", align_corners=False)[:, 0]
    depth[:, :2] = 0.0  # invalid rows
    res = train_depth_probe(
        feats[:16],
        cls[:16],
        depth[:16],
        feats[16:],
        cls[16:],
        depth[16:],
        steps=50,
        lr=1e-2,
        warmup_frac=0.1,
        batch_size=4,
        max_depth=6.0,
        device="cpu",
        seed=0,
        show_progress=False,
    )
    assert np.mean(res.losses[-10:]) < 0.5 * np.mean(res.losses[:10])
    assert res.metrics["delta1"] > 0.9 and res.metrics["absrel"] < 0.15, res.metrics
    assert res.metrics["n_valid"] == 4 * 22 * 32
    assert res.examples["pred"].shape[1:] == (24, 32)
    assert res.head_state["head.conv_depth.weight"].shape == (256, 16 + 4, 1, 1)


def test_loss_downscale_trains_on_fewer_pixels_and_evaluates_at_full_size():
    c = 4
    feats, labels = _separable_seg_data(32, 16, c, seed=3)
    res = train_seg_probe(feats[:24], labels[:24], feats[24:], labels[24:], c, steps=60, batch_size=8, seed=0,
                          show_progress=False, loss_downscale=2)  # fmt: skip
    assert res.metrics["miou"] > 0.9 and res.examples["pred"].shape[1:] == (24, 32)  # full-size predictions
    from fit3d_helpers.probe.task import _subsample

    assert torch.equal(_subsample(labels, 2), labels[:, 1::2, 1::2])
