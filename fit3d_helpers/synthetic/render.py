"""Ray-cast views of a lit room along a smooth camera orbit: colour, planar depth and labels."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..utils import progress
from .constants import _C, _UP, GENERATOR_VERSION, IGNORE_LABEL
from .geometry import _Mesh, _Tracer
from .layout import _Room
from .lighting import _direct_light, _indirect_light, _interp, _lum, _Sun, _sun_term
from .room import _build_room
from .textures import _linear_to_srgb

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
