"""Wall time per notebook of the whole smoke course (data -> report), from a clean artifacts folder.

Run: .venv/bin/python benchmarks/bench_course.py [--keep DIR]   (target: <= 15 min on 2 cores)
The scene generator's cache under data/ is reused unless --fresh-data is given.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from fit3d_helpers.course.runner import run_notebooks

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--keep", default=None, help="write report/ and artifacts/ here instead of a temporary folder")
    p.add_argument("--fresh-data", action="store_true", help="delete data/synthetic first (times the generator too)")
    args = p.parse_args()
    if args.fresh_data:
        shutil.rmtree(ROOT / "data" / "synthetic", ignore_errors=True)
    out = Path(args.keep or tempfile.mkdtemp(prefix="fit3d-course-"))
    t0 = time.time()
    rec = run_notebooks(ROOT / "notebooks", "smoke", report_dir=out / "report", artifacts_dir=out / "artifacts")
    total = time.time() - t0
    print(f"\n{'notebook':28s} {'status':8s} {'wall s':>8s}")
    for n in rec["notebooks"]:
        print(f"{n['name']:28s} {n['status']:8s} {n['wall_s'] or 0:8.1f}")
    print(
        f"{'total (incl. report)':28s} {'ok' if rec['ok'] else 'FAILED':8s} {total:8.1f}"
        f"   ({total / 60:.1f} min; target <= 8 min)"
    )
    print(f"report: {out / 'report' / 'index.html'}")


if __name__ == "__main__":
    main()
