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
(``SceneSource`` / ``EvalSetSource``). Each official setting cites its source next to ``OfficialSettings``.

The package, in the order a probe run uses it: :mod:`.metrics` (mIoU, depth metrics), :mod:`.heads` (assembly,
``SegHead``, ``DepthHead``), :mod:`.losses`, :mod:`.task` (the task object: head, loss, optimiser, targets, metric
of segmentation or depth), :mod:`.cached` (the cached-feature protocol), :mod:`.settings` / :mod:`.sources` /
:mod:`.official` (the official protocol), :mod:`.stage` (``run_probes``, the stage). ``ProbeData`` / ``probe_data``
live on the data side (:mod:`fit3d_helpers.probe_data`) and are re-exported here.
"""

from __future__ import annotations

from ..probe_data import ProbeData, probe_data
from .cached import predict_depth, predict_seg, train_depth_probe, train_probe, train_seg_probe
from .heads import (
    ASSEMBLY_MODES,
    DepthHead,
    Feats,
    FeatureAssembly,
    ProbeModel,
    SegHead,
    assemble,
    resize_bilinear,
    resize_bilinear_cl,
)
from .losses import depth_loss, gradient_loss, seg_loss, sigloss
from .metrics import (
    confusion_matrix,
    depth_metrics,
    mean_over_images,
    metrics_from_confusion,
    per_class_iou,
    segmentation_metrics,
)
from .official import (
    batch_features,
    flip_average,
    frozen_tokens,
    official_task,
    slide_inference,
    train_probes_official,
)
from .settings import OfficialSettings
from .sources import (
    EvalSetSource,
    SceneSource,
    as_probe_source,
    augment_sample,
    collate_official,
    make_batch,
    sample_rng,
)
from .stage import cached_features, probe_settings_key, run_probes
from .task import (
    DEPTH_MIN_LR_RATIO,
    DEPTH_WARMUP_FRAC,
    DEPTH_WARMUP_RATIO,
    IGNORE_INDEX_SEG,
    ONECYCLE_BASE_MOMENTUM,
    ONECYCLE_MAX_MOMENTUM,
    ONECYCLE_PCT_START,
    SEG_WARMUP_FRAC,
    SEG_WARMUP_RATIO,
    SIGLOSS_WARMUP_ITERS_OFFICIAL,
    DepthTask,
    ProbeResult,
    ProbeTask,
    Schedule,
    SegTask,
    onecycle_momentum,
    sigloss_warmup,
)

__all__ = [
    "ASSEMBLY_MODES",
    "DEPTH_MIN_LR_RATIO",
    "DEPTH_WARMUP_FRAC",
    "DEPTH_WARMUP_RATIO",
    "IGNORE_INDEX_SEG",
    "ONECYCLE_BASE_MOMENTUM",
    "ONECYCLE_MAX_MOMENTUM",
    "ONECYCLE_PCT_START",
    "SEG_WARMUP_FRAC",
    "SEG_WARMUP_RATIO",
    "SIGLOSS_WARMUP_ITERS_OFFICIAL",
    "DepthHead",
    "DepthTask",
    "EvalSetSource",
    "Feats",
    "FeatureAssembly",
    "OfficialSettings",
    "ProbeData",
    "ProbeModel",
    "ProbeResult",
    "ProbeTask",
    "SceneSource",
    "Schedule",
    "SegHead",
    "SegTask",
    "as_probe_source",
    "assemble",
    "augment_sample",
    "batch_features",
    "cached_features",
    "collate_official",
    "confusion_matrix",
    "depth_loss",
    "depth_metrics",
    "flip_average",
    "frozen_tokens",
    "gradient_loss",
    "make_batch",
    "mean_over_images",
    "metrics_from_confusion",
    "official_task",
    "onecycle_momentum",
    "per_class_iou",
    "predict_depth",
    "predict_seg",
    "probe_data",
    "probe_settings_key",
    "resize_bilinear",
    "resize_bilinear_cl",
    "run_probes",
    "sample_rng",
    "seg_loss",
    "segmentation_metrics",
    "sigloss",
    "sigloss_warmup",
    "slide_inference",
    "train_depth_probe",
    "train_probe",
    "train_probes_official",
    "train_seg_probe",
]
