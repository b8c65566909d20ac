"""Offline synthetic indoor rooms, written in the same ``transforms.json`` layout as real data.

Why: the course must run without downloads, yet the later stages need what ScanNet++ gives — posed RGB views of a
furnished room, metric depth and semantic labels. This module builds a random room (walls, floor, ceiling, a window
with sky, a door, table and chairs, bed, cabinet, bookshelf, lamps, rug, plant, framed pictures) from box /
cylinder / sphere parts, bakes global illumination into its vertices once, and ray-casts views along a smooth
orbit. Everything is deterministic in ``seed``.

How the pictures are made:

* Geometry: every part is a grid of triangles whose edges are at most ``max_edge`` (12 cm by default) long, with
  its own vertices (flat faces keep flat normals, curved ones smooth normals) and per-vertex texture coordinates.
* Textures: scikit-image's bundled CC0 / public-domain images (``brick``, ``grass``, ``gravel``; ``astronaut``,
  ``coffee``, ``chelsea``, ``rocket``, ``cat``, ``hubble_deep_field`` as paintings) plus procedural wood, paint,
  fabric, rug and sky. Tiled textures repeat mirrored so they have no seams.
* Lighting (baked per vertex): direct light from area-light samples (window sky, ceiling panel, lamp shade) with
  shadow rays, then ``bounces`` rounds of cosine-weighted indirect light (one set of traced rays, re-gathered each
  round), lightly smoothed over the mesh to hide Monte-Carlo noise. In most rooms sunlight also enters through a
  window: it is traced per sub-pixel (crisp sun patches with window-bar shadows) and feeds the bounces.
* Rendering: one ray per sub-pixel (``supersample``² per pixel) for colour, the pixel-centre ray for planar depth
  (``t / |K⁻¹[u, v, 1]|``) and labels; fixed exposure per scene so that colours agree between views. All
  shading is view-independent (Lambertian), as a 3D Gaussian fit of the views assumes.
* Cameras: a smooth orbit >= 0.9 m from the walls at 1.2-1.8 m height, looking past the room's middle, 15 degrees
  between consecutive views (about 80 % of a view's pixels reappear in the next one).
* Ray casting: embreex (Embree) when installed, else trimesh's pure-Python intersector (much slower, warned).

Output of :func:`generate_scene` (read back by :func:`fit3d_helpers.data.load_scene`)::

    <scene>/transforms.json          fl_x, fl_y, cx, cy, w, h, classes, OpenGL transform_matrix per frame
    <scene>/images/frame_00000.png   8-bit RGB
    <scene>/depth/frame_00000.png    16-bit planar depth in millimetres (depth_unit_scale_factor 0.001)
    <scene>/labels/frame_00000.png   8-bit class ids into CLASSES
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import cache
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import sparse

from .data import opengl_to_opencv
from .utils import atomic_dir, config_hash, progress, read_json, write_json

GENERATOR_VERSION = 3  # bump when the generator's output changes: it is part of the dataset cache key
# (3: the generation's wall times moved from transforms.json to timing.json)
_TIMING_KEYS = ("bake_seconds", "seconds")

CLASSES: list[str] = [
    "wall",
    "floor",
    "ceiling",
    "window",
    "door",
    "table",
    "chair",
    "cabinet",
    "bed",
    "lamp",
    "rug",
    "picture",
    "shelf",
    "plant",
]
_C = {name: i for i, name in enumerate(CLASSES)}
IGNORE_LABEL = 255

ROOM_KINDS = ("dining", "bedroom")  # generate_dataset alternates them so every split has beds and tables
_PAINTINGS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "hubble_deep_field")
_UP = np.array([0.0, 0.0, 1.0])


@dataclass
class DatasetInfo:
    """Where a generated dataset lives; ``train`` / ``val`` are scene folders for ``load_scene``."""

    root: Path
    train: list[Path]
    val: list[Path]
    classes: list[str]
    seconds: float  # wall time the generation took (as recorded when it was made)
    params: dict[str, Any] = field(default_factory=dict)
    cached: bool = False  # True when this call found the dataset on disk and generated nothing


# ================================================================================================================
# Textures (linear-light albedo, float32 [Ht, Wt, 3])


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def _hex(rgb: tuple[float, float, float]) -> np.ndarray:
    """An sRGB colour (0..1) as linear albedo [3]."""
    return _srgb_to_linear(np.asarray(rgb, dtype=np.float32))


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float | tuple[float, float]) -> np.ndarray:
    """Tileable smooth noise [H, W], zero mean, unit std (Gaussian-filtered white noise, wrapped borders)."""
    sy, sx = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    gain = np.exp(-2 * np.pi**2 * ((fy * sy) ** 2 + (fx * sx) ** 2))  # Gaussian blur as a (periodic) FFT filter
    n = np.fft.irfft2(np.fft.rfft2(rng.standard_normal(shape)) * gain, s=shape)
    return ((n - n.mean()) / (n.std() + 1e-8)).astype(np.float32)


@cache
def _skimage(name: str) -> np.ndarray:
    """A scikit-image bundled image as float32 in 0..1 (grey [H, W] or RGB [H, W, 3])."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 3:
        img = img[..., :3]
    return img.astype(np.float32) / 255.0


def _tex_paint(rng: np.random.Generator, rgb: np.ndarray, size: int = 128, amount: float = 0.05) -> np.ndarray:
    v = 1 + amount * _noise(rng, (size, size), 12) + 0.4 * amount * _noise(rng, (size, size), 1.5)
    return (rgb[None, None] * v[..., None]).astype(np.float32)


def _tex_wood(rng: np.random.Generator, rgb: np.ndarray, size: int = 256, planks: int = 0) -> np.ndarray:
    """Wood grain running along u (texture columns); ``planks`` > 0 adds staggered floor boards."""
    y = (np.arange(size) / size)[:, None]
    warp = _noise(rng, (size, size), (size / 16, size / 4))
    rings = np.sin(2 * np.pi * (y * rng.uniform(18, 30) + 0.35 * warp))
    streak = _noise(rng, (size, size), (0.6, size / 10))
    v = 0.82 + 0.10 * rings + 0.08 * streak
    if planks:
        ph = size // planks
        rows = np.arange(size) // ph
        tint = rng.uniform(0.82, 1.12, size=planks + 1)[rows][:, None]
        v = v * tint
        gap = (np.arange(size) % ph < 2)[:, None]
        v = np.where(gap, v * 0.45, v)
        offs = rng.integers(0, size, size=planks + 1)
        lengths = size // 2
        for r in range(planks):
            for e in (offs[r] % size, (offs[r] + lengths) % size):
                v[r * ph : (r + 1) * ph, max(e - 1, 0) : e + 1] *= 0.5
    return (rgb[None, None] * v[..., None]).astype(np.float32)


def _tex_fabric(
    rng: np.random.Generator, rgb: np.ndarray, rgb2: np.ndarray | None = None, pattern: str = "plain", size: int = 128
) -> np.ndarray:
    x = np.arange(size)[None, :]
    y = np.arange(size)[:, None]
    weave = 0.06 * np.sin(np.pi * x / 1.5) * np.sin(np.pi * y / 1.5)
    v = 1 + weave + 0.05 * _noise(rng, (size, size), 1.0) + 0.04 * _noise(rng, (size, size), 10)
    out = rgb[None, None] * v[..., None]
    if pattern != "plain" and rgb2 is not None:
        period = size // 4
        sx = ((x % period) < period // 3).astype(np.float32)
        sy = ((y % period) < period // 3).astype(np.float32)
        m = np.maximum(sx, sy) if pattern == "plaid" else np.broadcast_to(sy, (size, size))
        m = m * (0.6 if pattern == "plaid" else 1.0) + (sx * sy * 0.4 if pattern == "plaid" else 0)
        out = out * (1 - m[..., None]) + (rgb2[None, None] * v[..., None]) * m[..., None]
    return out.astype(np.float32)


def _tex_tinted(gray: np.ndarray, rgb: np.ndarray, lo: float = 0.45, hi: float = 1.25) -> np.ndarray:
    g = (gray - gray.mean()) / (gray.std() + 1e-6)
    v = np.clip(1 + 0.25 * g, lo, hi)
    return (rgb[None, None] * v[..., None]).astype(np.float32)


def _tex_rug(rng: np.random.Generator, size: int = 192) -> np.ndarray:
    """A patterned rug: border bands and a diamond field (stretched once over the rug)."""
    palette = [
        _hex(c)
        for c in (
            (0.55, 0.12, 0.12),
            (0.85, 0.75, 0.55),
            (0.12, 0.2, 0.4),
            (0.3, 0.45, 0.3),
            (0.8, 0.5, 0.2),
            (0.35, 0.2, 0.4),
        )
    ]
    idx = rng.permutation(len(palette))
    c_field, c_border, c_motif = palette[idx[0]], palette[idx[1]], palette[idx[2]]
    u = (np.arange(size) + 0.5) / size
    uu, vv = np.meshgrid(u, u)
    edge = np.minimum(np.minimum(uu, 1 - uu), np.minimum(vv, 1 - vv))
    k = rng.integers(3, 7)
    diamond = (np.abs(((uu * k) % 1) - 0.5) + np.abs(((vv * k) % 1) - 0.5)) < rng.uniform(0.25, 0.4)
    out = np.where(diamond[..., None], c_motif, c_field)
    out = np.where((edge < 0.1)[..., None], c_border, out)
    out = np.where(((edge > 0.06) & (edge < 0.075))[..., None], c_motif, out)
    v = 1 + 0.08 * _noise(rng, (size, size), 0.8)
    return (out * v[..., None]).astype(np.float32)


def _tex_drawers(rng: np.random.Generator, rgb: np.ndarray, n: int, size: int = 128) -> np.ndarray:
    """A cabinet front: ``n`` drawers separated by dark grooves (stretched once over the front face)."""
    base = _tex_paint(rng, rgb, size, 0.03)
    rows = np.arange(size)
    groove = (rows % (size // n) < 2) | (rows >= size - 2)
    base[groove] *= 0.35
    base[:, :2] *= 0.35
    base[:, -2:] *= 0.35
    return base


def _tex_sky(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """What the window shows (display-referred, linear): blue sky, soft clouds, a band of distant trees."""
    t = np.linspace(0, 1, size)[:, None, None]  # 0 = top row
    top, horizon = _hex((0.35, 0.55, 0.9)), _hex((0.8, 0.9, 1.0))
    sky = top * (1 - t) + horizon * t
    clouds = np.clip(_noise(rng, (size, size), (size / 16, size / 6)) - 0.3, 0, None)[..., None]
    sky = sky * (1 - 0.6 * np.clip(clouds, 0, 1)) + 0.6 * np.clip(clouds, 0, 1) * _hex((0.97, 0.97, 0.97))
    ridge = 0.78 + 0.06 * _noise(rng, (1, size), (0.1, size / 12))[0]  # tree line height (fraction of height)
    trees = (np.linspace(0, 1, size)[:, None] > ridge[None, :])[..., None]
    green = _tex_tinted(_skimage("grass")[:size, :size], _hex((0.25, 0.4, 0.2)))
    return np.where(trees, green, sky).astype(np.float32)


# ================================================================================================================
# Geometry


@dataclass
class _Material:
    texture: np.ndarray  # float32 [Ht, Wt, 3]: albedo, or for emitters what the camera sees (linear)
    mirror: bool  # True: tiled (uv in tiles, mirrored repeat); False: stretched once (uv in 0..1, clamped)
    emission: np.ndarray | None = None  # float [3] radiance used for lighting; None = not a light
    mean: np.ndarray = field(default_factory=lambda: np.zeros(3))  # [3] mean albedo, for indirect bounces

    def __post_init__(self) -> None:
        self.mean = self.texture.reshape(-1, 3).mean(0)


@dataclass
class _Mesh:
    V: np.ndarray  # float64 [Nv, 3]
    N: np.ndarray  # float64 [Nv, 3] unit shading normals
    UV: np.ndarray  # float64 [Nv, 2]
    F: np.ndarray  # int64 [Nf, 3]
    face_mat: np.ndarray  # int64 [Nf]
    face_cls: np.ndarray  # int64 [Nf]
    face_normal: np.ndarray  # float64 [Nf, 3] geometric normal, oriented like the shading normals
    face_area: np.ndarray  # float64 [Nf]
    vert_mat: np.ndarray  # int64 [Nv]
    materials: list[_Material]


class _Builder:
    """Accumulates triangle grids; every surface gets its own vertices so normals/uvs never blend across parts."""

    def __init__(self, max_edge: float) -> None:
        self.max_edge = max_edge
        self.materials: list[_Material] = []
        self._v: list[np.ndarray] = []
        self._n: list[np.ndarray] = []
        self._uv: list[np.ndarray] = []
        self._f: list[np.ndarray] = []
        self._fm: list[np.ndarray] = []
        self._fc: list[np.ndarray] = []
        self._count = 0

    def material(self, texture: np.ndarray, *, mirror: bool = True, emission: np.ndarray | None = None) -> int:
        self.materials.append(
            _Material(
                np.ascontiguousarray(texture, dtype=np.float32),
                mirror,
                None if emission is None else np.asarray(emission, dtype=np.float64),
            )
        )
        return len(self.materials) - 1

    def _grid(self, pos: np.ndarray, nrm: np.ndarray, uv: np.ndarray, mat: int, cls: int) -> None:
        """pos/nrm [nv+1, nu+1, 3], uv [nv+1, nu+1, 2] -> two triangles per cell, wound so that the
        geometric normal (e_u x e_v) matches the shading normal."""
        nv, nu = pos.shape[0] - 1, pos.shape[1] - 1
        idx = np.arange((nv + 1) * (nu + 1)).reshape(nv + 1, nu + 1) + self._count
        a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
        c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
        faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
        self._v.append(pos.reshape(-1, 3))
        self._n.append(nrm.reshape(-1, 3))
        self._uv.append(uv.reshape(-1, 2))
        self._f.append(faces)
        self._fm.append(np.full(len(faces), mat))
        self._fc.append(np.full(len(faces), cls))
        self._count += (nv + 1) * (nu + 1)

    def quad(
        self,
        origin: np.ndarray,
        eu: np.ndarray,
        ev: np.ndarray,
        mat: int,
        cls: int,
        tile: float | None = None,
        uv_offset: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        """Parallelogram ``origin + s*eu + t*ev``; normal = eu x ev. ``tile`` (metres per texture repeat) or None
        to stretch the texture once, upright when eu points right and ev up."""
        origin, eu, ev = (np.asarray(x, dtype=np.float64) for x in (origin, eu, ev))
        lu, lv = np.linalg.norm(eu), np.linalg.norm(ev)
        nu = max(1, int(math.ceil(lu / self.max_edge)))
        nv = max(1, int(math.ceil(lv / self.max_edge)))
        s = np.linspace(0, 1, nu + 1)[None, :, None]
        t = np.linspace(0, 1, nv + 1)[:, None, None]
        pos = origin + s * eu + t * ev  # [nv+1, nu+1, 3]
        n = np.cross(eu, ev)
        n = n / np.linalg.norm(n)
        nrm = np.broadcast_to(n, pos.shape)
        if tile is None:
            uv = np.concatenate(np.broadcast_arrays(s, 1 - t), axis=-1)
        else:
            uv = np.concatenate(np.broadcast_arrays(s * lu / tile + uv_offset[0], t * lv / tile + uv_offset[1]), -1)
        self._grid(pos, nrm, uv, mat, cls)

    def box(
        self,
        centre: np.ndarray,
        size: tuple[float, float, float],
        yaw: float,
        mat: int,
        cls: int,
        tile: float | None = 1.0,
        bottom: bool = True,
        front_mat: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        """Box with local axes rotated by ``yaw`` about z; ``front_mat`` textures the +y face once (drawers)."""
        c = np.asarray(centre, dtype=np.float64)
        ax = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        ay = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
        az = _UP
        hx, hy, hz = (0.5 * s for s in size)
        off = tuple(rng.uniform(0, 4, 2)) if rng is not None else (0.0, 0.0)
        faces = [
            (c + hx * ax - hy * ay - hz * az, 2 * hy * ay, 2 * hz * az, "x"),
            (c - hx * ax + hy * ay - hz * az, -2 * hy * ay, 2 * hz * az, "x"),
            (c + hx * ax + hy * ay - hz * az, -2 * hx * ax, 2 * hz * az, "+y"),
            (c - hx * ax - hy * ay - hz * az, 2 * hx * ax, 2 * hz * az, "y"),
            (c - hx * ax - hy * ay + hz * az, 2 * hx * ax, 2 * hy * ay, "z"),
        ]
        if bottom:
            faces.append((c - hx * ax + hy * ay - hz * az, 2 * hx * ax, -2 * hy * ay, "z"))
        for o, eu, ev, tag in faces:
            if tag == "+y" and front_mat is not None:
                self.quad(o, eu, ev, front_mat, cls, None)
            else:
                self.quad(o, eu, ev, mat, cls, tile, off)

    def frustum(
        self,
        base: np.ndarray,
        r0: float,
        r1: float,
        height: float,
        mat: int,
        cls: int,
        tile: float | None = 0.5,
        caps: tuple[bool, bool] = (True, True),
        cap_mat: int | None = None,
    ) -> None:
        """Vertical (truncated) cone / cylinder from ``base`` up, radii r0 (bottom) and r1 (top)."""
        base = np.asarray(base, dtype=np.float64)
        rmax = max(r0, r1)
        ns = max(12, int(math.ceil(2 * math.pi * rmax / self.max_edge)))
        nh = max(1, int(math.ceil(math.hypot(height, r0 - r1) / self.max_edge)))
        ang = np.linspace(0, 2 * math.pi, ns + 1)[None, :]
        t = np.linspace(0, 1, nh + 1)[:, None]
        r = r0 + (r1 - r0) * t
        pos = np.stack(
            np.broadcast_arrays(base[0] + r * np.cos(ang), base[1] + r * np.sin(ang), base[2] + height * t), -1
        )
        slope = (r0 - r1) / height
        nrm = np.stack(np.broadcast_arrays(np.cos(ang), np.sin(ang), slope + 0 * t), -1)
        nrm = nrm / np.linalg.norm(nrm, axis=-1, keepdims=True)
        tl = tile or 1.0
        uv = np.stack(np.broadcast_arrays(ang * rmax / tl + 0 * t, t * height / tl + 0 * ang), -1)
        self._grid(pos, nrm, uv, mat, cls)
        for is_top, rad, z in ((False, r0, 0.0), (True, r1, height)):
            if not caps[int(is_top)] or rad <= 0:
                continue
            nr = max(1, int(math.ceil(rad / self.max_edge)))
            rr = np.linspace(0, rad, nr + 1)[:, None]
            p = np.stack(
                np.broadcast_arrays(base[0] + rr * np.cos(ang), base[1] + rr * np.sin(ang), base[2] + z + 0 * rr * ang),
                -1,
            )
            n = np.broadcast_to(np.array([0.0, 0.0, 1.0 if is_top else -1.0]), p.shape)
            uvc = (p[..., :2] - base[:2]) / tl
            self._grid(p, n, uvc, cap_mat if cap_mat is not None else mat, cls)

    def sphere(self, centre: np.ndarray, radius: np.ndarray | float, mat: int, cls: int, tile: float = 0.4) -> None:
        """(Ellipsoidal) UV sphere; ``radius`` may be [3] for an ellipsoid."""
        rad = np.broadcast_to(np.asarray(radius, dtype=np.float64), (3,))
        ns = max(12, int(math.ceil(2 * math.pi * rad.max() / self.max_edge)))
        nt = max(6, int(math.ceil(math.pi * rad.max() / self.max_edge)))
        phi = np.linspace(0, 2 * math.pi, ns + 1)[None, :]
        th = np.linspace(math.pi, 0, nt + 1)[:, None]  # bottom to top
        unit = np.stack(
            np.broadcast_arrays(np.sin(th) * np.cos(phi), np.sin(th) * np.sin(phi), np.cos(th) + 0 * phi), -1
        )  # [nt+1, ns+1, 3]
        pos = np.asarray(centre) + unit * rad
        nrm = unit / rad
        nrm = nrm / np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-9)
        r = rad.max() / tile
        uv = np.stack(np.broadcast_arrays(phi * r + 0 * th, (math.pi - th) * r + 0 * phi), -1)
        self._grid(pos, nrm, uv, mat, cls)

    def build(self) -> _Mesh:
        V = np.concatenate(self._v).astype(np.float64)
        N = np.concatenate(self._n).astype(np.float64)
        UV = np.concatenate(self._uv).astype(np.float64)
        F = np.concatenate(self._f).astype(np.int64)
        fm = np.concatenate(self._fm).astype(np.int64)
        fc = np.concatenate(self._fc).astype(np.int64)
        cr = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
        area = 0.5 * np.linalg.norm(cr, axis=1)
        keep = area > 1e-12  # drop degenerate triangles (sphere poles, cone tips)
        F, fm, fc, cr, area = F[keep], fm[keep], fc[keep], cr[keep], area[keep]
        fn = cr / (2 * area[:, None])
        flip = np.einsum("ij,ij->i", fn, N[F].mean(1)) < 0
        fn[flip] *= -1
        vm = np.zeros(len(V), dtype=np.int64)
        vm[F.ravel()] = np.repeat(fm, 3)
        return _Mesh(V, N, UV, F, fm, fc, fn, area, vm, self.materials)


# ================================================================================================================
# Ray casting


class _Tracer:
    """Closest-hit and shadow queries over one triangle mesh: embreex when available, trimesh otherwise."""

    def __init__(self, mesh: _Mesh) -> None:
        tris = np.ascontiguousarray(mesh.V[mesh.F], dtype=np.float32)  # [Nf, 3, 3]
        try:
            from embreex import rtcore_scene as rtcs
            from embreex.mesh_construction import TriangleMesh

            self._scene = rtcs.EmbreeScene()
            TriangleMesh(self._scene, tris)
            self.kind = "embree"
        except ImportError:
            import trimesh

            warnings.warn(
                "embreex is not installed: falling back to trimesh's ray caster (much slower). "
                "`pip install embreex` for the fast path.",
                stacklevel=2,
            )
            self._mesh = trimesh.Trimesh(mesh.V, mesh.F, process=False)
            self._ray = trimesh.ray.ray_triangle.RayMeshIntersector(self._mesh)
            self.kind = "trimesh"

    def intersect(
        self, o: np.ndarray, d: np.ndarray, chunk: int = 1 << 20
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """o, d [N, 3] (d unit) -> prim [N] (-1 = miss), t [N], barycentric u [N], v [N] (weights of vertex 1, 2)."""
        n = len(o)
        prim = np.full(n, -1, dtype=np.int64)
        t = np.full(n, np.inf, dtype=np.float32)
        u = np.zeros(n, dtype=np.float32)
        v = np.zeros(n, dtype=np.float32)
        for s in range(0, n, chunk):
            oc = np.ascontiguousarray(o[s : s + chunk], dtype=np.float32)
            dc = np.ascontiguousarray(d[s : s + chunk], dtype=np.float32)
            if self.kind == "embree":
                r = self._scene.run(oc, dc, output=1)
                prim[s : s + chunk] = r["primID"]
                t[s : s + chunk] = r["tfar"]
                u[s : s + chunk] = r["u"]
                v[s : s + chunk] = r["v"]
            else:
                import trimesh

                tri, ray, loc = self._ray.intersects_id(oc, dc, multiple_hits=False, return_locations=True)
                prim[s + ray] = tri
                t[s + ray] = np.linalg.norm(loc - oc[ray], axis=1)
                bary = trimesh.triangles.points_to_barycentric(self._mesh.triangles[tri], loc)
                u[s + ray], v[s + ray] = bary[:, 1], bary[:, 2]
        return prim, t, u, v

    def occluded(self, o: np.ndarray, d: np.ndarray, tmax: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
        """bool [N]: something is hit before distance tmax along the unit direction d."""
        out = np.zeros(len(o), dtype=bool)
        for s in range(0, len(o), chunk):
            oc = np.ascontiguousarray(o[s : s + chunk], dtype=np.float32)
            dc = np.ascontiguousarray(d[s : s + chunk], dtype=np.float32)
            tc = np.ascontiguousarray(tmax[s : s + chunk], dtype=np.float32)
            if self.kind == "embree":
                out[s : s + chunk] = self._scene.run(oc, dc, dists=tc, query="OCCLUDED") != -1
            else:
                _, t, _, _ = self.intersect(oc, dc)
                out[s : s + chunk] = t < tc
        return out


# ================================================================================================================
# Room layout


@dataclass
class _Wall:
    origin: np.ndarray  # [3] left end (seen from inside) at floor level
    right: np.ndarray  # [3] unit, along the wall
    normal: np.ndarray  # [3] unit, into the room
    length: float
    used: list[tuple[float, float, float, float]] = field(default_factory=list)  # (s0, s1, z0, z1)

    def at(self, s: float, z: float, off: float = 0.0) -> np.ndarray:
        return self.origin + s * self.right + z * _UP + off * self.normal

    def free(self, s0: float, s1: float, z0: float, z1: float, margin: float = 0.1) -> bool:
        if s0 < 0.05 or s1 > self.length - 0.05:
            return False
        return all(s1 + margin <= a or s0 - margin >= b or z1 <= c or z0 >= d for a, b, c, d in self.used)

    @property
    def yaw(self) -> float:
        """Yaw that maps a box's local x to ``right`` and local y to ``normal`` (its +y face looks into the room)."""
        return math.atan2(self.right[1], self.right[0])


class _Room:
    def __init__(self, rng: np.random.Generator, max_edge: float) -> None:
        self.rng = rng
        self.b = _Builder(max_edge)
        self.W = float(rng.uniform(4.0, 6.0))
        self.D = float(rng.uniform(3.6, 5.0))
        self.H = float(rng.uniform(2.5, 3.0))
        W, D = self.W, self.D
        self.walls = [
            _Wall(np.array([W, 0, 0.0]), np.array([-1.0, 0, 0]), np.array([0, 1.0, 0]), W),
            _Wall(np.array([W, D, 0.0]), np.array([0, -1.0, 0]), np.array([-1.0, 0, 0]), D),
            _Wall(np.array([0, D, 0.0]), np.array([1.0, 0, 0]), np.array([0, -1.0, 0]), W),
            _Wall(np.array([0, 0, 0.0]), np.array([0, 1.0, 0]), np.array([1.0, 0, 0]), D),
        ]
        self.floor_used: list[tuple[float, float, float, float]] = []  # (x0, y0, x1, y1)
        self.objects: list[str] = []
        self.table_rect: tuple[float, float, float, float] | None = None
        self.windows: list[tuple[_Wall, int]] = []  # (wall, sky material id)
        self.sun: _Sun | None = None

    # ---- bookkeeping
    def rect_free(self, r: tuple[float, float, float, float], margin: float = 0.05) -> bool:
        x0, y0, x1, y1 = r
        if x0 < -1e-6 or y0 < -1e-6 or x1 > self.W + 1e-6 or y1 > self.D + 1e-6:
            return False
        return all(
            x1 + margin <= a or x0 - margin >= c or y1 + margin <= b or y0 - margin >= d
            for a, b, c, d in self.floor_used
        )

    def wall_rect(self, wall: _Wall, s0: float, s1: float, depth: float) -> tuple[float, float, float, float]:
        pts = np.array([wall.at(s0, 0), wall.at(s1, 0), wall.at(s0, 0, depth), wall.at(s1, 0, depth)])
        return (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())

    def place_on_wall(
        self, width: float, z0: float, z1: float, depth: float = 0.0, walls: list[int] | None = None, tries: int = 40
    ) -> tuple[_Wall, float] | None:
        """Find a free wall span (and floor footprint when depth > 0); reserve it; return (wall, centre s)."""
        for _ in range(tries):
            k = int(self.rng.choice(walls if walls is not None else 4))
            wall = self.walls[k]
            if wall.length < width + 0.3:
                continue
            s = float(self.rng.uniform(width / 2 + 0.1, wall.length - width / 2 - 0.1))
            if not wall.free(s - width / 2, s + width / 2, z0, z1):
                continue
            rect = self.wall_rect(wall, s - width / 2, s + width / 2, depth) if depth > 0 else None
            if rect is not None and not self.rect_free(rect):
                continue
            wall.used.append((s - width / 2, s + width / 2, z0, z1))
            if rect is not None:
                self.floor_used.append(rect)
            return wall, s
        return None

    # ---- materials
    def paint(self, rgb: tuple[float, float, float], amount: float = 0.05) -> int:
        return self.b.material(_tex_paint(self.rng, _hex(rgb), amount=amount))

    def wood(self, rgb: tuple[float, float, float], planks: int = 0) -> int:
        return self.b.material(_tex_wood(self.rng, _hex(rgb), planks=planks))

    def fabric(
        self, rgb: tuple[float, float, float], rgb2: tuple[float, float, float] | None = None, pattern: str = "plain"
    ) -> int:
        return self.b.material(_tex_fabric(self.rng, _hex(rgb), None if rgb2 is None else _hex(rgb2), pattern))

    def pick(self, options: list[Any]) -> Any:
        return options[int(self.rng.integers(len(options)))]


_WALL_PAINTS = [
    (0.93, 0.91, 0.86),
    (0.86, 0.82, 0.74),
    (0.8, 0.82, 0.83),
    (0.72, 0.8, 0.86),
    (0.74, 0.8, 0.7),
    (0.93, 0.86, 0.66),
    (0.88, 0.76, 0.72),
]
_WOODS = [(0.55, 0.38, 0.22), (0.72, 0.55, 0.36), (0.38, 0.24, 0.14), (0.8, 0.68, 0.5), (0.5, 0.3, 0.2)]
_FABRICS = [
    (0.7, 0.2, 0.2),
    (0.2, 0.35, 0.6),
    (0.3, 0.5, 0.35),
    (0.85, 0.7, 0.3),
    (0.5, 0.3, 0.55),
    (0.25, 0.25, 0.3),
    (0.9, 0.55, 0.4),
]
_PAINTED = [(0.95, 0.95, 0.93), (0.3, 0.35, 0.4), (0.6, 0.7, 0.6), (0.8, 0.65, 0.5), (0.2, 0.2, 0.22)]


def _build_room(rng: np.random.Generator, max_edge: float, kind: str | None = None) -> _Room:
    """A random furnished room. Cameras later orbit >= 0.9 m from the walls at 1.2-1.8 m height, so everything
    taller than 1.1 m is kept within 0.5 m of a wall."""
    room = _Room(rng, max_edge)
    b, W, D, H = room.b, room.W, room.D, room.H

    # ---- shell: floor, ceiling, walls (one accent wall in brick sometimes)
    floor_kind = room.pick(["wood", "wood", "stone", "carpet"])
    if floor_kind == "wood":
        m_floor, tile_floor = b.material(_tex_wood(rng, _hex(room.pick(_WOODS)), 512, planks=12)), 2.0
    elif floor_kind == "stone":
        tint = _hex(room.pick([(0.7, 0.66, 0.6), (0.55, 0.55, 0.55)]))
        m_floor, tile_floor = b.material(_tex_tinted(_skimage("gravel"), tint)), 1.2
    else:  # carpet
        tint = _hex(room.pick([(0.55, 0.5, 0.45), (0.4, 0.45, 0.55)]))
        m_floor, tile_floor = b.material(_tex_tinted(_skimage("grass"), tint, 0.7, 1.2)), 0.8
    b.quad([0, 0, 0], [W, 0, 0], [0, D, 0], m_floor, _C["floor"], tile_floor)
    m_ceiling = room.paint((0.95, 0.95, 0.94), 0.02)
    b.quad([0, 0, H], [0, D, 0], [W, 0, 0], m_ceiling, _C["ceiling"], 2.0)
    m_wall = room.paint(room.pick(_WALL_PAINTS), 0.04)
    accent = int(rng.integers(4)) if rng.random() < 0.45 else -1
    m_brick = b.material(
        _tex_tinted(_skimage("brick"), _hex(room.pick([(0.62, 0.32, 0.24), (0.8, 0.78, 0.74)])), 0.4, 1.3)
    )
    for k, wall in enumerate(room.walls):
        mat, tile = (m_brick, 1.6) if k == accent else (m_wall, 2.0)
        b.quad(wall.origin, wall.right * wall.length, _UP * H, mat, _C["wall"], tile, tuple(rng.uniform(0, 2, 2)))
    room.objects.append(f"floor:{floor_kind}")

    m_white = room.paint((0.94, 0.94, 0.92), 0.02)
    m_metal = room.paint((0.18, 0.18, 0.2), 0.03)

    # ---- the room's main furniture, placed first near the middle (the cameras look there)
    if kind is None:
        kind = "bedroom" if rng.random() < 0.4 else "dining"
    if kind not in ROOM_KINDS:
        raise ValueError(f"room kind {kind!r} is not one of {ROOM_KINDS}")
    room.objects.append(f"kind:{kind}")
    if kind == "bedroom":
        _bedroom(room, m_metal)
    else:
        _dining(room, m_metal)

    # ---- windows (emissive sky: also the main light)
    sky = _tex_sky(rng)
    for _ in range(1 if rng.random() < 0.6 else 2):
        ww = float(rng.uniform(1.0, 1.8))
        sill = float(rng.uniform(0.8, 1.0))
        wh = float(min(rng.uniform(1.1, 1.5), H - sill - 0.25))
        spot = room.place_on_wall(ww + 0.2, sill - 0.1, sill + wh + 0.1)
        if spot is None:
            continue
        wall, s = spot
        m_sky = b.material(sky, mirror=False, emission=sky.reshape(-1, 3).mean(0) * 2.2)
        b.quad(wall.at(s - ww / 2, sill, 0.004), wall.right * ww, _UP * wh, m_sky, _C["window"], None)
        fw, fd = 0.06, 0.07  # frame bar width / depth
        for zc, hgt in ((sill - fw / 2, fw), (sill + wh + fw / 2, fw)):
            b.box(wall.at(s, zc, fd / 2), (ww + 2 * fw, fd, hgt), wall.yaw, m_white, _C["window"], 1.0)
        for sc in (s - ww / 2 - fw / 2, s + ww / 2 + fw / 2):
            b.box(wall.at(sc, sill + wh / 2, fd / 2), (fw, fd, wh), wall.yaw, m_white, _C["window"], 1.0)
        b.box(wall.at(s, sill + wh * 0.55, 0.02), (ww, 0.04, 0.03), wall.yaw, m_white, _C["window"], 1.0)
        b.box(wall.at(s, sill + wh / 2, 0.02), (0.03, 0.04, wh), wall.yaw, m_white, _C["window"], 1.0)
        b.box(wall.at(s, sill - fw - 0.015, 0.09), (ww + 0.3, 0.18, 0.03), wall.yaw, m_white, _C["window"], 1.0)
        room.objects.append("window")
        room.windows.append((wall, m_sky))
    if room.windows and rng.random() < 0.65:  # sunlight through one window: outward, 20-45 degrees up
        wall, m_sky = room.windows[int(rng.integers(len(room.windows)))]
        az, el = rng.uniform(-0.9, 0.9), rng.uniform(math.radians(20), math.radians(45))
        out = -wall.normal
        horiz = out * math.cos(az) + np.cross(_UP, out) * math.sin(az)
        direction = horiz * math.cos(el) + _UP * math.sin(el)
        room.sun = _Sun(
            direction / np.linalg.norm(direction), np.array([m for _, m in room.windows]), np.array([1.0, 0.9, 0.75])
        )
        room.objects.append("sun")

    # ---- door
    spot = room.place_on_wall(0.95, 0.0, 2.2, depth=0.8)
    if spot is not None:
        wall, s = spot
        m_door = room.wood(room.pick(_WOODS)) if rng.random() < 0.6 else room.paint(room.pick(_PAINTED), 0.02)
        b.box(wall.at(s, 1.025, 0.02), (0.85, 0.04, 2.05), wall.yaw, m_door, _C["door"], 1.0, bottom=False)
        for sc in (s - 0.46, s + 0.46):
            b.box(wall.at(sc, 1.06, 0.025), (0.07, 0.05, 2.12), wall.yaw, m_white, _C["door"], 1.0, bottom=False)
        b.box(wall.at(s, 2.09, 0.025), (0.99, 0.05, 0.07), wall.yaw, m_white, _C["door"], 1.0)
        handle_s = s + 0.32 * room.pick([-1, 1])
        b.box(wall.at(handle_s, 1.0, 0.06), (0.12, 0.03, 0.025), wall.yaw, m_metal, _C["door"], 0.5)
        room.objects.append("door")

    # ---- cabinet / dresser with drawers
    if rng.random() < 0.9:
        cw, ch = float(rng.uniform(0.8, 1.4)), float(rng.uniform(0.75, 1.0))
        spot = room.place_on_wall(cw, 0.0, ch, depth=0.45)
        if spot is not None:
            wall, s = spot
            rgb = room.pick(_PAINTED + _WOODS)
            m_cab = room.paint(rgb, 0.03)
            n_dr = int(rng.integers(2, 5))
            m_front = b.material(_tex_drawers(rng, _hex(rgb), n_dr), mirror=False)
            b.box(
                wall.at(s, ch / 2, 0.225),
                (cw, 0.45, ch),
                wall.yaw,
                m_cab,
                _C["cabinet"],
                1.0,
                bottom=False,
                front_mat=m_front,
            )
            for i in range(n_dr):
                z = ch * (1 - (i + 0.5) / n_dr)
                b.box(wall.at(s, z, 0.46), (0.16, 0.025, 0.025), wall.yaw, m_metal, _C["cabinet"], 0.5)
            room.objects.append("cabinet")

    # ---- bookshelf with books
    if rng.random() < 0.75:
        sw, sh = float(rng.uniform(0.8, 1.2)), float(min(rng.uniform(1.6, 2.0), H - 0.35))
        spot = room.place_on_wall(sw, 0.0, sh, depth=0.33)
        if spot is not None:
            wall, s = spot
            _bookshelf(room, wall, s, sw, sh)
            room.objects.append("shelf")

    # ---- ceiling light panel (over the table when there is one)
    m_panel = b.material(np.full((4, 4, 3), 1.0, np.float32), mirror=False, emission=np.array([1.0, 0.93, 0.8]) * 6.0)
    pcx, pcy = (
        ((room.table_rect[0] + room.table_rect[2]) / 2, (room.table_rect[1] + room.table_rect[3]) / 2)
        if room.table_rect
        else (W / 2, D / 2)
    )
    pw, pd = (0.6, 0.6) if rng.random() < 0.5 else (1.1, 0.3)
    b.quad([pcx - pw / 2, pcy - pd / 2, H - 0.031], [0, pd, 0], [pw, 0, 0], m_panel, _C["lamp"], None)
    b.box([pcx, pcy, H - 0.015], (pw + 0.04, pd + 0.04, 0.03), 0.0, m_white, _C["lamp"], 1.0)

    # ---- floor lamp in a free corner
    corners = [(0.4, 0.4), (W - 0.4, 0.4), (W - 0.4, D - 0.4), (0.4, D - 0.4)]
    order = rng.permutation(4)
    if rng.random() < 0.8:
        for k in order:
            x, y = corners[k]
            if room.rect_free((x - 0.25, y - 0.25, x + 0.25, y + 0.25)):
                room.floor_used.append((x - 0.25, y - 0.25, x + 0.25, y + 0.25))
                _floor_lamp(room, np.array([x, y]), m_metal)
                room.objects.append("lamp")
                break
    # ---- plant in another free corner
    if rng.random() < 0.7:
        for k in order[::-1]:
            x, y = corners[k]
            if room.rect_free((x - 0.25, y - 0.25, x + 0.25, y + 0.25)):
                room.floor_used.append((x - 0.25, y - 0.25, x + 0.25, y + 0.25))
                _plant(room, np.array([x, y]))
                room.objects.append("plant")
                break

    # ---- framed pictures (public-domain photos from scikit-image)
    names = list(rng.permutation(_PAINTINGS))
    m_frame_options = [room.wood(room.pick(_WOODS)), room.paint((0.1, 0.1, 0.1), 0.02), room.paint((0.75, 0.6, 0.3))]
    for name in names[: int(rng.integers(1, 4))]:
        photo = _skimage(str(name))
        aspect = photo.shape[0] / photo.shape[1]
        pw = float(rng.uniform(0.45, 0.9))
        ph = pw * aspect
        zc = float(rng.uniform(1.45, 1.7))
        spot = room.place_on_wall(pw + 0.12, zc - ph / 2 - 0.06, zc + ph / 2 + 0.06)
        if spot is None:
            continue
        wall, s = spot
        tex = _srgb_to_linear(photo if photo.ndim == 3 else np.repeat(photo[..., None], 3, -1))
        m_photo = b.material(tex, mirror=False)
        b.box(
            wall.at(s, zc, 0.015), (pw + 0.1, 0.03, ph + 0.1), wall.yaw, room.pick(m_frame_options), _C["picture"], 0.5
        )
        b.quad(wall.at(s - pw / 2, zc - ph / 2, 0.0315), wall.right * pw, _UP * ph, m_photo, _C["picture"], None)
        room.objects.append(f"picture:{name}")
    return room


def _bedroom(room: _Room, m_metal: int) -> None:
    """Bed with its headboard against a wall, nightstands beside it, a rug at its foot, a desk with a chair."""
    b, rng = room.b, room.rng
    bw = float(rng.uniform(1.3, 1.7))
    walls = sorted(range(4), key=lambda k: -room.walls[k].length)[:2]  # headboard on one of the long walls
    spot = room.place_on_wall(bw + 0.1, 0.0, 1.15, depth=2.05, walls=walls)
    if spot is None:
        return
    wall, s = spot
    yaw = wall.yaw
    m_frame = room.wood(room.pick(_WOODS))
    m_sheet = room.fabric((0.93, 0.93, 0.9))
    c1, c2 = room.pick(_FABRICS), room.pick(_FABRICS)
    m_blanket = room.fabric(c1, c2, room.pick(["plain", "plaid", "stripes"]))
    b.box(wall.at(s, 0.15, 1.05), (bw, 2.0, 0.3), yaw, m_frame, _C["bed"], 1.0, bottom=False, rng=rng)
    b.box(wall.at(s, 0.41, 1.05), (bw - 0.06, 1.94, 0.22), yaw, m_sheet, _C["bed"], 0.5, rng=rng)
    b.box(wall.at(s, 0.54, 1.3), (bw + 0.04, 1.45, 0.05), yaw, m_blanket, _C["bed"], 0.5, rng=rng)
    for k in (-1, 1):
        b.box(wall.at(s + k * bw / 4, 0.58, 0.28), (bw / 2 - 0.1, 0.4, 0.12), yaw, m_sheet, _C["bed"], 0.5)
    hb = float(rng.uniform(0.9, 1.15))
    m_head = m_frame if rng.random() < 0.5 else room.fabric(room.pick(_FABRICS))
    b.box(wall.at(s, hb / 2, 0.03), (bw + 0.1, 0.06, hb), yaw, m_head, _C["bed"], 1.0, bottom=False, rng=rng)
    room.objects.append("bed")
    # nightstands (cabinet class) on both sides when they fit
    rgb = room.pick(_PAINTED + _WOODS)
    m_ns = room.paint(rgb, 0.03)
    m_front = b.material(_tex_drawers(rng, _hex(rgb), 2), mirror=False)
    for k in (-1, 1):
        sc = s + k * (bw / 2 + 0.3)
        if not wall.free(sc - 0.22, sc + 0.22, 0.0, 0.55, margin=0.0):
            continue
        rect = room.wall_rect(wall, sc - 0.22, sc + 0.22, 0.4)
        if not room.rect_free(rect, margin=0.0):
            continue
        wall.used.append((sc - 0.22, sc + 0.22, 0.0, 0.55))
        room.floor_used.append(rect)
        b.box(
            wall.at(sc, 0.275, 0.2), (0.44, 0.4, 0.55), yaw, m_ns, _C["cabinet"], 1.0, bottom=False, front_mat=m_front
        )
        room.objects.append("nightstand")
    # rug at the foot of the bed
    if rng.random() < 0.7:
        foot = wall.at(s, 0.0, 2.05 + 0.5)
        rw, rd = bw + 0.6, 1.0
        corners = np.array(
            [foot + wall.right * (sx * rw / 2) + wall.normal * (sy * rd / 2) for sx in (-1, 1) for sy in (-1, 1)]
        )
        x0, y0 = np.maximum(corners[:, :2].min(0), 0.2)
        x1, y1 = np.minimum(corners[:, :2].max(0), [room.W - 0.2, room.D - 0.2])
        if x1 - x0 > 0.5 and y1 - y0 > 0.5:
            m_rug = b.material(_tex_rug(rng), mirror=False)
            b.quad([x0, y0, 0.006], [x1 - x0, 0, 0], [0, y1 - y0, 0], m_rug, _C["rug"], None)
            room.objects.append("rug")
    # desk against another wall, chair in front of it facing the wall
    dw = float(rng.uniform(1.0, 1.4))
    spot = room.place_on_wall(dw, 0.0, 0.8, depth=1.15, walls=[k for k in range(4) if room.walls[k] is not wall])
    if spot is not None:
        wall, s = spot
        m_desk = room.wood(room.pick(_WOODS)) if rng.random() < 0.6 else room.paint(room.pick(_PAINTED), 0.03)
        b.box(wall.at(s, 0.74, 0.3), (dw, 0.6, 0.04), wall.yaw, m_desk, _C["table"], 1.0, rng=rng)
        for k in (-1, 1):
            b.box(
                wall.at(s + k * (dw / 2 - 0.02), 0.36, 0.3),
                (0.04, 0.6, 0.72),
                wall.yaw,
                m_desk,
                _C["table"],
                1.0,
                bottom=False,
            )
        chair_xy = wall.at(s + rng.uniform(-0.15, 0.15), 0.0, 0.85)[:2]
        m_chair = room.wood(room.pick(_WOODS)) if rng.random() < 0.6 else room.paint(room.pick(_PAINTED))
        _chair(b, chair_xy, wall.yaw + math.pi + rng.uniform(-0.3, 0.3), m_chair, room.fabric(room.pick(_FABRICS)))
        room.objects += ["desk", "chairs:1"]


def _dining(room: _Room, m_metal: int) -> None:
    """Table (rectangular or round) near the middle, 2-4 chairs facing it, a rug under it."""
    b, rng, W, D = room.b, room.rng, room.W, room.D
    round_table = rng.random() < 0.3
    tw, td = (float(rng.uniform(1.1, 1.7)), float(rng.uniform(0.75, 0.95))) if not round_table else (1.0, 1.0)
    if round_table:
        tw = td = 2 * float(rng.uniform(0.45, 0.6))
    if rng.random() < 0.5:
        tw, td = td, tw
    cx, cy = W / 2 + rng.uniform(-0.3, 0.3), D / 2 + rng.uniform(-0.3, 0.3)
    th = 0.74
    m_tw = room.wood(room.pick(_WOODS))
    if round_table:
        b.frustum([cx, cy, th - 0.04], tw / 2, tw / 2, 0.04, m_tw, _C["table"], 0.8)
        b.frustum([cx, cy, 0.0], 0.06, 0.06, th - 0.04, m_metal, _C["table"], 0.5, caps=(False, False))
        b.frustum([cx, cy, 0.0], 0.28, 0.2, 0.03, m_metal, _C["table"], 0.5, caps=(False, True))
    else:
        b.box([cx, cy, th - 0.02], (tw, td, 0.04), 0.0, m_tw, _C["table"], 1.0, rng=rng)
        for sx in (-1, 1):
            for sy in (-1, 1):
                b.box(
                    [cx + sx * (tw / 2 - 0.06), cy + sy * (td / 2 - 0.06), (th - 0.04) / 2],
                    (0.05, 0.05, th - 0.04),
                    0.0,
                    m_tw,
                    _C["table"],
                    1.0,
                    bottom=False,
                )
    room.table_rect = (cx - tw / 2, cy - td / 2, cx + tw / 2, cy + td / 2)
    room.objects.append("table")
    # chairs on the sides, facing the table
    m_chair = room.wood(room.pick(_WOODS)) if rng.random() < 0.6 else room.paint(room.pick(_PAINTED))
    m_seat = room.fabric(room.pick(_FABRICS)) if rng.random() < 0.5 else m_chair
    sides = [(0, -1), (0, 1), (-1, 0), (1, 0)]
    rng.shuffle(sides)
    n_chairs = int(rng.integers(2, 5))
    for sx, sy in sides[:n_chairs]:
        px = cx + sx * (tw / 2 + 0.3) + (rng.uniform(-0.2, 0.2) * (tw / 2) if sx == 0 else 0)
        py = cy + sy * (td / 2 + 0.3) + (rng.uniform(-0.2, 0.2) * (td / 2) if sy == 0 else 0)
        yaw = math.atan2(-sy, -sx) - math.pi / 2 + rng.uniform(-0.25, 0.25)  # local +y faces the table
        _chair(b, np.array([px, py]), yaw, m_chair, m_seat)
    room.objects.append(f"chairs:{n_chairs}")
    r = room.table_rect
    room.floor_used.append((r[0] - 0.6, r[1] - 0.6, r[2] + 0.6, r[3] + 0.6))
    # rug under the table
    if rng.random() < 0.75:
        g = float(rng.uniform(0.5, 0.8))
        rx0, ry0 = max(r[0] - g, 0.3), max(r[1] - g, 0.3)
        rx1, ry1 = min(r[2] + g, W - 0.3), min(r[3] + g, D - 0.3)
        m_rug = b.material(_tex_rug(rng), mirror=False)
        b.quad([rx0, ry0, 0.006], [rx1 - rx0, 0, 0], [0, ry1 - ry0, 0], m_rug, _C["rug"], None)
        room.objects.append("rug")


def _chair(b: _Builder, xy: np.ndarray, yaw: float, m_frame: int, m_seat: int) -> None:
    """Seat, four legs and a backrest; the chair's local +y points at the table (the sitter faces +y)."""
    ax = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    ay = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
    c = np.array([xy[0], xy[1], 0.0])
    s, hs = 0.44, 0.45
    b.box(c + _UP * (hs - 0.025), (s, s, 0.05), yaw, m_seat, _C["chair"], 0.5)
    for sx in (-1, 1):
        for sy in (-1, 1):
            b.box(
                c + ax * sx * (s / 2 - 0.03) + ay * sy * (s / 2 - 0.03) + _UP * (hs - 0.05) / 2,
                (0.035, 0.035, hs - 0.05),
                yaw,
                m_frame,
                _C["chair"],
                0.5,
                bottom=False,
            )
    back_h = 0.45
    for sx in (-1, 1):
        b.box(
            c + ax * sx * (s / 2 - 0.03) - ay * (s / 2 - 0.02) + _UP * (hs + back_h / 2),
            (0.035, 0.035, back_h),
            yaw,
            m_frame,
            _C["chair"],
            0.5,
        )
    b.box(c - ay * (s / 2 - 0.02) + _UP * (hs + back_h - 0.1), (s, 0.03, 0.18), yaw, m_frame, _C["chair"], 0.5)


def _bookshelf(room: _Room, wall: _Wall, s: float, sw: float, sh: float) -> None:
    b, rng = room.b, room.rng
    m = room.wood(room.pick(_WOODS)) if rng.random() < 0.6 else room.paint(room.pick(_PAINTED), 0.03)
    depth, t = 0.32, 0.025
    yaw = wall.yaw
    b.box(wall.at(s, sh / 2, 0.01), (sw, 0.02, sh), yaw, m, _C["shelf"], 1.0, bottom=False)  # back panel
    for k in (-1, 1):
        b.box(
            wall.at(s + k * (sw / 2 - t / 2), sh / 2, depth / 2), (t, depth, sh), yaw, m, _C["shelf"], 1.0, bottom=False
        )
    n_levels = int(rng.integers(3, 6))
    levels = np.linspace(0.06, sh - t / 2, n_levels + 1)
    book_mats = [room.paint(c, 0.06) for c in (rng.uniform(0.1, 0.85, (6, 3)))]
    for i, z in enumerate(levels):
        b.box(wall.at(s, z, depth / 2), (sw - 2 * t, depth - 0.01, t), yaw, m, _C["shelf"], 1.0)
        if i == len(levels) - 1:
            break
        gap = levels[i + 1] - z - t
        x = -sw / 2 + t + 0.01
        while True:
            bw = float(rng.uniform(0.02, 0.06))
            if x + bw > sw / 2 - t - 0.01:
                break
            if rng.random() < 0.12:  # gaps between groups of books
                x += float(rng.uniform(0.03, 0.15))
                continue
            bh = float(min(rng.uniform(0.15, 0.3), gap - 0.02))
            bd = float(rng.uniform(0.17, 0.25))
            b.box(
                wall.at(s + x + bw / 2, z + t / 2 + bh / 2, 0.03 + bd / 2),
                (bw, bd, bh),
                yaw,
                int(book_mats[int(rng.integers(len(book_mats)))]),
                _C["shelf"],
                0.3,
                bottom=False,
            )
            x += bw + 0.002


def _floor_lamp(room: _Room, xy: np.ndarray, m_metal: int) -> None:
    b, rng = room.b, room.rng
    h = float(rng.uniform(1.4, 1.7))
    b.frustum([xy[0], xy[1], 0.0], 0.16, 0.14, 0.03, m_metal, _C["lamp"], 0.5, caps=(False, True))
    b.frustum([xy[0], xy[1], 0.03], 0.015, 0.015, h - 0.03, m_metal, _C["lamp"], 0.5, caps=(False, False))
    shade_rgb = room.pick([(1.0, 0.92, 0.75), (0.98, 0.85, 0.65), (0.95, 0.95, 0.9)])
    shade = _tex_fabric(rng, _hex(shade_rgb))
    m_shade = b.material(shade, emission=_hex(shade_rgb) * 2.5)
    b.frustum([xy[0], xy[1], h - 0.1], 0.2, 0.14, 0.3, m_shade, _C["lamp"], 0.3, caps=(False, False))


def _plant(room: _Room, xy: np.ndarray) -> None:
    b, rng = room.b, room.rng
    m_pot = room.paint(room.pick([(0.7, 0.38, 0.25), (0.9, 0.9, 0.88), (0.25, 0.3, 0.35)]), 0.04)
    m_leaf = b.material(_tex_tinted(_skimage("grass"), _hex(room.pick([(0.25, 0.5, 0.2), (0.3, 0.45, 0.15)]))))
    ph = float(rng.uniform(0.3, 0.45))
    b.frustum([xy[0], xy[1], 0.0], 0.13, 0.18, ph, m_pot, _C["plant"], 0.5, caps=(False, True))
    for _ in range(int(rng.integers(3, 6))):
        off = rng.uniform(-0.08, 0.08, 2)
        r = rng.uniform(0.12, 0.22, 3) * np.array([1, 1, 1.3])
        c = np.array([xy[0] + off[0], xy[1] + off[1], ph + rng.uniform(0.1, 0.45)])
        b.sphere(c, r, m_leaf, _C["plant"], 0.3)


# ================================================================================================================
# Lighting bake


def _frame(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit tangents [N, 3] orthogonal to unit normals n [N, 3]."""
    a = np.where(np.abs(n[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    t = np.cross(n, a)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return t, np.cross(n, t)


def _lum(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2126, 0.7152, 0.0722])


def _interp(values: np.ndarray, F: np.ndarray, prim: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Barycentric interpolation of per-vertex values [Nv, C] at hits (prim >= 0) -> [N, C]."""
    tri = F[prim]  # [N, 3]
    w0 = (1 - u - v)[:, None]
    return w0 * values[tri[:, 0]] + u[:, None] * values[tri[:, 1]] + v[:, None] * values[tri[:, 2]]


@dataclass
class _Sun:
    """Sunlight entering through a window: a direction and the material ids of the window's sky."""

    direction: np.ndarray  # [3] unit, from the scene towards the sun
    sky_mats: np.ndarray  # int [k]
    color: np.ndarray  # [3] relative colour; scaled to ``irradiance`` once the room's other light is known
    irradiance: np.ndarray = field(default_factory=lambda: np.zeros(3))  # [3] on a surface facing the sun


def _sun_term(mesh: _Mesh, tracer: _Tracer, sun: _Sun, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """cos(normal, sun) where the ray towards the sun leaves through a window's sky, else 0: [N]."""
    cos = np.einsum("ij,j->i", normals, sun.direction)  # [N]
    out = np.zeros(len(points))
    idx = np.nonzero(cos > 0)[0]
    if len(idx):
        dirs = np.broadcast_to(sun.direction, (len(idx), 3))
        prim, _, _, _ = tracer.intersect(points[idx] + 1e-3 * normals[idx], dirs)
        lit = (prim >= 0) & np.isin(mesh.face_mat[np.maximum(prim, 0)], sun.sky_mats)
        out[idx] = cos[idx] * lit
    return out


def _direct_light(
    mesh: _Mesh, tracer: _Tracer, rng: np.random.Generator, light_samples: int, chunk: int = 4096
) -> np.ndarray:
    """Per-vertex irradiance [Nv, 3] from the area lights, with shadows: one shared, power-stratified set of
    light samples (smooth soft shadows rather than per-vertex noise)."""
    mats = mesh.materials
    is_emit_mat = np.array([m.emission is not None for m in mats])
    emit_faces = np.nonzero(is_emit_mat[mesh.face_mat])[0]
    E_direct = np.zeros((len(mesh.V), 3))
    if not len(emit_faces) or light_samples <= 0:
        return E_direct
    le_face = np.stack([mats[m].emission for m in mesh.face_mat[emit_faces]])  # [Ne, 3]
    power = mesh.face_area[emit_faces] * _lum(le_face)
    cdf = np.cumsum(power) / power.sum()
    us = (np.arange(light_samples) + rng.random(light_samples)) / light_samples
    pick = np.minimum(np.searchsorted(cdf, us), len(cdf) - 1)
    f = emit_faces[pick]
    r1, r2 = np.sqrt(rng.random(light_samples)), rng.random(light_samples)
    tri = mesh.V[mesh.F[f]]  # [L, 3, 3]
    lp = (1 - r1)[:, None] * tri[:, 0] + (r1 * (1 - r2))[:, None] * tri[:, 1] + (r1 * r2)[:, None] * tri[:, 2]
    ln = mesh.face_normal[f]  # [L, 3]
    le = le_face[pick]  # [L, 3]
    pdf_area = (power[pick] / power.sum()) / mesh.face_area[f]
    w = 1.0 / (light_samples * pdf_area)  # [L]
    idx_lit = np.nonzero(~is_emit_mat[mesh.vert_mat])[0]  # emitters show their own picture: no lighting needed
    for s in range(0, len(idx_lit), chunk):
        vi = idx_lit[s : s + chunk]
        p = mesh.V[vi] + 1e-3 * mesh.N[vi]  # [C, 3]
        d = lp[None] - p[:, None]  # [C, L, 3]
        dist = np.linalg.norm(d, axis=-1)
        d = d / dist[..., None]
        cos_v = np.einsum("cld,cd->cl", d, mesh.N[vi])
        cos_l = -np.einsum("cld,ld->cl", d, ln)
        ok = (cos_v > 0) & (cos_l > 0)
        ci, li = np.nonzero(ok)
        occ = tracer.occluded(p[ci], d[ci, li], dist[ci, li] - 2e-3)
        g = cos_v[ci, li] * cos_l[ci, li] / (dist[ci, li] ** 2 + 0.01) * w[li] * ~occ  # [K]
        contrib = np.zeros((len(vi), 3))
        np.add.at(contrib, ci, g[:, None] * le[li])
        E_direct[vi] = contrib
    return E_direct


def _indirect_light(
    mesh: _Mesh,
    tracer: _Tracer,
    rng: np.random.Generator,
    E_src: np.ndarray,
    indirect_rays: int,
    bounces: int,
    chunk: int = 4096,
) -> np.ndarray:
    """Per-vertex indirect irradiance [Nv, 3] for direct irradiance ``E_src``: cosine-weighted rays are traced
    once and gathered ``bounces`` times (E = E_src + gather(E)); lightly smoothed over the mesh."""
    nv = len(mesh.V)
    if bounces <= 0 or indirect_rays <= 0:
        return np.zeros((nv, 3))
    mats = mesh.materials
    is_emit_mat = np.array([m.emission is not None for m in mats])
    idx_lit = np.nonzero(~is_emit_mat[mesh.vert_mat])[0]
    m = indirect_rays
    k = np.arange(m)
    # stratified cosine-weighted directions (Fibonacci spiral on the disk), randomly rotated per vertex
    r = np.sqrt((k + 0.5) / m)
    phi0 = k * math.pi * (3 - math.sqrt(5))
    albedo = np.stack([mat.mean for mat in mats])  # [M, 3]
    hits_prim = np.empty((len(idx_lit), m), dtype=np.int64)
    hits_u = np.empty((len(idx_lit), m), dtype=np.float32)
    hits_v = np.empty((len(idx_lit), m), dtype=np.float32)
    for s in range(0, len(idx_lit), chunk):
        vi = idx_lit[s : s + chunk]
        n = mesh.N[vi]
        t1, t2 = _frame(n)
        phi = phi0[None] + rng.uniform(0, 2 * math.pi, (len(vi), 1))
        rr = np.clip(r[None] + rng.uniform(-0.5, 0.5, (len(vi), m)) / m, 0, 0.999)
        x, y = rr * np.cos(phi), rr * np.sin(phi)
        z = np.sqrt(1 - rr**2)
        d = x[..., None] * t1[:, None] + y[..., None] * t2[:, None] + z[..., None] * n[:, None]  # [C, m, 3]
        o = np.repeat(mesh.V[vi] + 1e-3 * n, m, axis=0)
        prim, _, u, v = tracer.intersect(o, d.reshape(-1, 3))
        dd = d.reshape(-1, 3)
        ok = prim >= 0
        ok[ok] &= np.einsum("ij,ij->i", dd[ok], mesh.face_normal[prim[ok]]) < 0  # front faces only
        ok[ok] &= ~is_emit_mat[mesh.face_mat[prim[ok]]]  # lights already counted in the direct term
        prim[~ok] = -1
        hits_prim[s : s + chunk] = prim.reshape(len(vi), m)
        hits_u[s : s + chunk] = u.reshape(len(vi), m)
        hits_v[s : s + chunk] = v.reshape(len(vi), m)
    hp, hu, hv = hits_prim.ravel(), hits_u.ravel(), hits_v.ravel()
    valid = hp >= 0
    rho = albedo[mesh.face_mat[hp[valid]]]  # [K, 3]
    ray_owner = np.repeat(np.arange(len(idx_lit)), m)[valid]
    adj = _vertex_adjacency(mesh)
    E_ind = np.zeros((nv, 3))
    for _ in range(bounces):
        radiance = rho * _interp(E_src + E_ind, mesh.F, hp[valid], hu[valid], hv[valid])  # albedo * E (pi cancels)
        ind = np.zeros((len(idx_lit), 3))
        np.add.at(ind, ray_owner, radiance)
        E_ind = np.zeros((nv, 3))
        E_ind[idx_lit] = ind / m
        for _ in range(2):  # light smoothing of the Monte-Carlo noise, within each surface
            E_ind = adj @ E_ind
    return E_ind


def _vertex_adjacency(mesh: _Mesh) -> sparse.csr_matrix:
    """Row-normalised vertex adjacency (with self loops) from the triangles: one smoothing step = one product."""
    F = mesh.F
    rows = np.concatenate([F[:, 0], F[:, 1], F[:, 2], F[:, 1], F[:, 2], F[:, 0], np.arange(len(mesh.V))])
    cols = np.concatenate([F[:, 1], F[:, 2], F[:, 0], F[:, 0], F[:, 1], F[:, 2], np.arange(len(mesh.V))])
    a = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(mesh.V),) * 2)
    a.data[:] = 1.0  # duplicates summed -> reset to 1
    deg = np.asarray(a.sum(1)).ravel()
    return sparse.diags(1.0 / deg) @ a


# ================================================================================================================
# Rendering


def _sample_texture(tex: np.ndarray, uv: np.ndarray, mirror: bool) -> np.ndarray:
    """Bilinear lookup; uv [N, 2] with u along columns, v along rows -> [N, 3]."""
    h, w = tex.shape[:2]
    x = uv[:, 0] * w - 0.5
    y = uv[:, 1] * h - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)

    def wrap(i: np.ndarray, n: int) -> np.ndarray:
        if not mirror:
            return np.clip(i, 0, n - 1)
        i = np.mod(i, 2 * n)
        return np.where(i >= n, 2 * n - 1 - i, i)

    xa, xb, ya, yb = wrap(x0, w), wrap(x0 + 1, w), wrap(y0, h), wrap(y0 + 1, h)
    top = tex[ya, xa] * (1 - fx) + tex[ya, xb] * fx
    bot = tex[yb, xa] * (1 - fx) + tex[yb, xb] * fx
    return top * (1 - fy) + bot * fy


def _shade(
    mesh: _Mesh,
    E: np.ndarray,
    prim: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    exposure: float,
    extra: np.ndarray | None = None,
) -> np.ndarray:
    """Linear display radiance [N, 3] at ray hits: exposure * albedo * (E + extra) / pi, or the emitter's own
    picture. ``extra`` [N, 3] is per-hit irradiance computed per pixel (sunlight)."""
    out = np.zeros((len(prim), 3))
    hit = prim >= 0
    p, uu, vv = prim[hit], u[hit], v[hit]
    irr = _interp(E, mesh.F, p, uu, vv)
    if extra is not None:
        irr = irr + extra[hit]
    uv = _interp(mesh.UV, mesh.F, p, uu, vv)
    mat = mesh.face_mat[p]
    col = np.zeros((len(p), 3))
    for mi in np.unique(mat):
        sel = mat == mi
        m = mesh.materials[mi]
        tex = _sample_texture(m.texture, uv[sel], m.mirror)
        col[sel] = tex * (1.15 if m.emission is not None else exposure * irr[sel] / math.pi)
    out[hit] = col
    return out


def _tonemap(x: np.ndarray) -> np.ndarray:
    """Soft shoulder (extended Reinhard, white at 3) then sRGB encoding; float in 0..1."""
    y = x * (1 + x / 9.0) / (1 + x)
    return _linear_to_srgb(y)


def _render_view(
    mesh: _Mesh,
    tracer: _Tracer,
    E: np.ndarray,
    K: np.ndarray,
    c2w: np.ndarray,
    width: int,
    height: int,
    supersample: int,
    exposure: float,
    sun: _Sun | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> rgb uint8 [H, W, 3], planar depth float32 [H, W] (metres), labels uint8 [H, W]."""
    ss = supersample
    offs = (np.arange(ss) + 0.5) / ss
    cols = np.arange(width)
    rows = np.arange(height)
    # sub-pixel samples [H, ss, W, ss] then pixel centres
    us = (cols[None, None, :, None] + offs[None, None, None, :]) + 0 * rows[:, None, None, None]
    vs = (rows[:, None, None, None] + offs[None, :, None, None]) + 0 * cols[None, None, :, None]
    us = np.broadcast_to(us, (height, ss, width, ss)).ravel()
    vs = np.broadcast_to(vs, (height, ss, width, ss)).ravel()
    uc, vc = np.meshgrid(cols + 0.5, rows + 0.5)
    u_all = np.concatenate([us, uc.ravel()])
    v_all = np.concatenate([vs, vc.ravel()])
    kinv = np.linalg.inv(K)
    pix = np.stack([u_all, v_all, np.ones_like(u_all)], 1)  # [R, 3]
    d_cam = np.einsum("ij,kj->ik", pix, kinv)  # [R, 3], z = 1 (einsum: OpenBLAS is slow for [R,3]@[3,3])
    norm = np.linalg.norm(d_cam, axis=1)
    d_world = np.einsum("ij,kj->ik", d_cam / norm[:, None], c2w[:3, :3])  # [R, 3]
    o = np.broadcast_to(c2w[:3, 3], d_world.shape)
    prim, t, u, v = tracer.intersect(o, d_world)
    n_sub = height * ss * width * ss
    extra = None
    if sun is not None:  # sunlight per sub-pixel: crisp sun patches and window-bar shadows
        ps, us_, vs_ = prim[:n_sub], u[:n_sub], v[:n_sub]
        emissive = np.array([m.emission is not None for m in mesh.materials])
        idx = np.nonzero((ps >= 0) & ~emissive[mesh.face_mat[np.maximum(ps, 0)]])[0]
        pts = o[idx] + t[idx, None].astype(np.float64) * d_world[idx]
        nrm = _interp(mesh.N, mesh.F, ps[idx], us_[idx], vs_[idx])
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-9)
        extra = np.zeros((n_sub, 3))
        extra[idx] = _sun_term(mesh, tracer, sun, pts, nrm)[:, None] * sun.irradiance
    rad = _shade(mesh, E, prim[:n_sub], u[:n_sub], v[:n_sub], exposure, extra)
    rad = rad.reshape(height, ss, width, ss, 3).mean(axis=(1, 3))
    rgb = np.round(_tonemap(rad) * 255).astype(np.uint8)
    pc, tc = prim[n_sub:], t[n_sub:]
    depth = np.where(pc >= 0, tc / norm[n_sub:], 0.0).astype(np.float32).reshape(height, width)
    labels = np.where(pc >= 0, mesh.face_cls[np.maximum(pc, 0)], IGNORE_LABEL).astype(np.uint8).reshape(height, width)
    return rgb, depth, labels


# ================================================================================================================
# Cameras


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world [4, 4] at ``eye`` looking at ``target`` with world z up."""
    f = target - eye
    f = f / np.linalg.norm(f)
    r = np.cross(f, _UP)
    r = r / np.linalg.norm(r)
    d = np.cross(f, r)  # camera y (down)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = r, d, f, eye
    return m


def _camera_path(
    rng: np.random.Generator, room: _Room, n_views: int, width: int, height: int, hfov_deg: float, step_deg: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """A smooth orbit inside the room (>= 0.9 m from the walls, 1.2-1.8 m high) looking at the room's middle.
    Consecutive views are ``step_deg`` apart along the orbit, so they overlap strongly."""
    fx = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
    K = np.array([[fx, 0, width / 2], [0, fx, height / 2], [0, 0, 1.0]])
    W, D, H = room.W, room.D, room.H
    a, b = max(0.5 * W - 1.1, 0.5), max(0.5 * D - 1.1, 0.45)
    c = np.array([W / 2, D / 2])
    th0 = rng.uniform(0, 2 * math.pi)
    sgn = 1 if rng.random() < 0.5 else -1
    ph = rng.uniform(0, 2 * math.pi, 4)
    poses = []
    for i in range(n_views):
        th = th0 + sgn * math.radians(step_deg) * i
        z = float(np.clip(1.5 + 0.28 * math.sin(1.3 * th + ph[0]), 1.2, min(1.8, H - 0.5)))
        eye = np.array([c[0] + a * math.cos(th), c[1] + b * math.sin(th), z])
        tgt_xy = c + 0.3 * (c - eye[:2]) + 0.3 * np.array([math.cos(0.7 * th + ph[1]), math.sin(0.9 * th + ph[2])])
        tgt = np.array([tgt_xy[0], tgt_xy[1], 1.05 + 0.15 * math.sin(1.1 * th + ph[3])])
        poses.append(_look_at(eye, tgt))
    return K, poses


# ================================================================================================================
# Public API


@dataclass
class RenderedScene:
    """A generated room in memory (what :func:`generate_scene` writes to disk)."""

    images: np.ndarray  # uint8 [V, H, W, 3]
    depths: np.ndarray  # float32 [V, H, W] planar depth in metres (before millimetre quantisation)
    labels: np.ndarray  # uint8 [V, H, W] class ids into CLASSES
    K: np.ndarray  # float64 [3, 3]
    cam_to_world: np.ndarray  # float64 [V, 4, 4], OpenCV camera frame (see fit3d_helpers.data)
    meta: dict[str, Any]  # room size, objects, timings, parameters


def render_scene(
    *,
    seed: int,
    n_views: int = 24,
    width: int = 224,
    height: int = 168,
    hfov_deg: float = 70.0,
    supersample: int = 2,
    max_edge: float = 0.12,
    light_samples: int = 96,
    indirect_rays: int = 48,
    bounces: int = 2,
    orbit_step_deg: float = 15.0,
    room_kind: str | None = None,
    show_progress: bool = True,
    desc: str = "render",
) -> RenderedScene:
    """Build, light and render one room in memory; deterministic in ``seed`` and the other arguments.

    Smaller ``max_edge`` / more ``light_samples`` and ``indirect_rays`` give smoother lighting and a slower bake;
    the tests use coarse settings. ``room_kind`` ("dining" or "bedroom") fixes the furniture set; None draws it.
    """
    t0 = time.perf_counter()
    # independent streams: changing the lighting quality keeps the same room and the same cameras
    rng_room, rng_light, rng_cam = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    room = _build_room(rng_room, max_edge, room_kind)
    mesh = room.b.build()
    tracer = _Tracer(mesh)
    shell = np.isin(mesh.face_cls, [_C["wall"], _C["floor"], _C["ceiling"]])
    vmask = np.zeros(len(mesh.V), dtype=bool)
    vmask[mesh.F[shell].ravel()] = True
    E = _direct_light(mesh, tracer, rng_light, light_samples)
    E_src = E.copy()
    if room.sun is not None:  # sun: a few times brighter than the typical lamp/sky light on the walls
        room.sun.irradiance = room.sun.color * 2.5 * float(np.percentile(_lum(E[vmask]), 60))
        E_src += _sun_term(mesh, tracer, room.sun, mesh.V, mesh.N)[:, None] * room.sun.irradiance
    E = E + _indirect_light(mesh, tracer, rng_light, E_src, indirect_rays, bounces)  # sun itself: per pixel
    # one exposure per scene, so a surface has the same colour in every view
    albedo = np.stack([m.mean for m in mesh.materials])[mesh.vert_mat]
    radiance = _lum(albedo * E / math.pi)[vmask]
    exposure = 0.32 / max(float(np.percentile(radiance, 60)), 1e-6)
    t_bake = time.perf_counter() - t0
    K, poses = _camera_path(rng_cam, room, n_views, width, height, hfov_deg, orbit_step_deg)
    images = np.zeros((n_views, height, width, 3), np.uint8)
    depths = np.zeros((n_views, height, width), np.float32)
    labels = np.zeros((n_views, height, width), np.uint8)
    it = progress(range(n_views), desc=desc, unit="view", **({} if show_progress else {"disable": True}))
    for i in it:
        images[i], depths[i], labels[i] = _render_view(
            mesh, tracer, E, K, poses[i], width, height, supersample, exposure, room.sun
        )
    meta = {
        "generator": "fit3d_helpers.synthetic",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "room_size_m": [room.W, room.D, room.H],
        "objects": room.objects,
        "exposure": exposure,
        "sun_direction": None if room.sun is None else room.sun.direction.tolist(),
        "n_vertices": int(len(mesh.V)),
        "n_faces": int(len(mesh.F)),
        "tracer": tracer.kind,
        "params": {
            "n_views": n_views,
            "width": width,
            "height": height,
            "hfov_deg": hfov_deg,
            "supersample": supersample,
            "max_edge": max_edge,
            "light_samples": light_samples,
            "indirect_rays": indirect_rays,
            "bounces": bounces,
            "orbit_step_deg": orbit_step_deg,
            "room_kind": room_kind,
        },
        "bake_seconds": round(t_bake, 3),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return RenderedScene(images, depths, labels, K, np.stack(poses), meta)


def generate_scene(
    out_dir: str | Path,
    *,
    seed: int,
    n_views: int = 24,
    width: int = 224,
    height: int = 168,
    overwrite: bool = False,
    show_progress: bool = True,
    **options: Any,
) -> Path:
    """Generate one room and write it to ``out_dir`` in the transforms.json layout; returns ``out_dir``.

    Written atomically: the folder appears under its name only once every file is in it. ``options`` go to
    :func:`render_scene` (``hfov_deg``, ``supersample``, ``max_edge``, ``light_samples``, ``indirect_rays``,
    ``bounces``, ``orbit_step_deg``, ``room_kind``).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass overwrite=True to replace it")
    r = render_scene(
        seed=seed,
        n_views=n_views,
        width=width,
        height=height,
        show_progress=show_progress,
        desc=f"render {out_dir.name}",
        **options,
    )
    frames = []
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for sub in ("images", "depth", "labels"):
            (tmp / sub).mkdir()
        for i in range(n_views):
            name = f"frame_{i:05d}"
            Image.fromarray(r.images[i]).save(tmp / "images" / f"{name}.png", compress_level=1)
            depth_mm = np.clip(np.round(r.depths[i] * 1000.0), 0, 65535).astype(np.uint16)
            Image.fromarray(depth_mm).save(tmp / "depth" / f"{name}.png", compress_level=1)
            Image.fromarray(r.labels[i]).save(tmp / "labels" / f"{name}.png", compress_level=1)
            frames.append(
                {
                    "file_path": f"images/{name}.png",
                    "depth_file_path": f"depth/{name}.png",
                    "label_file_path": f"labels/{name}.png",
                    "transform_matrix": opengl_to_opencv(r.cam_to_world[i]).tolist(),  # stored in OpenGL convention
                }
            )
        meta = {
            "camera_model": "OPENCV",
            "fl_x": r.K[0, 0],
            "fl_y": r.K[1, 1],
            "cx": r.K[0, 2],
            "cy": r.K[1, 2],
            "w": width,
            "h": height,
            "k1": 0.0,
            "k2": 0.0,
            "p1": 0.0,
            "p2": 0.0,
            "depth_unit_scale_factor": 0.001,
            "classes": CLASSES,
            "frames": frames,
            "synthetic": {k: v for k, v in r.meta.items() if k not in _TIMING_KEYS},
        }
        # wall times differ from run to run: they stay out of the camera file, whose hash names the scene in every
        # artifact key (cache.scene_id), so a scene generated again, on any machine, is found by its artifacts
        write_json(tmp / "timing.json", {k: r.meta[k] for k in _TIMING_KEYS})
        write_json(tmp / "transforms.json", meta)
    return out_dir


def _scene_seed(seed: int, split: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, split, index]).generate_state(1)[0])


def _generate_one(kwargs: dict[str, Any]) -> str:
    """Worker entry point (module level so spawned processes can import it)."""
    return str(generate_scene(**kwargs))


def _mp_context() -> BaseContext:
    """fork on Linux: no re-import of torch per worker and no ``if __name__ == "__main__"`` needed in scripts
    (workers only use NumPy and Embree, never torch or CUDA); spawn elsewhere."""
    if sys.platform.startswith("linux") and "fork" in get_all_start_methods():
        return get_context("fork")
    return get_context("spawn")


def _scene_complete(path: Path) -> bool:
    return (path / "transforms.json").is_file()


def generate_dataset(
    root: str | Path = "data/synthetic",
    *,
    n_train: int = 4,
    n_val: int = 2,
    n_views: int = 24,
    width: int = 224,
    height: int = 168,
    seed: int = 0,
    workers: int = 2,
    force: bool = False,
    scene_options: Mapping[str, Any] | None = None,
) -> DatasetInfo:
    """Generate (or find cached) train/val rooms under ``root/<config-hash>/``.

    The folder is named by the hash of every setting that changes the output, so a second call with the same
    settings loads ``dataset.json`` and renders nothing. Scenes are written atomically; a run that was interrupted
    resumes with the scenes that are complete and ignores (and deletes) half-written temporary folders.
    Scene i of each split is a dining room for even i and a bedroom for odd i (both splits get beds and tables).
    ``scene_options`` are passed to :func:`generate_scene` (e.g. ``{"max_edge": 0.2}``); ``workers`` processes
    render scenes in parallel (it does not change the output).
    """
    t0 = time.perf_counter()
    opts = dict(scene_options or {})
    params = {
        "n_train": n_train,
        "n_val": n_val,
        "n_views": n_views,
        "width": width,
        "height": height,
        "seed": seed,
        "scene_options": opts,
        "version": GENERATOR_VERSION,
    }
    ds_dir = Path(root) / config_hash(params)
    index = ds_dir / "dataset.json"
    if force and ds_dir.exists():
        shutil.rmtree(ds_dir)
    if index.is_file():
        info = read_json(index)
        train = [ds_dir / p for p in info["train"]]
        val = [ds_dir / p for p in info["val"]]
        if all(_scene_complete(p) for p in train + val):
            return DatasetInfo(ds_dir, train, val, list(info["classes"]), float(info["seconds"]), params, True)
    ds_dir.mkdir(parents=True, exist_ok=True)
    for stale in ds_dir.glob(".*.tmp-*"):  # leftovers of an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    names = {"train": [f"train_{i:03d}" for i in range(n_train)], "val": [f"val_{i:03d}" for i in range(n_val)]}
    jobs = []
    for split_id, split in enumerate(("train", "val")):
        for i, name in enumerate(names[split]):
            if not _scene_complete(ds_dir / name):
                jobs.append(
                    {
                        "out_dir": str(ds_dir / name),
                        "seed": _scene_seed(seed, split_id, i),
                        "n_views": n_views,
                        "width": width,
                        "height": height,
                        "room_kind": ROOM_KINDS[i % len(ROOM_KINDS)],
                        **opts,
                    }
                )
    bar = progress(total=len(jobs), desc="synthetic scenes", unit="scene")
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            _generate_one({**job, "show_progress": True})
            bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=_mp_context()) as ex:
            futures = [ex.submit(_generate_one, {**job, "show_progress": False}) for job in jobs]
            for fut in as_completed(futures):
                fut.result()
                bar.update(1)
    bar.close()
    seconds = time.perf_counter() - t0
    write_json(
        index,
        {
            "train": names["train"],
            "val": names["val"],
            "classes": CLASSES,
            "params": params,
            "seconds": round(seconds, 3),
        },
    )
    return DatasetInfo(
        ds_dir,
        [ds_dir / n for n in names["train"]],
        [ds_dir / n for n in names["val"]],
        list(CLASSES),
        seconds,
        params,
        False,
    )


if __name__ == "__main__":  # python -m fit3d_helpers.synthetic [root]
    info = generate_dataset(
        sys.argv[1] if len(sys.argv) > 1 else "data/synthetic", workers=int(os.environ.get("FIT3D_WORKERS", "2"))
    )
    print(
        f"{info.root}: {len(info.train)} train / {len(info.val)} val scenes in {info.seconds:.1f} s"
        f"{' (cached)' if info.cached else ''}"
    )
