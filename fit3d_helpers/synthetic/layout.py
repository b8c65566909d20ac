"""A room's floor plan: walls, free space on walls and floor, and the palettes materials are drawn from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .constants import _UP
from .geometry import _Builder
from .lighting import _Sun
from .textures import _hex, _tex_fabric, _tex_paint, _tex_wood

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
