"""The CPU rasterizer's projection and compositing as a small C++ kernel, built with the machine's own compiler.

Why: the pure-PyTorch compositing in :mod:`fit3d_helpers.render` spends most of its time creating, sorting and
re-reading (pixel, Gaussian) pair tensors (about 25 passes over them, forward and backward), and its projection is
~100 small tensor ops each way. Written as one loop per pixel, as gsplat's CUDA kernels do, the pairs never leave
the registers: forward walks each pixel's tile list front to back once, backward walks it back to front once
(recovering ``T`` by division, in float64), and only the per-Gaussian gradients are written. The projection is one
pass per Gaussian each way, with the backward written out by hand (``tests/test_render_paths.py`` holds it to
autograd of :func:`fit3d_helpers.render.project_gaussians`). Together ~3x faster than the tensor path on 2 cores
(``docs/speed.md``).

The kernel is plain C++17 with no PyTorch headers (it takes raw pointers through :mod:`ctypes`), so it builds in
a few seconds with the system ``g++``/``c++`` and downloads nothing. Where torch runs on GNU OpenMP (the Linux
wheels) it is built with ``-fopenmp`` and its threads are torch's own pool (see ``parallel_tiles``); elsewhere it
starts ``std::thread``s. It is compiled once per source version into ``$FIT3D_KERNEL_CACHE`` (default
``~/.cache/fit3d_helpers/kernels``); where no compiler works, or with ``FIT3D_RENDER_KERNEL=torch``,
:func:`available` is False and the renderer uses its pure-PyTorch path (the same numbers).

Semantics (identical to :func:`fit3d_helpers.render._band_pairs` + ``_Composite``): pixel centres at +0.5, a
Gaussian touches a pixel inside its footprint box with ``α = min(max_alpha, o·exp(-σ)) ≥ 1/255``; a pixel stops
*before* the Gaussian that would take ``T`` to ``≤ 1e-4``; ``out[p] = Σ αᵢ Tᵢ table[gᵢ]``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["available", "load", "project", "rasterize_visible"]

TILE = 8  # pixels per tile side; each tile's Gaussian list is walked by every pixel of the tile

_SOURCE_FILE = Path(__file__).with_name("render_kernel.cpp")  # built as is; its text keys the cache

_FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-fno-math-errno"]
_lock = threading.Lock()
_lib: Any = None
_failed: str | None = None


def _cpu_tag() -> str:
    """What -march=native depends on (the cache may be shared between machines)."""
    info = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                info += line
                if line.startswith("flags"):
                    break
    except OSError:
        pass
    return platform.machine() + platform.system() + info


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _torch_uses_libgomp() -> bool:
    """True when this process's torch runs its threads on GNU OpenMP (``libgomp`` is mapped, as in the Linux
    wheels): a kernel built with ``-fopenmp`` then shares torch's thread pool instead of competing with it."""
    try:
        return "libgomp" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def _build() -> Any:
    """The kernel library for this source, compiler, CPU and threading: compiled once into the cache, then loaded.
    With OpenMP where torch uses it; without, if the compiler refuses the flag or the library does not load."""
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++, c++, clang++) on PATH")
    flags = _FLAGS + (["-march=native"] if platform.machine() in ("x86_64", "AMD64") else [])
    attempts = ([flags + ["-fopenmp"]] if _torch_uses_libgomp() else []) + [flags]
    source = _SOURCE_FILE.read_text()
    errors = []
    for attempt in attempts:
        try:
            return ctypes.CDLL(str(_compile(cxx, source, attempt)))
        except (RuntimeError, OSError, subprocess.SubprocessError) as err:
            errors.append(str(err))
    raise RuntimeError(" / ".join(errors))


def _compile(cxx: str, source: str, flags: list[str]) -> Path:
    key = hashlib.sha256("\n".join([source, cxx, " ".join(flags), _cpu_tag()]).encode()).hexdigest()[:16]
    root = Path(os.environ.get("FIT3D_KERNEL_CACHE", Path.home() / ".cache" / "fit3d_helpers" / "kernels"))
    lib = root / f"render_{key}.so"
    if lib.exists():
        return lib
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:  # build beside the target, then an atomic rename
        src = Path(tmp) / "render_kernel.cpp"
        src.write_text(source)
        out = Path(tmp) / lib.name
        res = subprocess.run([cxx, *flags, str(src), "-o", str(out)], capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            raise RuntimeError(f"{cxx} failed: {res.stderr[-800:]}")
        os.replace(out, lib)
    return lib


def load() -> Any:
    """The compiled kernel library (built on first use), or None when it cannot be built here (warned once)."""
    global _lib, _failed
    if _lib is not None or _failed is not None:
        return _lib
    with _lock:
        if _lib is not None or _failed is not None:
            return _lib
        try:
            lib = _build()
            P, i32, i64, f64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double
            for sfx in ("f32", "f64"):
                fwd = getattr(lib, f"fit3d_forward_{sfx}")
                fwd.restype = i64
                fwd.argtypes = [i32, P, P, P, P, i32, i32, i32, i32, f64, P, P, P, P, i32, i32]
                bwd = getattr(lib, f"fit3d_backward_{sfx}")
                bwd.restype = None
                bwd.argtypes = [i32, P, P, P, P, i32, i32, i32, i32, i32, f64, P, P, P, P, P, P, i32, i32, i32]
                proj = getattr(lib, f"fit3d_project_{sfx}")
                proj.restype = None
                proj.argtypes = [i32, i32, i32, i32, f64, f64, f64, f64, f64, f64, i32] + [P] * 12
                proj_bwd = getattr(lib, f"fit3d_project_backward_{sfx}")
                proj_bwd.restype = None
                proj_bwd.argtypes = [i32, i32, i32, i32, f64, f64, f64, f64, i32] + [P] * 10
            _lib = lib
        except Exception as err:  # no compiler, a failed build, an unloadable library
            _failed = f"{type(err).__name__}: {str(err)[:400]}"
            warnings.warn(
                f"the rasterizer's C++ kernel could not be built ({_failed}); using the pure-PyTorch renderer "
                "(same results, slower)",
                stacklevel=2,
            )
    return _lib


def available(device: torch.device | str = "cpu") -> bool:
    """True when the kernel can render on ``device`` (CPU only; off with ``FIT3D_RENDER_KERNEL=torch``)."""
    if torch.device(device).type != "cpu" or os.environ.get("FIT3D_RENDER_KERNEL", "auto") == "torch":
        return False
    return load() is not None


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class _KernelRaster(torch.autograd.Function):
    """Renders and alphas of all cameras from the projected Gaussians, with the analytic backward of
    ``render._Composite`` (the same formulas, evaluated pixel by pixel back to front).

    Differentiable inputs: ``means2d [C,N,2]``, ``conics [C,N,3]``, ``opacities [N]``, ``colors [N,D]`` or
    ``[C,N,D]``. ``prep`` (no grad) holds the visible Gaussians in (camera, depth) order: ``flat [G]`` (c·N + n),
    ``params [6, G]`` (their detached mean x, mean y, conic a, b, c, opacity), ``boxes [5, G]`` int32 (footprint
    x0, x1, first and last global row, the camera's first global row), and the row bands."""

    @staticmethod
    def forward(ctx: Any, means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, prep: dict) -> Any:
        lib = load()
        C, N = means2d.shape[:2]
        H, W = prep["height"], prep["width"]
        dt = colors.dtype
        colors_c = colors.detach().reshape(-1, colors.shape[-1]).contiguous()  # [N or C·N, D]
        d = colors_c.shape[1]
        flat = prep["flat"]
        crow = (flat if colors.dim() == 3 else flat % N).to(torch.int32).contiguous()  # [G] row in colors_c
        params = prep["params"].to(dt).contiguous()  # [6, G]
        boxes = prep["boxes"]
        n_g = params.shape[1]
        renders = torch.empty(C, H, W, d, dtype=dt)
        alphas = torch.empty(C, H, W, 1, dtype=dt)
        t_final = torch.empty(C * H * W, dtype=torch.float64)
        last = torch.empty(C * H * W, dtype=torch.int32)
        fwd = lib.fit3d_forward_f64 if dt == torch.float64 else lib.fit3d_forward_f32
        n_comp = 0
        n_threads = _threads()
        for r0, r1 in prep["bands"]:
            o = r0 * W  # first pixel of the band
            n_comp += fwd(n_g, _ptr(boxes), _ptr(params), _ptr(colors_c), _ptr(crow), d, r0, r1, W,
                          prep["max_alpha"], renders.data_ptr() + o * d * renders.element_size(),
                          alphas.data_ptr() + o * alphas.element_size(), t_final.data_ptr() + o * 8,
                          last.data_ptr() + o * 4, n_threads, TILE)  # fmt: skip
        prep["stats"]["n_pairs"] = int(n_comp)
        ctx.save_for_backward(params, colors_c, crow, boxes, t_final, last, prep["flat"])
        ctx.meta = (C, N, H, W, colors.shape, prep["bands"], prep["geometry_channels"], prep["max_alpha"])
        return renders, alphas

    @staticmethod
    def backward(ctx: Any, grad_renders: Tensor, grad_alphas: Tensor) -> tuple[Tensor | None, ...]:
        params, colors_c, crow, boxes, t_final, last, flat = ctx.saved_tensors
        C, N, H, W, colors_shape, bands, geo, max_alpha = ctx.meta
        need_geo = any(ctx.needs_input_grad[:3])
        need_col = ctx.needs_input_grad[3]
        if not (need_geo or need_col):
            return None, None, None, None, None
        lib = load()
        dt = colors_c.dtype
        n_g, (n_rows, d) = params.shape[1], colors_c.shape
        go = (grad_renders if grad_renders is not None else torch.zeros(C, H, W, d, dtype=dt)).to(dt).contiguous()
        ga = (grad_alphas if grad_alphas is not None else torch.zeros(C, H, W, 1, dtype=dt)).to(dt).contiguous()
        gp = torch.zeros(6, n_g, dtype=dt) if need_geo else None  # [6, G]
        gc = torch.zeros(n_rows, d, dtype=dt) if need_col else None  # [N or C·N, D]
        bwd = lib.fit3d_backward_f64 if dt == torch.float64 else lib.fit3d_backward_f32
        n_threads = _threads()
        for r0, r1 in bands:
            o = r0 * W
            bwd(n_g, _ptr(boxes), _ptr(params), _ptr(colors_c), _ptr(crow), d, -1 if geo is None else int(geo), r0,
                r1, W, max_alpha, go.data_ptr() + o * d * go.element_size(), ga.data_ptr() + o * ga.element_size(),
                t_final.data_ptr() + o * 8, last.data_ptr() + o * 4, _ptr(gp), _ptr(gc), n_rows, n_threads,
                TILE)  # fmt: skip
        g_means = g_conics = g_op = g_col = None
        if gp is not None:  # back from the visible list to [C, N, ...]
            g_means = torch.zeros(C * N, 2, dtype=dt).index_copy_(0, flat, gp[:2].t()).view(C, N, 2)
            g_conics = torch.zeros(C * N, 3, dtype=dt).index_copy_(0, flat, gp[2:5].t()).view(C, N, 3)
            g_op = torch.zeros(C * N, dtype=dt).index_copy_(0, flat, gp[5]).view(C, N).sum(0)
        if gc is not None:
            g_col = gc.view(colors_shape)
        return g_means, g_conics, g_op, g_col, None


def rasterize_visible(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    colors: Tensor,
    g: dict[str, Any],
    flat: Tensor,
    bands: list[tuple[int, int]],
    width: int,
    height: int,
    geometry_channels: int | None,
    max_alpha: float,
) -> tuple[Tensor, Tensor, int]:
    """``renders [C,H,W,D]``, ``alphas [C,H,W,1]`` and the pairs composited, from ``render._setup``'s visible list
    ``g`` / ``flat`` and row bands. Differentiable in ``means2d``, ``conics``, ``opacities`` and ``colors``."""
    params = torch.stack([g["mx"], g["my"], g["ca"], g["cb"], g["cc"], g["op"]])  # [6, G], detached
    boxes = torch.stack([g["x0"], g["x1"], g["gy0"], g["gy1"], g["ycam"]]).to(torch.int32).contiguous()
    stats: dict[str, int] = {}
    prep = {"flat": flat, "params": params, "boxes": boxes, "bands": list(bands), "width": int(width),
            "height": int(height), "geometry_channels": geometry_channels, "max_alpha": float(max_alpha),
            "stats": stats}  # fmt: skip
    op = opacities.to(means2d.dtype) if opacities.dtype != means2d.dtype else opacities
    renders, alphas = _KernelRaster.apply(means2d, conics, op, colors, prep)
    return renders, alphas, stats.get("n_pairs", 0)


class _KernelProject(torch.autograd.Function):
    """``render.project_gaussians`` in one compiled pass, and its analytic backward in another (the tensor version
    is ~100 small ops each way, which cost more than the arithmetic). Differentiable in ``means [N,3]``,
    ``quats [N,4]`` and ``scales [N,3]``; the cameras are constants here (the caller falls back to the tensor
    version when they need gradients)."""

    @staticmethod
    def forward(ctx: Any, means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor,
                Ks: Tensor, settings: tuple) -> Any:  # fmt: skip
        lib = load()
        dt = means.dtype
        C, N = viewmats.shape[0], means.shape[0]
        width, height, near, far, eps2d, fov_clamp, alpha_threshold, max_extend = settings
        ins = [t.detach().to(dt).contiguous() for t in (means, quats, scales, opacities, viewmats, Ks)]
        means2d = torch.empty(C, N, 2, dtype=dt)
        conics = torch.empty(C, N, 3, dtype=dt)
        depths = torch.empty(C, N, dtype=dt)
        extents = torch.empty(C, N, 2, dtype=dt)
        radii = torch.empty(C, N, 2, dtype=torch.int32)
        valid = torch.empty(C, N, dtype=torch.bool)
        fn = lib.fit3d_project_f64 if dt == torch.float64 else lib.fit3d_project_f32
        fn(C, N, width, height, near, far, eps2d, fov_clamp, alpha_threshold, max_extend, _threads(),
           *[_ptr(t) for t in ins], *[_ptr(t) for t in (means2d, conics, depths, extents, radii, valid)])  # fmt: skip
        ctx.save_for_backward(*ins[:3], *ins[4:])
        ctx.settings = settings
        ctx.mark_non_differentiable(depths, extents, radii, valid)
        return means2d, conics, depths, extents, radii, valid

    @staticmethod
    def backward(ctx: Any, g_means2d: Tensor | None, g_conics: Tensor | None, *_: Any) -> tuple[Tensor | None, ...]:
        means, quats, scales, viewmats, Ks = ctx.saved_tensors
        if not any(ctx.needs_input_grad[:3]) or (g_means2d is None and g_conics is None):
            return (None,) * 7
        dt = means.dtype
        C, N = viewmats.shape[0], means.shape[0]
        width, height, near, far, eps2d, fov_clamp, _, _ = ctx.settings
        gm2 = (g_means2d if g_means2d is not None else torch.zeros(C, N, 2, dtype=dt)).to(dt).contiguous()
        gco = (g_conics if g_conics is not None else torch.zeros(C, N, 3, dtype=dt)).to(dt).contiguous()
        g_means, g_quats, g_scales = torch.empty_like(means), torch.empty_like(quats), torch.empty_like(scales)
        lib = load()
        fn = lib.fit3d_project_backward_f64 if dt == torch.float64 else lib.fit3d_project_backward_f32
        fn(C, N, width, height, near, far, eps2d, fov_clamp, _threads(),
           *[_ptr(t) for t in (means, quats, scales, viewmats, Ks, gm2, gco, g_means, g_quats, g_scales)])  # fmt: skip
        need = ctx.needs_input_grad
        return (g_means if need[0] else None, g_quats if need[1] else None, g_scales if need[2] else None,
                None, None, None, None)  # fmt: skip


def _threads() -> int:
    return max(1, torch.get_num_threads())


def project(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near: float,
    far: float,
    eps2d: float,
    fov_clamp: float,
    alpha_threshold: float,
    max_extend: float,
) -> dict[str, Tensor]:
    """``render.project_gaussians``'s outputs (all but ``cov2d``) from the compiled projection: ``means2d``
    and ``conics`` differentiable in means, quats and scales; ``depths``, ``extents``, ``radii`` and ``valid``
    constants. The constants (``eps2d`` ...) are render's, passed in so that they have one home."""
    settings = (int(width), int(height), float(near), float(far), float(eps2d), float(fov_clamp),
                float(alpha_threshold), float(max_extend))  # fmt: skip
    means2d, conics, depths, extents, radii, valid = _KernelProject.apply(
        means, quats, scales, opacities, viewmats, Ks, settings
    )
    return {"means2d": means2d, "conics": conics, "depths": depths, "extents": extents, "radii": radii,
            "valid": valid}  # fmt: skip
