"""One random furnished room: the shell, the main furniture, windows with sun, door, storage, lights, pictures."""

from __future__ import annotations

import math

import numpy as np

from .constants import _C, _PAINTINGS, _UP, ROOM_KINDS
from .furniture import _bedroom, _bookshelf, _dining, _floor_lamp, _plant
from .layout import _PAINTED, _WALL_PAINTS, _WOODS, _Room
from .lighting import _Sun
from .textures import _hex, _skimage, _srgb_to_linear, _tex_drawers, _tex_sky, _tex_tinted, _tex_wood


def _build_room(rng: np.random.Generator, max_edge: float, kind: str | None = None) -> _Room:
    """A random furnished room. Cameras later orbit >= 0.9 m from the walls at 1.2-1.8 m height, so everything
    taller than 1.1 m is kept within 0.5 m of a wall."""
    room = _Room(rng, max_edge)

    _shell(room)
    m_white = room.paint((0.94, 0.94, 0.92), 0.02)
    m_metal = room.paint((0.18, 0.18, 0.2), 0.03)

    # ---- the room's main furniture, placed first near the middle (the cameras look there)
    if kind is None:
        kind = "bedroom" if room.rng.random() < 0.4 else "dining"
    if kind not in ROOM_KINDS:
        raise ValueError(f"room kind {kind!r} is not one of {ROOM_KINDS}")
    room.objects.append(f"kind:{kind}")
    if kind == "bedroom":
        _bedroom(room, m_metal)
    else:
        _dining(room, m_metal)

    _windows(room, m_white)
    _sunlight(room)
    _door(room, m_white, m_metal)
    _cabinet(room, m_metal)
    _shelf(room)
    _ceiling_panel(room, m_white)
    _corners(room, m_metal)
    _pictures(room)
    return room


def _shell(room: _Room) -> None:
    """Floor (wood, stone or carpet), ceiling and walls (one accent wall in brick sometimes)."""
    b, rng, W, D, H = room.b, room.rng, room.W, room.D, room.H
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


def _windows(room: _Room, m_white: int) -> None:
    """One or two windows on free wall spans; their emissive sky is the room's main light."""
    b, rng, H = room.b, room.rng, room.H
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


def _sunlight(room: _Room) -> None:
    """Sunlight through one window in most rooms: outward, 20-45 degrees up."""
    rng = room.rng
    if room.windows and rng.random() < 0.65:
        wall, m_sky = room.windows[int(rng.integers(len(room.windows)))]
        az, el = rng.uniform(-0.9, 0.9), rng.uniform(math.radians(20), math.radians(45))
        out = -wall.normal
        horiz = out * math.cos(az) + np.cross(_UP, out) * math.sin(az)
        direction = horiz * math.cos(el) + _UP * math.sin(el)
        room.sun = _Sun(
            direction / np.linalg.norm(direction), np.array([m for _, m in room.windows]), np.array([1.0, 0.9, 0.75])
        )
        room.objects.append("sun")


def _door(room: _Room, m_white: int, m_metal: int) -> None:
    """A door with its frame and handle on a free wall span."""
    b, rng = room.b, room.rng
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


def _cabinet(room: _Room, m_metal: int) -> None:
    """A cabinet or dresser with drawers against a wall (most rooms)."""
    b, rng = room.b, room.rng
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


def _shelf(room: _Room) -> None:
    """A bookshelf with books against a wall (most rooms)."""
    rng, H = room.rng, room.H
    if rng.random() < 0.75:
        sw, sh = float(rng.uniform(0.8, 1.2)), float(min(rng.uniform(1.6, 2.0), H - 0.35))
        spot = room.place_on_wall(sw, 0.0, sh, depth=0.33)
        if spot is not None:
            wall, s = spot
            _bookshelf(room, wall, s, sw, sh)
            room.objects.append("shelf")


def _ceiling_panel(room: _Room, m_white: int) -> None:
    """An emissive ceiling panel, over the table when there is one."""
    b, rng, W, D, H = room.b, room.rng, room.W, room.D, room.H
    m_panel = b.material(np.full((4, 4, 3), 1.0, np.float32), mirror=False, emission=np.array([1.0, 0.93, 0.8]) * 6.0)
    pcx, pcy = (
        ((room.table_rect[0] + room.table_rect[2]) / 2, (room.table_rect[1] + room.table_rect[3]) / 2)
        if room.table_rect
        else (W / 2, D / 2)
    )
    pw, pd = (0.6, 0.6) if rng.random() < 0.5 else (1.1, 0.3)
    b.quad([pcx - pw / 2, pcy - pd / 2, H - 0.031], [0, pd, 0], [pw, 0, 0], m_panel, _C["lamp"], None)
    b.box([pcx, pcy, H - 0.015], (pw + 0.04, pd + 0.04, 0.03), 0.0, m_white, _C["lamp"], 1.0)


def _corners(room: _Room, m_metal: int) -> None:
    """A floor lamp and a plant in free corners (the plant's corner order is the lamp's, reversed)."""
    rng, W, D = room.rng, room.W, room.D
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


def _pictures(room: _Room) -> None:
    """One to three framed public-domain photos (scikit-image) on free wall spans."""
    b, rng = room.b, room.rng
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
