"""The lighting bake: direct light from area lights and the sun, then cosine-weighted bounces, per vertex."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from .geometry import _Mesh, _Tracer

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
