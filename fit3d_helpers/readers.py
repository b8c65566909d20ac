"""Small file readers shared by every loader (scenes, your photo, captures): images in any bit depth, integer PNGs,
depth maps, PLY point clouds. Each names the file and the fix when it cannot read it (:class:`SceneError`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image


class SceneError(ValueError):
    """Bad scene input. The message names the file (and frame) and says what is wrong and how to fix it."""


_GREY16_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16-bit grey (Pillow's "I" = 32-bit int: old Pillows)


def read_image(path: Path, where: str) -> np.ndarray:
    """RGB float32 [H, W, 3] in 0..1 from 8- or 16-bit colour, grey-scale or palette files; alpha (instant-ngp's
    Blender data) is dropped. ``convert("RGB")`` alone clips 16-bit grey to white and keeps only the high byte of
    16-bit colour, so those are decoded here."""
    try:
        with Image.open(path) as im:
            if im.mode in _GREY16_MODES:
                grey = np.asarray(im)  # [H, W] uint16 (int32 for "I")
                if im.mode == "I" and grey.size and (int(grey.min()) < 0 or int(grey.max()) > 65535):
                    raise SceneError(
                        f"{where}: image {path} is 32-bit integer grey-scale with values {int(grey.min())}.."
                        f"{int(grey.max())}, outside 16-bit 0..65535; save it as an 8- or 16-bit PNG."
                    )
                return np.repeat((grey.astype(np.float32) / 65535.0)[..., None], 3, axis=2)
            if im.mode == "F":
                raise SceneError(
                    f"{where}: image {path} is 32-bit float grey-scale (mode 'F'); save it as an 8- or 16-bit PNG."
                )
            wide = _read_png16_colour(path, im)
            if wide is not None:
                return wide
            arr = np.asarray(im.convert("RGB"))  # L / LA / 1: channel repeated; P: palette looked up
    except FileNotFoundError:
        raise SceneError(f"{where}: image file {path} does not exist; fix the path or add the file.") from None
    except SceneError:
        raise
    except Exception as exc:  # PIL raises many types for corrupt files
        raise SceneError(f"{where}: cannot read image {path} ({exc}); re-export it as PNG or JPEG.") from None
    return arr.astype(np.float32) / 255.0


def _read_png16_colour(path: Path, im: Image.Image) -> np.ndarray | None:
    """A 48-/64-bit PNG (16 bits per RGB(A) sample) as float32 [H, W, 3] in 0..1, or None for any other image.

    Pillow decodes these to 8-bit modes keeping only each sample's high byte (raw mode ``RGB;16B``). The file is
    decoded a second time with raw mode ``...;16L``: the unfiltering is identical (same bits per pixel) but the
    unpacker then keeps the low byte, so ``high * 256 + low`` is the exact 16-bit value. When Pillow has no such
    raw mode (16-bit grey + alpha) the high byte alone is used: 8-bit precision, still correctly scaled.
    """
    if im.format != "PNG" or len(im.tile) != 1:
        return None
    tile = im.tile[0]
    raw = tile[3] if isinstance(tile[3], str) else (tile[3][0] if tile[3] else None)
    if not isinstance(raw, str) or not raw.endswith(";16B"):
        return None
    high = np.asarray(im)[..., :3].astype(np.uint16)  # [H, W, 3] (RGBA from grey + alpha repeats the grey)
    try:
        with Image.open(path) as again:
            t = again.tile[0]
            low_raw = raw[: -len("16B")] + "16L"
            again.tile = [t._replace(args=low_raw) if hasattr(t, "_replace") else (t[0], t[1], t[2], low_raw)]
            low = np.asarray(again)[..., :3].astype(np.uint16)  # [H, W, 3]
    except Exception:  # no little-endian unpacker for this raw mode
        return high.astype(np.float32) / 255.0
    return ((high << 8) | low).astype(np.float32) / 65535.0


def read_int_png(path: Path, where: str, what: str) -> np.ndarray:
    """An 8- or 16-bit single-channel PNG as an integer array [H, W]."""
    try:
        with Image.open(path) as im:
            if what == "mask" and im.mode in ("1", "RGB", "RGBA", "LA"):
                im = im.convert("L")
            if im.mode not in ("L", "I", "I;16", "I;16B", "I;16L", "P"):
                raise SceneError(
                    f"{where}: {what} file {path} has image mode {im.mode!r}; expected a single-channel 8- or "
                    "16-bit PNG. Fix: save it as a grey-scale PNG."
                )
            arr = np.asarray(im)
    except FileNotFoundError:
        raise SceneError(f"{where}: {what} file {path} does not exist; fix the path or remove the entry.") from None
    except SceneError:
        raise
    except Exception as exc:
        raise SceneError(f"{where}: cannot read {what} file {path} ({exc}).") from None
    return arr.astype(np.int64)


def read_depth(path: Path, where: str, png_scale: float) -> np.ndarray:
    """Depth in metres, float32 [H, W]: ``.npy`` is taken as metres, integer PNG is multiplied by ``png_scale``."""
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise SceneError(f"{where}: depth file {path} does not exist; fix the path or remove 'depth_file_path'.")
        try:
            arr = np.load(path)
        except Exception as exc:
            raise SceneError(f"{where}: cannot read depth file {path} ({exc}).") from None
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim != 2:
            raise SceneError(f"{where}: depth file {path} has shape {arr.shape}; expected [H, W].")
    else:
        arr = read_int_png(path, where, "depth").astype(np.float32) * np.float32(png_scale)
    arr[~np.isfinite(arr)] = 0
    return arr


def read_ply_points(path: Path, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices (and colours when present) of an ASCII or binary PLY, via trimesh."""
    import trimesh

    if not path.is_file():
        raise SceneError(f"{where}: point cloud {path} does not exist; fix 'ply_file_path' or remove it.")
    try:
        geom = trimesh.load(path, process=False)
    except Exception as exc:
        raise SceneError(f"{where}: cannot read point cloud {path} ({exc}).") from None
    xyz = np.asarray(geom.vertices, dtype=np.float32)  # [P, 3]
    colors = None
    cols = getattr(geom, "colors", None)
    if cols is None or len(cols) == 0:
        visual = getattr(geom, "visual", None)
        cols = getattr(visual, "vertex_colors", None) if visual is not None else None
    if cols is not None and len(cols) == len(xyz):
        colors = np.asarray(cols, dtype=np.float32)[:, :3] / 255.0
    return drop_nonfinite_points(xyz, colors, path)


def drop_nonfinite_points(
    xyz: np.ndarray, colors: np.ndarray | None, path: Path
) -> tuple[np.ndarray, np.ndarray | None]:
    """Drop points whose coordinates (or colours) are NaN/inf, with a warning saying how many: a few broken points
    should not stop a scene from loading, but one NaN would poison every Gaussian initialised from the cloud."""
    ok = np.isfinite(xyz).all(axis=1)  # [P]
    if colors is not None:
        ok &= np.isfinite(colors).all(axis=1)
    n_bad = int((~ok).sum())
    if n_bad:
        warnings.warn(
            f"{path}: dropped {n_bad} of {len(xyz)} points with non-finite (NaN/inf) coordinates or "
            "colours; the other points are used. Re-export the point cloud to keep them.",
            stacklevel=3,
        )
        xyz = xyz[ok]
        colors = colors[ok] if colors is not None else None
    return xyz, colors
