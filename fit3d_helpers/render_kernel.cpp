// The CPU rasterizer's kernels: EWA projection (forward and backward) and per-pixel alpha compositing (forward and
// backward) of 3D Gaussians, as gsplat's CUDA kernels compute them. Plain C++17, no PyTorch headers: the Python side
// (fit3d_helpers/render_kernel.py) builds it with the system compiler on first use and calls it through ctypes.
// The pure-PyTorch renderer in fit3d_helpers/render.py computes the same numbers and is the fallback;
// tests/test_render_paths.py holds the two to each other, tests/test_render.py this one to the per-pixel reference.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

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

// body(thread, next) runs on up to n_threads threads (the caller's is one); next() gives the thread's next tile, -1
// when none are left. `dynamic`: tiles handed out one at a time, so that on a machine shared with other jobs a
// thread that is descheduled for a while does not leave the others waiting (the forward: pixels are independent).
// Otherwise thread t of a team of n takes tiles t, t + n, ...: the backward's per-thread sums then do not depend
// on timing, and a fit is reproducible bit for bit (a resumed lift equals an uninterrupted one).
//
// Built with OpenMP, the threads are PyTorch's own: the library links libgomp.so.1, which resolves to the copy
// that libtorch already loaded, so the team is torch's pool. That matters on a 2-core machine: after each
// parallel torch op libgomp's workers spin for a few milliseconds waiting for more work, and a thread of our own
// started then finds its core taken (measured: 2 threads were no faster than 1; on torch's pool, 1.7x faster).
// Without OpenMP (another compiler, or its flag refused) the team is made of std::threads.
template <typename F>
void parallel_tiles(int n_tiles, int n_threads, bool dynamic, F&& body) {
    n_threads = std::max(1, std::min(n_threads, n_tiles));
    std::atomic<int> counter{0};
    auto run = [&](int th, int team) {
        int mine = th - team;
        auto next = [&] {
            const int t = dynamic ? counter.fetch_add(1, std::memory_order_relaxed) : (mine += team);
            return t < n_tiles ? t : -1;
        };
        body(th, next);
    };
    if (n_threads == 1) {
        run(0, 1);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(n_threads)
    run(omp_get_thread_num(), omp_get_num_threads());  // the team may be smaller than asked: strides follow it
#else
    std::vector<std::thread> pool;
    std::vector<int> inline_shares;  // threads the system refused: their shares run on this one
    for (int t = 1; t < n_threads; ++t) {
        try {
            pool.emplace_back(run, t, n_threads);
        } catch (...) {
            inline_shares.push_back(t);
        }
    }
    run(0, n_threads);
    for (int t : inline_shares) run(t, n_threads);
    for (auto& th : pool) th.join();
#endif
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

// ---------------------------------------------------------------------------------------------------------------
// Projection: render.project_gaussians (gsplat's fully fused EWA projection) for C cameras x N Gaussians, the
// same formulas in the same order, and its analytic backward. One (camera, Gaussian) at a time; threads split the
// Gaussians, each Gaussian's cameras are summed in order (no sum depends on the thread count).
// ---------------------------------------------------------------------------------------------------------------
// body(begin, end) over contiguous blocks of [0, n), one block per thread (blocks of at least 1024 items): each
// thread writes its own stretch of the outputs, so no two threads share a cache line
template <typename F>
void parallel_blocks(int n, int n_threads, F&& body) {
    const int blocks = std::max(1, std::min(n_threads, n / 1024 + 1));
    parallel_tiles(blocks, blocks, false, [&](int, auto&& next) {
        for (int b = next(); b >= 0; b = next()) body(int(int64_t(n) * b / blocks), int(int64_t(n) * (b + 1) / blocks));
    });
}

template <typename R>
struct Cam {
    R Rv[9], t[3], fx, fy, cx, cy, lxp, lxn, lyp, lyn;
};

template <typename R>
Cam<R> camera(const R* viewmat, const R* K, int width, int height, R fov_clamp) {
    Cam<R> c;
    for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) c.Rv[3 * i + j] = viewmat[4 * i + j];
        c.t[i] = viewmat[4 * i + 3];
    }
    c.fx = K[0], c.fy = K[4], c.cx = K[2], c.cy = K[5];
    const R tan_fovx = R(0.5) * R(width) / c.fx, tan_fovy = R(0.5) * R(height) / c.fy;
    c.lxp = (R(width) - c.cx) / c.fx + fov_clamp * tan_fovx;
    c.lxn = c.cx / c.fx + fov_clamp * tan_fovx;
    c.lyp = (R(height) - c.cy) / c.fy + fov_clamp * tan_fovy;
    c.lyn = c.cy / c.fy + fov_clamp * tan_fovy;
    return c;
}

// the rotation of the normalised quaternion (w, x, y, z), row-major, and the norm's inverse
template <typename R>
void quat_rotmat(const R* q, R* Rm, R* qn, R& inv_norm) {
    const R nrm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    inv_norm = R(1) / std::max(nrm, R(1e-12));
    for (int i = 0; i < 4; ++i) qn[i] = q[i] * inv_norm;
    const R w = qn[0], x = qn[1], y = qn[2], z = qn[3];
    Rm[0] = 1 - 2 * (y * y + z * z), Rm[1] = 2 * (x * y - w * z), Rm[2] = 2 * (x * z + w * y);
    Rm[3] = 2 * (x * y + w * z), Rm[4] = 1 - 2 * (x * x + z * z), Rm[5] = 2 * (y * z - w * x);
    Rm[6] = 2 * (x * z - w * y), Rm[7] = 2 * (y * z + w * x), Rm[8] = 1 - 2 * (x * x + y * y);
}

// everything the forward computes for one (camera, Gaussian) that the backward needs again
template <typename R>
struct Proj {
    R x, y, z, zs, rz, u, v, ucl, vcl, tx, ty;
    R RM[9], A0[3], A1[3], cxx, cxy, cyy, det, inv_det;
    bool depth_ok, det_ok;
};

template <typename R>
void project_one(const Cam<R>& c, const R* mean, const R* M, R near, R far, R eps2d, Proj<R>& p) {
    p.x = c.Rv[0] * mean[0] + c.Rv[1] * mean[1] + c.Rv[2] * mean[2] + c.t[0];
    p.y = c.Rv[3] * mean[0] + c.Rv[4] * mean[1] + c.Rv[5] * mean[2] + c.t[1];
    p.z = c.Rv[6] * mean[0] + c.Rv[7] * mean[1] + c.Rv[8] * mean[2] + c.t[2];
    p.depth_ok = (p.z >= near) & (p.z <= far);
    p.zs = p.depth_ok ? p.z : R(1);  // culled: a harmless depth, so nothing below is inf/NaN
    p.rz = R(1) / p.zs;
    p.u = p.x * p.rz, p.v = p.y * p.rz;
    p.ucl = std::min(std::max(p.u, -c.lxn), c.lxp);
    p.vcl = std::min(std::max(p.v, -c.lyn), c.lyp);
    p.tx = p.zs * p.ucl, p.ty = p.zs * p.vcl;
    for (int i = 0; i < 3; ++i)
        for (int k = 0; k < 3; ++k)
            p.RM[3 * i + k] = c.Rv[3 * i] * M[k] + c.Rv[3 * i + 1] * M[3 + k] + c.Rv[3 * i + 2] * M[6 + k];
    const R a0 = c.fx * p.rz, b0 = c.fx * p.tx * p.rz * p.rz, a1 = c.fy * p.rz, b1 = c.fy * p.ty * p.rz * p.rz;
    for (int k = 0; k < 3; ++k) {
        p.A0[k] = a0 * p.RM[k] - b0 * p.RM[6 + k];
        p.A1[k] = a1 * p.RM[3 + k] - b1 * p.RM[6 + k];
    }
    p.cxx = p.A0[0] * p.A0[0] + p.A0[1] * p.A0[1] + p.A0[2] * p.A0[2] + eps2d;
    p.cxy = p.A0[0] * p.A1[0] + p.A0[1] * p.A1[1] + p.A0[2] * p.A1[2];
    p.cyy = p.A1[0] * p.A1[0] + p.A1[1] * p.A1[1] + p.A1[2] * p.A1[2] + eps2d;
    p.det = p.cxx * p.cyy - p.cxy * p.cxy;
    p.det_ok = p.det > R(0);
    p.inv_det = R(1) / (p.det_ok ? p.det : R(1));
}

struct ProjSettings {
    int C, N, width, height, n_threads;
    double near, far, eps2d, fov_clamp, alpha_threshold, max_extend;
};

template <typename R>
std::vector<Cam<R>> cameras(const ProjSettings& S, const R* viewmats, const R* Ks) {
    std::vector<Cam<R>> cams;
    for (int c = 0; c < S.C; ++c)
        cams.push_back(camera<R>(viewmats + 16 * c, Ks + 9 * c, S.width, S.height, R(S.fov_clamp)));
    return cams;
}

// M = R(q) diag(s), the factor of the 3D covariance M Mᵀ, with what the backward needs of R(q)
template <typename R>
void rotation_scale(const R* q, const R* s, R* Rm, R* qn, R& inv_norm, R* M) {
    quat_rotmat(q, Rm, qn, inv_norm);
    for (int i = 0; i < 9; ++i) M[i] = Rm[i] * s[i % 3];
}

template <typename R>
void project_forward(const ProjSettings& S, const R* means, const R* quats, const R* scales, const R* opac,
                     const R* viewmats, const R* Ks, R* means2d, R* conics, R* depths, R* extents, int32_t* radii,
                     uint8_t* valid) {
    const std::vector<Cam<R>> cams = cameras<R>(S, viewmats, Ks);
    const R thr = R(S.alpha_threshold);
    parallel_blocks(S.N, S.n_threads, [&](int begin, int end) {
        for (int n = begin; n < end; ++n) {
            R Rm[9], qn[4], inv_norm, M[9];
            rotation_scale(quats + 4 * n, scales + 3 * n, Rm, qn, inv_norm, M);
            const R op = opac[n];
            const bool op_ok = op >= thr;
            const R extend = std::min(std::sqrt(R(2) * std::log(std::max(op, thr) * (R(1) / thr))), R(S.max_extend));
            for (int c = 0; c < S.C; ++c) {
                const Cam<R>& cm = cams[c];
                Proj<R> p;
                project_one(cm, means + 3 * n, M, R(S.near), R(S.far), R(S.eps2d), p);
                const int64_t i = int64_t(c) * S.N + n;
                const R mx = cm.fx * p.x * p.rz + cm.cx, my = cm.fy * p.y * p.rz + cm.cy;
                means2d[2 * i] = mx, means2d[2 * i + 1] = my;
                conics[3 * i] = p.cyy * p.inv_det;
                conics[3 * i + 1] = -p.cxy * p.inv_det;
                conics[3 * i + 2] = p.cxx * p.inv_det;
                depths[i] = p.z;
                const R ex = extend * std::sqrt(p.cxx), ey = extend * std::sqrt(p.cyy);
                const R rx = std::ceil(ex), ry = std::ceil(ey);
                const bool inside = (mx + rx > 0) & (mx - rx < R(S.width)) & (my + ry > 0) & (my - ry < R(S.height));
                const bool ok = p.depth_ok & p.det_ok & op_ok & inside & ((rx > 0) | (ry > 0)) & std::isfinite(ex) &
                                std::isfinite(ey) & std::isfinite(mx) & std::isfinite(my);
                valid[i] = ok;
                radii[2 * i] = ok ? int32_t(rx) : 0, radii[2 * i + 1] = ok ? int32_t(ry) : 0;
                extents[2 * i] = ok ? ex : R(0), extents[2 * i + 1] = ok ? ey : R(0);
            }
        }
    });
}

// dL/d(means, quats, scales) [N, 3|4|3] from dL/d(means2d [C,N,2], conics [C,N,3]); written, not added
template <typename R>
void project_backward(const ProjSettings& S, const R* means, const R* quats, const R* scales, const R* viewmats,
                      const R* Ks, const R* g_means2d, const R* g_conics, R* g_means, R* g_quats, R* g_scales) {
    const std::vector<Cam<R>> cams = cameras<R>(S, viewmats, Ks);
    parallel_blocks(S.N, S.n_threads, [&](int begin, int end) {
        for (int n = begin; n < end; ++n) {
            R Rm[9], qn[4], inv_norm, M[9];
            rotation_scale(quats + 4 * n, scales + 3 * n, Rm, qn, inv_norm, M);
            R gm[3] = {0, 0, 0}, gM[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
            for (int c = 0; c < S.C; ++c) {
                const int64_t i = int64_t(c) * S.N + n;
                const R gmx = g_means2d[2 * i], gmy = g_means2d[2 * i + 1];
                const R ga = g_conics[3 * i], gb = g_conics[3 * i + 1], gc = g_conics[3 * i + 2];
                if (gmx == R(0) && gmy == R(0) && ga == R(0) && gb == R(0) && gc == R(0)) continue;
                const Cam<R>& cm = cams[c];
                Proj<R> p;
                project_one(cm, means + 3 * n, M, R(S.near), R(S.far), R(S.eps2d), p);
                // conic = (cyy, -cxy, cxx) / det
                R g_cxx = gc * p.inv_det, g_cyy = ga * p.inv_det, g_cxy = -gb * p.inv_det;
                if (p.det_ok) {
                    const R g_inv = ga * p.cyy - gb * p.cxy + gc * p.cxx;
                    const R g_det = -g_inv * p.inv_det * p.inv_det;
                    g_cxx += g_det * p.cyy, g_cyy += g_det * p.cxx, g_cxy += g_det * R(-2) * p.cxy;
                }
                // cov = A Aᵀ, A = [a0 r0 - b0 r2; a1 r1 - b1 r2]
                R gA0[3], gA1[3];
                for (int k = 0; k < 3; ++k) {
                    gA0[k] = R(2) * g_cxx * p.A0[k] + g_cxy * p.A1[k];
                    gA1[k] = R(2) * g_cyy * p.A1[k] + g_cxy * p.A0[k];
                }
                const R a0 = cm.fx * p.rz, b0 = cm.fx * p.tx * p.rz * p.rz;
                const R a1 = cm.fy * p.rz, b1 = cm.fy * p.ty * p.rz * p.rz;
                R g_a0 = 0, g_b0 = 0, g_a1 = 0, g_b1 = 0, gRM[9];
                for (int k = 0; k < 3; ++k) {
                    g_a0 += gA0[k] * p.RM[k];
                    g_b0 -= gA0[k] * p.RM[6 + k];
                    g_a1 += gA1[k] * p.RM[3 + k];
                    g_b1 -= gA1[k] * p.RM[6 + k];
                    gRM[k] = a0 * gA0[k];
                    gRM[3 + k] = a1 * gA1[k];
                    gRM[6 + k] = -b0 * gA0[k] - b1 * gA1[k];
                }
                const R rz2 = p.rz * p.rz;
                R g_rz = cm.fx * g_a0 + cm.fy * g_a1 + R(2) * p.rz * (cm.fx * p.tx * g_b0 + cm.fy * p.ty * g_b1);
                const R g_tx = cm.fx * rz2 * g_b0, g_ty = cm.fy * rz2 * g_b1;
                // means2d = (fx x rz + cx, fy y rz + cy); t = zs clamp(x rz)
                R g_zs = g_tx * p.ucl + g_ty * p.vcl;
                const R g_u = (p.u > -cm.lxn && p.u < cm.lxp) ? g_tx * p.zs : R(0);
                const R g_v = (p.v > -cm.lyn && p.v < cm.lyp) ? g_ty * p.zs : R(0);
                const R g_x = cm.fx * gmx * p.rz + g_u * p.rz, g_y = cm.fy * gmy * p.rz + g_v * p.rz;
                g_rz += cm.fx * p.x * gmx + cm.fy * p.y * gmy + g_u * p.x + g_v * p.y;
                g_zs -= g_rz * rz2;
                const R g_z = p.depth_ok ? g_zs : R(0);
                const R gp[3] = {g_x, g_y, g_z};
                for (int j = 0; j < 3; ++j) gm[j] += cm.Rv[j] * gp[0] + cm.Rv[3 + j] * gp[1] + cm.Rv[6 + j] * gp[2];
                // RM = Rv M
                for (int j = 0; j < 3; ++j)
                    for (int k = 0; k < 3; ++k)
                        gM[3 * j + k] += cm.Rv[j] * gRM[k] + cm.Rv[3 + j] * gRM[3 + k] + cm.Rv[6 + j] * gRM[6 + k];
            }
            // M = R(q) diag(s)
            R gR[9];
            for (int k = 0; k < 3; ++k) {
                g_scales[3 * n + k] = gM[k] * Rm[k] + gM[3 + k] * Rm[3 + k] + gM[6 + k] * Rm[6 + k];
                for (int j = 0; j < 3; ++j) gR[3 * j + k] = gM[3 * j + k] * scales[3 * n + k];
            }
            const R w = qn[0], x = qn[1], y = qn[2], z = qn[3];
            R gq[4];
            gq[0] = 2 * (-z * gR[1] + y * gR[2] + z * gR[3] - x * gR[5] - y * gR[6] + x * gR[7]);
            gq[1] = 2 * (y * gR[1] + z * gR[2] + y * gR[3] - 2 * x * gR[4] - w * gR[5] + z * gR[6] + w * gR[7] -
                         2 * x * gR[8]);
            gq[2] = 2 * (-2 * y * gR[0] + x * gR[1] + w * gR[2] + x * gR[3] + z * gR[5] - w * gR[6] + z * gR[7] -
                         2 * y * gR[8]);
            gq[3] = 2 * (-2 * z * gR[0] - w * gR[1] + x * gR[2] + w * gR[3] - 2 * z * gR[4] + y * gR[5] + x * gR[6] +
                         y * gR[7]);
            // qn = q / |q|
            const R dot_q = gq[0] * qn[0] + gq[1] * qn[1] + gq[2] * qn[2] + gq[3] * qn[3];
            for (int j = 0; j < 4; ++j) g_quats[4 * n + j] = (gq[j] - qn[j] * dot_q) * inv_norm;
            for (int j = 0; j < 3; ++j) g_means[3 * n + j] = gm[j];
        }
    });
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
    }                                                                                                         \
    void fit3d_project_##SUFFIX(int C, int N, int width, int height, double near, double far, double eps2d,      \
                                double fov_clamp, double alpha_threshold, double max_extend, int n_threads,   \
                                const R* means, const R* quats, const R* scales, const R* opac,              \
                                const R* viewmats, const R* Ks, R* means2d, R* conics, R* depths, R* extents, \
                                int32_t* radii, uint8_t* valid) {                                            \
        const ProjSettings S{C, N, width, height, n_threads, near, far, eps2d, fov_clamp, alpha_threshold,      \
                             max_extend};                                                                     \
        project_forward<R>(S, means, quats, scales, opac, viewmats, Ks, means2d, conics, depths, extents, radii, \
                           valid);                                                                            \
    }                                                                                                         \
    void fit3d_project_backward_##SUFFIX(int C, int N, int width, int height, double near, double far,         \
                                         double eps2d, double fov_clamp, int n_threads, const R* means,       \
                                         const R* quats, const R* scales, const R* viewmats, const R* Ks,     \
                                         const R* g_means2d, const R* g_conics, R* g_means, R* g_quats,       \
                                         R* g_scales) {                                                       \
        const ProjSettings S{C, N, width, height, n_threads, near, far, eps2d, fov_clamp, 0.0, 0.0};          \
        project_backward<R>(S, means, quats, scales, viewmats, Ks, g_means2d, g_conics, g_means, g_quats,     \
                            g_scales);                                                                        \
    }
FIT3D_DEFINE(f32, float)
FIT3D_DEFINE(f64, double)
}
