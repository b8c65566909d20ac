"""The whole course, as a student runs it: notebooks 01-05 at smoke defaults through papermill, then the report.

This is the slow test (minutes): it executes every notebook, checks the report is offline, says "random weights"
where it must, and renders in headless Chromium when Chromium is installed (scripts/test.sh installs it).

Why papermill here and not nbmake (which runs notebook 06 as a pytest item in scripts/test.sh): the report is built
from the executed copies and nbmake keeps none (its only way is `--overwrite`, which writes outputs into the committed
notebooks), and the course needs parameters injected (a temporary artifacts folder shared 01 -> 05, the profile).
Per notebook the two cost the same (notebook 06, same machine and load: nbmake 46 s wall / 10.2 s CPU, papermill
49 s / 11.2 s CPU), so a second, nbmake run of the course would only add its ~8 minutes.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from fit3d_helpers.course.runner import run_notebooks

    out = tmp_path_factory.mktemp("course")
    # a per-cell timeout turns a hang into a failure with the cell named (the longest smoke cell takes ~8 min)
    record = run_notebooks(
        ROOT / "notebooks", "smoke", report_dir=out / "report", artifacts_dir=out / "artifacts", timeout=1500
    )
    return {"record": record, "report": out / "report", "artifacts": out / "artifacts"}


@pytest.mark.slow
def test_every_notebook_runs_at_smoke_defaults(course: dict) -> None:
    record = course["record"]
    failed = {n["name"]: n.get("error") for n in record["notebooks"] if n["status"] != "ok"}
    assert record["ok"] and not failed, failed
    names = sorted(p.name for p in course["report"].glob("*.html"))
    assert names == [
        "01_data.html",
        "02_lift_to_gaussians.html",
        "03_finetune.html",
        "04_probe.html",
        "05_ablations.html",
        "06_your_photo.html",
        "07_your_scene.html",
        "artifacts.html",
        "fidelity.html",
        "glossary.html",
        "handout.html",
        "index.html",
        "slides.html",
        "viewer.html",
    ]
    print("\nwall seconds per notebook:", {n["name"]: round(n["wall_s"], 1) for n in record["notebooks"]})


@pytest.mark.slow
def test_report_is_offline_and_flags_random_weights(course: dict) -> None:
    for page in course["report"].glob("*.html"):
        text = page.read_text()
        assert not re.search(r"""<script[^>]+src=["']?http""", text), page.name
        assert not re.search(r"""<link[^>]+href=["']?http""", text), page.name
    from fit3d_helpers.cache import iter_artifacts
    from fit3d_helpers.profiles import PROBE_VARIANTS

    stats = [a.stats for a in iter_artifacts(course["artifacts"])]
    if any(s.get("weights") == "random" for s in stats):
        for page in course["report"].glob("*.html"):
            assert "RANDOM WEIGHTS" in page.read_text(), f"{page.name} lacks the random-weights banner"
    probe = [s for s in stats if s.get("stage") == "probe" and s.get("headline")]
    assert probe and set(probe[0]["results"]["seg"]) == set(PROBE_VARIANTS)
    assert {"lift", "finetune", "probe", "ablations", "data"} <= {s.get("stage") for s in stats}


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists(), reason="Chromium not installed"
)
def test_report_renders_in_chromium(course: dict) -> None:
    spec = importlib.util.spec_from_file_location("check_report_browser", ROOT / "scripts" / "check_report_browser.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    pages = sorted(course["report"].glob("*.html"))
    results = mod.check_pages(pages)
    bad = [r for r in results if not r.ok]
    assert not bad, bad
