"""The official train- and test-time augmentations of FiT3D's linear probes, as plain torch functions on one sample.

FiT3D evaluates with mmseg (segmentation) and the Monocular-Depth-Estimation-Toolbox (depth); both run their
pipelines on the ``uint8`` BGR image that ``LoadImageFromFile`` decodes, with OpenCV, and normalise last. This module
reproduces those pipelines without mmcv/OpenCV (neither is a dependency of the course): resizing, flipping, rotating
and the colour transforms are written in torch (any device) with the same conventions, and the random draws come from
a ``numpy.random.Generator`` passed in, in the order the official transforms draw them.

Conventions (every function):

* **Input image**: ``uint8 [H, W, 3]`` RGB (numpy or torch), as :meth:`fit3d_helpers.evaldata.EvalSet.load` gives
  it; a float image in 0..1 (``[H, W, 3]``) is accepted and rounded to ``uint8`` first (our synthetic scenes). The
  official pipelines work in BGR; every transform here treats the channels symmetrically or converts colour spaces
  channel-order-aware, so RGB in gives the same result as the official BGR path.
* **Output image**: ``float32 [3, H, W]`` in 0..1 (``uint8 / 255``), ready for
  :meth:`fit3d_helpers.backbone.Backbone.forward_tokens` (which normalises with the ImageNet mean/std, as the
  official ``Normalize``). Padding added *after* the official ``Normalize`` (value 0 in normalised space) is written
  as the ImageNet mean colour here, so it becomes 0 after the backbone's normalisation.
* **Labels**: ``int64 [H, W]``, 255 = ignore. **Depth**: ``float32 [H, W]`` metres, 0 = invalid.
* **Randomness**: ``rng = numpy.random.default_rng(seed)``; ``rng.random()`` stands for ``np.random.rand()``,
  ``rng.uniform(a, b)`` for ``np.random.uniform``, ``rng.integers(a, b)`` for ``np.random.randint(a, b)``.

Sources (line numbers: (v) = checked with ``grep -n`` on a local copy; (h) = counted by hand from the stored text,
may be off by a line or two; the upstream files are the stored copies named by commit):

* FiT3D configs: ywyue/FiT3D@1d7c532 ``evaluation/configs/vits_{nyu,scannetpp}_sem_linear_config.py`` and
  ``vits_{nyu,scannetpp}_depth_linear_config.py`` (v).
* mmseg 0.x transforms: open-mmlab/mmsegmentation@0066ce8 ``mmseg/datasets/pipelines/transforms.py`` -- classes
  ``Resize`` (``random_sample_ratio``, ``_resize_img``/``_resize_seg``), ``RandomCrop`` (``get_crop_bbox``,
  ``__call__``), ``RandomFlip``, ``Pad``, ``PhotoMetricDistortion``.
* mmcv 1.x image ops: open-mmlab/mmcv@0395ab2 ``mmcv/image/geometric.py`` -- ``_scale_size``, ``rescale_size``,
  ``imrescale``, ``imrotate``, ``impad``; OpenCV's ``cvtColor`` ``RGB2HSV_b`` / ``HSV2RGB_b`` (``color_hsv``).
* depth toolbox: zhyever/Monocular-Depth-Estimation-Toolbox@6f18fb8 ``depth/datasets/pipelines/transforms.py`` --
  classes ``NYUCrop``, ``RandomRotate``, ``RandomFlip``, ``RandomCrop``, ``ColorAug``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .backbone import IMAGENET_MEAN

IGNORE_INDEX = 255

# --- segmentation: ywyue/FiT3D@1d7c532 evaluation/configs/vits_scannetpp_sem_linear_config.py (v) (NYU: same lines)
SEG_IMG_SCALE = (
    2048,
    512,
)  # :15 dict(type="Resize", img_scale=(2048, 512), ratio_range=(0.5, 2.0)), keep_ratio default
SEG_RATIO_RANGE = (0.5, 2.0)  # :15
SEG_CROP = (512, 512)  # :11 crop_size = (512, 512); :16 RandomCrop(crop_size, cat_max_ratio=0.75)
SEG_CAT_MAX_RATIO = 0.75  # :16
SEG_CAT_TRIES = 10  # mmseg RandomCrop.__call__: "# Repeat 10 times"
SEG_FLIP_PROB = 0.5  # :17 dict(type="RandomFlip", prob=0.5)
# :18 dict(type="PhotoMetricDistortion") with mmseg's defaults (PhotoMetricDistortion.__init__):
PMD_BRIGHTNESS_DELTA = 32
PMD_CONTRAST_RANGE = (0.5, 1.5)
PMD_SATURATION_RANGE = (0.5, 1.5)
PMD_HUE_DELTA = 18
SEG_PAD_VAL = 0  # :20 dict(type="Pad", size=crop_size, pad_val=0, seg_pad_val=255), after Normalize (:19)
SEG_SEG_PAD_VAL = 255  # :20
SEG_TEST_SCALE = (2048, 512)  # :28 MultiScaleFlipAug img_scale=(2048, 512), :29 img_ratios=1.0, :32 Resize keep_ratio

# --- depth: ywyue/FiT3D@1d7c532 evaluation/configs/vits_nyu_depth_linear_config.py (v)
# (vits_scannetpp_depth_linear_config.py: crop_size :9, the pipeline +2 lines (:15-24), no NYUCrop (:14 commented))
DEPTH_CROP = (416, 544)  # :8 crop_size = (416, 544); :15 dict(type="RandomCrop", crop_size=crop_size)
DEPTH_ROTATE_PROB = 0.5  # :13 dict(type="RandomRotate", prob=0.5, degree=2.5)
DEPTH_ROTATE_DEGREE = 2.5  # :13
DEPTH_FLIP_PROB = 0.5  # :14 dict(type="RandomFlip", prob=0.5)
COLOR_AUG_PROB = 0.5  # :16-22 dict(type="ColorAug", prob=0.5, gamma_range=[0.9, 1.1], brightness_range=[0.75, 1.25],
COLOR_GAMMA_RANGE = (0.9, 1.1)  # color_range=[0.9, 1.1])
COLOR_BRIGHTNESS_RANGE = (0.75, 1.25)
COLOR_COLOR_RANGE = (0.9, 1.1)
# :12 dict(type="NYUCrop", depth=True): toolbox NYUCrop.__call__ slices img[45:472, 43:608] and depth_gt the same
NYU_TRAIN_CROP = (45, 472, 43, 608)  # (top, bottom, left, right), for a 480x640 image
NYU_SIZE = (480, 640)


# ---------------------------------------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------------------------------------


def as_uint8_image(image: Any, device: str | torch.device | None = None) -> Tensor:
    """``uint8 [H, W, 3]`` tensor from a uint8 ``[H, W, 3]`` array/tensor, or a float one in 0..1 (rounded)."""
    t = torch.as_tensor(np.ascontiguousarray(image) if isinstance(image, np.ndarray) else image)
    if t.ndim != 3 or t.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3] (uint8, or float in 0..1), got {tuple(t.shape)}")
    if t.dtype != torch.uint8:
        t = (t.float() * 255.0).round().clamp(0, 255).to(torch.uint8)
    return t.to(device) if device is not None else t


def to_float_chw(image_u8: Tensor) -> Tensor:
    """``uint8 [H, W, 3]`` (or float 0..255) -> ``float32 [3, H, W]`` in 0..1."""
    return image_u8.permute(2, 0, 1).float().div(255.0).contiguous()


def _mean_fill(device: torch.device) -> Tensor:
    return torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=device).view(3, 1, 1)


# ---------------------------------------------------------------------------------------------------------
# Geometry: mmcv rescale / resize / flip / crop / pad / rotate
# ---------------------------------------------------------------------------------------------------------


def rescale_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv ``rescale_size`` for a tuple ``scale``: the largest size that fits ``max(scale)`` on the long side and
    ``min(scale)`` on the short side, keeping the aspect ratio; ``_scale_size`` rounds with ``int(x + 0.5)``.
    Returns ``(new_h, new_w)``."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(height * float(factor) + 0.5), int(width * float(factor) + 0.5)


def resize_image(image_u8: Tensor, size: tuple[int, int]) -> Tensor:
    """``cv2.resize(INTER_LINEAR)`` of a ``uint8 [H, W, 3]`` image to ``size = (h, w)``: half-pixel centres, no
    anti-aliasing (torch's ``bilinear, align_corners=False``), rounded back to ``uint8`` as OpenCV does."""
    if tuple(image_u8.shape[:2]) == tuple(size):
        return image_u8
    x = image_u8.permute(2, 0, 1)[None].float()  # [1, 3, H, W]
    y = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    return y[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()


def resize_nearest(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``cv2.resize(INTER_NEAREST)`` of ``[H, W]`` labels/depth: source index ``floor(dst * src / dst_size)``, which
    is torch's legacy ``nearest`` mode."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    y = F.interpolate(x[None, None].float(), size=tuple(size), mode="nearest")[0, 0]
    return y.to(x.dtype)


def random_scale(
    rng: np.random.Generator, img_scale: tuple[int, int] = SEG_IMG_SCALE, ratio_range=SEG_RATIO_RANGE
) -> tuple[int, int]:
    """mmseg ``Resize.random_sample_ratio``: ``ratio = random_sample() * (max - min) + min``, scale
    ``(int(img_scale[0] * ratio), int(img_scale[1] * ratio))``."""
    lo, hi = ratio_range
    ratio = rng.random() * (hi - lo) + lo
    return int(img_scale[0] * ratio), int(img_scale[1] * ratio)


def random_crop_bbox(rng: np.random.Generator, shape: tuple[int, int], crop: tuple[int, int]) -> tuple[int, ...]:
    """mmseg/toolbox ``RandomCrop.get_crop_bbox``: offsets ``randint(0, margin + 1)`` (h first, then w); a side
    shorter than the crop keeps its whole length (the slice is clipped). Returns ``(y1, y2, x1, x2)``."""
    margin_h, margin_w = max(shape[0] - crop[0], 0), max(shape[1] - crop[1], 0)
    off_h = int(rng.integers(0, margin_h + 1))
    off_w = int(rng.integers(0, margin_w + 1))
    return off_h, off_h + crop[0], off_w, off_w + crop[1]


def _crop(x: Tensor, bbox: tuple[int, ...]) -> Tensor:
    y1, y2, x1, x2 = bbox
    return x[y1:y2, x1:x2]


def hflip(x: Tensor) -> Tensor:
    """``mmcv.imflip(direction="horizontal")`` of ``[H, W, ...]``: mirror the columns."""
    return x.flip(1)


def pad_to(
    image: Tensor, labels: Tensor | None, size: tuple[int, int], *, seg_pad_val: int = SEG_SEG_PAD_VAL
) -> tuple[Tensor, Tensor | None]:
    """mmseg ``Pad(size)`` via ``mmcv.impad(shape=...)``: pad at the **bottom and right** to ``size``.

    ``image float [3, h, w]`` (0..1) is padded with the ImageNet mean colour (the official ``pad_val=0`` after
    ``Normalize``), ``labels [h, w]`` with ``seg_pad_val`` (255 = ignore)."""
    h, w = image.shape[-2:]
    ph, pw = size[0] - h, size[1] - w
    if ph < 0 or pw < 0:
        raise ValueError(f"cannot pad {h}x{w} to the smaller {size}")
    if ph == 0 and pw == 0:
        return image, labels
    out = _mean_fill(image.device).expand(3, size[0], size[1]).clone()
    out[:, :h, :w] = image
    lab = None
    if labels is not None:
        lab = torch.full(tuple(size), seg_pad_val, dtype=labels.dtype, device=labels.device)
        lab[:h, :w] = labels
    return out, lab


def rotation_matrix(height: int, width: int, angle: float) -> np.ndarray:
    """``[2, 3]`` forward (source -> destination) matrix of ``mmcv.imrotate(img, angle)``: centre
    ``((w - 1) / 2, (h - 1) / 2)``, ``cv2.getRotationMatrix2D(center, -angle, 1)``; positive ``angle`` = clockwise."""
    cx, cy = (width - 1) * 0.5, (height - 1) * 0.5
    a = math.radians(-angle)
    alpha, beta = math.cos(a), math.sin(a)
    return np.array(
        [[alpha, beta, (1 - alpha) * cx - beta * cy], [-beta, alpha, beta * cx + (1 - alpha) * cy]], dtype=np.float64
    )


def warp_affine(x: Tensor, matrix: np.ndarray, mode: str, border_value: float = 0.0) -> Tensor:
    """``cv2.warpAffine(x, matrix, (w, h), borderValue=border_value)`` of ``x [C, H, W]`` (float): each output pixel
    samples the source at ``matrix^-1 @ (x, y, 1)`` (pixel-index coordinates), bilinear or nearest, with a constant
    border (bilinear blends with the border value at the edge, as OpenCV's BORDER_CONSTANT)."""
    c, h, w = x.shape
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)[:2]  # destination -> source
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=x.device),
        torch.arange(w, dtype=torch.float64, device=x.device),
        indexing="ij",
    )
    inv_t = torch.as_tensor(inv, dtype=torch.float64, device=x.device)
    sx = inv_t[0, 0] * xs + inv_t[0, 1] * ys + inv_t[0, 2]
    sy = inv_t[1, 0] * xs + inv_t[1, 1] * ys + inv_t[1, 2]
    # align_corners=True: -1 and +1 are the centres of the first and last pixels, i.e. pixel-index coordinates.
    gx = 2.0 * sx / max(w - 1, 1) - 1.0
    gy = 2.0 * sy / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1)[None].to(torch.float32)  # [1, H, W, 2]
    shifted = x[None].float() - border_value  # so that zero padding is the border value
    out = F.grid_sample(shifted, grid, mode=mode, padding_mode="zeros", align_corners=True)[0] + border_value
    return out


def rotate_image(image_u8: Tensor, angle: float, border_value: int = 0) -> Tensor:
    """``mmcv.imrotate(img, angle, border_value=0)`` (bilinear) of a ``uint8 [H, W, 3]`` image, rounded to uint8."""
    h, w = image_u8.shape[:2]
    out = warp_affine(image_u8.permute(2, 0, 1).float(), rotation_matrix(h, w, angle), "bilinear", border_value)
    return out.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()


def rotate_nearest(x: Tensor, angle: float, border_value: float = 0.0) -> Tensor:
    """``mmcv.imrotate(x, angle, border_value, interpolation="nearest")`` of ``[H, W]`` depth (or labels)."""
    h, w = x.shape
    out = warp_affine(x[None].float(), rotation_matrix(h, w, angle), "nearest", border_value)[0]
    return out.to(x.dtype)


# ---------------------------------------------------------------------------------------------------------
# Colour: OpenCV's 8-bit HSV conversions and mmseg's PhotoMetricDistortion
# ---------------------------------------------------------------------------------------------------------

_HSV_SHIFT = 12


@functools.lru_cache(maxsize=1)
def _hsv_tables() -> tuple[np.ndarray, np.ndarray]:
    """OpenCV ``RGB2HSV_b`` tables: ``sdiv[v] = round((255 << 12) / v)``, ``hdiv[d] = round((180 << 12) / (6 d))``."""
    i = np.arange(256, dtype=np.float64)
    with np.errstate(divide="ignore"):
        sdiv = np.where(i > 0, np.rint((255 << _HSV_SHIFT) / i), 0).astype(np.int64)
        hdiv = np.where(i > 0, np.rint((180 << _HSV_SHIFT) / (6.0 * i)), 0).astype(np.int64)
    return sdiv, hdiv


def rgb_to_hsv_u8(image_u8: Tensor) -> Tensor:
    """``cv2.cvtColor(COLOR_RGB2HSV)`` of ``uint8 [H, W, 3]``: H in 0..179 (degrees / 2), S and V in 0..255, with
    OpenCV's fixed-point arithmetic (``mmcv.bgr2hsv`` on the BGR image gives the same HSV)."""
    sdiv_np, hdiv_np = _hsv_tables()
    sdiv = torch.as_tensor(sdiv_np, device=image_u8.device)
    hdiv = torch.as_tensor(hdiv_np, device=image_u8.device)
    x = image_u8.long()
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = torch.maximum(torch.maximum(r, g), b)
    vmin = torch.minimum(torch.minimum(r, g), b)
    diff = v - vmin
    half = 1 << (_HSV_SHIFT - 1)
    s = (diff * sdiv[v] + half) >> _HSV_SHIFT
    h = torch.where(v == r, g - b, torch.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = torch.div(h * hdiv[diff] + half, 1 << _HSV_SHIFT, rounding_mode="floor")  # arithmetic shift
    h = torch.where(h < 0, h + 180, h)
    return torch.stack([h, s, v], dim=-1).to(torch.uint8)


_SECTORS = ((1, 3, 0), (1, 0, 2), (3, 0, 1), (0, 2, 1), (0, 1, 3), (2, 1, 0))  # OpenCV HSV2RGB_f: (b, g, r) columns


def hsv_to_rgb_u8(hsv_u8: Tensor) -> Tensor:
    """``cv2.cvtColor(COLOR_HSV2RGB)`` of ``uint8 [H, W, 3]`` (H 0..179): OpenCV's float sector formula
    (``HSV2RGB_f``), then ``saturate_cast<uchar>(x * 255)`` (round half to even)."""
    x = hsv_u8.float()
    h = x[..., 0] * (6.0 / 180.0)
    s = x[..., 1] * (1.0 / 255.0)
    v = x[..., 2] * (1.0 / 255.0)
    h = torch.remainder(h, 6.0)
    sector = torch.floor(h)
    f = h - sector
    sector = sector.long().clamp(0, 5)
    tab = torch.stack([v, v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))], dim=-1)  # [H, W, 4]
    idx = torch.as_tensor(_SECTORS, device=hsv_u8.device)[sector]  # [H, W, 3]: (b, g, r) -> tab index
    bgr = torch.gather(tab, -1, idx)
    rgb = bgr.flip(-1)
    rgb = torch.where((s == 0)[..., None], v[..., None].expand_as(rgb), rgb)
    return torch.round(rgb * 255.0).clamp(0, 255).to(torch.uint8)


def _convert(x: Tensor, alpha: float = 1.0, beta: float = 0.0) -> Tensor:
    """mmseg ``PhotoMetricDistortion.convert``: ``float32 * alpha + beta``, clip to 0..255, ``astype(uint8)``
    (truncation)."""
    y = x.float() * np.float32(alpha) + np.float32(beta)
    return y.clamp(0, 255).to(torch.uint8)


def photometric_distortion(
    image_u8: Tensor,
    rng: np.random.Generator,
    *,
    brightness_delta: int = PMD_BRIGHTNESS_DELTA,
    contrast_range: tuple[float, float] = PMD_CONTRAST_RANGE,
    saturation_range: tuple[float, float] = PMD_SATURATION_RANGE,
    hue_delta: int = PMD_HUE_DELTA,
) -> Tensor:
    """mmseg ``PhotoMetricDistortion.__call__`` on a ``uint8 [H, W, 3]`` image, in its order and probabilities:

    1. brightness: ``if randint(2)``: add ``uniform(-32, 32)``;
    2. ``mode = randint(2)``; ``mode == 1``: contrast now (``if randint(2)``: multiply by ``uniform(0.5, 1.5)``);
    3. saturation: ``if randint(2)``: to HSV, S *= ``uniform(0.5, 1.5)``, back to RGB;
    4. hue: ``if randint(2)``: to HSV, ``H = (H + randint(-18, 18)) % 180`` (``randint`` excludes 18), back;
    5. ``mode == 0``: contrast now.

    Each step truncates to uint8 (``convert``); saturation and hue each do their own HSV round trip. Pointwise:
    the geometry is untouched. (The docstring's "randomly swap channels" is not in the code, so not here.)
    """
    img = image_u8

    def contrast(im: Tensor) -> Tensor:
        if rng.integers(2):
            return _convert(im, alpha=rng.uniform(contrast_range[0], contrast_range[1]))
        return im

    if rng.integers(2):  # brightness
        img = _convert(img, beta=rng.uniform(-brightness_delta, brightness_delta))
    mode = int(rng.integers(2))
    if mode == 1:
        img = contrast(img)
    if rng.integers(2):  # saturation
        hsv = rgb_to_hsv_u8(img)
        sat = _convert(hsv[..., 1], alpha=rng.uniform(saturation_range[0], saturation_range[1]))
        img = hsv_to_rgb_u8(torch.stack([hsv[..., 0], sat, hsv[..., 2]], dim=-1))
    if rng.integers(2):  # hue
        hsv = rgb_to_hsv_u8(img)
        hue = torch.remainder(hsv[..., 0].long() + int(rng.integers(-hue_delta, hue_delta)), 180).to(torch.uint8)
        img = hsv_to_rgb_u8(torch.stack([hue, hsv[..., 1], hsv[..., 2]], dim=-1))
    if mode == 0:
        img = contrast(img)
    return img


def color_aug(
    image: Tensor,
    rng: np.random.Generator,
    *,
    prob: float = COLOR_AUG_PROB,
    gamma_range: tuple[float, float] = COLOR_GAMMA_RANGE,
    brightness_range: tuple[float, float] = COLOR_BRIGHTNESS_RANGE,
    color_range: tuple[float, float] = COLOR_COLOR_RANGE,
) -> Tensor:
    """Toolbox ``ColorAug.__call__`` on the 0..255 image ``[H, W, 3]``: ``if rand() < prob``:
    ``img ** gamma * brightness * colour[c]``, clipped to 0..255 (float, not rounded).

    Faithful quirk: the official pipeline applies the gamma to **0..255** values (the image is still the decoded
    uint8 array), not to 0..1 as AdaBins/BTS do, so ``gamma = 1.1`` brightens mid-tones by up to ~1.7x (and the clip
    saturates them) rather than darkening slightly. Returns float32 0..255."""
    x = image.double()
    if rng.random() < prob:
        gamma = rng.uniform(min(gamma_range), max(gamma_range))
        brightness = rng.uniform(min(brightness_range), max(brightness_range))
        colors = rng.uniform(min(color_range), max(color_range), size=3)
        x = x**gamma * brightness
        x = x * torch.as_tensor(colors, dtype=torch.float64, device=x.device)
        x = x.clamp(0, 255)
    return x.float()


# ---------------------------------------------------------------------------------------------------------
# The two pipelines
# ---------------------------------------------------------------------------------------------------------


def seg_random_crop(
    image_u8: Tensor,
    labels: Tensor,
    rng: np.random.Generator,
    crop_size: tuple[int, int] = SEG_CROP,
    cat_max_ratio: float = SEG_CAT_MAX_RATIO,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[Tensor, Tensor]:
    """mmseg ``RandomCrop.__call__``: draw a box; with ``cat_max_ratio < 1`` retry up to 10 times until the crop
    holds more than one class and no class covers ``>= cat_max_ratio`` of its non-ignored pixels; after 10
    failures the 11th box is used unchecked (as officially)."""
    shape = tuple(image_u8.shape[:2])
    bbox = random_crop_bbox(rng, shape, crop_size)
    if cat_max_ratio < 1.0:
        for _ in range(SEG_CAT_TRIES):
            cnt = torch.bincount(_crop(labels, bbox).reshape(-1).clamp(0, 255), minlength=256)
            cnt[ignore_index] = 0
            cnt = cnt[cnt > 0]
            if cnt.numel() > 1 and float(cnt.max()) / float(cnt.sum()) < cat_max_ratio:
                break
            bbox = random_crop_bbox(rng, shape, crop_size)
    return _crop(image_u8, bbox), _crop(labels, bbox)


def seg_train_augment(
    image: Any,
    labels: Any,
    rng: np.random.Generator,
    *,
    img_scale: tuple[int, int] = SEG_IMG_SCALE,
    ratio_range: tuple[float, float] = SEG_RATIO_RANGE,
    crop_size: tuple[int, int] = SEG_CROP,
    cat_max_ratio: float = SEG_CAT_MAX_RATIO,
    flip_prob: float = SEG_FLIP_PROB,
    photometric: bool = True,
    ignore_index: int = IGNORE_INDEX,
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """The official segmentation training pipeline on one sample (FiT3D sem config :15-20):

    ``Resize(img_scale=(2048, 512), ratio_range=(0.5, 2.0))`` (keep ratio: long side <= 2048 r and short side <=
    512 r, whichever is tighter; image bilinear, labels nearest) -> ``RandomCrop(512, cat_max_ratio=0.75)`` ->
    ``RandomFlip(0.5)`` -> ``PhotoMetricDistortion`` -> (``Normalize``) -> ``Pad(512, pad_val=0,
    seg_pad_val=255)``.

    ``image`` uint8 ``[H, W, 3]`` (or float 0..1), ``labels`` int64 ``[H, W]`` (255 ignore). Returns
    ``(image float32 [3, ch, cw] in 0..1, labels int64 [ch, cw])`` with ``(ch, cw) = crop_size``.
    ``photometric=False`` skips the colour step (tests)."""
    img = as_uint8_image(image, device)
    lab = torch.as_tensor(labels, device=img.device).long()
    if tuple(lab.shape) != tuple(img.shape[:2]):
        raise ValueError(f"labels {tuple(lab.shape)} and image {tuple(img.shape[:2])} differ in size")
    scale = random_scale(rng, img_scale, ratio_range)
    new_hw = rescale_size(img.shape[0], img.shape[1], scale)
    img, lab = resize_image(img, new_hw), resize_nearest(lab, new_hw)
    img, lab = seg_random_crop(img, lab, rng, crop_size, cat_max_ratio, ignore_index)
    if rng.random() < flip_prob:
        img, lab = hflip(img), hflip(lab)
    if photometric:
        img = photometric_distortion(img, rng)
    out, lab = pad_to(to_float_chw(img), lab, crop_size)
    return out, lab


def seg_test_resize(image: Any, scale: tuple[int, int] = SEG_TEST_SCALE, device=None) -> Tensor:
    """The official segmentation test transform: ``Resize(keep_ratio=True)`` to ``(2048, 512)`` (sem config :28-32),
    bilinear, uint8. Returns ``float32 [3, h, w]`` in 0..1."""
    img = as_uint8_image(image, device)
    return to_float_chw(resize_image(img, rescale_size(img.shape[0], img.shape[1], scale)))


def scaled_box(box: tuple[int, int, int, int], size: tuple[int, int], ref: tuple[int, int]) -> tuple[int, ...]:
    """``(top, bottom, left, right)`` given for an image of size ``ref``, scaled to ``size`` (identity at ``ref``):
    the official NYU crops assume 480x640; smaller fake data gets the proportional box (an extension)."""
    if tuple(size) == tuple(ref):
        return box
    t, b, left, r = box

    def sc(v: int, n: int, m: int) -> int:
        return int(math.floor(v * n / m + 0.5))

    return sc(t, size[0], ref[0]), sc(b, size[0], ref[0]), sc(left, size[1], ref[1]), sc(r, size[1], ref[1])


def nyu_crop(image: Tensor, depth: Tensor, box=NYU_TRAIN_CROP, ref_size=NYU_SIZE) -> tuple[Tensor, Tensor]:
    """Toolbox ``NYUCrop(depth=True)``: ``img[45:472, 43:608]`` and ``depth_gt[45:472, 43:608]`` (at 480x640)."""
    t, b, left, r = scaled_box(box, tuple(image.shape[:2]), ref_size)
    return image[t:b, left:r], depth[t:b, left:r]


def depth_train_augment(
    image: Any,
    depth: Any,
    rng: np.random.Generator,
    *,
    nyu: bool = False,
    crop_size: tuple[int, int] = DEPTH_CROP,
    rotate_prob: float = DEPTH_ROTATE_PROB,
    rotate_degree: float = DEPTH_ROTATE_DEGREE,
    flip_prob: float = DEPTH_FLIP_PROB,
    color_prob: float = COLOR_AUG_PROB,
    gamma_range: tuple[float, float] = COLOR_GAMMA_RANGE,
    brightness_range: tuple[float, float] = COLOR_BRIGHTNESS_RANGE,
    color_range: tuple[float, float] = COLOR_COLOR_RANGE,
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """The official depth training pipeline on one sample (FiT3D depth config :12-22; ScanNet++ :14-24):

    (NYU only: ``NYUCrop`` ``[45:472, 43:608]``) -> ``RandomRotate(prob=0.5, degree=2.5)`` (image bilinear with
    border 0, depth nearest with border 0 = invalid; the angle is drawn even when not rotating, as officially) ->
    ``RandomFlip(0.5)`` -> ``RandomCrop((416, 544))`` -> ``ColorAug(prob=0.5, ...)`` -> (``Normalize``).

    ``image`` uint8 ``[H, W, 3]`` (or float 0..1), ``depth`` float ``[H, W]`` metres (0 invalid). Returns
    ``(image float32 [3, h, w] in 0..1, depth float32 [h, w])``, ``(h, w) = min(crop_size, size)`` per side."""
    img = as_uint8_image(image, device)
    dep = torch.as_tensor(depth, device=img.device).float()
    if tuple(dep.shape) != tuple(img.shape[:2]):
        raise ValueError(f"depth {tuple(dep.shape)} and image {tuple(img.shape[:2])} differ in size")
    if nyu:
        img, dep = nyu_crop(img, dep)
    rotate = rng.random() < rotate_prob
    degree = rng.uniform(-rotate_degree, rotate_degree)
    if rotate:
        img, dep = rotate_image(img, degree, 0), rotate_nearest(dep, degree, 0.0)
    if rng.random() < flip_prob:
        img, dep = hflip(img), hflip(dep)
    bbox = random_crop_bbox(rng, tuple(img.shape[:2]), crop_size)
    img, dep = _crop(img, bbox), _crop(dep, bbox)
    out = color_aug(
        img,
        rng,
        prob=color_prob,
        gamma_range=gamma_range,
        brightness_range=brightness_range,
        color_range=color_range,
    )
    return to_float_chw(out), dep.contiguous()


__all__ = [
    "COLOR_AUG_PROB",
    "DEPTH_CROP",
    "NYU_TRAIN_CROP",
    "SEG_CROP",
    "SEG_IMG_SCALE",
    "SEG_TEST_SCALE",
    "as_uint8_image",
    "color_aug",
    "depth_train_augment",
    "hflip",
    "hsv_to_rgb_u8",
    "nyu_crop",
    "pad_to",
    "photometric_distortion",
    "random_crop_bbox",
    "random_scale",
    "rescale_size",
    "resize_image",
    "resize_nearest",
    "rgb_to_hsv_u8",
    "rotate_image",
    "rotate_nearest",
    "rotation_matrix",
    "scaled_box",
    "seg_random_crop",
    "seg_test_resize",
    "seg_train_augment",
    "to_float_chw",
    "warp_affine",
]
