"""HTML export (offline, banner, math) and the index page built from stats.json; headless-Chromium check."""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

from fit3d_helpers import report
from fit3d_helpers.report import BANNER_CLASS, REMOTE_PATTERNS, build_index, export_html
from fit3d_helpers.runner import execute_notebook
from fit3d_helpers.utils import RANDOM_WEIGHTS_BANNER, write_json

ROOT = Path(__file__).resolve().parents[1]
BANNER_MARK = f'class="{BANNER_CLASS}"'
# 1x1 PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def assert_offline(text: str, name: str = "page") -> None:
    for pat in REMOTE_PATTERNS:
        m = pat.search(text)
        assert m is None, f"{name} loads a remote resource: {text[m.start():m.start() + 120]}"
    # the brief's exact patterns too
    assert not re.search(r"""<script[^>]+src=["']?http""", text), name
    assert not re.search(r"""<link[^>]+href=["']?http""", text), name


def _load_browser_check():
    spec = importlib.util.spec_from_file_location("check_report_browser", ROOT / "scripts" / "check_report_browser.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def executed_like_nb(*, banner: bool, extra_html: str = "") -> nbformat.NotebookNode:
    """A notebook with outputs as a kernel would have left them (no kernel needed)."""
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('profile = "smoke"', metadata={"tags": ["parameters"]})
    md = nbformat.v4.new_markdown_cell(
        "# Title\nLoss $\\mathcal{L} = 0.8\\,L_1 + 0.2\\,(1-\\mathrm{SSIM})$ costs \\$5.\n\n"
        "$$\\frac{a}{b} = \\sum_i x_i^2$$\n\n`code $x$ stays`\n\n![local](pic.png)"
    )
    c = nbformat.v4.new_code_cell("print('hi')")
    c.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    if banner:
        c.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=RANDOM_WEIGHTS_BANNER + "\n"))
    if extra_html:
        c.outputs.append(nbformat.v4.new_output("display_data", data={"text/html": extra_html, "text/plain": "x"}))
    nb.cells = [p, md, c]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


# ---------------------------------------------------------------------------------------------- export


def test_export_offline_math_images_and_banner(tmp_path):
    src_dir = tmp_path / "notebooks"
    src_dir.mkdir()
    (src_dir / "pic.png").write_bytes(PNG)
    ipynb = tmp_path / "report" / "01_x.ipynb"
    ipynb.parent.mkdir()
    plotly_cdn = '<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/3.2.2/es5/tex-svg.min.js"></script><div>fig</div>'
    nbformat.write(executed_like_nb(banner=True, extra_html=plotly_cdn), ipynb)
    out = export_html(ipynb, tmp_path / "report" / "01_x.html", source_dir=src_dir)
    text = out.read_text()
    assert_offline(text, out.name)
    assert "require.min.js" not in text and "mathjax/2.7" not in text and "mermaid.esm" not in text
    assert "<div>fig</div>" in text  # the output itself is kept, only the CDN tag goes
    assert BANNER_MARK in text
    assert text.index(BANNER_MARK) < text.index("hello")  # at the top
    assert 'class="fit3d-math"' in text and "data:image/svg+xml;base64" in text  # LaTeX drawn offline
    assert "fit3d-math-display" in text
    assert "$5." in text  # an escaped dollar is not math
    assert "<code>code $x$ stays</code>" in text  # code spans untouched
    assert "data:image/png;base64" in text  # markdown image embedded
    assert 'src="pic.png"' not in text


def test_export_without_banner_and_explicit_banner(tmp_path):
    ipynb = tmp_path / "02_y.ipynb"
    nbformat.write(executed_like_nb(banner=False), ipynb)
    text = export_html(ipynb, tmp_path / "a.html").read_text()
    assert BANNER_MARK not in text
    text = export_html(ipynb, tmp_path / "b.html", banner="custom warning").read_text()
    assert BANNER_MARK in text and "custom warning" in text
    # apply_banner is idempotent
    assert report.apply_banner(tmp_path / "a.html") is True
    assert report.apply_banner(tmp_path / "a.html") is False
    assert (tmp_path / "a.html").read_text().count(BANNER_MARK) == 1


def test_markdown_math_fallback_and_non_math():
    out = report.render_markdown_math(r"see $\begin{bmatrix}1\end{bmatrix}$ and $5 or $6 and `$y$`")
    assert "` $\\begin{bmatrix}1\\end{bmatrix}$ `" in out  # mathtext cannot: raw TeX as a code span
    assert "$5 or $6" in out  # prices are not math
    assert "`$y$`" in out
    assert report.render_markdown_math("no math here") == "no math here"
    fenced = "```\n$a$\n```\n"
    assert report.render_markdown_math(fenced) == fenced


def test_remote_resource_helpers():
    bad = '<script src="https://cdn.x/y.js"></script><link rel="stylesheet" href="http://x/y.css"><script src="local.js"></script>'
    assert len(report.find_remote_resources(bad)) == 2
    cleaned = report.strip_remote_resources(bad)
    assert report.find_remote_resources(cleaned) == []
    assert 'src="local.js"' in cleaned


# ---------------------------------------------------------------------------------------------- index


def _artifact(root: Path, stage: str, h: str, stats: dict, config: dict | None = None) -> None:
    d = root / stage / h
    write_json(d / "config.json", config or {"stage": stage})
    write_json(d / "stats.json", stats)


PROBE = {
    "stage": "probe",
    "profile": "smoke",
    "weights": "hub",
    "backbone": "vit_small_patch14_dinov2.lvd142m",
    "results": {
        "seg": {
            "original": {"miou": 0.3019, "macc": 0.41, "aacc": 0.70},
            "finetuned": {"miou": 0.3111, "macc": 0.42, "aacc": 0.71},
            "concat": {"miou": 0.3276, "macc": 0.44, "aacc": 0.72},
        },
        "depth": {
            "original": {"rmse": 0.374, "absrel": 0.12, "delta1": 0.80},
            "finetuned": {"rmse": 0.360, "absrel": 0.11, "delta1": 0.81},
            "concat": {"rmse": 0.336, "absrel": 0.10, "delta1": 0.83},
        },
    },
    "awareness": {"original": {"pck": 0.51, "depth_corr": 0.40}, "finetuned": {"pck": 0.57, "depth_corr": 0.52}},
}


def test_build_index_tables_from_stats(tmp_path):
    arts, rep = tmp_path / "artifacts", tmp_path / "report"
    _artifact(arts, "lift", "aaa111", {"stage": "lift", "profile": "smoke", "psnr": 28.71, "feat_cos": 0.991, "iters": 600,
                                       "nested": {"gaussians": 10000}, "per_scene": [1, 2, 3, 4, 5, 6],
                                       "image_hw": [168, 224]})
    _artifact(arts, "lift", "bbb222", {"stage": "lift", "profile": "smoke", "psnr": 27.3, "feat_cos": 0.985, "iters": 300})
    _artifact(arts, "probe", "ccc333", PROBE)
    _artifact(arts, "probe", "eee555", dict(PROBE, ablation="feature_dim=16"))  # newer, but an ablation
    os.utime(arts / "probe" / "ccc333" / "stats.json", (1e9, 1e9))
    (arts / "lift" / ".ddd.tmp-1234").mkdir()
    (arts / "lift" / ".ddd.tmp-1234" / "stats.json").write_text('{"psnr": 1}')  # half-written: ignored
    (rep / "01_data.html").parent.mkdir(parents=True)
    (rep / "01_data.html").write_text("<html><body><main>x</main></body></html>")
    run = {
        "commit": "abc1234",
        "profile": "smoke",
        "device": "cpu",
        "torch": "2.x",
        "python": "3.11",
        "date": "2026-11-25T00:00:00+00:00",
        "overrides": {"02.iterations": 300},
        "total_wall_s": 75.5,
        "notebooks": [
            {"name": "01_data", "html": "01_data.html", "status": "ok", "wall_s": 12.25},
            {"name": "02_lift", "html": "02_lift.html", "status": "failed", "wall_s": 3.0, "error": "ValueError: x"},
        ],
    }
    index = build_index(rep, arts, run).read_text()
    assert_offline(index, "index.html")
    assert BANNER_MARK not in index  # pretrained ("hub") weights: no banner
    assert "abc1234" in index and "smoke" in index and "vit_small_patch14_dinov2.lvd142m — hub weights" in index
    assert 'href="01_data.html"' in index and 'href="02_lift.html"' not in index  # only pages that exist
    assert "12.2 s" in index and "ValueError: x" in index
    assert "<svg" in index and "Fine-tune" in index  # pipeline figure
    # the headline table: variants × metrics from stats.json, segmentation in percent
    assert "32.76" in index and "30.19" in index and "0.336" in index and "δ&lt;1.25" in index
    assert "3D awareness" in index and "depth_corr" in index
    assert "Probe artifact <code>ccc333</code>" in index  # the headline is not the ablation run
    # paper table, labelled, beside ours (ours = original and concat)
    assert "Reported by the paper" in index and "DESIGN.md §5" in index
    assert "ScanNet++" in index and "KITTI" in index and "67.50" in index and "DeiT-III" in index
    assert re.search(r"<b>ours</b>.*?30\.19.*?32\.76.*?\+2\.57", index, re.S)
    # stage tables with the scalar stats, nested one level, lists left out; temp folders skipped
    assert "Stage <code>lift</code> — 2 artifacts" in index
    assert "nested.gaussians" in index and "per_scene" not in index and "[168, 224]" in index
    assert "aaa111" in index and "bbb222" in index and ".ddd" not in index
    assert "28.71" in index and "feat_cos" in index


def test_build_index_random_banner_only_for_this_profile(tmp_path):
    arts, rep = tmp_path / "artifacts", tmp_path / "report"
    _artifact(arts, "probe", "p1", dict(PROBE, weights="random", profile="paper"))
    index = build_index(rep, arts, {"profile": "smoke"}).read_text()
    assert BANNER_MARK not in index  # a random artifact of another profile does not flag this run
    assert 'class="other-profile"' in index
    index = build_index(rep, arts, {"profile": "paper"}).read_text()
    assert BANNER_MARK in index and RANDOM_WEIGHTS_BANNER.split(".")[0] in index
    assert index.index(BANNER_MARK) < index.index("<h1>")
    assert [a["hash"] for a in report.random_weights_artifacts(arts, "paper")] == ["p1"]


def test_build_index_without_run_or_artifacts(tmp_path):
    index = build_index(tmp_path / "report", tmp_path / "nothing").read_text()
    assert "No probe artifact" in index and "Reported by the paper" in index
    assert_offline(index)


# ---------------------------------------------------------------------------------------------- plotly + browser

PLOTLY_NB_CELLS = [
    'import plotly.io as pio, plotly.graph_objects as go\npio.renderers.default = "notebook"  # as viz.setup_notebook()',
    "go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2])).show()",
    "go.Figure(go.Scatter3d(x=[0, 1, 0], y=[0, 0, 1], z=[1, 0, 0], mode='markers'))",
]


@pytest.fixture(scope="module")
def plotly_page(tmp_path_factory):
    """A notebook with plotly figures, executed by a real kernel through the runner, exported to HTML."""
    root = tmp_path_factory.mktemp("plotly")
    (root / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('profile = "smoke"', metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_markdown_cell("Figures: $x^2$")]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in PLOTLY_NB_CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = root / "notebooks" / "01_plots.ipynb"
    nbformat.write(nb, src)
    dst = root / "report" / "01_plots.ipynb"
    wall = execute_notebook(src, dst, {"profile": "smoke"}, root)
    assert wall > 0
    page = export_html(dst, root / "report" / "01_plots.html", source_dir=src.parent)
    return page


def test_plotly_page_is_self_contained(plotly_page):
    text = plotly_page.read_text()
    assert_offline(text, plotly_page.name)
    assert text.count('class="plotly-graph-div"') == 2
    assert len(text) > 1_000_000  # plotly.js is embedded, not fetched


CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not (os.path.isfile(CHROMIUM) or os.environ.get("CHROMIUM")), reason="headless Chromium not installed"
)


@needs_chromium
def test_browser_renders_plotly_offline(plotly_page, tmp_path):
    check = _load_browser_check()
    index = build_index(plotly_page.parent, tmp_path / "none", {"profile": "smoke", "notebooks": [
        {"name": "01_plots", "html": "01_plots.html", "status": "ok", "wall_s": 1.0}]})
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<html><body><script src="http://cdn.example.invalid/lib.js"></script>'
        '<div class="plotly-graph-div" id="g"></div></body></html>'
    )
    res = check.check_pages([index, plotly_page, bad], budget_s=20)
    r_index, r_page, r_bad = res
    assert r_index.ok, r_index.problems
    assert r_page.ok, r_page.problems
    assert r_page.plots == 2 and r_page.drawn == 2 and r_page.network == []
    assert r_page.images >= 1  # the math image decoded
    # a page that needs the network, or whose figure never draws, fails
    assert not r_bad.ok
    assert any("example.invalid" in u for u in r_bad.network)
    assert any("not drawn" in p for p in r_bad.problems)
    # the report list: index first, then the pages it links
    assert [p.name for p in check.report_pages(plotly_page.parent)] == ["index.html", "01_plots.html"]


def test_build_index_ablation_tables(tmp_path):
    arts, rep = tmp_path / "artifacts", tmp_path / "report"
    rows = {"epochs": [{"ablation": "epochs", "value": 1, "seg_miou_concat": 0.1234, "depth_rmse_concat": 0.9},
                       {"ablation": "epochs", "value": 2, "seg_miou_concat": 0.2345, "depth_rmse_concat": 0.8}]}
    write_json(arts / "ablations" / "abc123" / "stats.json", {"stage": "ablations", "profile": "smoke", "rows": rows})
    write_json(arts / "ablations" / "abc123" / "config.json", {})
    index = build_index(rep, arts, {"profile": "smoke"}).read_text()
    assert "Ablations (notebook 05)" in index and "seg_miou_concat" in index
    assert "0.2345" in index and "<th>epochs</th>" in index
