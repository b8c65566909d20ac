"""Furniture sets (bedroom, dining) and single pieces (chair, bookshelf, floor lamp, plant) placed in a room."""

from __future__ import annotations

import math

import numpy as np

from .constants import _C, _UP
from .geometry import _Builder
from .layout import _FABRICS, _PAINTED, _WOODS, _Room, _Wall
from .textures import _hex, _skimage, _tex_drawers, _tex_fabric, _tex_rug, _tex_tinted


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
