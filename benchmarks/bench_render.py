"""Benchmark of the CPU Gaussian rasterizer (forward + backward), with a reusable room-like scene.

Run: ``python benchmarks/bench_render.py`` (add ``--quick`` for the 160x120 rows only, ``--threads``,
``--repeats``). Each case runs in its own process. Prints, for N Gaussians x image size at D = 67 channels
(3 RGB + 64 features): forward+backward wall time (median and best of the repeats) and CPU time, forward-only
time, the (pixel, Gaussian) pairs composited per pixel, and the peak RSS of the case.

``--phases``: CPU ms per phase (projection, binning and sorting, compositing forward and backward) on issue 20's
case, for the C++ kernel and the pure-PyTorch path. ``--peer PATH``: that case side by side with
Mxbonn/gsplat-pytorch checked out at PATH (time ratio and PSNR agreement; not vendored: it has no licence).

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


# ----------------------------------------------------------------------------------------------------------
# The issue-20 case: side by side with a public pure-PyTorch tile renderer, and where the time goes
# ----------------------------------------------------------------------------------------------------------
PEER_CASE = {"n": 10_000, "width": 160, "height": 112, "fx": 120.0, "channels": 67, "back": 0.75}


def peer_case_scene(seed: int = 0) -> dict[str, torch.Tensor | int]:
    """``make_room_scene`` at 160x112 with fx = fy = 120 and the camera 0.75 m further back (depths 2.4-5.3 m)."""
    c = PEER_CASE
    hfov = 2.0 * math.degrees(math.atan(0.5 * c["width"] / c["fx"]))
    scene = make_room_scene(c["n"], c["width"], c["height"], c["channels"], seed=seed, hfov_deg=hfov)
    scene["viewmats"][0, 2, 3] = c["back"]
    return scene


def _median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)


def compare_with_peer(peer_path: str, repeats: int, threads: int) -> dict[str, float]:
    """Forward + backward of ours and of Mxbonn/gsplat-pytorch (its ``project_gaussians`` + tile-loop
    ``rasterize_gaussians``, block 16), interleaved in one process, and the PSNR of its render against ours.

    The peer is imported from ``peer_path`` (a checkout holding its ``gsplat/`` package); it has no licence file,
    so it is not copied into this repository. Its pixel centres are integers, ours are at +0.5, so it gets the
    principal point shifted by -0.5 px; it has no 1/255 alpha skip, no 0.999 clamp and no early stop, which is
    what the dB measure. Both losses are ``(render · G).sum()`` with the same random ``G``.
    """
    sys.path.insert(0, str(Path(peer_path).resolve()))
    from gsplat.project_gaussians import project_gaussians as peer_project
    from gsplat.rasterize import rasterize_gaussians as peer_rasterize

    sys.path.pop(0)
    scene = peer_case_scene()
    W, H, D = scene["width"], scene["height"], scene["colors"].shape[1]
    K = scene["Ks"][0]
    fx, fy, cx, cy = (float(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    grad_img = torch.randn(H, W, D, generator=torch.Generator().manual_seed(1))
    names = ("means", "quats", "scales", "opacities", "colors")

    def ours():
        leaves = {k: scene[k].clone().requires_grad_(True) for k in names}
        fixed = {k: scene[k] for k in ("viewmats", "Ks", "width", "height")}
        t0 = time.perf_counter()
        renders, _ = rasterize(**leaves, **fixed, backend="torch")
        (renders[0] * grad_img).sum().backward()
        return time.perf_counter() - t0, renders[0].detach()

    def peer():
        m, q, s, o, c = (scene[k].clone().requires_grad_(True) for k in names)
        t0 = time.perf_counter()
        xys, depths, radii, conics, _, _ = peer_project(m, s, 1.0, q, scene["viewmats"][0], fx, fy, cx - 0.5,
                                                        cy - 0.5, H, W)  # fmt: skip
        img = peer_rasterize(xys, depths, radii, conics, c, o, H, W, 16, torch.zeros(D))
        (img * grad_img).sum().backward()
        return time.perf_counter() - t0, img.detach()

    def ours_torch():  # the pure-PyTorch path (the fallback; the renderer before the C++ kernel)
        os.environ["FIT3D_RENDER_KERNEL"] = "torch"
        try:
            return ours()
        finally:
            os.environ.pop("FIT3D_RENDER_KERNEL", None)

    torch.set_num_threads(threads)
    ours()  # warm-up (and the kernel build, once per machine)
    ours_torch()
    t_ours, t_torch, t_peer = [], [], []
    for _ in range(repeats):  # interleaved: the machine's load hits all alike
        t, r_ours = ours()
        t_ours.append(t)
        t_torch.append(ours_torch()[0])
        t, r_peer = peer()
        t_peer.append(t)
    mse = float((r_ours - r_peer).square().mean())
    return {
        "ours_ms": _median_ms(t_ours),
        "ours_torch_ms": _median_ms(t_torch),
        "peer_ms": _median_ms(t_peer),
        "ratio": statistics.median(t_peer) / statistics.median(t_ours),
        "ratio_torch": statistics.median(t_peer) / statistics.median(t_torch),
        "psnr_db": -10.0 * math.log10(max(mse, 1e-20)),  # colours in [0, 1]: peak 1
        "max_abs_diff": float((r_ours - r_peer).abs().max()),
    }


def profile_phases(repeats: int, kernel: bool) -> dict[str, float]:
    """CPU milliseconds per phase of one forward + backward on the issue-20 case (medians; one thread, so that
    the other jobs on a shared machine inflate them less): projection (forward), tile binning and pair sorting
    (with the transmittance scan; the C++ kernel bins inside its compositing calls), compositing forward and
    backward, the projection's backward (the compiled one; the tensor version's is autograd's, in the rest), and
    the rest (tables, autograd glue)."""
    from fit3d_helpers import render, render_kernel

    os.environ["FIT3D_RENDER_KERNEL"] = "auto" if kernel else "torch"
    scene = peer_case_scene()
    names = ("means", "quats", "scales", "opacities", "colors")
    grad_img = torch.randn(1, scene["height"], scene["width"], scene["colors"].shape[1])
    fixed = {k: scene[k] for k in ("viewmats", "Ks", "width", "height")}
    acc: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            c0 = time.process_time()
            out = fn(*a, **k)
            acc[name] = acc.get(name, 0.0) + time.process_time() - c0
            return out

        return wrapper

    patches = [(render, "project_gaussians", "projection"), (render, "_band_pairs", "binning + sort"),
               (render_kernel._KernelProject, "forward", "projection"),
               (render_kernel._KernelProject, "backward", "projection backward")]  # fmt: skip
    for fn in (render._Composite, render_kernel._KernelRaster):
        patches += [(fn, "forward", "composite forward"), (fn, "backward", "composite backward")]
    saved = [(obj, attr, obj.__dict__[attr]) for obj, attr, _ in patches]
    for obj, attr, name in patches:
        fn = getattr(obj, attr)
        setattr(obj, attr, staticmethod(timed(name, fn)) if isinstance(obj, type) else timed(name, fn))
    rows: dict[str, list[float]] = {}
    try:
        for i in range(repeats + 1):
            acc.clear()
            leaves = {k: scene[k].clone().requires_grad_(True) for k in names}
            c0 = time.process_time()
            renders, alphas = rasterize(**leaves, **fixed, backend="torch")
            torch.autograd.backward([renders, alphas], [grad_img, torch.ones_like(alphas)])
            total = time.process_time() - c0
            if i == 0:
                continue  # warm-up
            ph = {k: acc.get(k, 0.0) for k in ("projection", "binning + sort", "composite forward",
                                                "composite backward", "projection backward")}  # fmt: skip
            ph["rest"] = total - sum(ph.values())
            ph["total"] = total
            for k, v in ph.items():
                rows.setdefault(k, []).append(1e3 * v)
    finally:
        for obj, attr, orig in saved:
            setattr(obj, attr, orig)
        os.environ.pop("FIT3D_RENDER_KERNEL", None)
    return {k: statistics.median(v) for k, v in rows.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--channels", type=int, default=67)
    ap.add_argument("--quick", action="store_true", help="160x120 only")
    ap.add_argument("--sizes", default="10000,30000,100000")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # "n,width,height": run one case, print JSON
    ap.add_argument("--peer", metavar="PATH", help="compare with Mxbonn/gsplat-pytorch checked out at PATH")
    ap.add_argument("--phases", action="store_true", help="CPU ms per phase, C++ kernel and pure-torch paths")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.phases:
        torch.set_num_threads(1)
        case = PEER_CASE
        print(f"phases of one forward + backward, CPU ms (median of {args.repeats}, 1 thread), {case}")
        res = {"C++ kernel": profile_phases(args.repeats, True), "pure torch": profile_phases(args.repeats, False)}
        keys = list(res["pure torch"])
        print(f"{'phase':<20}" + "".join(f"{k:>12}" for k in res))
        for k in keys:
            print(f"{k:<20}" + "".join(f"{res[r].get(k, 0.0):>12.1f}" for r in res))
        return
    if args.peer:
        r = compare_with_peer(args.peer, args.repeats, args.threads)
        print(f"issue-20 case {PEER_CASE}, {args.threads} threads, forward + backward, median of {args.repeats} "
              f"interleaved (load average {os.getloadavg()[0]:.1f}):\n  ours {r['ours_ms']:.1f} ms, peer "
              f"{r['peer_ms']:.0f} ms: {r['ratio']:.0f}x; agreement {r['psnr_db']:.1f} dB (max |diff| "
              f"{r['max_abs_diff']:.3g})\n  ours without the C++ kernel (pure PyTorch) {r['ours_torch_ms']:.1f} ms: "
              f"{r['ratio_torch']:.0f}x")  # fmt: skip
        return
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
