"""Tiny fake datasets in the official evaluation layouts (``eval_data/nyuv2``, ``eval_data/nyu``,
``eval_data/scannetpp``), for the tests and offline demos of :mod:`fit3d_helpers.evaldata`'s readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .evaldata import (
    DEPTH_SCALE,
    NYU_FOCAL,
    NYU_MAX_DEPTH,
    NYUV2_CLASSES,
    NYUV2_IMG_SUFFIX,
    NYUV2_SEG_SUFFIX,
    SCANNETPP_CLASSES,
    SCANNETPP_IMG_SUFFIX,
    SCANNETPP_MAX_DEPTH,
    SCANNETPP_SEG_SUFFIX,
)

# Pixels of row 0 with fixed values, so tests can check the conventions without decoding the random content:
# labels: (0,0) = 0 (unlabelled), (0,1) = 1, (0,2) = K (last class); depth: (0,0) = 0 (invalid), (0,1) = 1234
# (1.234 m), (0,2) = max_depth exactly (outside the open valid interval), (0,3) = max_depth + 0.5 m.
FAKE_DEPTH_PNG_VALUE = 1234


def _fake_sample(
    rng: np.random.Generator, size: tuple[int, int], n_classes: int, max_depth: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb uint8 [H, W, 3], raw label uint8 [H, W] with 0 = unlabelled and 1..K, depth uint16 [H, W] in mm).

    Colour and depth depend on the class, so a probe can learn something from the fake data."""
    h, w = size
    if h < 8 or w < 8:
        raise ValueError(f"fake images need at least 8x8 pixels, got {size}")
    palette = np.random.default_rng(1234).integers(30, 226, size=(n_classes + 1, 3))  # same colours in every sample
    valid = [1, n_classes] + [int(c) for c in rng.choice(np.arange(2, n_classes), size=2, replace=False)]
    label = np.full((h, w), valid[int(rng.integers(len(valid)))], dtype=np.uint8)
    for _ in range(3):  # rectangles of other classes
        r0, c0 = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        r1, c1 = r0 + int(rng.integers(3, h // 2 + 3)), c0 + int(rng.integers(3, w // 2 + 3))
        label[r0:r1, c0:c1] = valid[int(rng.integers(len(valid)))]
    label[-2:, : w // 4] = 0  # an unlabelled strip
    rgb = palette[label].astype(np.float64) + rng.normal(0, 8, size=(h, w, 3))
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    rows = np.linspace(0.0, 1.0, h)[:, None]  # a floor-like ramp plus a per-class offset, metres
    depth_m = 1.0 + 3.0 * rows + 0.05 * (label.astype(np.float64) % 7) + rng.uniform(0, 0.01, size=(h, w))
    depth = np.round(depth_m * DEPTH_SCALE).astype(np.uint16)
    depth[-1, -3:] = 0  # a few invalid pixels
    label[0, :3] = (0, 1, n_classes)
    depth[0, :4] = (0, FAKE_DEPTH_PNG_VALUE, round(max_depth * DEPTH_SCALE), round((max_depth + 0.5) * DEPTH_SCALE))
    return rgb, label, depth


def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im.save(path, format="JPEG", quality=95)
    else:
        im.save(path, format="PNG")


def _write_mmseg_split(
    root: Path,
    sub: str,
    names: list[str],
    rng: np.random.Generator,
    size: tuple[int, int],
    n_classes: int,
    img_suffix: str,
    seg_suffix: str,
    max_depth: float,
) -> None:
    for stem in names:
        rgb, label, _ = _fake_sample(rng, size, n_classes, max_depth)
        _save(rgb, root / "images" / sub / f"{stem}{img_suffix}")
        _save(label, root / "annotations" / sub / f"{stem}{seg_suffix}")


def write_fake_nyuv2(
    root: str | Path, n_train: int = 3, n_val: int = 2, size: tuple[int, int] = (48, 64), seed: int = 0
) -> Path:
    """A tiny ``eval_data/nyuv2`` at ``root``: images/{training,validation}/NNNN.png + annotations (ids 0..13)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, ids in (("training", range(n_train)), ("validation", range(n_train, n_train + n_val))):
        names = [f"{i:04d}" for i in ids]
        _write_mmseg_split(root, split, names, rng, size, len(NYUV2_CLASSES), NYUV2_IMG_SUFFIX, NYUV2_SEG_SUFFIX,
                           NYU_MAX_DEPTH)  # fmt: skip
    return root


def write_fake_nyu(
    root: str | Path, n_train: int = 4, n_test: int = 2, size: tuple[int, int] = (48, 64), seed: int = 0
) -> Path:
    """A tiny ``eval_data/nyu`` at ``root``: <scene>/rgb_NNNNN.jpg + sync_depth_NNNNN.png (uint16 mm) and the split
    files. Train lines start with '/' and end with the focal (the docstring example, nyu.py:56-58) plus one line with
    depth 'None' (skipped); test lines have no leading '/', to exercise both forms."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    lines: dict[str, list[str]] = {"nyu_train.txt": [], "nyu_test.txt": []}
    for fname, n, scenes, slash in (
        ("nyu_train.txt", n_train, ("bedroom_0001", "kitchen_0028b"), "/"),
        ("nyu_test.txt", n_test, ("bathroom", "kitchen"), ""),
    ):
        for i in range(n):
            scene = scenes[i % len(scenes)]
            rgb, _, depth = _fake_sample(rng, size, len(NYUV2_CLASSES), NYU_MAX_DEPTH)
            img_rel, dep_rel = f"{scene}/rgb_{i:05d}.jpg", f"{scene}/sync_depth_{i:05d}.png"
            _save(rgb, root / img_rel)
            _save(depth, root / dep_rel)
            lines[fname].append(f"{slash}{img_rel} {slash}{dep_rel} {NYU_FOCAL}")
    lines["nyu_train.txt"].append(f"/bedroom_0001/rgb_99999.jpg None {NYU_FOCAL}")  # dropped by the reader
    for fname, rows in lines.items():
        (root / fname).write_text("\n".join(rows) + "\n")
    return root


def write_fake_scannetpp(
    root: str | Path, n_train: int = 3, n_val: int = 2, size: tuple[int, int] = (48, 72), seed: int = 0
) -> Path:
    """A tiny ``eval_data/scannetpp`` at ``root`` with both tasks: images/{training,validation}/<scene>_DSCNNNNN.JPG
    + annotations/.../*.png (ids 0..100), and <scene>/images/DSCNNNNN.JPG + <scene>/depth/DSCNNNNN.png (uint16 mm)
    listed in scannetpp_{train,val}.txt (train lines with a leading '/', val lines without; no focal column)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    scenes = [f"{int(v):010x}" for v in rng.integers(0, 16**10, size=2)]  # ids like 0a5c013435
    k = len(SCANNETPP_CLASSES)
    for sub, n, off in (("training", n_train, 0), ("validation", n_val, n_train)):
        names = [f"{scenes[i % 2]}_DSC{i + off:05d}" for i in range(n)]
        _write_mmseg_split(
            root, sub, names, rng, size, k, SCANNETPP_IMG_SUFFIX, SCANNETPP_SEG_SUFFIX, SCANNETPP_MAX_DEPTH
        )
    for fname, n, off, slash in (("scannetpp_train.txt", n_train, 0, "/"), ("scannetpp_val.txt", n_val, n_train, "")):
        rows = []
        for i in range(n):
            scene = scenes[i % 2]
            rgb, _, depth = _fake_sample(rng, size, k, SCANNETPP_MAX_DEPTH)
            img_rel, dep_rel = f"{scene}/images/DSC{i + off:05d}.JPG", f"{scene}/depth/DSC{i + off:05d}.png"
            _save(rgb, root / img_rel)
            _save(depth, root / dep_rel)
            rows.append(f"{slash}{img_rel} {slash}{dep_rel}")
        (root / fname).write_text("\n".join(rows) + "\n")
    return root
