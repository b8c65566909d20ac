"""Textures of the rooms: procedural wood, paint, fabric, rug, sky and scikit-image's bundled photos (linear light)."""

from __future__ import annotations

from functools import cache

import numpy as np

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
