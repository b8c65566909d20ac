"""Command line: ``python -m fit3d_helpers run|report|params``.

    python -m fit3d_helpers run --profile smoke                  # all notebooks, then report/index.html
    python -m fit3d_helpers run --profile smoke --only 01,03 --set seed=1 --set 02.iterations=300
    python -m fit3d_helpers params                               # each notebook's parameters and defaults
    python -m fit3d_helpers report                               # re-export report/*.ipynb, rebuild index

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

    s = sub.add_parser("params", help="list each notebook's parameters cell")
    s.add_argument("--notebooks-dir", default="notebooks")
    s.add_argument("--only", default=None)

    b = sub.add_parser("report", help="re-export the executed notebooks in the report folder and rebuild index.html")
    b.add_argument("--report-dir", default="report")
    b.add_argument("--artifacts", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
        print(runner.rebuild_report(args.report_dir, args.artifacts))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
