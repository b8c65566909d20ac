"""Readers for FiT3D's linear-probe evaluation data (``eval_data/{nyuv2,nyu,scannetpp}``) in the official layouts.

Why: the course's probes (:mod:`fit3d_helpers.probe`) run on our own scenes by default; to compare with the paper's
tables they must run on the paper's evaluation sets, read exactly as the official code reads them. Every convention
below is copied from ywyue/FiT3D (commit 1d7c532) or, where FiT3D's copy is incomplete, from the upstream libraries
it vendors; each constant cites its file and line.

Official layouts (root = the folder the config calls ``data_root``):

* ``eval_data/nyuv2`` -- NYUv2 semantic segmentation, 13 classes, mmseg ``CustomDataset`` layout
  (``evaluation/configs/vits_nyu_sem_linear_config.py:3-4, 46-47, 53-54``)::

      <root>/images/{training,validation}/**/<name>.png        # img_suffix='.png'      (nyuv2.py:33)
      <root>/annotations/{training,validation}/**/<name>.png   # seg_map_suffix='.png'  (nyuv2.py:34)

  No split file: mmseg scans ``img_dir`` recursively for the suffix and pairs each image with the annotation at the
  same relative path, suffix swapped. Label PNG: 0 = unlabelled, k = class k-1 after ``reduce_zero_label=True``
  (nyuv2.py:35; config :14).
* ``eval_data/nyu`` -- NYU depth v2 (``vits_nyu_depth_linear_config.py:2-3``). Split files ``<root>/nyu_train.txt``
  and ``<root>/nyu_test.txt`` (config :106, :117, :128); one sample a line, ``<img> <depth> [<focal>]`` separated
  by spaces, e.g. ``/kitchen_0028b/rgb_00045.jpg /kitchen_0028b/sync_depth_00045.png 518.8579`` (nyu.py:55-58).
  One leading ``/`` is stripped and the path joined to the root (nyu.py:24-27, 129, 132-134); a depth of ``None``
  drops the line (nyu.py:125-127); samples are sorted by image path (nyu.py:140). Depth PNG / 1000 = metres
  (config ``depth_scale=1000`` :105; nyu.py:272); valid where ``0.001 < d < 10`` (config :110-111; nyu.py:228-230)
  inside the Eigen crop ``[45:471, 41:601]`` (config ``eigen_crop=True`` :109; nyu.py:243).
* ``eval_data/scannetpp`` -- ScanNet++ (rendered from the meshes). Segmentation: same mmseg layout as NYUv2 with
  ``.JPG`` images and ``.png`` annotations, 100 classes (``mmseg/datasets/scannetpp.py:20-34, 59-61``;
  ``vits_scannetpp_sem_linear_config.py:3-4, 46-47, 53-54``). Depth: split files ``<root>/scannetpp_train.txt`` /
  ``<root>/scannetpp_val.txt`` (``vits_scannetpp_depth_linear_config.py:108, 119, 130``) read by the same code as
  NYU (``evaluation/depth/datasets/scannetppdepth.py``), ``depth_scale=1000`` (:107), valid ``0.001 < d < 20``
  (:112-113), no crop (:110-111).

  **Not stored officially:** the paths inside the ScanNet++ depth split files and the focal column. The commented
  visualisation code (scannetppdepth.py ``strs[-3] + '_' + strs[-1]``) suggests ``<scene_id>/<folder>/<name>.JPG``;
  the official reader only needs tokens 0 and 1, so any root-relative path works. We accept paths with or without
  the leading ``/`` (both are joined to the root, as officially) and, as an extension, a true absolute path that
  exists on disk when the root-joined one does not. The focal column is optional.

What the official code does that we do differently (only where it would otherwise crash or silently corrupt):
blank lines in split files are skipped (officially an IndexError); fields may be separated by any whitespace
(officially exactly one space); a 16-bit label PNG with ids > 255 or a colour label PNG is an error (mmseg would
wrap ids modulo 256 / fail later); images and their label/depth maps must have the same size.

Data: the processed ``eval_data`` is linked from the FiT3D README (not from the versions of the README stored for
this course, which predate the evaluation release). :func:`write_fake_nyuv2`, :func:`write_fake_nyu` and
:func:`write_fake_scannetpp` write tiny deterministic stand-ins in exactly these layouts for tests and offline demos.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .data import SceneError
from .probe_data import ProbeData

IGNORE_INDEX = 255  # mmseg CustomDataset ignore_index default; CrossEntropyLoss ignore_index default

# ywyue/FiT3D@1d7c532 mmsegmentation/mmseg/datasets/nyuv2.py:21-24 (NYUV2Dataset.CLASSES), in this order.
NYUV2_CLASSES: tuple[str, ...] = (
    "bed",
    "books",
    "ceiling",
    "chair",
    "floor",
    "furniture",
    "objects",
    "painting",
    "sofa",
    "table",
    "tv",
    "wall",
    "window",
)

# ywyue/FiT3D@1d7c532 mmsegmentation/mmseg/datasets/scannetpp.py:20-34 (ScanNetPPDataset.CLASSES), in this order.
SCANNETPP_CLASSES: tuple[str, ...] = (
    "wall",
    "ceiling",
    "floor",
    "table",
    "door",
    "ceiling lamp",
    "cabinet",
    "blinds",
    "curtain",
    "chair",
    "storage cabinet",
    "office chair",
    "bookshelf",
    "whiteboard",
    "window",
    "box",
    "window frame",
    "monitor",
    "shelf",
    "doorframe",
    "pipe",
    "heater",
    "kitchen cabinet",
    "sofa",
    "windowsill",
    "bed",
    "shower wall",
    "trash can",
    "book",
    "plant",
    "blanket",
    "tv",
    "computer tower",
    "kitchen counter",
    "refrigerator",
    "jacket",
    "electrical duct",
    "sink",
    "bag",
    "picture",
    "pillow",
    "towel",
    "suitcase",
    "backpack",
    "crate",
    "keyboard",
    "rack",
    "toilet",
    "paper",
    "printer",
    "poster",
    "painting",
    "microwave",
    "board",
    "shoes",
    "socket",
    "bottle",
    "bucket",
    "cushion",
    "basket",
    "shoe rack",
    "telephone",
    "file folder",
    "cloth",
    "blind rail",
    "laptop",
    "plant pot",
    "exhaust fan",
    "cup",
    "coat hanger",
    "light switch",
    "speaker",
    "table lamp",
    "air vent",
    "clothes hanger",
    "kettle",
    "smoke detector",
    "container",
    "power strip",
    "slippers",
    "paper bag",
    "mouse",
    "cutting board",
    "toilet paper",
    "paper towel",
    "pot",
    "clock",
    "pan",
    "tap",
    "jar",
    "soap dispenser",
    "binder",
    "bowl",
    "tissue box",
    "whiteboard eraser",
    "toilet brush",
    "spray bottle",
    "headphones",
    "stapler",
    "marker",
)

# File suffixes fixed by the dataset classes (mmseg CustomDataset pairs <name><img_suffix> with <name><seg_suffix>).
NYUV2_IMG_SUFFIX, NYUV2_SEG_SUFFIX = ".png", ".png"  # nyuv2.py:33-34 (its docstring's '.jpg', :18, is wrong)
SCANNETPP_IMG_SUFFIX, SCANNETPP_SEG_SUFFIX = ".JPG", ".png"  # scannetpp.py:59-60 (case-sensitive match)

# Depth conventions of the official configs / dataset classes.
DEPTH_SCALE = 1000.0  # PNG value / 1000 = metres: vits_{nyu,scannetpp}_depth_linear_config.py depth_scale=1000
MIN_DEPTH = 1e-3  # min_depth=0.001 in both depth configs (nyu :110, scannetpp :112)
NYU_MAX_DEPTH = 10.0  # vits_nyu_depth_linear_config.py:111
SCANNETPP_MAX_DEPTH = 20.0  # vits_scannetpp_depth_linear_config.py:113
# Eigen crop of the NYU evaluation: rows 45:471, columns 41:601 of the 480x640 ground truth (nyu.py:243), used
# because the NYU config sets eigen_crop=True (vits_nyu_depth_linear_config.py:109, 120, 131).
NYU_EIGEN_CROP = (45, 471, 41, 601)  # (top, bottom, left, right), half-open
NYU_SIZE = (480, 640)  # (H, W): test img_scale=(480, 640) (vits_nyu_depth_linear_config.py:46)
# NYUCrop used in NYU *training* (config :12): depth_gt[45:472, 43:608]. Its code is not stored in FiT3D; this is
# zhyever/Monocular-Depth-Estimation-Toolbox depth/datasets/pipelines/transforms.py (NYUCrop), which FiT3D vendors.
NYU_TRAIN_CROP = (45, 472, 43, 608)
SCANNETPP_DEPTH_SIZE = (584, 876)  # (H, W): test img_scale=(584, 876) (vits_scannetpp_depth_linear_config.py:48)
NYU_FOCAL = 518.8579  # the focal column of the NYU split files (nyu.py:58); unused by the official reader

EVAL_SETS = ("nyuv2", "nyu", "scannetpp_seg", "scannetpp_depth")
_TASKS = ("seg", "depth", "both")
_DEPTH_MASKS = ("none", "range", "eval")


class EvalDataError(SceneError):
    """Missing or malformed evaluation data. The message names the file and says how to fix it."""


def _get_data_hint(path: Path) -> str:
    return (
        f"Fix: download the processed evaluation data linked in the FiT3D README (https://github.com/ywyue/FiT3D)"
        f" and unpack it so that {path} exists."
    )


# ---------------------------------------------------------------------------------------------------------
# The dataset type
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalItem:
    """One sample: file paths (absolute), and the focal length column of a depth split file when present."""

    image_path: Path
    label_path: Path | None = None
    depth_path: Path | None = None
    focal: float | None = None
    source: str = ""  # where the sample was listed, e.g. "nyu_test.txt:12" (for error messages)


@dataclass
class EvalSet:
    """An evaluation split with the official reading conventions attached, so every consumer reads it the same way.

    ``load(i)`` gives one sample as numpy arrays; ``stack(...)`` gives a small set as tensors shaped like
    :class:`fit3d_helpers.probe_data.ProbeData` (images ``[N, H, W, 3]`` 0..1, labels ``[N, H, W]`` int64 with 255 =
    ignore, depth ``[N, H, W]`` metres with 0 = invalid); ``probe_data(...)`` wraps that in a ``ProbeData``.
    """

    name: str  # "nyuv2" | "nyu" | "scannetpp_seg" | "scannetpp_depth" (or anything for hand-made sets)
    task: str  # "seg" | "depth" | "both"
    classes: tuple[str, ...]
    items: list[EvalItem] = field(repr=False)
    root: Path | None = None
    split: str = ""
    depth_scale: float = DEPTH_SCALE
    ignore_index: int = IGNORE_INDEX
    reduce_zero_label: bool = False
    min_depth: float = MIN_DEPTH
    max_depth: float = NYU_MAX_DEPTH
    eval_crop: tuple[int, int, int, int] | None = None  # (top, bottom, left, right) of the depth evaluation mask
    eval_crop_size: tuple[int, int] | None = None  # (H, W) the crop indices refer to (NYU: 480x640)
    train_crop: tuple[int, int, int, int] | None = None  # NYUCrop of the official training pipeline (not applied)
    test_size: tuple[int, int] | None = None  # (H, W) official test scale of the depth configs, None for seg
    n_skipped: int = 0  # split-file lines dropped because their depth is "None" (as the official reader does)

    def __post_init__(self) -> None:
        if self.task not in _TASKS:
            raise ValueError(f"task must be one of {_TASKS}, got {self.task!r}")
        self.classes = tuple(self.classes)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        crop = f", eval_crop={self.eval_crop}" if self.eval_crop else ""
        depth = f", depth/{self.depth_scale:g} in ({self.min_depth:g}, {self.max_depth:g}) m" if self.has_depth else ""
        return (
            f"EvalSet({self.name!r}, split={self.split!r}, task={self.task!r}, n={len(self)}, "
            f"classes={len(self.classes)}{depth}{crop}, root={str(self.root)!r})"
        )

    @property
    def has_labels(self) -> bool:
        return self.task in ("seg", "both")

    @property
    def has_depth(self) -> bool:
        return self.task in ("depth", "both")

    def subset(self, indices: Sequence[int] | int) -> EvalSet:
        """The same set restricted to ``indices`` (or the first ``n`` samples for an int): quick looks at big splits."""
        n = len(self)
        if isinstance(indices, int):
            if indices < 0:
                raise ValueError(f"{self.name} ({self.split}): subset(n) takes a count of at least 0, got {indices}")
            return replace(self, items=self.items[: min(indices, n)])
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not -n <= i < n]
        if bad:
            raise IndexError(
                f"{self.name} ({self.split}) has {n} samples (indices 0..{n - 1}); subset got {bad[:5]}. "
                f"Fix: pick indices below {n}, or subset({n}) for all of them."
            )
        return replace(self, items=[self.items[i] for i in idx])

    # --- one sample ----------------------------------------------------------------------------------------

    def load(self, i: int) -> dict[str, Any]:
        """Sample ``i``: ``image`` uint8 [H, W, 3] RGB, ``labels`` int64 [H, W] or None (reduce_zero_label applied as
        mmseg does), ``depth`` float32 [H, W] metres or None (PNG / depth_scale; 0 = invalid), ``focal``, ``path``."""
        item = self.items[i]
        image = read_image(item.image_path, item.source)  # [H, W, 3] uint8
        labels = depth = None
        if self.has_labels:
            if item.label_path is None:
                raise EvalDataError(f"{self.name} sample {i} ({item.image_path}) has no annotation file.")
            labels = read_labels(item.label_path, self.reduce_zero_label, item.source)  # [H, W] int64
            _check_same_size(image, labels, item.image_path, item.label_path)
        if self.has_depth:
            if item.depth_path is None:
                raise EvalDataError(f"{self.name} sample {i} ({item.image_path}) has no depth file.")
            depth = read_depth(item.depth_path, self.depth_scale, item.source)  # [H, W] float32
            _check_same_size(image, depth, item.image_path, item.depth_path)
        return {"image": image, "labels": labels, "depth": depth, "focal": item.focal, "path": item.image_path}

    def crop_mask(self, height: int, width: int) -> np.ndarray:
        """bool [H, W]: True inside the official evaluation crop (all True without one).

        At the crop's reference size (NYU 480x640) the official indices are used as they are (nyu.py:243); at any
        other size (fake or resized data) they are scaled proportionally -- an extension, the official code only
        ever sees 480x640.
        """
        mask = np.zeros((height, width), dtype=bool)
        if self.eval_crop is None:
            mask[:] = True
            return mask
        top, bottom, left, right = self.eval_crop
        if self.eval_crop_size is not None and (height, width) != tuple(self.eval_crop_size):
            ref_h, ref_w = self.eval_crop_size
            top, bottom = (_scale_index(v, height, ref_h) for v in (top, bottom))
            left, right = (_scale_index(v, width, ref_w) for v in (left, right))
        mask[top:bottom, left:right] = True
        return mask

    def eval_mask(self, depth: np.ndarray) -> np.ndarray:
        """bool [H, W]: the pixels the official depth metrics use: ``min_depth < d < max_depth`` (open interval,
        nyu.py:228-230) and inside the evaluation crop."""
        depth = np.asarray(depth)
        valid = (depth > self.min_depth) & (depth < self.max_depth)
        return valid & self.crop_mask(*depth.shape[-2:])

    # --- a small set as tensors ----------------------------------------------------------------------------

    def stack(
        self,
        indices: Sequence[int] | None = None,
        size: tuple[int, int] | None = None,
        depth_mask: str = "range",
        max_bytes: float = 2e9,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Stack samples into tensors for the probes: (images float32 [N, H, W, 3] in 0..1, labels int64 [N, H, W]
        or None, depth float32 [N, H, W] metres or None).

        ``size=(H, W)`` resizes (images bilinear, labels and depth nearest, so no class or depth is invented);
        without it every sample must already share one size. ``depth_mask`` zeroes depth that the official
        evaluation does not use, at the native resolution before any resize: ``"none"`` keeps the raw ground truth,
        ``"range"`` keeps ``min_depth < d < max_depth`` (like ``probe_data``'s ``max_depth``), ``"eval"`` also
        applies the evaluation crop (NYU's Eigen crop).
        """
        if depth_mask not in _DEPTH_MASKS:
            raise ValueError(f"depth_mask must be one of {_DEPTH_MASKS}, got {depth_mask!r}")
        idx = list(range(len(self))) if indices is None else [int(i) for i in indices]
        if not idx:
            raise EvalDataError(f"{self.name} ({self.split}): nothing to stack (0 samples selected).")
        if size is not None:
            size = (int(size[0]), int(size[1]))
            est = len(idx) * size[0] * size[1] * 24  # bytes: float32 RGB + int64 labels + float32 depth
            if est > max_bytes:
                raise EvalDataError(
                    f"{self.name}: stacking {len(idx)} samples at {size} needs ~{est / 1e9:.1f} GB; "
                    "pass fewer indices (e.g. subset(64)) or a smaller size, or raise max_bytes."
                )
        images, labels, depths = [], [], []
        first_shape, first_path = None, None
        for n, i in enumerate(idx):
            s = self.load(i)
            img, lab, dep = s["image"], s["labels"], s["depth"]
            if lab is not None:
                self.check_label_ids(lab, self.items[i].label_path)
            if dep is not None and depth_mask != "none":
                keep = self.eval_mask(dep) if depth_mask == "eval" else (dep > self.min_depth) & (dep < self.max_depth)
                dep = np.where(keep, dep, np.float32(0)).astype(np.float32)
            if size is not None:
                img, lab, dep = _resize(img, size, Image.BILINEAR), _resize(lab, size), _resize(dep, size)
            elif first_shape is None:
                first_shape, first_path = img.shape[:2], s["path"]
            elif img.shape[:2] != first_shape:
                raise EvalDataError(
                    f"{self.name}: {s['path']} is {img.shape[0]}x{img.shape[1]} but {first_path} is "
                    f"{first_shape[0]}x{first_shape[1]}; pass size=(H, W) to stack() to resize them."
                )
            if size is None and n == 0 and (est := len(idx) * img.shape[0] * img.shape[1] * 24) > max_bytes:
                raise EvalDataError(
                    f"{self.name}: stacking {len(idx)} samples of {img.shape[0]}x{img.shape[1]} "
                    f"needs ~{est / 1e9:.1f} GB; pass fewer indices (e.g. subset(64)) or size=(H, W)."
                )
            images.append(torch.from_numpy(np.ascontiguousarray(img)).float().div_(255.0))
            labels.append(None if lab is None else torch.from_numpy(np.ascontiguousarray(lab)).long())
            depths.append(None if dep is None else torch.from_numpy(np.ascontiguousarray(dep)).float())
        lab_t = torch.stack(labels) if self.has_labels else None  # [N, H, W] int64
        dep_t = torch.stack(depths) if self.has_depth else None  # [N, H, W] float32
        return torch.stack(images), lab_t, dep_t  # [N, H, W, 3] float32

    def probe_data(
        self, indices: Sequence[int] | None = None, size: tuple[int, int] | None = None, depth_mask: str = "range"
    ) -> ProbeData:
        """The stacked samples as a :class:`fit3d_helpers.probe_data.ProbeData`, so probe code runs on them unchanged.

        A seg-only set gets all-ignore labels (255) and a depth-only set all-invalid depth (0); there are no camera
        poses, so ``views`` is empty (the multi-view 3D-awareness check does not apply to these sets).
        """
        images, labels, depth = self.stack(indices, size, depth_mask)
        shape = images.shape[:3]
        if labels is None:
            labels = torch.full(shape, self.ignore_index, dtype=torch.long)
        if depth is None:
            depth = torch.zeros(shape, dtype=torch.float32)
        return ProbeData(
            images=images, labels=labels, depth=depth, scene_of=[0] * shape[0], views=[], classes=list(self.classes)
        )

    def check_label_ids(self, labels: np.ndarray, path: Path | None) -> None:
        """Raise when ``labels`` hold a class id outside this set's class table (the ignore index apart)."""
        bad = (labels != self.ignore_index) & ((labels < 0) | (labels >= len(self.classes)))
        if bad.any():
            ids = sorted({int(v) for v in np.unique(labels[bad])})[:5]
            raw = [v + 1 for v in ids] if self.reduce_zero_label else ids
            raise EvalDataError(
                f"{self.name}: annotation {path} has class ids {ids} (file values {raw}) outside the "
                f"{len(self.classes)}-class table (0..{len(self.classes) - 1}, {self.ignore_index} = ignore). "
                "Fix: use the annotations that match this dataset's class list."
            )


# ---------------------------------------------------------------------------------------------------------
# File readers (the official decoding, with clear errors)
# ---------------------------------------------------------------------------------------------------------


def read_image(path: Path, where: str = "") -> np.ndarray:
    """uint8 [H, W, 3] RGB. Official: mmcv cv2 'color' decode (BGR) then Normalize(to_rgb=True), i.e. RGB; grey
    images become 3 channels and alpha is dropped, as here."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"), dtype=np.uint8)  # writable copy
    except FileNotFoundError:
        raise EvalDataError(f"{_where(where)}image file {path} does not exist. {_get_data_hint(path)}") from None
    except Exception as exc:  # PIL raises many types for corrupt files
        raise EvalDataError(f"{_where(where)}cannot read image {path} ({exc}); re-download or re-export it.") from None


def read_labels(path: Path, reduce_zero_label: bool, where: str = "") -> np.ndarray:
    """int64 [H, W] class ids, 255 = ignore.

    Decoding as mmseg ``LoadAnnotations`` (pillow, 'unchanged', then uint8; open-mmlab/mmsegmentation@f950c44
    mmseg/datasets/pipelines/loading.py:133-135) and, with ``reduce_zero_label``, its exact uint8 arithmetic
    (:141-145): 0 -> 255, then -1, then 254 -> 255; so file value k -> k-1 and both 0 and 255 read 255.
    """
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im)
    except FileNotFoundError:
        raise EvalDataError(f"{_where(where)}annotation file {path} does not exist. {_get_data_hint(path)}") from None
    except Exception as exc:
        raise EvalDataError(f"{_where(where)}cannot read annotation {path} ({exc}); re-download it.") from None
    if arr.ndim != 2:
        raise EvalDataError(
            f"{_where(where)}annotation {path} has image mode {mode!r} ({arr.shape[-1]} channels); expected a "
            "single-channel PNG of class ids (mode 'L' or 'P'), 0 = unlabelled. Fix: convert the colour map to ids."
        )
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise EvalDataError(
            f"{_where(where)}annotation {path} has ids {int(arr.min())}..{int(arr.max())}; mmseg reads labels as uint8 "
            "and would wrap ids above 255. Fix: save the annotation as an 8-bit PNG of ids 0..255."
        )
    lab = arr.astype(np.uint8)  # [H, W]
    if reduce_zero_label:
        lab = lab.copy()
        lab[lab == 0] = 255
        lab = lab - 1  # uint8: 255 -> 254
        lab[lab == 254] = 255
    return lab.astype(np.int64)


def read_depth(path: Path, depth_scale: float, where: str = "") -> np.ndarray:
    """float32 [H, W] metres: ``np.asarray(Image.open(p), dtype=np.float32) / depth_scale`` as the official
    ``DepthLoadAnnotations`` (zhyever toolbox depth/datasets/pipelines/loading.py DepthLoadAnnotations) and
    ``pre_eval`` (nyu.py:271-273) read it. 0 (and any non-finite value) = invalid.

    The official data are 16-bit PNGs of millimetres (NYU ``sync_depth_*.png``; ``depth_scale=1000`` in both depth
    configs). The official reader would take any image and divide it by 1000, so an 8-bit PNG reads as 0-0.26 m and a
    float TIFF in metres as 0.001-0.01 m, silently; :func:`_check_depth_format` refuses both, naming the file."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im, dtype=np.float32)
    except FileNotFoundError:
        raise EvalDataError(f"{_where(where)}depth file {path} does not exist. {_get_data_hint(path)}") from None
    except Exception as exc:
        raise EvalDataError(f"{_where(where)}cannot read depth {path} ({exc}); re-download it.") from None
    _check_depth_format(arr, mode, path, depth_scale, where)
    depth = arr / np.float32(depth_scale)
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0)).astype(np.float32)


# PIL modes of integer depth maps: 16-bit PNG ("I;16", "I;16B" / "I;16L" by byte order) or 32-bit integer ("I").
DEPTH_INT_MODES = ("I;16", "I;16B", "I;16L", "I")
# A valid depth map of an indoor scene reaches beyond this (metres); below it the file is not in millimetres.
MIN_PLAUSIBLE_MAX_DEPTH = 0.3


def _check_depth_format(arr: np.ndarray, mode: str, path: Path, depth_scale: float, where: str = "") -> None:
    """Refuse depth files that are not the official format: single-channel integer (16-bit PNG) in units of
    ``1 / depth_scale`` m (millimetres for 1000) whose deepest pixel is a plausible indoor depth."""
    expected = (
        f"the official evaluation data store depth as single-channel 16-bit PNGs of depth x {depth_scale:g} "
        f"(millimetres for scale {depth_scale:g}; FiT3D vits_*_depth_linear_config.py depth_scale=1000)"
    )
    fix = "Fix: write np.round(depth_in_metres * 1000).astype(np.uint16) with PIL as a PNG."
    valid = arr[np.isfinite(arr) & (arr > 0)] if arr.size else arr
    lo, hi = (float(valid.min()), float(valid.max())) if valid.size else (0.0, 0.0)
    if arr.ndim != 2:
        raise EvalDataError(
            f"{_where(where)}depth {path} has image mode {mode!r} ({arr.shape[-1]} channels); {expected}. {fix}"
        )
    if mode not in DEPTH_INT_MODES:
        kind = {"L": "an 8-bit grey", "P": "an 8-bit palette", "1": "a 1-bit", "F": "a 32-bit float"}.get(
            mode, f"a {mode!r}"
        )
        unit = " (they look like metres)" if mode == "F" and hi <= 100 else ""
        raise EvalDataError(
            f"{_where(where)}depth {path} is {kind} image (mode {mode!r}, values {lo:g}..{hi:g}{unit}), which "
            f"would read as {lo / depth_scale:.3g}..{hi / depth_scale:.3g} m; {expected}. {fix}"
        )
    if valid.size and hi / depth_scale < MIN_PLAUSIBLE_MAX_DEPTH:
        raise EvalDataError(
            f"{_where(where)}depth {path} is 16-bit but its deepest pixel is {hi:g} = {hi / depth_scale:.3g} m: the "
            f"values are not millimetres (metres or centimetres stored as integers?); {expected}. {fix}"
        )


# ---------------------------------------------------------------------------------------------------------
# The official sets
# ---------------------------------------------------------------------------------------------------------


def nyuv2_seg(root: str | Path, split: str = "val") -> EvalSet:
    """NYUv2 13-class segmentation from ``eval_data/nyuv2`` (mmseg layout; ``split`` "train" or "val"/"test").

    ``root`` is the ``eval_data/nyuv2`` folder (its parent ``eval_data`` is accepted too).
    """
    return _mmseg_set(
        "nyuv2",
        "nyuv2",
        root,
        split,
        NYUV2_CLASSES,
        NYUV2_IMG_SUFFIX,
        NYUV2_SEG_SUFFIX,
        "vits_nyu_sem_linear_config.py",
    )


def scannetpp_seg(root: str | Path, split: str = "val") -> EvalSet:
    """ScanNet++ 100-class segmentation from ``eval_data/scannetpp`` (``.JPG`` images, ``.png`` annotations)."""
    return _mmseg_set(
        "scannetpp_seg",
        "scannetpp",
        root,
        split,
        SCANNETPP_CLASSES,
        SCANNETPP_IMG_SUFFIX,
        SCANNETPP_SEG_SUFFIX,
        "vits_scannetpp_sem_linear_config.py",
    )


def nyu_depth(root: str | Path, split: str = "test") -> EvalSet:
    """NYU depth from ``eval_data/nyu`` (split files ``nyu_train.txt`` / ``nyu_test.txt``; ``split`` "train" or
    "test"/"val"), with the official depth scale, range and Eigen evaluation crop."""
    return _split_file_set(
        "nyu",
        "nyu",
        root,
        split,
        {"train": "nyu_train.txt", "test": "nyu_test.txt"},
        max_depth=NYU_MAX_DEPTH,
        eval_crop=NYU_EIGEN_CROP,
        eval_crop_size=NYU_SIZE,
        train_crop=NYU_TRAIN_CROP,
        test_size=NYU_SIZE,
        config="vits_nyu_depth_linear_config.py",
    )


def scannetpp_depth(root: str | Path, split: str = "val") -> EvalSet:
    """ScanNet++ depth from ``eval_data/scannetpp`` (``scannetpp_train.txt`` / ``scannetpp_val.txt``), range
    (0.001, 20) m, no crop. Split-file paths may start with ``/`` or not (both are relative to the root)."""
    return _split_file_set(
        "scannetpp_depth",
        "scannetpp",
        root,
        split,
        {"train": "scannetpp_train.txt", "test": "scannetpp_val.txt"},
        max_depth=SCANNETPP_MAX_DEPTH,
        eval_crop=None,
        eval_crop_size=None,
        train_crop=None,
        test_size=SCANNETPP_DEPTH_SIZE,
        config="vits_scannetpp_depth_linear_config.py",
    )


_READERS = {"nyuv2": nyuv2_seg, "nyu": nyu_depth, "scannetpp_seg": scannetpp_seg, "scannetpp_depth": scannetpp_depth}


def load_eval(name: str, root: str | Path, split: str | None = None) -> EvalSet:
    """Dispatch on ``name`` ("nyuv2", "nyu", "scannetpp_seg", "scannetpp_depth"); ``split=None`` is the split the
    official configs evaluate on (validation / test)."""
    if name not in _READERS:
        raise ValueError(f"unknown evaluation set {name!r}; choose from {EVAL_SETS}")
    reader = _READERS[name]
    return reader(root) if split is None else reader(root, split)


# ---------------------------------------------------------------------------------------------------------
# Layout helpers
# ---------------------------------------------------------------------------------------------------------


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def _scale_index(v: int, n: int, ref: int) -> int:
    return int(math.floor(v * n / ref + 0.5))


def _check_same_size(image: np.ndarray, other: np.ndarray, image_path: Path, other_path: Path) -> None:
    if image.shape[:2] != other.shape[:2]:
        raise EvalDataError(
            f"{other_path} is {other.shape[0]}x{other.shape[1]} but its image {image_path} is "
            f"{image.shape[0]}x{image.shape[1]}; they must match pixel for pixel. Fix: re-export it."
        )


def _resize(arr: np.ndarray | None, size: tuple[int, int], resample: int = Image.NEAREST) -> np.ndarray | None:
    """Resize [H, W] or [H, W, 3] to ``size`` = (H, W), keeping the dtype (uint8 image, int64 labels, float depth)."""
    if arr is None or arr.shape[:2] == size:
        return arr
    h, w = size
    if arr.dtype == np.uint8:
        return np.array(Image.fromarray(arr).resize((w, h), resample))
    if arr.dtype == np.int64:  # labels 0..255
        return np.asarray(Image.fromarray(arr.astype(np.uint8)).resize((w, h), Image.NEAREST)).astype(np.int64)
    return np.asarray(Image.fromarray(arr.astype(np.float32)).resize((w, h), Image.NEAREST)).astype(np.float32)


def _normalise_split(split: str, dataset: str) -> str:
    """ "train"/"training" -> "train"; "val"/"validation"/"test" -> "test" (the official configs evaluate on it)."""
    key = str(split).lower()
    if key in ("train", "training"):
        return "train"
    if key in ("val", "validation", "test"):
        return "test"
    raise ValueError(f"{dataset}: unknown split {split!r}; use 'train' or 'val' (alias 'test')")


def _resolve_root(root: str | Path, folder: str, marker: str) -> Path:
    """The dataset folder: ``root`` itself, or ``root/<folder>`` / ``root/eval_data/<folder>`` when ``marker``
    exists only there (so both ``eval_data`` and ``eval_data/<folder>`` work)."""
    root = Path(root).expanduser()
    if (root / marker).exists():
        return root
    for cand in (root / folder, root / "eval_data" / folder):
        if (cand / marker).exists():
            return cand
    return root


def _scan(img_dir: Path, suffix: str) -> list[str]:
    """Relative paths under ``img_dir`` ending with ``suffix`` (case-sensitive), as mmcv.scandir(recursive=True):
    hidden files skipped, symlinked folders followed; sorted by name (later mmseg 0.x sorts img_infos by filename)."""
    found = []
    for dirpath, _dirs, files in os.walk(img_dir, followlinks=True):
        for f in files:
            if not f.startswith(".") and f.endswith(suffix):
                found.append(os.path.relpath(os.path.join(dirpath, f), img_dir))
    return sorted(found)


def _mmseg_set(
    name: str,
    folder: str,
    root: str | Path,
    split: str,
    classes: tuple[str, ...],
    img_suffix: str,
    seg_suffix: str,
    config: str,
) -> EvalSet:
    """An mmseg CustomDataset split: images/<sub>/**/<x><img_suffix> paired with annotations/<sub>/**/<x><seg_suffix>
    (mmseg pairs by relative path with the suffix swapped; here only the trailing suffix is swapped)."""
    key = _normalise_split(split, name)
    sub = "training" if key == "train" else "validation"  # img_dir/ann_dir of the configs (:46-47, :53-54)
    root = _resolve_root(root, folder, f"images/{sub}")
    img_dir, ann_dir = root / "images" / sub, root / "annotations" / sub
    for d, what in ((img_dir, "img_dir"), (ann_dir, "ann_dir")):
        if not d.is_dir():
            raise EvalDataError(
                f"{name} ({split}): expected the folder {d} (mmseg {what} of FiT3D evaluation/configs/{config}; "
                f"root = the eval_data/{folder} folder) but it does not exist. {_get_data_hint(d)}"
            )
    rels = _scan(img_dir, img_suffix)
    if not rels:
        other = [s for s in {img_suffix.lower(), img_suffix.upper(), ".jpg", ".png", ".jpeg"} if s != img_suffix]
        n_other = {s: len(_scan(img_dir, s)) for s in sorted(other)}
        seen = ", ".join(f"{n} '*{s}'" for s, n in n_other.items() if n)
        raise EvalDataError(
            f"{name} ({split}): no '*{img_suffix}' images under {img_dir} (the official dataset class fixes "
            f"img_suffix='{img_suffix}', matched case-sensitively)"
            + (f"; found {seen} files instead" if seen else "")
            + f". Fix: rename the images to end in '{img_suffix}', or {_get_data_hint(img_dir / ('*' + img_suffix))}"
        )
    items, missing = [], []
    for rel in rels:
        ann = ann_dir / (rel[: -len(img_suffix)] + seg_suffix)
        if not ann.is_file():
            missing.append(ann)
        items.append(EvalItem(image_path=img_dir / rel, label_path=ann, source=f"{name}/{sub}/{rel}"))
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        raise EvalDataError(
            f"{name} ({split}): {len(missing)} of {len(items)} images under {img_dir} have no annotation; expected "
            f"{shown}{' ...' if len(missing) > 3 else ''} (same relative path, suffix '{seg_suffix}'). Fix: add the "
            f"annotations, or {_get_data_hint(ann_dir)}"
        )
    return EvalSet(
        name=name,
        task="seg",
        classes=classes,
        items=items,
        root=root,
        split=sub,
        reduce_zero_label=True,
        ignore_index=IGNORE_INDEX,
    )


def _resolve_listed(root: Path, token: str) -> Path:
    """Official: strip one leading '/' or '\\' and join to the root (nyu.py:24-27). Extension: a true absolute path
    that exists is used as is when the root-joined one does not exist."""
    rel = token[1:] if token[:1] in ("/", "\\") else token
    joined = root / rel
    if token[:1] in ("/", "\\") and not joined.exists():
        absolute = Path(token)
        if absolute.exists():
            return absolute
    return joined


def parse_split_file(path: Path, root: Path) -> tuple[list[EvalItem], int]:
    """Items of a depth split file (``<img> <depth> [<focal>]`` a line) sorted by image path, and the number of
    lines skipped because their depth is ``None`` (nyu.py:120-140)."""
    items, skipped = [], 0
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            tokens = line.split()
            if not tokens:
                continue
            where = f"{path.name}:{lineno}"
            if len(tokens) < 2:
                raise EvalDataError(
                    f"{path}:{lineno}: expected '<image> <depth> [<focal>]', got {line.strip()!r}. "
                    "Fix: give every line an image path and a depth path (or 'None')."
                )
            if tokens[1] == "None":
                skipped += 1
                continue
            focal = None
            if len(tokens) > 2:
                try:
                    focal = float(tokens[2])
                except ValueError:
                    raise EvalDataError(
                        f"{path}:{lineno}: the third field {tokens[2]!r} is not a focal length "
                        "(a number). Fix: remove it or write the focal in pixels."
                    ) from None
            items.append(
                EvalItem(
                    image_path=_resolve_listed(root, tokens[0]),
                    depth_path=_resolve_listed(root, tokens[1]),
                    focal=focal,
                    source=where,
                )
            )
    items.sort(key=lambda it: str(it.image_path))  # "make sure the same order" (nyu.py:139-140)
    return items, skipped


def _split_file_set(
    name: str,
    folder: str,
    root: str | Path,
    split: str,
    files: dict[str, str],
    *,
    max_depth: float,
    eval_crop: tuple[int, int, int, int] | None,
    eval_crop_size: tuple[int, int] | None,
    train_crop: tuple[int, int, int, int] | None,
    test_size: tuple[int, int],
    config: str,
) -> EvalSet:
    key = _normalise_split(split, name)
    fname = files[key]
    root = _resolve_root(root, folder, fname)
    split_path = root / fname
    if not split_path.is_file():
        raise EvalDataError(
            f"{name} ({split}): expected the split file {split_path} (split='{fname}' of FiT3D evaluation/configs/"
            f"{config}; root = the eval_data/{folder} folder) but it does not exist. {_get_data_hint(split_path)}"
        )
    items, skipped = parse_split_file(split_path, root)
    if not items:
        raise EvalDataError(
            f"{name} ({split}): {split_path} lists no samples ({skipped} lines with depth 'None'). "
            f"Fix: {_get_data_hint(split_path)}"
        )
    return EvalSet(
        name=name,
        task="depth",
        classes=(),
        items=items,
        root=root,
        split=fname,
        depth_scale=DEPTH_SCALE,
        min_depth=MIN_DEPTH,
        max_depth=max_depth,
        eval_crop=eval_crop,
        eval_crop_size=eval_crop_size,
        train_crop=train_crop,
        test_size=test_size,
        n_skipped=skipped,
    )
