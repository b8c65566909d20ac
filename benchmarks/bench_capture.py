"""Your own capture on a laptop: structure from motion of 50 photos at 480 px, then the capture-profile lift.

Targets (issue "Your own capture"): SfM of 50 photos at 480 px <= 90 s on 2 cores; a lift of a 50-view capture
<= 3 min. The photos are a synthetic room rendered 50 times, 6 degrees apart, at 480x360 (cached under
data/capture/), with the poses thrown away; the lift (random-init DINOv2 offline: its PSNR checks the pipeline, the
feature numbers mean nothing) is compared against the same room lifted from its true poses and depth. Run:
.venv/bin/python benchmarks/bench_capture.py [--views 50] [--no-lift] [--threads 2] [--out bench_capture.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from fit3d_helpers import capture

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--views", type=int, default=50)
    p.add_argument("--width", type=int, default=480)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--max-side", type=int, default=480)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-lift", action="store_true", help="SfM only")
    p.add_argument("--out", default=None, help="also write the numbers to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out: dict = {"views": args.views, "size": [args.width, args.height], "threads": args.threads}

    t = time.perf_counter()
    room = capture.synthetic_capture(ROOT / "data" / "capture", n_views=args.views, width=args.width,
                                     height=args.height)  # fmt: skip
    out["render_or_cache_s"] = round(time.perf_counter() - t, 1)
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as tmp:
        scene = Path(tmp) / "scene"
        t = time.perf_counter()
        report = capture.capture(room / "images", scene, max_side=args.max_side)
        out["capture_s"] = round(time.perf_counter() - t, 1)
        out["capture"] = vars(report)
        print(f"SfM of {report.images_given} photos at {args.max_side} px: {report.images_registered} registered, "
              f"{report.points} points, {report.mean_reprojection_error_px} px, {out['capture_s']} s in all "
              f"({report.seconds}); target <= 90 s")  # fmt: skip
        if not args.no_lift:
            from fit3d_helpers.backbone import load_backbone
            from fit3d_helpers.lift import lift_scene
            from fit3d_helpers.profiles import load_profile

            cfg = load_profile("capture").lift
            bb = load_backbone("dinov2_small", "random", device="cpu")
            for name, path in (("sfm", scene), ("true poses + depth", room)):
                t = time.perf_counter()
                s = lift_scene(path, bb, cfg, root=Path(tmp) / "artifacts").stats
                out[f"lift {name}"] = {"psnr": round(s["heldout_psnr"], 2), "gaussians": s["n_gaussians"],
                                       "init_points": s["n_init_points"], "fit_s": s["wall_seconds"],
                                       "total_s": round(time.perf_counter() - t, 1)}  # fmt: skip
                print(f"lift ({name}, capture profile): {out[f'lift {name}']}; target <= 180 s")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
