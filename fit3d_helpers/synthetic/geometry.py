"""Triangle meshes built from parts (quads, boxes, frusta, spheres) and the ray caster that intersects them."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .constants import _UP

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
