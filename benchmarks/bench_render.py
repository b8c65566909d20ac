"""Benchmark of the pure-PyTorch Gaussian rasterizer (forward + backward), with a reusable room-like scene.

Run: ``python benchmarks/bench_render.py`` (add ``--quick`` for the 160x120 rows only, ``--threads``,
``--repeats``). Each case runs in its own process. Prints, for N Gaussians x image size at D = 67 channels
(3 RGB + 64 features): forward+backward wall time (median and best of the repeats) and CPU time, forward-only
time, the (pixel, Gaussian) pairs composited per pixel, and the peak RSS of the case.

``make_room_scene`` is the scene: a camera looking into the corner of a room (back wall, floor, ceiling, two
side walls and a table top, 1-4.5 m away); points are spread over the image as an unprojected depth map would
put them, sit on the surfaces (1 cm jitter), lie flat along them (normal scale 0.2x) and get the 3DGS
initial scale (RMS distance to the 3 nearest neighbours, x0.6-1.4). Opacities 0.5-0.9. It is what a fitted
scene looks like to the renderer, rather than a cloud of tiny, sparse Gaussians.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fit3d_helpers.render import rasterize, rasterize_with_info


def _rotmat_to_quat(R: np.ndarray) -> np.ndarray:
    """[N,3,3] rotation matrices to [N,4] wxyz quaternions."""
    w = np.sqrt(np.clip(1.0 + R[:, 0, 0] + R[:, 1, 1] + R[:, 2, 2], 1e-12, None)) / 2.0
    x = np.sqrt(np.clip(1.0 + R[:, 0, 0] - R[:, 1, 1] - R[:, 2, 2], 0.0, None)) / 2.0
    y = np.sqrt(np.clip(1.0 - R[:, 0, 0] + R[:, 1, 1] - R[:, 2, 2], 0.0, None)) / 2.0
    z = np.sqrt(np.clip(1.0 - R[:, 0, 0] - R[:, 1, 1] + R[:, 2, 2], 0.0, None)) / 2.0
    x = np.copysign(x, R[:, 2, 1] - R[:, 1, 2])
    y = np.copysign(y, R[:, 0, 2] - R[:, 2, 0])
    z = np.copysign(z, R[:, 1, 0] - R[:, 0, 1])
    return np.stack([w, x, y, z], axis=1)


def make_room_scene(
    n: int,
    width: int = 160,
    height: int = 120,
    channels: int = 67,
    seed: int = 0,
    hfov_deg: float = 70.0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor | int]:
    """A room corner seen by one camera, as N Gaussians ready for ``rasterize(**scene)``.

    Returns a dict with ``means [N,3], quats [N,4], scales [N,3], opacities [N], colors [N,channels],
    viewmats [1,4,4]`` (identity: the camera is at the origin looking down +z, OpenCV axes), ``Ks [1,3,3]``,
    ``width``, ``height``.
    """
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
    cx, cy = width / 2, height / 2
    # pixels (a bit beyond the image, so the borders are covered too) -> rays -> nearest room surface
    u = rng.uniform(-0.05 * width, 1.05 * width, n)
    v = rng.uniform(-0.05 * height, 1.05 * height, n)
    d = np.stack([(u - cx) / f, (v - cy) / f, np.ones(n)], axis=1)  # ray direction with z = 1
    # planes n·p = c, with the normal pointing back at the camera: back wall, floor (y down), ceiling, walls
    planes = [
        (np.array([0.0, 0.0, -1.0]), -4.5),  # back wall z = 4.5
        (np.array([0.0, -1.0, 0.0]), -1.3),  # floor y = 1.3
        (np.array([0.0, 1.0, 0.0]), -1.4),  # ceiling y = -1.4
        (np.array([1.0, 0.0, 0.0]), -2.2),  # left wall x = -2.2
        (np.array([-1.0, 0.0, 0.0]), -2.0),  # right wall x = 2.0
    ]
    t_best = np.full(n, np.inf)
    normal = np.zeros((n, 3))
    for nrm, c in planes:
        denom = d @ nrm
        with np.errstate(divide="ignore", invalid="ignore"):
            t = c / denom
        ok = (denom < 0) & (t > 0) & (t < t_best)
        t_best[ok] = t[ok]
        normal[ok] = nrm
    # a table top (y = 0.45, facing up i.e. -y) at x in [-0.8, 0.6], z in [1.6, 2.6]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = 0.45 / d[:, 1]
    p = d * t[:, None]
    ok = (d[:, 1] > 0) & (t < t_best) & (np.abs(p[:, 0] + 0.1) < 0.7) & (np.abs(p[:, 2] - 2.1) < 0.5)
    t_best[ok] = t[ok]
    normal[ok] = np.array([0.0, -1.0, 0.0])
    pts = d * t_best[:, None]
    pts += normal * rng.normal(0.0, 0.01, (n, 1))  # surface noise

    # 3DGS initial scale: RMS distance to the 3 nearest neighbours
    dist, _ = cKDTree(pts).query(pts, k=4)
    s = np.sqrt((dist[:, 1:] ** 2).mean(axis=1)).clip(1e-4, None)
    s_in = s[:, None] * rng.uniform(0.6, 1.4, (n, 2))
    scales = np.concatenate([s_in, 0.2 * s[:, None]], axis=1)
    # frame: tangent a, tangent b, normal; random rotation in the plane
    helper = np.where(np.abs(normal[:, 1:2]) > 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    a = np.cross(normal, helper)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = np.cross(normal, a)
    phi = rng.uniform(0, 2 * np.pi, (n, 1))
    a, b = np.cos(phi) * a + np.sin(phi) * b, -np.sin(phi) * a + np.cos(phi) * b
    R = np.stack([a, b, normal], axis=2)  # columns
    quats = _rotmat_to_quat(R)

    def tt(x):
        return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=device)

    K = torch.tensor([[f, 0, cx], [0, f, cy], [0, 0, 1]], dtype=dtype, device=device)[None]
    return {
        "means": tt(pts),
        "quats": tt(quats),
        "scales": tt(scales),
        "opacities": tt(rng.uniform(0.5, 0.9, n)),
        "colors": tt(rng.uniform(0.0, 1.0, (n, channels))),
        "viewmats": torch.eye(4, dtype=dtype, device=device)[None],
        "Ks": K,
        "width": width,
        "height": height,
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def bench_case(n: int, width: int, height: int, channels: int, repeats: int, seed: int = 0) -> dict[str, float]:
    """Time forward+backward (w.r.t. means, quats, scales, opacities, colors) on ``make_room_scene``."""
    scene = make_room_scene(n, width, height, channels, seed=seed)
    leaves = {k: scene[k].clone().requires_grad_(True) for k in ("means", "quats", "scales", "opacities", "colors")}
    fixed = {k: scene[k] for k in ("viewmats", "Ks", "width", "height")}
    grad_img = torch.randn(1, height, width, channels, generator=torch.Generator().manual_seed(1))
    rss_before = _peak_rss_mb()

    def step():
        for v in leaves.values():
            v.grad = None
        renders, alphas = rasterize(**leaves, **fixed, backend="torch")
        torch.autograd.backward([renders, alphas], [grad_img, torch.ones_like(alphas)])

    step()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    fwd = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            _, alphas, info = rasterize_with_info(**scene, backend="torch")
            fwd.append(time.perf_counter() - t0)
    return {
        "n": n,
        "width": width,
        "height": height,
        "fwd_ms": 1e3 * statistics.median(fwd),
        "median_ms": 1e3 * statistics.median(wall),
        "best_ms": 1e3 * min(wall),
        "cpu_ms": 1e3 * min(cpu),
        "visible": int(info["visible"].sum()),
        "pairs_per_px": info["n_pairs"] / (width * height),
        "coverage": float((alphas > 0.5).float().mean()),
        "peak_rss_mb": _peak_rss_mb(),
        "peak_rss_delta_mb": _peak_rss_mb() - rss_before,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--channels", type=int, default=67)
    ap.add_argument("--quick", action="store_true", help="160x120 only")
    ap.add_argument("--sizes", default="10000,30000,100000")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # "n,width,height": run one case, print JSON
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.case:
        n, w, h = (int(x) for x in args.case.split(","))
        print(json.dumps(bench_case(n, w, h, args.channels, args.repeats)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    resolutions = [(160, 120)] if args.quick else [(160, 120), (320, 240)]
    print(f"torch {torch.__version__}, {args.threads} threads, D = {args.channels}, {args.repeats} repeats, "
          f"load average {os.getloadavg()[0]:.1f} at start")  # fmt: skip
    print("fwd+bwd: wall time of forward + backward w.r.t. means, quats, scales, opacities, colors (median, best);")
    print("cpu: process CPU time of the best repeat (all threads); fwd: forward only, no grad (median);")
    print("peak RSS: the case's own process (scene + renders), and its growth over the scene alone.")
    header = (f"{'N':>7} {'image':>8} {'visible':>8} {'pairs/px':>8} {'fwd ms':>7} {'fwd+bwd med':>11} "
              f"{'best':>6} {'cpu':>6} {'peak RSS MB':>11} {'(+render)':>9}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for width, height in resolutions:
        for n in sizes:
            cmd = [sys.executable, os.path.abspath(__file__), "--case", f"{n},{width},{height}", "--threads",
                   str(args.threads), "--repeats", str(args.repeats), "--channels", str(args.channels)]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(
                f"{n:>7} {width:>4}x{height:<3} {r['visible']:>8} {r['pairs_per_px']:>8.1f} {r['fwd_ms']:>7.0f} "
                f"{r['median_ms']:>11.0f} {r['best_ms']:>6.0f} {r['cpu_ms']:>6.0f} {r['peak_rss_mb']:>11.0f} "
                f"{r['peak_rss_delta_mb']:>9.0f}",
                flush=True,
            )
    print(f"load average {os.getloadavg()[0]:.1f} at end (other processes on the machine inflate the times)")


if __name__ == "__main__":
    main()
