"""Command line: ``python -m fit3d_helpers run|report|params|capture``.

    python -m fit3d_helpers run --profile smoke                  # all notebooks, then report/index.html
    python -m fit3d_helpers run --profile smoke --only 01,03 --set seed=1 --set 02.iterations=300
    python -m fit3d_helpers params                               # each notebook's parameters and defaults
    python -m fit3d_helpers report                               # re-export report/*.ipynb, rebuild index
    python -m fit3d_helpers capture photos/ data/my_desk          # photos or a video -> a posed scene (pycolmap)

Exit codes of ``run``: 0 all notebooks ran, 1 a notebook failed (its page shows the traceback),
2 bad arguments (unknown --set key, bad --only), detected before anything runs.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fit3d_helpers", description="FiT3D course: batch runs and report")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="execute the notebooks with papermill and build the HTML report")
    r.add_argument("--profile", default="smoke", choices=["smoke", "paper", "nyu"], help="run profile (default: smoke)")
    r.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 01,03")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="[NN.]KEY=VALUE",
        help="override a parameter (Python literal, else string) in every selected notebook that defines it, "
        "or only in notebook NN; repeatable",
    )
    r.add_argument("--notebooks-dir", default="notebooks", help="folder of NN_*.ipynb (default: notebooks)")
    r.add_argument("--report-dir", default=None, help="output folder (default: <repo root>/report)")
    r.add_argument("--artifacts", default=None, help="artifacts folder (default: <repo root>/artifacts)")
    r.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds (default: none)")
    r.add_argument("--log-output", action="store_true", help="stream the notebooks' cell outputs to the terminal")
    _title_args(r)

    s = sub.add_parser("params", help="list each notebook's parameters cell")
    s.add_argument("--notebooks-dir", default="notebooks")
    s.add_argument("--only", default=None)

    c = sub.add_parser("capture", help="your photos or video -> a posed scene folder (structure from motion, pycolmap)")
    c.add_argument("source", help="a folder of photos or a video file")
    c.add_argument("scene", help="the scene folder to write (images/, sparse/0/, capture.json)")
    c.add_argument("--max-side", type=int, default=480, help="longer image side in pixels (default: 480)")
    c.add_argument("--frames", type=int, default=50, help="frames kept from a video (default: 50)")
    c.add_argument("--matching", default="auto", choices=["auto", "exhaustive", "sequential"])
    c.add_argument("--min-registered", type=float, default=0.8, help="share of images SfM must place (default 0.8)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing scene folder")

    b = sub.add_parser("report", help="re-export the executed notebooks in the report folder and rebuild index.html")
    b.add_argument("--report-dir", default="report")
    b.add_argument("--artifacts", default=None)
    _title_args(b)
    return p


def _title_args(p: argparse.ArgumentParser) -> None:
    """The deck's title fields (kept in ``report/run.json``'s ``title``) and the PDFs."""
    p.add_argument("--presenter", default=None, help="the title slide's presenter (kept in run.json)")
    p.add_argument("--course", default=None, help="the title slide's course or occasion (kept in run.json)")
    p.add_argument("--date", default=None, help="the title slide's date, e.g. 2026-12-14 (kept in run.json)")
    p.add_argument(
        "--no-pdf",
        action="store_true",
        help="skip the inference-cost measurement, report/slides.pdf and report/handout.pdf",
    )


def title_of(args: argparse.Namespace) -> dict[str, str]:
    return {k: getattr(args, k) for k in ("presenter", "course", "date") if getattr(args, k, None) is not None}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "capture":
        return _capture(args)
    from .course import runner

    if args.command == "run":
        return runner.main_run(args)
    if args.command == "params":
        try:
            print(runner.describe_parameters(args.notebooks_dir, args.only))
        except runner.ParameterError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    if args.command == "report":
        print(runner.rebuild_report(args.report_dir, args.artifacts, title=title_of(args), pdf=not args.no_pdf))
        return 0
    return 2


def _capture(args: argparse.Namespace) -> int:
    """``capture``: print the report (JSON); a bad capture exits 2 with the error's message (images and the fix)."""
    import dataclasses
    import json

    from .capture import CaptureError, capture

    try:
        report = capture(
            args.source,
            args.scene,
            max_side=args.max_side,
            n_frames=args.frames,
            matching=args.matching,
            min_registered=args.min_registered,
            overwrite=args.overwrite,
        )
    except CaptureError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(dataclasses.asdict(report), indent=1))
    print(f"scene written to {args.scene}: load it with fit3d_helpers.data.load_scene, lift it in notebook 07")
    return 0


if __name__ == "__main__":
    sys.exit(main())
