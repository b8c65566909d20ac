"""One prepared check of the GPU path (gsplat backend, gsplat's densification), for a session that is lent a GPU.

CI never has a GPU, so this is a script, not a test. ``scripts/device_check.sh`` runs the GPU tests of the suite
and then this, in one call of the device tool; ``--cpu`` runs the same steps on the CPU with the torch backend
only, at tiny sizes, to check the script itself where no GPU is lent. Every step appends to ``OUT/gpu_check.json``
(written atomically after each step, so a run cut short keeps what it measured) and prints one line.

Steps:
1. ``env``: torch, CUDA, GPU name, gsplat version.
2. ``gsplat_build``: the first ``gsplat.rasterization`` call, which JIT-compiles gsplat's CUDA code (timed).
3. ``parity``: the benchmark room scene (``bench_render.make_room_scene``; N = 30k, 160×120, D = 67) through the
   ``torch`` backend on CUDA and through ``gsplat``: render/alpha differences, radii, and the relative gradient
   difference for every input and for ``means2d`` (what densification reads).
4. ``speed``: forward+backward median of both backends on CUDA, N = 10k/30k/100k at 160×120, 320×240, 876×584.
5. ``lift``: one synthetic scene lifted twice with the same config: ``backend="gsplat", strategy="gsplat"`` and
   ``backend="torch", strategy="simple"``: held-out PSNR, feature cosine, Gaussians, wall time.
Random-init DINOv2 in step 5 (no hub there): its numbers check the pipeline, they are not the paper's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_finetune import median_time  # noqa: E402
from bench_render import make_room_scene  # noqa: E402

from fit3d_helpers.render import gsplat_available, rasterize_with_info  # noqa: E402
from fit3d_helpers.utils import write_json  # noqa: E402

INPUTS = ("means", "quats", "scales", "opacities", "colors")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fwd_bwd(scene: dict[str, Any], backend: str, device: torch.device, grad_img: torch.Tensor):
    leaves = {k: scene[k].clone().requires_grad_(True) for k in INPUTS}
    fixed = {k: scene[k] for k in ("viewmats", "Ks", "width", "height")}
    renders, alphas, info = rasterize_with_info(**leaves, **fixed, backend=backend)
    torch.autograd.backward([renders, alphas], [grad_img, torch.ones_like(alphas)])
    _sync(device)
    return renders.detach(), alphas.detach(), info, {k: v.grad for k, v in leaves.items()}


def step_env(device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "gsplat_available": gsplat_available(),
    }
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    try:
        import gsplat

        out["gsplat"] = gsplat.__version__
    except Exception as e:  # not installed: the torch-only steps still run
        out["gsplat"] = f"not importable: {type(e).__name__}: {e}"
    out["CUDA_HOME"] = os.environ.get("CUDA_HOME")
    return out


def step_gsplat_build(device: torch.device) -> dict[str, Any]:
    scene = make_room_scene(1000, 64, 48, 3, device=device)
    t0 = time.perf_counter()
    rasterize_with_info(**scene, backend="gsplat")
    _sync(device)
    return {"first_call_s": round(time.perf_counter() - t0, 1)}


def step_parity(device: torch.device, backends: tuple[str, str], n: int, width: int, height: int) -> dict[str, Any]:
    scene = make_room_scene(n, width, height, 67, device=device)
    grad_img = torch.randn(1, height, width, 67, generator=torch.Generator().manual_seed(1)).to(device)
    a, b = (_fwd_bwd(scene, be, device, grad_img) for be in backends)
    out: dict[str, Any] = {"backends": list(backends), "n": n, "image": [width, height]}
    for name, x, y in (("render", a[0], b[0]), ("alpha", a[1], b[1])):
        err = (x - y).abs()
        out[f"{name}_max_abs"] = float(err.max())
        out[f"{name}_frac_over_1e-3"] = float((err > 1e-3).float().mean())
    out["radii_max_diff"] = int((a[2]["radii"] - b[2]["radii"]).abs().max())
    out["visible_mismatch_frac"] = float((a[2]["visible"] != b[2]["visible"]).float().mean())
    for k in INPUTS:
        out[f"grad_rel_{k}"] = float((a[3][k] - b[3][k]).norm() / b[3][k].norm().clamp_min(1e-12))
    m1, m2 = a[2]["means2d"].grad, b[2]["means2d"].grad
    out["grad_rel_means2d"] = float((m1 - m2).norm() / m2.norm().clamp_min(1e-12))
    out["pass"] = bool(
        out["render_frac_over_1e-3"] < 0.01
        and out["radii_max_diff"] <= 1
        and max(out[f"grad_rel_{k}"] for k in INPUTS) < 1e-2
        and out["grad_rel_means2d"] < 1e-2
    )
    return out


def step_speed(
    device: torch.device, backends: tuple[str, ...], sizes: list[int], images: list[tuple[int, int]], repeats: int
) -> dict[str, Any]:
    rows = []
    for width, height in images:
        for n in sizes:
            scene = make_room_scene(n, width, height, 67, device=device)
            grad_img = torch.randn(1, height, width, 67, device=device)
            row: dict[str, Any] = {"n": n, "image": f"{width}x{height}"}
            for be in backends:
                row[f"{be}_fwd_bwd_ms"] = round(
                    1e3 * median_time(lambda be=be, s=scene, g=grad_img: _fwd_bwd(s, be, device, g), repeats), 2
                )
            if device.type == "cuda":
                row["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
                torch.cuda.reset_peak_memory_stats(device)
            rows.append(row)
            print("   ", row, flush=True)
    return {"rows": rows, "repeats": repeats, "channels": 67}


def step_lift(
    device: torch.device, scene_path: Path, combos: list[tuple[str, str]], iterations: int, root: Path
) -> dict[str, Any]:
    from fit3d_helpers.backbone import load_backbone
    from fit3d_helpers.lift import LiftConfig, lift_scene

    backbone = load_backbone("dinov2_small", "random", device=device)
    cfg = LiftConfig(iterations=iterations, train_downscale=1, densify_from=min(500, iterations // 6),
                     densify_until=int(iterations * 0.8), densify_every=min(100, max(2, iterations // 10)),
                     densify_grad_threshold=2e-4 if iterations >= 1000 else 2e-5, checkpoint_every=10**9)  # fmt: skip
    runs = []
    for backend, strategy in combos:
        c = dataclasses.replace(cfg, strategy=strategy)
        t0 = time.perf_counter()
        res = lift_scene(scene_path, backbone, c, root=root, backend=backend, force=True)
        s = res.stats
        runs.append(
            {
                "backend": backend,
                "render_backend": s["render_backend"],
                "strategy": strategy,
                "wall_s": round(time.perf_counter() - t0, 1),
                "psnr": round(s["heldout_psnr"], 2),
                "feature_cosine": round(s["heldout_feature_cosine"], 4),
                "n_gaussians": s["n_gaussians"],
            }
        )
        print("   ", runs[-1], flush=True)
    return {"scene": str(scene_path), "iterations": iterations, "weights": "random", "runs": runs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for gpu_check.json (default $OUT)")
    ap.add_argument("--cpu", action="store_true", help="check the script on the CPU: torch backend only, tiny sizes")
    ap.add_argument("--scene", default=None, help="a scene folder for the lift step (default: the first generated one)")
    ap.add_argument("--iterations", type=int, default=None, help="lift iterations (default 2000 on GPU, 30 with --cpu)")
    ap.add_argument(
        "--budget-s", type=float, default=420.0, help="skip the remaining steps once this much time has passed"
    )
    args = ap.parse_args(argv)
    device = torch.device("cpu" if args.cpu else "cuda")
    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device: run with --cpu to check the script, or run it where a GPU is lent", file=sys.stderr)
        return 2
    both = ("torch", "torch") if args.cpu else ("torch", "gsplat")
    out_path = Path(args.out) / "gpu_check.json"
    result: dict[str, Any] = {"mode": "cpu-selfcheck" if args.cpu else "gpu", "steps": {}, "errors": {}, "skipped": []}
    generated = sorted((ROOT / "data" / "synthetic").glob("*/v-*/train_000"))  # <hash>/<version>/<scene>
    scene = Path(args.scene) if args.scene else next(iter(generated), None)
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [("env", lambda: step_env(device))]
    if not args.cpu:
        steps.append(("gsplat_build", lambda: step_gsplat_build(device)))
    steps.append(("parity", lambda: step_parity(device, both, 2000 if args.cpu else 30_000, 160, 120)))
    if args.cpu:
        steps.append(("speed", lambda: step_speed(device, ("torch",), [2000], [(160, 120)], 2)))
    else:
        steps.append(
            (
                "speed",
                lambda: step_speed(
                    device, ("torch", "gsplat"), [10_000, 30_000, 100_000], [(160, 120), (320, 240), (876, 584)], 10
                ),
            )
        )
    if scene is not None:
        combos = [("torch", "simple"), ("torch", "gsplat")] if args.cpu else [("gsplat", "gsplat"), ("torch", "simple")]
        iters = args.iterations or (30 if args.cpu else 2000)
        lift_root = Path(tempfile.mkdtemp(prefix="gpu-check-artifacts-"))
        steps.append(("lift", lambda: step_lift(device, scene, combos, iters, lift_root)))
    else:
        result["skipped"].append("lift: no scene (generate one with notebook 01, or pass --scene)")
    t_start = time.perf_counter()
    for name, fn in steps:
        if time.perf_counter() - t_start > args.budget_s:
            result["skipped"].append(f"{name}: over the {args.budget_s:.0f} s budget")
            continue
        t0 = time.perf_counter()
        try:
            result["steps"][name] = {**fn(), "step_s": round(time.perf_counter() - t0, 1)}
            print(f"[gpu_check] {name}: {json.dumps(result['steps'][name])[:600]}", flush=True)
        except Exception as e:  # record and go on: one broken step must not hide the others
            result["errors"][name] = "".join(traceback.format_exception(e))[-3000:]
            print(f"[gpu_check] {name} FAILED: {type(e).__name__}: {e}", flush=True)
        write_json(out_path, result)
    write_json(out_path, result)
    print(f"[gpu_check] wrote {out_path}; errors in: {sorted(result['errors']) or 'none'}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
