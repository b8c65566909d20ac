"""The official probe protocol's sizes, probabilities and schedules (:class:`OfficialSettings`), each citing its
source line; shared by the batch sources and the training loop.

Citations: "sem" = ywyue/FiT3D@1d7c532 evaluation/configs/vits_scannetpp_sem_linear_config.py (NYUv2: same line
layout); "depth" = evaluation/configs/vits_nyu_depth_linear_config.py (ScanNet++: +2 lines from :11 on); both (v).
mmcv = open-mmlab/mmcv@0665222 mmcv/runner/hooks/momentum_updater.py (OneCycleMomentumUpdaterHook; (h));
mmseg slide = ywyue/FiT3D@1d7c532 mmsegmentation/mmseg/models/segmentors/encoder_decoder.py (slide_inference,
inference; (h)); dinov2 depther = facebookresearch/dinov2@d5c376b dinov2/eval/depth/models/depther/
encoder_decoder.py (encode_decode, inference, aug_test; (h)).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .task import ONECYCLE_BASE_MOMENTUM, ONECYCLE_MAX_MOMENTUM, ONECYCLE_PCT_START


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
    # Depth checkpoint selection: the official run evaluates every 6,400 of 38,400 iterations and keeps the best
    # checkpoint by AbsRel (depth :212-221, ``evaluation=dict(interval=6400, save_best="abs_rel", rule="less")``).
    # We report the last iteration's metrics as the headline and the best-by-AbsRel ones beside them
    # (``results`` vs ``depth_best_absrel`` in the stats). A fraction of the run; 0 = evaluate at the end only.
    depth_eval_interval: float = 6400 / 38400

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
