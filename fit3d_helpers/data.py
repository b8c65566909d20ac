"""Scenes: posed RGB views with optional depth and semantic labels, loaded from disk.

A scene is what every later stage consumes: a list of :class:`View` (image, intrinsics, pose, optional depth and
labels), an optional initial point cloud and an optional class table. Two on-disk layouts are read by one entry
point, :func:`load_scene`:

* the nerfstudio / instant-ngp ``transforms.json`` layout (ScanNet++ DSLR ships it as
  ``dslr/nerfstudio/transforms_undistorted.json``; our synthetic generator writes it too), and
* a COLMAP text model (``cameras.txt``, ``images.txt``, ``points3D.txt``).

Conventions (the only place they are written down; every other module follows them):

* **Camera frame: OpenCV.** x points right, y down, z forward (into the scene). ``View.cam_to_world`` maps camera
  coordinates to world coordinates, ``View.world_to_cam`` is its inverse (gsplat's ``viewmat``). nerfstudio /
  instant-ngp files store OpenGL camera frames (x right, y up, z backward); :func:`opengl_to_opencv` converts on
  load. COLMAP already uses OpenCV frames.
* **Pixels:** pixel ``(row r, column c)`` covers ``[c, c+1) x [r, r+1)`` in continuous image coordinates, so its
  centre is ``(u, v) = (c + 0.5, r + 0.5)`` (COLMAP's and gsplat's convention). ``K`` maps camera points to these
  coordinates. With this convention downscaling by ``s`` divides ``fx, fy, cx, cy`` by ``s`` exactly.
* **Depth is planar** (the camera-frame z of the surface point, not the distance along the ray), in metres,
  float32, 0 where unknown. **Labels** are int64 class ids indexing ``Scene.classes``; 255 means "ignore".
  **Masks** (``View.mask``) are float32, 1 = use the pixel, 0 = ignore (ScanNet++'s anonymisation masks).
* **One image size per scene**, pinhole cameras only, finite numbers only: anything else is a :class:`SceneError`
  at load time rather than garbage (or a crash) in a later stage.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .readers import SceneError, drop_nonfinite_points, read_depth, read_image, read_int_png, read_ply_points

IGNORE_LABEL = 255
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG")
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])  # flips the camera's y and z axes; its own inverse


@dataclass
class View:
    """One posed image; see the module docstring for the conventions."""

    name: str  # e.g. "frame_00003"
    image: np.ndarray  # float32 [H, W, 3] in 0..1
    K: np.ndarray  # float64 [3, 3] pixel intrinsics of this (possibly downscaled) image
    cam_to_world: np.ndarray  # float64 [4, 4], OpenCV camera frame
    depth: np.ndarray | None = None  # float32 [H, W] planar depth in metres, 0 = invalid
    labels: np.ndarray | None = None  # int64 [H, W] class ids, 255 = ignore
    # float32 [H, W] in 0..1: 1 = use the pixel, 0 = ignore (nerfstudio 'mask_path', e.g. ScanNet++'s anonymisation
    # masks); after downscaling, the fraction of usable full-resolution pixels in the block. None = all usable.
    mask: np.ndarray | None = None

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def world_to_cam(self) -> np.ndarray:
        """[4, 4] world -> OpenCV camera (gsplat's ``viewmat``); the rigid inverse of ``cam_to_world``."""
        return _rigid_inverse(self.cam_to_world)


@dataclass
class Scene:
    """A list of views plus what a reconstruction may start from (points) and what the labels mean (classes)."""

    name: str
    root: Path
    views: list[View]
    points: np.ndarray | None = None  # float32 [P, 3] initial point cloud (COLMAP points3D / PLY) or None
    point_colors: np.ndarray | None = None  # float32 [P, 3] in 0..1
    classes: list[str] | None = None  # class table, index = class id
    meta: dict[str, Any] = field(default_factory=dict)  # anything else the file carried (e.g. generator params)

    def points_from_depth(self, max_points: int = 50_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Unproject every view's depth map and subsample: an initial point cloud when no SfM points exist.

        Each view contributes an equal share of the points (so every camera's part of the room is covered).
        Falls back to ``self.points`` when no view has depth. Returns ``(xyz [P, 3], rgb [P, 3])`` float32.
        """
        rng = np.random.default_rng(seed)
        with_depth = [v for v in self.views if v.depth is not None and np.any(_valid_depth(v.depth))]
        if not with_depth:
            if self.points is not None and len(self.points) > 0:
                keep = rng.permutation(len(self.points))[:max_points]
                colors = self.point_colors if self.point_colors is not None else np.full_like(self.points, 0.5)
                return self.points[keep].astype(np.float32), colors[keep].astype(np.float32)
            raise SceneError(
                f"scene {self.name!r} ({self.root}): no initial points: no view has a depth map and there is no "
                "point cloud. Fix: provide a COLMAP model with points3D.txt (or a transforms.json 'ply_file_path'), "
                "or depth maps ('depth_file_path' per frame)."
            )
        quota = int(math.ceil(max_points / len(with_depth)))
        xyz_all, rgb_all = [], []
        for view in with_depth:
            valid = _valid_depth(view.depth)  # [H, W]
            xyz = unproject_depth(view.depth, view.K, view.cam_to_world)  # [M, 3], row-major like image[valid]
            rgb = view.image[valid]  # [M, 3]
            pick = rng.permutation(len(xyz))[:quota]
            xyz_all.append(xyz[pick])
            rgb_all.append(rgb[pick])
        xyz = np.concatenate(xyz_all)
        rgb = np.concatenate(rgb_all)
        if len(xyz) > max_points:
            keep = rng.permutation(len(xyz))[:max_points]
            xyz, rgb = xyz[keep], rgb[keep]
        return xyz.astype(np.float32), rgb.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Geometry helpers


def opengl_to_opencv(c2w: np.ndarray) -> np.ndarray:
    """Convert a camera-to-world matrix between OpenGL and OpenCV camera frames (flip camera y and z).

    The operation is its own inverse, so it also converts OpenCV -> OpenGL. Accepts [4, 4] or [..., 4, 4].
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    return c2w @ _GL_TO_CV


def _rigid_inverse(m: np.ndarray) -> np.ndarray:
    """Inverse of a [4, 4] rotation + translation, exact (R^T) rather than a general matrix inverse."""
    r = m[:3, :3]
    t = m[:3, 3]
    out = np.eye(4)
    out[:3, :3] = r.T
    out[:3, 3] = -r.T @ t
    return out


def _transform(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a [4, 4] rigid transform to points [N, 3] (einsum: OpenBLAS is slow for tall [N, 3] @ [3, 3])."""
    return np.einsum("ij,kj->ik", pts, m[:3, :3]) + m[:3, 3]


def _valid_depth(depth: np.ndarray) -> np.ndarray:
    """[H, W] bool: depth > 0 and finite; the one definition of "valid" used by every helper here."""
    return np.isfinite(depth) & (depth > 0)


def unproject_depth(depth: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray) -> np.ndarray:
    """World points of all valid pixels of a planar depth map: [M, 3] float64, row-major (same order as
    ``image[depth > 0]``). Pixel centres are at (c + 0.5, r + 0.5)."""
    valid = _valid_depth(depth)  # [H, W]
    rows, cols = np.nonzero(valid)  # [M], row-major
    z = depth[rows, cols].astype(np.float64)  # [M]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    skew = K[0, 1]
    y = (rows + 0.5 - cy) / fy * z
    x = (cols + 0.5 - cx - skew * y / z) / fx * z
    cam = np.stack([x, y, z], axis=1)  # [M, 3]
    return _transform(cam_to_world, cam)


def project(points_world: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points: returns ``uv [N, 2]`` (continuous pixel coords, centre of pixel (r, c) at
    (c + 0.5, r + 0.5)) and camera-frame depth ``z [N]``. Points with z <= 0 get uv = NaN."""
    pts = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
    cam = _transform(world_to_cam, pts)  # [N, 3]
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        pix = np.einsum("ij,kj->ik", cam, np.asarray(K, dtype=np.float64))  # [N, 3] = cam @ K^T
        uv = pix[:, :2] / pix[:, 2:3]
    uv[z <= 0] = np.nan
    return uv, z


def reprojection_stats(view_a: View, view_b: View, threshold_m: float = 0.03) -> dict[str, float]:
    """How well view_a's depth agrees with view_b's: the check behind :func:`reprojection_consistency`.

    Every valid pixel of view_a is unprojected and projected into view_b. view_b's depth at the projected
    position is bracketed by the four pixel centres around it (``lo = min - threshold``, ``hi = max + threshold``):

    * ``outside``: lands outside view_b (or behind it) — not visible there;
    * ``unknown``: one of the four view_b depths is invalid — cannot be checked;
    * ``occluded``: z > hi — something in view_b is clearly in front of the point;
    * ``consistent``: lo <= z <= hi — view_b sees the same surface;
    * ``inconsistent``: z < lo — view_b sees *through* where the point should be: an error in depth or pose.

    Using the four neighbours keeps grazing surfaces (depth changing fast across a pixel) from being counted as
    errors; it is lenient only on the few pixels that straddle a depth edge.
    Returns fractions of view_a's valid pixels plus ``consistency = consistent / (consistent + inconsistent)``
    (NaN when nothing is visible) and the counts.
    """
    if view_a.depth is None or view_b.depth is None:
        raise SceneError(f"reprojection needs depth in both views ({view_a.name}, {view_b.name}); one has none.")
    pts = unproject_depth(view_a.depth, view_a.K, view_a.cam_to_world)  # [M, 3]
    n = len(pts)
    uv, z = project(pts, view_b.K, view_b.world_to_cam)  # [M, 2], [M]
    h, w = view_b.depth.shape
    with np.errstate(invalid="ignore"):
        inside = (z > 1e-6) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    uv_in, z_in = uv[inside], z[inside]
    # pixel-centre grid: centre of column c is c + 0.5 -> continuous index x = u - 0.5
    x = uv_in[:, 0] - 0.5
    y = uv_in[:, 1] - 0.5
    c0 = np.clip(np.floor(x).astype(np.int64), 0, w - 1)
    r0 = np.clip(np.floor(y).astype(np.int64), 0, h - 1)
    c1 = np.clip(c0 + 1, 0, w - 1)
    r1 = np.clip(r0 + 1, 0, h - 1)
    d4 = np.stack([view_b.depth[r0, c0], view_b.depth[r0, c1], view_b.depth[r1, c0], view_b.depth[r1, c1]])  # [4, K]
    known = np.all(_valid_depth(d4), axis=0)
    lo = d4.min(axis=0) - threshold_m
    hi = d4.max(axis=0) + threshold_m
    occluded = known & (z_in > hi)
    consistent = known & (z_in >= lo) & (z_in <= hi)
    inconsistent = known & (z_in < lo)
    n_cons, n_incons = int(consistent.sum()), int(inconsistent.sum())
    denom = max(n, 1)
    return {
        "consistency": n_cons / (n_cons + n_incons) if (n_cons + n_incons) > 0 else float("nan"),
        "overlap": float(inside.sum()) / denom,
        "consistent": n_cons / denom,
        "inconsistent": n_incons / denom,
        "occluded": float(occluded.sum()) / denom,
        "unknown": float((~known).sum()) / denom,
        "outside": float((~inside).sum()) / denom,
        "n_valid": float(n),
        "n_visible": float(n_cons + n_incons),
    }


def reprojection_consistency(view_a: View, view_b: View, threshold_m: float = 0.03) -> float:
    """Fraction of view_a's pixels *visible in view_b* whose reprojected depth agrees with view_b's within
    ``threshold_m``. "Visible" = lands inside view_b, view_b has depth there, and is not occluded (not farther
    than view_b's depth + threshold). See :func:`reprojection_stats` for the exact rule and the other fractions
    (e.g. ``overlap``, to make sure the visible set is not trivially small)."""
    return reprojection_stats(view_a, view_b, threshold_m)["consistency"]


def _downscale(view: View, s: int, where: str) -> View:
    """Box-filter RGB, nearest (block centre) for depth/labels, and scale K: exact under the +0.5 pixel rule.

    The mask is box-filtered like RGB (area average): a downscaled pixel holds the fraction of its s x s block that
    is usable, so ``mask == 1`` is the strict mask and ``mask > 0`` the lenient one. Depth and labels were already
    masked at full resolution (see :func:`_load_transforms`), so their nearest samples stay consistent with it.
    """
    if s == 1:
        return view
    h, w = view.height, view.width
    if h % s or w % s:
        raise SceneError(
            f"{where}: downscale={s} does not divide the image size {w}x{h}; pick a factor that divides both."
        )
    img = view.image.reshape(h // s, s, w // s, s, 3).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)
    k = view.K.copy()
    k[:2] /= s
    depth = view.depth[s // 2 :: s, s // 2 :: s].copy() if view.depth is not None else None
    labels = view.labels[s // 2 :: s, s // 2 :: s].copy() if view.labels is not None else None
    mask = None
    if view.mask is not None:
        mask = view.mask.reshape(h // s, s, w // s, s).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)
    return View(view.name, img, k, view.cam_to_world, depth, labels, mask)


def _check_sizes(view: View, where: str, depth_path: Path | None, label_path: Path | None) -> None:
    hw = view.image.shape[:2]
    if view.depth is not None and view.depth.shape != hw:
        raise SceneError(
            f"{where}: depth map {depth_path} is {view.depth.shape[1]}x{view.depth.shape[0]} but the image is "
            f"{hw[1]}x{hw[0]}; depth must be given at the image resolution (resize it with nearest-neighbour)."
        )
    if view.labels is not None and view.labels.shape != hw:
        raise SceneError(
            f"{where}: label map {label_path} is {view.labels.shape[1]}x{view.labels.shape[0]} but the image is "
            f"{hw[1]}x{hw[0]}; labels must be given at the image resolution (resize with nearest-neighbour)."
        )


# ----------------------------------------------------------------------------------------------------------------
# transforms.json (nerfstudio / instant-ngp)


def _check_rotation(m: np.ndarray, where: str) -> np.ndarray:
    """Validate a camera-to-world matrix; a uniform scale on the rotation is divided out, anything else is fatal."""
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4):
        raise SceneError(f"{where}: transform_matrix has shape {m.shape}; expected 4x4 (or 3x4) rows.")
    if not np.all(np.isfinite(m)):
        r, c = (int(i) for i in np.argwhere(~np.isfinite(m))[0])
        raise SceneError(
            f"{where}: transform_matrix contains NaN/inf (row {r}, column {c} is {m[r, c]}; null "
            'entries read as NaN). Fix the pose in the json, or flag the frame "is_bad": true to '
            "skip it."
        )
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
        raise SceneError(f"{where}: transform_matrix last row is {m[3].tolist()}; expected [0, 0, 0, 1].")
    r = m[:3, :3]
    norms = np.linalg.norm(r, axis=0)  # [3] column lengths
    scale = float(norms.mean())
    if scale > 0 and np.all(np.abs(norms / scale - 1) < 1e-3) and abs(scale - 1) > 1e-3:
        warnings.warn(f"{where}: rotation carries a uniform scale {scale:.4g}; dividing it out.", stacklevel=3)
        r = r / scale
    orth_err = float(np.abs(r.T @ r - np.eye(3)).max())
    det = float(np.linalg.det(r))
    if orth_err > 1e-3 or abs(det - 1) > 1e-3:
        raise SceneError(
            f"{where}: transform_matrix rotation is not a rotation (max |R^T R - I| = {orth_err:.3g}, "
            f"det = {det:.4g}); expected an orthonormal camera-to-world rotation with det +1. Fix the pose "
            "(a reflection or shear usually means a wrong axis convention in the exporter)."
        )
    out = m.copy()
    out[:3, :3] = r
    return out


def _search_roots(json_path: Path, what: str) -> list[Path]:
    """Folders a frame's relative path may be relative to: the json's folder first, then (ScanNet++ DSLR keeps
    its json in ``dslr/nerfstudio/`` and the files beside it) the folder that matches the json's kind.

    * images: ``<json dir>``, ``<json dir>/images``, then for ``*undistorted*.json`` ``../undistorted_images``,
      ``../resized_undistorted_images``, otherwise ``../resized_images``; last ``../images``;
    * masks (``mask_path``): ``<json dir>``, ``<json dir>/masks``, then for ``*undistorted*.json``
      ``../undistorted_anon_masks``, ``../resized_undistorted_masks``, otherwise ``../resized_anon_masks``. The
      other kind's folder is never tried: distorted and undistorted masks have the same size, so a wrong pick
      could not be detected;
    * depth, labels, point clouds: ``<json dir>`` only.
    """
    base, up = json_path.parent, json_path.parent.parent
    undist = "undistorted" in json_path.name
    if what == "image":
        extra = ["undistorted_images", "resized_undistorted_images"] if undist else ["resized_images"]
        return [base, base / "images", *(up / e for e in extra), up / "images"]
    if what == "mask":
        extra = ["undistorted_anon_masks", "resized_undistorted_masks"] if undist else ["resized_anon_masks"]
        return [base, base / "masks", *(up / e for e in extra)]
    return [base]


def _resolve_frame_file(json_path: Path, rel: str, where: str, what: str, key: str) -> Path:
    """Find a frame's file: as given (relative to the json's folder), with an image extension added when it has
    none (instant-ngp), then in ScanNet++'s usual folders (see :func:`_search_roots`)."""
    rel_path = Path(rel)
    roots = _search_roots(json_path, what)
    cands: list[Path] = []
    for root in roots:
        p = rel_path if rel_path.is_absolute() else root / rel_path
        cands.append(p)
        if what == "image" and p.suffix == "":
            cands.extend(p.with_name(p.name + ext) for ext in _IMAGE_EXTS)
        if rel_path.is_absolute():
            break
    for p in cands:
        if p.is_file():
            return p
    others = sorted({str(p.parent) for p in cands[1:]} - {str(cands[0].parent)})
    raise SceneError(
        f"{where}: {what} file {rel!r} ('{key}') not found; looked for {cands[0]}"
        + (f" (also in {', '.join(others)})" if others else "")
        + ". Fix the path in the json or add the file."
    )


_INTRINSIC_FIX = {
    "fl_x": "expected the focal length in pixels (> 0)",
    "fl_y": "expected the focal length in pixels (> 0)",
    "cx": "expected the principal point in pixels",
    "cy": "expected the principal point in pixels",
    "camera_angle_x": "expected the horizontal field of view in radians, 0 < angle < pi",
    "camera_angle_y": "expected the vertical field of view in radians, 0 < angle < pi",
}


def _json_number(value: Any, key: str, where: str, *, positive: bool = False) -> float:
    """A finite float from a json value. ``float()`` alone would accept NaN/inf and json's ``true`` and raise a
    bare TypeError for lists; each of those would give a K full of garbage instead of a clear error."""
    problem = ""
    x = math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        problem = "not a number"
    else:
        try:
            x = float(value)
        except ValueError:
            problem = "not a number"
    if not problem and not math.isfinite(x):
        problem = "not finite"
    elif not problem and positive and x <= 0:
        problem = "not positive"
    if problem:
        fix = _INTRINSIC_FIX.get(key.split()[0], "expected a finite number (0 for no distortion)")
        if key.split()[0] in ("w", "h"):
            fix = f"expected the image {'width' if key.startswith('w') else 'height'} in pixels (a whole number > 0)"
        raise SceneError(f"{where}: {_key_name(key)} is {value!r} ({problem}); {fix}. Fix the value in the json.")
    return x


def _key_name(key: str) -> str:
    """ "fl_x (frame)" -> "'fl_x' (frame)": the json key quoted, where it came from after it."""
    base, _, rest = key.partition(" ")
    return f"{base!r} {rest}" if rest else repr(base)


def _json_size(value: Any, key: str, where: str) -> int:
    """Image width/height: a positive whole number (876 or 876.0; not 876.5, -1, "abc" or a list)."""
    x = _json_number(value, key, where, positive=True)
    if not x.is_integer():
        raise SceneError(
            f"{where}: {_key_name(key)} is {value!r} (not a whole number); expected the image "
            f"{'width' if key.startswith('w') else 'height'} in pixels. Fix the value in the json."
        )
    return int(x)


def _intrinsics(d: dict[str, Any], top: dict[str, Any], where: str) -> dict[str, Any]:
    """fl_x/fl_y/cx/cy/w/h from the frame, falling back to the top level; camera_angle_x like instant-ngp.
    Every value is validated (finite, focal lengths and sizes > 0) so a bad file cannot produce a garbage K;
    a frame's explicit ``null`` counts as "not given" (falls back to the top level)."""

    def get(key: str) -> Any:
        return d[key] if d.get(key) is not None else top.get(key)

    def src(key: str) -> str:
        return f"{key} (frame)" if d.get(key) is not None else f"{key} (top level)"

    w = _json_size(get("w"), src("w"), where) if get("w") is not None else None
    h = _json_size(get("h"), src("h"), where) if get("h") is not None else None
    fx = _json_number(get("fl_x"), src("fl_x"), where, positive=True) if get("fl_x") is not None else None
    fy = _json_number(get("fl_y"), src("fl_y"), where, positive=True) if get("fl_y") is not None else None
    if fx is None and get("camera_angle_x") is not None:
        if w is None:
            raise SceneError(f"{where}: 'camera_angle_x' given without 'w'; add 'w' and 'h' (image size).")
        fx = 0.5 * w / math.tan(0.5 * _fov(get("camera_angle_x"), src("camera_angle_x"), where))
        if fy is None and get("camera_angle_y") is not None and h is not None:
            fy = 0.5 * h / math.tan(0.5 * _fov(get("camera_angle_y"), src("camera_angle_y"), where))
    if fx is None:
        null = " ('fl_x' is null)" if "fl_x" in d or "fl_x" in top else ""
        raise SceneError(
            f"{where}: no focal length{null}: add 'fl_x' (and 'fl_y', 'cx', 'cy', 'w', 'h') at the top level or "
            "per frame, or instant-ngp's 'camera_angle_x'."
        )
    fy = fx if fy is None else fy
    cx = _json_number(get("cx"), src("cx"), where) if get("cx") is not None else None
    cy = _json_number(get("cy"), src("cy"), where) if get("cy") is not None else None
    dist = [
        _json_number(get(k), src(k), where) if get(k) is not None else 0.0 for k in ("k1", "k2", "k3", "k4", "p1", "p2")
    ]
    return {"fx": fx, "fy": fy, "w": w, "h": h, "cx": cx, "cy": cy, "distorted": any(abs(x) > 0 for x in dist)}


def _fov(value: Any, key: str, where: str) -> float:
    """A field of view in radians, strictly between 0 and pi (tan of half of it must be finite and positive)."""
    a = _json_number(value, key, where, positive=True)
    if a >= math.pi:
        raise SceneError(
            f"{where}: {_key_name(key)} is {value!r} (not below pi); {_INTRINSIC_FIX[key.split()[0]]}. "
            "Fix the value in the json (degrees given by mistake?)."
        )
    return a


def _load_transforms(json_path: Path, downscale: int, include_test_frames: bool) -> Scene:
    where_file = str(json_path)
    meta = _read_transforms_meta(json_path)
    frames = _transforms_frames(meta, where_file, include_test_frames)
    _check_one_size_transforms(json_path, frames)
    depth_scale = float(meta.get("depth_unit_scale_factor", 1e-3))
    views: list[View] = []
    view_files: list[tuple[str, str]] = []  # per view: (file_path as written, where)
    skipped = n_distorted = 0
    for i, fr in enumerate(frames):
        where = f"{where_file} frame {i}"
        if not isinstance(fr, dict):
            raise SceneError(f"{where}: a frame must be an object with 'file_path' and 'transform_matrix'.")
        if fr.get("is_bad"):  # ScanNet++ flags blurry / unusable DSLR frames (in 'frames' and 'test_frames')
            skipped += 1
            continue
        view, distorted, where = _load_transforms_frame(json_path, meta, fr, where, depth_scale)
        n_distorted += distorted
        views.append(_downscale(view, downscale, where))
        view_files.append((str(fr["file_path"]), where))
    if not views:
        raise SceneError(f"{where_file}: every frame is flagged 'is_bad'; no usable views.")
    _make_names_unique(views, view_files, where_file, "file_path")
    extra = {k: v for k, v in meta.items() if k not in ("frames", "test_frames")}
    extra["skipped_bad_frames"] = skipped
    points, colors = _transforms_points(json_path, meta, views, view_files, extra)
    classes = meta.get("classes")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        raise SceneError(f"{where_file}: 'classes' must be a list of class names (index = class id).")
    base = json_path.parent
    name = base.name if json_path.name == "transforms.json" else f"{base.name}/{json_path.stem}"
    if n_distorted:
        warnings.warn(
            f"{where_file}: lens distortion (k1..k4, p1, p2) of {n_distorted} frame(s) is ignored: the "
            "pinhole model is used. Use undistorted images (ScanNet++: transforms_undistorted.json).",
            stacklevel=3,
        )
    return Scene(name, base, views, points, colors, classes, extra)


def _read_transforms_meta(json_path: Path) -> dict[str, Any]:
    """The parsed camera file, or a SceneError naming it (missing, malformed, or without a 'frames' list)."""
    where_file = str(json_path)
    try:
        with open(json_path) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise SceneError(f"{where_file}: file does not exist.") from None
    except json.JSONDecodeError as exc:
        raise SceneError(f"{where_file}: malformed JSON ({exc}); fix the syntax.") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise SceneError(
            f"{where_file}: missing key 'frames' (a list of frames with 'file_path' and 'transform_matrix')."
        )
    return meta


def _transforms_frames(meta: dict[str, Any], where_file: str, include_test_frames: bool) -> list[Any]:
    """'frames', plus the 'test_frames' not already in it when asked (ScanNet++ may list them in both)."""
    frames = list(meta["frames"])
    if include_test_frames:
        listed = {str(f.get("file_path")) for f in frames if isinstance(f, dict)}
        extra = [
            f for f in meta.get("test_frames", []) if not (isinstance(f, dict) and str(f.get("file_path")) in listed)
        ]
        n_dup = len(meta.get("test_frames", [])) - len(extra)
        if n_dup:  # the ScanNet++ downscale step (FiT3D's copy too) appends test_frames to frames in place
            warnings.warn(
                f"{where_file}: {n_dup} test_frames are already listed in 'frames' (the ScanNet++ downscale "
                "step appends them); each view is used once",
                stacklevel=4,
            )
        frames += extra
    if not frames:
        raise SceneError(f"{where_file}: 'frames' is empty; a scene needs at least one view.")
    return frames


def _load_transforms_frame(
    json_path: Path, meta: dict[str, Any], fr: dict[str, Any], where: str, depth_scale: float
) -> tuple[View, bool, str]:
    """One frame: its image, intrinsics, pose, optional depth / labels / mask, checked against each other.
    Returns the view (full size), whether its lens is distorted, and its description for later messages."""
    for key in ("file_path", "transform_matrix"):
        if key not in fr:
            raise SceneError(f"{where}: missing key {key!r}; every frame needs 'file_path' and 'transform_matrix'.")
    where = f"{where} ({fr['file_path']})"
    try:
        m = np.asarray(fr["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        raise SceneError(f"{where}: transform_matrix is not a numeric matrix.") from None
    c2w = opengl_to_opencv(_check_rotation(m, where))
    intr = _intrinsics(fr, meta, where)
    img_path = _resolve_frame_file(json_path, str(fr["file_path"]), where, "image", "file_path")
    image = read_image(img_path, where)  # [H, W, 3]
    h, w = image.shape[:2]
    if (intr["w"] is not None and intr["w"] != w) or (intr["h"] is not None and intr["h"] != h):
        raise SceneError(
            f"{where}: image {img_path} is {w}x{h} but the intrinsics say w={intr['w']}, h={intr['h']}. Fix: "
            "use the image folder the intrinsics belong to (ScanNet++: undistorted images for "
            "transforms_undistorted.json) or correct w/h and scale fl_x/fl_y/cx/cy with them."
        )
    cx = intr["cx"] if intr["cx"] is not None else w / 2.0
    cy = intr["cy"] if intr["cy"] is not None else h / 2.0
    K = np.array([[intr["fx"], 0.0, cx], [0.0, intr["fy"], cy], [0.0, 0.0, 1.0]])
    depth = labels = None
    depth_path = label_path = None
    if fr.get("depth_file_path"):
        depth_path = _resolve_frame_file(json_path, str(fr["depth_file_path"]), where, "depth", "depth_file_path")
        depth = read_depth(depth_path, where, depth_scale)
    if fr.get("label_file_path"):
        label_path = _resolve_frame_file(json_path, str(fr["label_file_path"]), where, "label", "label_file_path")
        labels = read_int_png(label_path, where, "label")
    view = View(Path(str(fr["file_path"])).stem, image, K, c2w, depth, labels)
    _check_sizes(view, where, depth_path, label_path)
    if fr.get("mask_path"):  # nerfstudio semantics (ScanNet++ uses the same key): 0 = ignore this pixel
        mask_path = _resolve_frame_file(json_path, str(fr["mask_path"]), where, "mask", "mask_path")
        mask = read_int_png(mask_path, where, "mask")
        if mask.shape != (h, w):
            raise SceneError(f"{where}: mask {mask_path} is {mask.shape[1]}x{mask.shape[0]}, image is {w}x{h}.")
        if view.depth is not None:
            view.depth[mask == 0] = 0
        if view.labels is not None:
            view.labels[mask == 0] = IGNORE_LABEL
        view.mask = (mask != 0).astype(np.float32)  # [H, W] 1 = use, 0 = ignore
    return view, bool(intr["distorted"]), where


def _transforms_points(
    json_path: Path, meta: dict[str, Any], views: list[View], view_files: list[tuple[str, str]], extra: dict[str, Any]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The scene's initial points: a listed .ply, or ScanNet++'s COLMAP points moved into the JSON's world
    (records where they came from in ``extra``); (None, None) when there are none."""
    where_file = str(json_path)
    base = json_path.parent
    if meta.get("ply_file_path"):
        ply = _resolve_frame_file(json_path, str(meta["ply_file_path"]), where_file, "point cloud", "ply_file_path")
        return read_ply_points(ply, where_file)
    if base.name == "nerfstudio" and (base.parent / "colmap" / "points3D.txt").is_file():
        pts_path = base.parent / "colmap" / "points3D.txt"
        world = _colmap_to_json_world(json_path, views, view_files)
        if world is not None:
            points, colors = _parse_points(pts_path)
            extra["points_file"] = str(pts_path)
            extra["points_world_from_colmap"] = world.tolist()
            return _transform(world, points.astype(np.float64)).astype(np.float32), colors
    return None, None


def _check_one_size_transforms(json_path: Path, frames: list[Any]) -> None:
    """All usable frames' images must have one size (every later stage stacks the views into one batch). Checked
    from the image headers before any pixel is read, so the one error lists every frame; frames with other
    problems (missing file, bad entry) are left to the main loop, which reports them in frame order."""
    sizes: list[tuple[str, tuple[int, int]]] = []
    for fr in frames:
        if not isinstance(fr, dict) or fr.get("is_bad") or "file_path" not in fr:
            continue
        try:
            path = _resolve_frame_file(json_path, str(fr["file_path"]), "", "image", "file_path")
            with Image.open(path) as im:
                sizes.append((str(fr["file_path"]), im.size))  # (W, H)
        except Exception:  # reported with its frame by the main loop
            continue
    _raise_if_mixed_sizes(sizes, str(json_path), "fl_x/fl_y/cx/cy (and per-frame w/h)")


def _raise_if_mixed_sizes(sizes: list[tuple[str, tuple[int, int]]], where_file: str, intrinsics: str) -> None:
    """One SceneError naming the image sizes found and a few frames of each (largest group first)."""
    groups: dict[tuple[int, int], list[str]] = {}
    for name, wh in sizes:
        groups.setdefault(wh, []).append(name)
    if len(groups) < 2:
        return
    parts = []
    for (w, h), names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(names[:3]) + (f", ... ({len(names) - 3} more)" if len(names) > 3 else "")
        parts.append(f"{w}x{h}: {len(names)} frame(s) ({shown})")
    raise SceneError(
        f"{where_file}: the images have {len(groups)} different sizes: {'; '.join(parts)}. Every later stage "
        "stacks the views into one batch, so a scene needs one image size. Fix: resize (or crop) all images to "
        f"one size and scale (or shift) {intrinsics} with them, or drop the odd frames."
    )


def _make_names_unique(views: list[View], files: list[tuple[str, str]], where_file: str, key: str) -> None:
    """View names are file stems; where two stems collide (``a/x.png``, ``b/x.png``) the colliding views are
    named by their relative path without extension instead. The same file listed twice is an error."""
    by_name: dict[str, list[int]] = {}
    for i, v in enumerate(views):
        by_name.setdefault(v.name, []).append(i)
    for idx in (ix for ix in by_name.values() if len(ix) > 1):
        for i in idx:
            rel = Path(files[i][0].replace("\\", "/")).with_suffix("").as_posix()
            views[i].name = rel[2:] if rel.startswith("./") else rel
    seen: dict[str, int] = {}
    for i, v in enumerate(views):
        if v.name in seen:
            j = seen[v.name]
            raise SceneError(
                f"{where_file}: {files[j][1]} and {files[i][1]} name the same file ({key} {files[i][0]!r}); a view "
                "may appear only once (ScanNet++: 'frames' and 'test_frames' must not overlap). Fix: remove the "
                "duplicate entry."
            )
        seen[v.name] = i


def _colmap_to_json_world(json_path: Path, views: list[View], files: list[tuple[str, str]]) -> np.ndarray | None:
    """[4, 4] rigid transform from the COLMAP model's world frame to the json's world frame, or None (warned).

    ScanNet++ writes ``transforms*.json`` from ``dslr/colmap`` with instant-ngp's world change (swap x and y,
    negate z) and no ``applied_transform`` entry, so ``points3D.txt`` cannot be used as is. Rather than assume
    that convention, the transform is measured: for every image in both ``colmap/images.txt`` and the json,
    ``c2w_json @ w2c_colmap`` must be the same matrix.
    """
    images_txt = json_path.parent.parent / "colmap" / "images.txt"
    skip = f"{json_path}: the points of {images_txt.parent / 'points3D.txt'} are not attached"
    if not images_txt.is_file():
        warnings.warn(
            f"{skip}: {images_txt} is missing, so their world frame cannot be matched to the json's. "
            "Fix: keep the ScanNet++ colmap folder complete (cameras.txt, images.txt, points3D.txt).",
            stacklevel=4,
        )
        return None
    json_c2w = {Path(f.replace("\\", "/")).name: v.cam_to_world for v, (f, _) in zip(views, files)}
    mats = [
        json_c2w[Path(im["name"]).name] @ im["w2c"]
        for im in _parse_images(images_txt)
        if Path(im["name"]).name in json_c2w
    ]
    if not mats:
        warnings.warn(
            f"{skip}: no image of {images_txt} is a frame of the json, so their world frames cannot be "
            "matched. Fix: use the colmap model the json was made from.",
            stacklevel=4,
        )
        return None
    world = mats[0]
    err = max(float(np.abs(m - world).max()) for m in mats) / max(1.0, float(np.abs(world[:3, 3]).max()))
    if err > 1e-3:
        warnings.warn(
            f"{skip}: its poses do not differ from the json's by one rigid transform (relative error "
            f"{err:.3g} over {len(mats)} images). Fix: use the colmap model the json was made from.",
            stacklevel=4,
        )
        return None
    return world


# ----------------------------------------------------------------------------------------------------------------
# COLMAP text model

# model name -> (how many leading parameters are f (1) or fx, fy (2); cx, cy follow; total parameter count)
_COLMAP_MODELS = {
    "SIMPLE_PINHOLE": (1, 3),
    "PINHOLE": (2, 4),
    "SIMPLE_RADIAL": (1, 4),
    "RADIAL": (1, 5),
    "OPENCV": (2, 8),
    "FULL_OPENCV": (2, 12),
    "OPENCV_FISHEYE": (2, 8),
    "SIMPLE_RADIAL_FISHEYE": (1, 4),
    "RADIAL_FISHEYE": (1, 5),
    "THIN_PRISM_FISHEYE": (2, 12),
    "FOV": (2, 5),
}
# not a perspective projection even with zero distortion parameters
_COLMAP_FISHEYE = ("OPENCV_FISHEYE", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "THIN_PRISM_FISHEYE", "FOV")


def _data_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SceneError(f"{path}: file does not exist.") from None
    return [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines())]


def _undistort_fix(model_dir: Path, root: Path) -> str:
    """The COLMAP commands that turn a distorted model into a PINHOLE text model this loader reads."""
    out = root / "undistorted"
    return (
        f"Fix: undistort the images with `colmap image_undistorter --image_path {root / 'images'} "
        f"--input_path {model_dir} --output_path {out} --output_type COLMAP` (--image_path: the folder "
        f"holding the images), then `colmap model_converter --input_path {out / 'sparse'} --output_path "
        f"{out / 'sparse'} --output_type TXT`, and load {out}."
    )


def _parse_cameras(path: Path, root: Path | None = None) -> dict[int, dict[str, Any]]:
    """cameras.txt -> {camera id: K [3, 3], w, h}. Only perspective cameras: pinhole models, and distortion models
    whose distortion parameters are all zero; anything else would misplace pixels, so it is an error."""
    root = path.parent if root is None else root
    cams: dict[int, dict[str, Any]] = {}
    for lineno, ln in _data_lines(path):
        if not ln or ln.startswith("#"):
            continue
        tok = ln.split()
        where = f"{path} line {lineno}"
        try:
            cam_id, model, w, h = int(tok[0]), tok[1], int(tok[2]), int(tok[3])
            params = [float(x) for x in tok[4:]]
        except (IndexError, ValueError):
            raise SceneError(f"{where}: expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...', got {ln!r}.") from None
        if model not in _COLMAP_MODELS:
            raise SceneError(
                f"{where}: camera model {model!r} is not supported (only PINHOLE-like cameras). "
                + _undistort_fix(path.parent, root)
            )
        nf, n_params = _COLMAP_MODELS[model]
        if len(params) != n_params:
            raise SceneError(
                f"{where}: model {model} takes {n_params} parameters, got {len(params)} in {ln!r}; re-export the model."
            )
        if w <= 0 or h <= 0:
            raise SceneError(f"{where}: image size {w}x{h} is not positive; re-export the model.")
        bad = [x for x in params if not math.isfinite(x)]
        if bad:
            raise SceneError(f"{where}: camera {cam_id} has non-finite parameters {params}; re-export the model.")
        fx = params[0]
        fy = params[1] if nf == 2 else params[0]
        cx, cy = params[nf], params[nf + 1]
        if fx <= 0 or fy <= 0:
            raise SceneError(
                f"{where}: camera {cam_id} focal length fx={fx:g}, fy={fy:g} is not positive; "
                "re-export the model (focal lengths are in pixels, > 0)."
            )
        extra = params[nf + 2 :]
        if model in _COLMAP_FISHEYE:
            raise SceneError(
                f"{where}: camera {cam_id} is a fisheye model ({model}), not a pinhole camera; this "
                "loader would misplace every pixel. " + _undistort_fix(path.parent, root)
            )
        if any(x != 0 for x in extra):
            raise SceneError(
                f"{where}: camera {cam_id} ({model}) has non-zero distortion parameters {extra}; this "
                "loader uses a pinhole model and would misplace pixels. " + _undistort_fix(path.parent, root)
            )
        cams[cam_id] = {"K": np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64), "w": w, "h": h}
    return cams


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _parse_images(path: Path) -> list[dict[str, Any]]:
    """images.txt: a header line per image (``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME``) followed by its 2D
    points line, which may be empty or missing. A header is recognised by its 10th token not being a number."""
    out = []
    for lineno, ln in _data_lines(path):
        if not ln or ln.startswith("#"):
            continue
        tok = ln.split()
        if len(tok) < 10 or _is_float(tok[9]):
            continue  # a POINTS2D line
        where = f"{path} line {lineno}"
        try:
            vals = [float(x) for x in tok[1:8]]
            cam_id = int(tok[8])
        except ValueError:
            raise SceneError(f"{where}: expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME', got {ln!r}.") from None
        q = np.array(vals[:4])
        if not np.isfinite(q).all() or np.linalg.norm(q) < 1e-9:
            raise SceneError(
                f"{where}: quaternion {q.tolist()} is zero or not finite; re-export the model or "
                "delete this image's two lines."
            )
        if not np.isfinite(vals[4:7]).all():
            raise SceneError(
                f"{where}: translation {vals[4:7]} is not finite; re-export the model or delete this image's two lines."
            )
        w2c = np.eye(4)
        w2c[:3, :3] = _qvec_to_rotmat(q)
        w2c[:3, 3] = vals[4:7]
        out.append({"name": " ".join(tok[9:]), "cam": cam_id, "w2c": w2c, "where": where})
    return out


def _parse_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """points3D.txt -> (xyz [P, 3], rgb [P, 3] in 0..1) float32; points with NaN/inf are dropped with a warning."""
    xyz, rgb = [], []
    for lineno, ln in _data_lines(path):
        if not ln or ln.startswith("#"):
            continue
        tok = ln.split()
        try:
            xyz.append([float(t) for t in tok[1:4]])
            rgb.append([float(t) for t in tok[4:7]])
        except ValueError:
            raise SceneError(f"{path} line {lineno}: expected 'POINT3D_ID X Y Z R G B ERROR TRACK...'.") from None
        if len(xyz[-1]) != 3 or len(rgb[-1]) != 3:
            raise SceneError(f"{path} line {lineno}: expected 'POINT3D_ID X Y Z R G B ERROR TRACK...'.")
    points, colors = drop_nonfinite_points(
        np.asarray(xyz, dtype=np.float32).reshape(-1, 3), np.asarray(rgb, dtype=np.float32).reshape(-1, 3) / 255.0, path
    )
    assert colors is not None
    return points, colors


def _load_colmap(model_dir: Path, root: Path, downscale: int) -> Scene:
    cams = _parse_cameras(model_dir / "cameras.txt", root)
    images = _parse_images(model_dir / "images.txt")
    if not images:
        raise SceneError(f"{model_dir / 'images.txt'}: no images listed.")
    # one image size per scene, checked on the cameras' sizes before any pixel is read (each image must match its
    # camera's size, checked below)
    sizes = [(im["name"], (cams[im["cam"]]["w"], cams[im["cam"]]["h"])) for im in images if im["cam"] in cams]
    _raise_if_mixed_sizes(sorted(sizes), str(model_dir / "images.txt"), "the cameras in cameras.txt")
    pts_path = model_dir / "points3D.txt"
    points, colors = _parse_points(pts_path) if pts_path.is_file() else (None, None)
    img_dirs = [
        model_dir / "images",
        root / "images",
        model_dir.parent / "images",
        model_dir.parent.parent / "images",
        root,
    ]
    views: list[View] = []
    files: list[tuple[str, str]] = []
    for im in sorted(images, key=lambda d: d["name"]):
        where = f"{model_dir / 'images.txt'} image {im['name']!r}"
        if im["cam"] not in cams:
            raise SceneError(f"{where}: camera id {im['cam']} is not in cameras.txt.")
        cam = cams[im["cam"]]
        img_path = next((d / im["name"] for d in img_dirs if (d / im["name"]).is_file()), None)
        if img_path is None:
            raise SceneError(
                f"{where}: image file not found in {', '.join(str(d) for d in img_dirs[:3])}; put the "
                "images in an 'images/' folder beside the model."
            )
        image = read_image(img_path, where)
        h, w = image.shape[:2]
        if (w, h) != (cam["w"], cam["h"]):
            raise SceneError(
                f"{where}: image {img_path} is {w}x{h} but camera {im['cam']} in cameras.txt is "
                f"{cam['w']}x{cam['h']}; use the images the model was built from."
            )
        view = View(Path(im["name"]).stem, image, cam["K"].copy(), _rigid_inverse(im["w2c"]))
        views.append(_downscale(view, downscale, where))
        files.append((im["name"], where))
    _make_names_unique(views, files, str(model_dir / "images.txt"), "image name")
    return Scene(root.name, root, views, points, colors, None, {"colmap_model": str(model_dir)})


# ----------------------------------------------------------------------------------------------------------------
# Entry point


def load_scene(path: str | Path, *, downscale: int = 1, include_test_frames: bool = False) -> Scene:
    """Load a scene folder (or a transforms.json file) into a :class:`Scene`.

    Looks, in order, for ``transforms.json``; a COLMAP text model in the folder, ``sparse/0`` or ``sparse``;
    ScanNet++'s ``nerfstudio/transforms_undistorted.json`` (also under ``dslr/``). ``downscale`` divides the
    image size (it must divide width and height). ``include_test_frames`` adds ScanNet++'s ``test_frames``
    (frames flagged ``is_bad`` are skipped in both lists).

    For a json in ScanNet++'s ``dslr/nerfstudio/`` folder, ``dslr/colmap/points3D.txt`` becomes ``Scene.points``
    (moved into the json's world frame, see :func:`_colmap_to_json_world`) unless the json names a
    ``ply_file_path``; each frame's ``mask_path`` becomes ``View.mask`` (folders tried: :func:`_search_roots`).
    Use :func:`check_resolution` when a recipe needs one exact image size.
    """
    path = Path(path)
    if not isinstance(downscale, int) or downscale < 1:
        raise SceneError(f"{path}: downscale must be a positive integer, got {downscale!r}.")
    if path.is_file():
        if path.suffix == ".json":
            return _load_transforms(path, downscale, include_test_frames)
        if path.name in ("cameras.txt", "images.txt", "points3D.txt"):
            return _load_colmap(path.parent, path.parent, downscale)
        raise SceneError(f"{path}: not a transforms .json file or a COLMAP text model file.")
    if not path.is_dir():
        raise SceneError(f"{path}: no such scene folder or file.")
    if (path / "transforms.json").is_file():
        return _load_transforms(path / "transforms.json", downscale, include_test_frames)
    for model_dir in (path, path / "sparse" / "0", path / "sparse"):
        if (model_dir / "cameras.txt").is_file() and (model_dir / "images.txt").is_file():
            return _load_colmap(model_dir, path, downscale)
        if (model_dir / "cameras.bin").is_file():
            raise SceneError(
                f"{model_dir}: binary COLMAP model found; convert it to text with "
                f"`colmap model_converter --input_path {model_dir} --output_path {model_dir} "
                "--output_type TXT`."
            )
    for cand in (
        path / "nerfstudio" / "transforms_undistorted.json",
        path / "dslr" / "nerfstudio" / "transforms_undistorted.json",
    ):
        if cand.is_file():
            return _load_transforms(cand, downscale, include_test_frames)
    raise SceneError(
        f"{path}: no scene found: expected transforms.json, a COLMAP text model (cameras.txt + images.txt, in the "
        "folder or sparse/0), or ScanNet++'s dslr/nerfstudio/transforms_undistorted.json."
    )


def check_resolution(scene: Scene, expected_wh: tuple[int, int], *, where: str = "") -> None:
    """Raise :class:`SceneError` unless every view of ``scene`` is exactly ``expected_wh = (width, height)``.

    For recipes that depend on one image size (FiT3D trains on ScanNet++ DSLR images downscaled by 2 and
    undistorted: 876x584): a scene prepared differently would otherwise train silently at another resolution.
    ``where`` (e.g. the notebook cell or config) is put in front of the message.
    """
    try:
        ew, eh = (int(x) for x in expected_wh)
    except (TypeError, ValueError):
        raise SceneError(f"check_resolution: expected_wh must be (width, height), got {expected_wh!r}.") from None
    if ew <= 0 or eh <= 0:
        raise SceneError(f"check_resolution: expected_wh must be positive, got {expected_wh!r}.")
    bad = [v for v in scene.views if (v.width, v.height) != (ew, eh)]
    if not bad:
        return
    found = "; ".join(f"frame {v.name} is {v.width}x{v.height}" for v in bad[:3])
    more = f" (and {len(bad) - 3} more of {len(scene.views)} views)" if len(bad) > 3 else ""
    raise SceneError(
        f"{where + ': ' if where else ''}scene {scene.name!r} ({scene.root}): {found}{more}; expected {ew}x{eh}. "
        "Fix: the official recipe uses the ScanNet++ toolkit's DSLR downscale by 2 then undistortion, giving "
        "876x584; run `python -m dslr.downscale` and `python -m dslr.undistort` from the toolkit, or pass "
        "downscale= to load_scene."
    )
