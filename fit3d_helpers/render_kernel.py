"""The CPU rasterizer's compositing loop as a small C++ kernel, built with the machine's own compiler on first use.

Why: the pure-PyTorch compositing in :mod:`fit3d_helpers.render` spends most of its time creating, sorting and
re-reading (pixel, Gaussian) pair tensors (about 25 passes over them, forward and backward). Written as one loop
per pixel, as gsplat's CUDA kernels do, the pairs never leave the registers: forward walks each pixel's tile list
front to back once, backward walks it back to front once (recovering ``T`` by division, in float64), and only
the per-Gaussian gradients are written. About 5x faster on a CPU (``docs/speed.md``).

The kernel is plain C++17 with no PyTorch headers (it takes raw pointers through :mod:`ctypes`), so it builds in
about 2 s with the system ``g++``/``c++`` and downloads nothing. It is compiled once per source version into
``$FIT3D_KERNEL_CACHE`` (default ``~/.cache/fit3d_helpers/kernels``); where no compiler works, or with
``FIT3D_RENDER_KERNEL=torch``, :func:`available` is False and the renderer uses its pure-PyTorch path (the same
numbers, ``tests/test_render_paths.py`` compares the two).

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

__all__ = ["available", "load", "rasterize_visible"]

TILE = 8  # pixels per tile side; each tile's Gaussian list is walked by every pixel of the tile

_SOURCE = r"""
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

struct Bins {
    // Gaussians (in the caller's order, i.e. camera then depth) listed per tile of the band
    int tiles_x = 0, tiles_y = 0;
    std::vector<int32_t> offsets, list;
};

// tiles of TILE x TILE pixels anchored at (row r0, column 0) of the band of global rows [r0, r1)
constexpr int TW = 8;  // tile width in pixels: one row of a tile is one 8-lane vector of alphas

Bins bin_tiles(int n_g, const int32_t* x0, const int32_t* x1, const int32_t* gy0, const int32_t* gy1,
               int r0, int r1, int width, int tile) {
    Bins b;
    b.tiles_x = (width + TW - 1) / TW;
    b.tiles_y = (r1 - r0 + tile - 1) / tile;
    const int n_tiles = b.tiles_x * b.tiles_y;
    std::vector<int32_t> counts(n_tiles + 1, 0);
    auto range = [&](int g, int& tx0, int& tx1, int& ty0, int& ty1) {
        int ya = std::max(gy0[g], r0), yb = std::min(gy1[g], r1 - 1);
        int xa = std::max(x0[g], 0), xb = std::min(x1[g], width - 1);
        if (ya > yb || xa > xb) return false;
        tx0 = xa / TW; tx1 = xb / TW; ty0 = (ya - r0) / tile; ty1 = (yb - r0) / tile;
        return true;
    };
    for (int g = 0; g < n_g; ++g) {
        int tx0, tx1, ty0, ty1;
        if (!range(g, tx0, tx1, ty0, ty1)) continue;
        for (int ty = ty0; ty <= ty1; ++ty)
            for (int tx = tx0; tx <= tx1; ++tx) counts[ty * b.tiles_x + tx + 1]++;
    }
    for (int t = 0; t < n_tiles; ++t) counts[t + 1] += counts[t];
    b.offsets = counts;
    b.list.resize(counts[n_tiles]);
    std::vector<int32_t> fill(counts.begin(), counts.end() - 1);
    for (int g = 0; g < n_g; ++g) {
        int tx0, tx1, ty0, ty1;
        if (!range(g, tx0, tx1, ty0, ty1)) continue;
        for (int ty = ty0; ty <= ty1; ++ty)
            for (int tx = tx0; tx <= tx1; ++tx) b.list[fill[ty * b.tiles_x + tx]++] = g;
    }
    return b;
}

// body(thread, next) runs on n_threads threads (the caller's is one); next() gives the thread's next tile, -1 when
// none are left. `dynamic`: tiles handed out one at a time, so that on a machine shared with other jobs a thread
// that is descheduled for a while does not leave the others waiting (the forward: pixels are independent).
// Otherwise thread t takes tiles t, t + n, ...: the backward's per-thread sums then do not depend on timing, and
// a fit is reproducible bit for bit (a resumed lift equals an uninterrupted one).
template <typename F>
void parallel_tiles(int n_tiles, int n_threads, bool dynamic, F&& body) {
    n_threads = std::max(1, std::min(n_threads, n_tiles));
    std::atomic<int> counter{0};
    auto run = [&](int th) {
        int mine = th - n_threads;
        auto next = [&] {
            const int t = dynamic ? counter.fetch_add(1, std::memory_order_relaxed) : (mine += n_threads);
            return t < n_tiles ? t : -1;
        };
        body(th, next);
    };
    std::vector<std::thread> pool;
    std::vector<int> inline_shares;  // threads the system refused: their shares run on this one
    for (int t = 1; t < n_threads; ++t) {
        try {
            pool.emplace_back(run, t);
        } catch (...) {
            inline_shares.push_back(t);
        }
    }
    run(0);
    for (int t : inline_shares) run(t);
    for (auto& th : pool) th.join();
}

template <typename R>
struct Geometry {
    int n_g;
    const int32_t *x0, *x1, *gy0, *gy1, *ycam;
    const R *mx, *my, *ca, *cb, *cc, *op;
};

// <a, b> over n entries with 16 independent partial sums: a plain `q += a[d] * b[d]` is one serial chain of float
// additions (the compiler may not reorder them), 4x slower than the whole rest of the backward pass
template <typename R>
inline R dot(const R* __restrict a, const R* __restrict b, int n) {
    constexpr int L = 16;
    R acc[L] = {};
    int d = 0;
    for (; d + L <= n; d += L)
        for (int l = 0; l < L; ++l) acc[l] += a[d + l] * b[d + l];
    for (; d < n; ++d) acc[0] += a[d] * b[d];
    R q = 0;
    for (int l = 0; l < L; ++l) q += acc[l];
    return q;
}

constexpr int VL = 16;  // channel block: the loops over channels run on whole blocks of VL (padded with zeros)

template <typename R>
inline void axpy_padded(R* __restrict y, R w, const R* __restrict x, int dpad) {
    for (int j = 0; j < dpad; j += VL)
        for (int l = 0; l < VL; ++l) y[j + l] += w * x[j + l];
}

// One Gaussian as seen from one pixel row: the row's terms of sigma are computed once per row, not per pixel.
template <typename R>
struct RowSplat {
    int32_t x0, x1, k;  // columns of the footprint box, the Gaussian's position in the tile list
    R mx, half_a, sy, bdy, dy, op;
};

// the Gaussians of tile list `lst` whose box holds global row `row`, in list (depth) order, with their row terms
template <typename R>
int row_splats(const Geometry<R>& G, const int32_t* lst, int len, int row, RowSplat<R>* rs) {
    int n = 0;
    for (int k = 0; k < len; ++k) {
        const int g = lst[k];
        if (row < G.gy0[g] || row > G.gy1[g]) continue;
        RowSplat<R>& s = rs[n++];
        s.x0 = G.x0[g];
        s.x1 = G.x1[g];
        s.k = k;
        s.mx = G.mx[g];
        s.dy = (R(row - G.ycam[g]) + R(0.5)) - G.my[g];
        s.half_a = R(0.5) * G.ca[g];
        s.sy = (R(0.5) * G.cc[g]) * s.dy * s.dy;
        s.bdy = G.cb[g] * s.dy;
        s.op = G.op[g];
    }
    return n;
}

// exp(-sigma) for sigma >= 0: float32 by Cephes' expf polynomial (within 2 ulp of std::exp), written with plain
// arithmetic so that the compiler evaluates 8 or 16 of them per instruction; float64 (the tests) by std::exp
inline float exp_neg(float sigma) {
    float x = std::max(-sigma, -87.0f);
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = (int32_t(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}
inline double exp_neg(double sigma) { return std::exp(-sigma); }

// alphas of the row splats at the tile's columns c0 .. c0 + TW - 1: a[k * TW + l], 0 where not composited (outside
// the box, sigma < 0, or alpha < 1/255), as render._band_pairs computes them
template <typename R>
void row_alphas(const RowSplat<R>* rs, int m, int c0, R max_alpha, R* a) {
    for (int k = 0; k < m; ++k) {
        const RowSplat<R>& s = rs[k];
        R* ak = a + k * TW;
        for (int l = 0; l < TW; ++l) {
            const int col = c0 + l;
            const R dx = (R(col) + R(0.5)) - s.mx;
            R sigma = s.sy + s.half_a * dx * dx;
            sigma += s.bdy * dx;
            const bool in = (col >= s.x0) & (col <= s.x1) & (sigma >= R(0));
            R alpha = std::min(max_alpha, s.op * exp_neg(in ? sigma : R(0)));
            ak[l] = (in & (alpha >= R(1.0 / 255.0))) ? alpha : R(0);
        }
    }
}

// the non-zero alphas of one column (stride TW) of a row's alpha table, and their row-splat positions: the loops
// below then run without the data-dependent branch that about half of the entries would mispredict
template <typename R>
inline int compact(const R* al, int m, int32_t* idx, R* av) {
    int n = 0;
    for (int k = 0; k < m; ++k) {
        const R v = al[k * TW];
        idx[n] = k;
        av[n] = v;
        n += (v != R(0));
    }
    return n;
}

// What every tile needs, per thread: its row splats, their alphas, its Gaussians' colours copied next to each other
// (a tile's pixels read each colour row ~10 times; gathered once they come from L1/L2, not from all over memory)
template <typename R>
struct TileScratch {
    std::vector<RowSplat<R>> rs;
    std::vector<R> a, colours, av;
    std::vector<int32_t> idx;
    void fit(int len, int dpad) {
        if (int(rs.size()) < len) {
            rs.resize(len), a.resize(size_t(len) * TW), av.resize(len + 1), idx.resize(len + 1);
        }
        if (colours.size() < size_t(len) * dpad) colours.resize(size_t(len) * dpad);
    }
    // rows of dpad (d rounded up to VL) with zeros after d: the channel loops then have no remainder
    void gather(const R* colors, const int32_t* crow, const int32_t* lst, int len, int d, int dpad) {
        for (int k = 0; k < len; ++k) {
            R* dst = &colours[size_t(k) * dpad];
            std::memcpy(dst, colors + int64_t(crow[lst[k]]) * d, sizeof(R) * d);
            std::fill(dst + d, dst + dpad, R(0));
        }
    }
};

// Front to back over every pixel of global rows [r0, r1): renders [n_pix, d], alphas [n_pix], and for the backward
// each pixel's final transmittance and how far along its row-splat list it got. Returns the pairs composited.
template <typename R>
int64_t forward(const Geometry<R>& G, const R* colors, const int32_t* crow, int d, int r0, int r1, int width,
                R max_alpha, R* out, R* alpha_out, double* t_final, int32_t* last, int n_threads, int tile) {
    Bins b = bin_tiles(G.n_g, G.x0, G.x1, G.gy0, G.gy1, r0, r1, width, tile);
    const int n_tiles = b.tiles_x * b.tiles_y;
    const int n_th = std::max(1, std::min(n_threads, n_tiles));
    std::vector<int64_t> n_comp(n_th, 0);
    const int dpad = (d + VL - 1) / VL * VL;
    parallel_tiles(n_tiles, n_th, true, [&](int th, auto&& next) {
        int64_t count = 0;
        TileScratch<R> sc;
        std::vector<R> acc(dpad);
        for (int t = next(); t >= 0; t = next()) {
            const int tx = t % b.tiles_x, ty = t / b.tiles_x;
            const int32_t* lst = b.list.data() + b.offsets[t];
            const int len = b.offsets[t + 1] - b.offsets[t];
            sc.fit(len, dpad);
            sc.gather(colors, crow, lst, len, d, dpad);
            const int c0 = tx * TW, c1 = std::min(c0 + TW, width) - 1;
            for (int ly = ty * tile; ly < std::min((ty + 1) * tile, r1 - r0); ++ly) {
                const int m = row_splats(G, lst, len, r0 + ly, sc.rs.data());
                row_alphas(sc.rs.data(), m, c0, max_alpha, sc.a.data());
                for (int col = c0; col <= c1; ++col) {
                    const int64_t p = int64_t(ly) * width + col;
                    R* __restrict o = acc.data();
                    std::fill(acc.begin(), acc.end(), R(0));
                    const int nz = compact(sc.a.data() + (col - c0), m, sc.idx.data(), sc.av.data());
                    double T = 1.0, wsum = 0.0;
                    int k = 0;
                    for (; k < nz; ++k) {
                        const R alpha = sc.av[k];
                        const double next_T = T * (1.0 - double(alpha));
                        if (next_T <= 1e-4) break;
                        const R w = R(double(alpha) * T);
                        axpy_padded(o, w, &sc.colours[size_t(sc.rs[sc.idx[k]].k) * dpad], dpad);
                        wsum += double(w);
                        T = next_T;
                        ++count;
                    }
                    std::memcpy(out + p * d, o, sizeof(R) * d);
                    alpha_out[p] = R(wsum);
                    t_final[p] = T;
                    last[p] = k;
                }
            }
        }
        n_comp[th] = count;
    });
    int64_t total = 0;
    for (auto c : n_comp) total += c;
    return total;
}

// Back to front over the same pixels: adds dL/d(mean x, mean y, conic a, b, c, opacity) of the visible Gaussians to
// grad_params [6, n_g] and dL/dcolour to grad_colors [n_rows, d] (rows by crow); either may be null. `geo` >= 0:
// only colour channels [0, geo) and the alpha move the geometry.
template <typename R>
void backward(const Geometry<R>& G, const R* colors, const int32_t* crow, int d, int geo, int r0, int r1,
              int width, R max_alpha, const R* grad_out, const R* grad_alpha, const double* t_final,
              const int32_t* last, R* grad_params, R* grad_colors, int n_rows, int n_threads, int tile) {
    Bins b = bin_tiles(G.n_g, G.x0, G.x1, G.gy0, G.gy1, r0, r1, width, tile);
    const int n_tiles = b.tiles_x * b.tiles_y;
    const int n_g = G.n_g;
    const int n_th = std::max(1, std::min(n_threads, n_tiles));
    const int dpad = (d + VL - 1) / VL * VL;
    const int dq = geo < 0 ? dpad : geo;  // channels of q = <dL/d render, colour> that reach the geometry
    // per-thread accumulators (thread 0 writes straight into the outputs)
    std::vector<std::vector<R>> gp(n_th), gt(n_th);
    for (int t = 1; t < n_th; ++t) {
        if (grad_params) gp[t].assign(size_t(6) * n_g, R(0));
        if (grad_colors) gt[t].assign(size_t(n_rows) * d, R(0));
    }
    parallel_tiles(n_tiles, n_th, false, [&](int th, auto&& next) {
        R* P = grad_params ? (th == 0 ? grad_params : gp[th].data()) : nullptr;
        R* Tb = grad_colors ? (th == 0 ? grad_colors : gt[th].data()) : nullptr;
        TileScratch<R> sc;
        std::vector<R> gcol, gpar;  // the tile's gradients, per tile-list position, added to P and Tb at its end
        std::vector<R> gpix(dpad, R(0));  // the pixel's dL/d render, padded
        for (int t = next(); t >= 0; t = next()) {
            const int tx = t % b.tiles_x, ty = t / b.tiles_x;
            const int32_t* lst = b.list.data() + b.offsets[t];
            const int len = b.offsets[t + 1] - b.offsets[t];
            sc.fit(len, dpad);
            if (P) sc.gather(colors, crow, lst, len, d, dpad);
            if (Tb) gcol.assign(size_t(len) * dpad, R(0));
            if (P) gpar.assign(size_t(len) * 6, R(0));
            const int c0 = tx * TW, c1 = std::min(c0 + TW, width) - 1;
            for (int ly = ty * tile; ly < std::min((ty + 1) * tile, r1 - r0); ++ly) {
                const int m = row_splats(G, lst, len, r0 + ly, sc.rs.data());
                row_alphas(sc.rs.data(), m, c0, max_alpha, sc.a.data());
                for (int col = c0; col <= c1; ++col) {
                    const int64_t p = int64_t(ly) * width + col;
                    std::memcpy(gpix.data(), grad_out + p * d, sizeof(R) * d);
                    const R* __restrict go = gpix.data();
                    const R ga = grad_alpha[p];
                    compact(sc.a.data() + (col - c0), m, sc.idx.data(), sc.av.data());
                    double T = t_final[p];
                    double S = 0.0;  // sum over the later pairs of w_j q_j
                    for (int k = last[p] - 1; k >= 0; --k) {
                        const R alpha = sc.av[k];
                        const RowSplat<R>& s = sc.rs[sc.idx[k]];
                        const double one_m = 1.0 - double(alpha);
                        T /= one_m;  // the transmittance in front of this Gaussian
                        const R w = R(double(alpha) * T);
                        if (Tb) axpy_padded(&gcol[size_t(s.k) * dpad], w, go, dpad);
                        if (!P) continue;
                        const R q = dot(go, &sc.colours[size_t(s.k) * dpad], dq) + ga;  // the alpha's colour is 1
                        const double g_alpha = T * double(q) - S / one_m;
                        S += double(w) * double(q);
                        if (!(alpha < max_alpha)) continue;  // clamped: no gradient
                        const R g_op = R(g_alpha) * alpha;
                        const R dx = (R(col) + R(0.5)) - s.mx, dy = s.dy;
                        const R t_x = g_op * dx, t_y = g_op * dy;
                        R* gq = &gpar[size_t(s.k) * 6];
                        gq[0] += t_x;  // -dL/dsigma dx and dy, mapped to the means below
                        gq[1] += t_y;
                        gq[2] += R(-0.5) * dx * t_x;
                        gq[3] += -dx * t_y;
                        gq[4] += R(-0.5) * dy * t_y;
                        gq[5] += g_op;
                    }
                }
            }
            for (int k = 0; k < len; ++k) {
                const int g = lst[k];
                if (Tb) {
                    R* __restrict dst = Tb + int64_t(crow[g]) * d;
                    const R* __restrict src = &gcol[size_t(k) * dpad];
                    for (int j = 0; j < d; ++j) dst[j] += src[j];
                }
                if (P) {
                    const R* gq = &gpar[size_t(k) * 6];
                    // dL/d mean = (a t_x + b t_y, c t_y + b t_x) is linear in (t_x, t_y): summed first, mapped once
                    P[g] += G.ca[g] * gq[0] + G.cb[g] * gq[1];
                    P[n_g + g] += G.cc[g] * gq[1] + G.cb[g] * gq[0];
                    P[2 * n_g + g] += gq[2];
                    P[3 * n_g + g] += gq[3];
                    P[4 * n_g + g] += gq[4];
                    P[5 * n_g + g] += gq[5] / G.op[g];
                }
            }
        }
    });
    for (int t = 1; t < n_th; ++t) {
        if (grad_params) for (size_t i = 0; i < gp[t].size(); ++i) grad_params[i] += gp[t][i];
        if (grad_colors) for (size_t i = 0; i < gt[t].size(); ++i) grad_colors[i] += gt[t][i];
    }
}

template <typename R>
Geometry<R> geometry(int n_g, const int32_t* boxes, const R* params) {
    // boxes [5, n_g]: x0, x1, gy0, gy1, ycam; params [6, n_g]: mean x, mean y, conic a, b, c, opacity
    return Geometry<R>{n_g, boxes, boxes + n_g, boxes + 2 * n_g, boxes + 3 * n_g, boxes + 4 * n_g,
                       params, params + n_g, params + 2 * n_g, params + 3 * n_g, params + 4 * n_g,
                       params + 5 * n_g};
}

}  // namespace

extern "C" {
#define FIT3D_DEFINE(SUFFIX, R)                                                                               \
    int64_t fit3d_forward_##SUFFIX(int n_g, const int32_t* boxes, const R* params, const R* colors,          \
                                   const int32_t* crow, int d, int r0, int r1, int width, double max_alpha,  \
                                   R* out, R* alpha_out, double* t_final, int32_t* last, int n_threads,      \
                                   int tile) {                                                               \
        return forward<R>(geometry<R>(n_g, boxes, params), colors, crow, d, r0, r1, width, R(max_alpha), out, \
                          alpha_out, t_final, last, n_threads, tile);                                        \
    }                                                                                                         \
    void fit3d_backward_##SUFFIX(int n_g, const int32_t* boxes, const R* params, const R* colors,            \
                                 const int32_t* crow, int d, int geo, int r0, int r1, int width,             \
                                 double max_alpha, const R* grad_out, const R* grad_alpha,                   \
                                 const double* t_final, const int32_t* last, R* grad_params, R* grad_colors, \
                                 int n_rows, int n_threads, int tile) {                                      \
        backward<R>(geometry<R>(n_g, boxes, params), colors, crow, d, geo, r0, r1, width, R(max_alpha),      \
                    grad_out, grad_alpha, t_final, last, grad_params, grad_colors, n_rows, n_threads, tile); \
    }
FIT3D_DEFINE(f32, float)
FIT3D_DEFINE(f64, double)
}
"""

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


def _build() -> Path:
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++, c++, clang++) on PATH")
    flags = _FLAGS + (["-march=native"] if platform.machine() in ("x86_64", "AMD64") else [])
    key = hashlib.sha256("\n".join([_SOURCE, cxx, " ".join(flags), _cpu_tag()]).encode()).hexdigest()[:16]
    root = Path(os.environ.get("FIT3D_KERNEL_CACHE", Path.home() / ".cache" / "fit3d_helpers" / "kernels"))
    lib = root / f"render_{key}.so"
    if lib.exists():
        return lib
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:  # build beside the target, then an atomic rename
        src = Path(tmp) / "render_kernel.cpp"
        src.write_text(_SOURCE)
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
            lib = ctypes.CDLL(str(_build()))
            P, i32, i64, f64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double
            for sfx in ("f32", "f64"):
                fwd = getattr(lib, f"fit3d_forward_{sfx}")
                fwd.restype = i64
                fwd.argtypes = [i32, P, P, P, P, i32, i32, i32, i32, f64, P, P, P, P, i32, i32]
                bwd = getattr(lib, f"fit3d_backward_{sfx}")
                bwd.restype = None
                bwd.argtypes = [i32, P, P, P, P, i32, i32, i32, i32, i32, f64, P, P, P, P, P, P, i32, i32, i32]
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
        n_threads = max(1, torch.get_num_threads())
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
        n_threads = max(1, torch.get_num_threads())
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
