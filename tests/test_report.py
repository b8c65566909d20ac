"""HTML export (offline, banner, MathML) and the index pages built from the artifacts; headless-Chromium check."""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from fit3d_helpers import cache
from fit3d_helpers.course import report
from fit3d_helpers.course.report import BANNER_CLASS, REMOTE_PATTERNS, build_index, export_html
from fit3d_helpers.course.runner import execute_notebook
from fit3d_helpers.utils import RANDOM_WEIGHTS_BANNER

ROOT = Path(__file__).resolve().parents[1]
BANNER_MARK = f'class="{BANNER_CLASS}"'
# 1x1 PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def assert_offline(text: str, name: str = "page") -> None:
    for pat in REMOTE_PATTERNS:
        m = pat.search(text)
        assert m is None, f"{name} loads a remote resource: {text[m.start() : m.start() + 120]}"
    # the brief's exact patterns too
    assert not re.search(r"""<script[^>]+src=["']?http""", text), name
    assert not re.search(r"""<link[^>]+href=["']?http""", text), name


def _load_browser_check():
    spec = importlib.util.spec_from_file_location("check_report_browser", ROOT / "scripts" / "check_report_browser.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


class _Tables(HTMLParser):
    """Every <table> of a page as rows of {"cls", "cells": [{"cls", "text"}]} (no nested tables in the report)."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: list[list[dict]] = []
        self._row: dict | None = None
        self._cell: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self._row = {"cls": a.get("class") or "", "cells": []}
            self.tables[-1].append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"cls": a.get("class") or "", "text": ""}
            self._row["cells"].append(self._cell)

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data


def table_with(text: str, header: str) -> list[dict]:
    """The one table of the page that has a cell reading exactly ``header``."""
    found = [t for t in _Tables(text).tables if any(c["text"].strip() == header for r in t for c in r["cells"])]
    assert len(found) == 1, f"{len(found)} tables with a cell {header!r}"
    return found[0]


def row_texts(row: dict) -> list[str]:
    return [c["text"].strip() for c in row["cells"]]


EQUATIONS = [
    r"\mathcal{L} = 0.8\,L_1 + 0.2\,(1-\mathrm{SSIM})",
    r"\frac{a}{b}",
    r"\sum_i x_i^2",
    r"\hat{C}(\mathbf{p}) = \sum_{i} c_i \alpha_i \prod_{j<i}(1-\alpha_j)",
]
ALIGNED = "$$\n\\begin{aligned}\nx &= a + b \\\\\ny &= \\tfrac{1}{2} x\n\\end{aligned}\n$$"


def executed_like_nb(*, banner: bool, extra_html: str = "") -> nbformat.NotebookNode:
    """A notebook with outputs as a kernel would have left them (no kernel needed)."""
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('profile = "smoke"', metadata={"tags": ["parameters"]})
    md = nbformat.v4.new_markdown_cell(
        "# Title with $x_i^2$\nLoss $" + EQUATIONS[0] + "$ costs \\$5, or $5 or $6.\n\n"
        "* a list item with $" + EQUATIONS[1] + "$ and *emphasis*\n* rendering $" + EQUATIONS[3] + "$\n\n"
        "$$" + EQUATIONS[2] + "$$\n\n" + ALIGNED + "\n\n`code $x$ stays`\n\n```\n$fenced$ too\n```\n\n"
        "Broken: $x^{$ and $\\unknowncommand{y}$.\n\n![local](pic.png)"
    )
    c = nbformat.v4.new_code_cell("print('hi')")
    c.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    md_out = {"text/markdown": "Output math $a^2 + b^2$", "text/plain": "x"}
    c.outputs.append(nbformat.v4.new_output("display_data", data=md_out))
    if banner:
        c.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=RANDOM_WEIGHTS_BANNER + "\n"))
    if extra_html:
        c.outputs.append(nbformat.v4.new_output("display_data", data={"text/html": extra_html, "text/plain": "x"}))
    nb.cells = [p, md, c]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


# ---------------------------------------------------------------------------------------------- export


def test_export_offline_mathml_images_and_banner(tmp_path):
    src_dir = tmp_path / "notebooks"
    src_dir.mkdir()
    (src_dir / "pic.png").write_bytes(PNG)
    ipynb = tmp_path / "report" / "01_x.ipynb"
    ipynb.parent.mkdir()
    plotly_cdn = (
        '<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/3.2.2/es5/tex-svg.min.js"></script><div>fig</div>'
    )
    nbformat.write(executed_like_nb(banner=True, extra_html=plotly_cdn), ipynb)
    out = export_html(ipynb, tmp_path / "report" / "01_x.html", source_dir=src_dir)
    text = out.read_text()
    assert_offline(text, out.name)
    assert "require.min.js" not in text and "mathjax/2.7" not in text and "mermaid.esm" not in text
    assert "<div>fig</div>" in text  # the output itself is kept, only the CDN tag goes
    assert BANNER_MARK in text
    assert text.index(BANNER_MARK) < text.index("hello")  # at the top
    # math is MathML, whole (nbconvert's markdown renderer did not split it), in every place math was
    maths = re.findall(r"<math\b.*?</math>", text, re.S)
    assert len(maths) == text.count("<math") == text.count("</math>") == 7, len(maths)
    assert "FIT3DMATH" not in text  # no placeholder left, not even in the heading's id
    assert sum('display="block"' in m for m in maths) == 2 and "<mtable" in text  # $$…$$ and the aligned block
    assert "<mfrac>" in text and "<mover" in text  # \frac, \hat
    assert "&#x02211;" in text and "&#x0220F;" in text  # \sum, \prod
    assert 'mathvariant="normal">S</mi>' in text  # \mathrm{SSIM}
    assert re.search(r"<h1[^>]*>Title with <math", text)
    assert re.search(r"<li>a list item with <math.*?</math> and <em>emphasis</em>", text, re.S)
    assert "Output math <math" in text  # a markdown output of a code cell too
    assert "$5, or $5 or $6" in text  # an escaped dollar and prices are not math
    assert "<code>code $x$ stays</code>" in text and "$fenced$ too" in text  # code untouched
    assert "<code>$x^{$</code>" in text and "\\unknowncommand{y}$</code>" in text  # not convertible: raw TeX
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


@pytest.mark.parametrize("tex", EQUATIONS + [ALIGNED.strip("$\n"), r"\begin{bmatrix}1 & 0\\0 & 1\end{bmatrix}"])
def test_equations_become_mathml(tex):
    out = report.render_markdown_math(f"see ${' '.join(tex.split())}$ here")
    assert out.startswith("see <math") and out.endswith("</math> here"), out
    assert "\\" not in out  # no TeX command left over


def test_markdown_math_fallback_and_non_math():
    out = report.render_markdown_math(r"see $x^{$ and $\nosuchmacro{1}$ and $5 or $6 and `$y$` and $\text{<b>hi</b>}$")
    assert "` $x^{$ `" in out and "` $\\nosuchmacro{1}$ `" in out  # not convertible: raw TeX as a code span
    assert "` $\\text{<b>hi</b>}$ `" in out and "<math" not in out  # HTML inside \text{}: only as code
    assert "$5 or $6" in out  # prices are not math
    assert "`$y$`" in out
    assert report.render_markdown_math("no math here") == "no math here"
    fenced = "```\n$a$\n```\n"
    assert report.render_markdown_math(fenced) == fenced
    assert report.render_markdown_math(r"costs \$5 and \$6") == r"costs \$5 and \$6"
    display = report.render_markdown_math("$$\\frac{a}{b}$$")
    assert display.startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">')
    bare = report.render_markdown_math("\\begin{align}a &= b\\end{align}")
    assert 'display="block"' in bare and "<mtable" in bare
    # inline math that a wrapped markdown line splits (as jupytext writes it) is still one formula
    wrapped = report.render_markdown_math("so $\\Sigma = R S S^\\top\nR^\\top$ holds")
    assert wrapped.startswith("so <math") and wrapped.endswith("</math> holds"), wrapped
    assert "<math" not in report.render_markdown_math("costs $5\n\nand $6")  # not across a blank line


def test_remote_resource_helpers():
    bad = (
        '<script src="https://cdn.x/y.js"></script><link rel="stylesheet" href="http://x/y.css">'
        '<script src="local.js"></script>'
    )
    assert len(report.find_remote_resources(bad)) == 2
    cleaned = report.strip_remote_resources(bad)
    assert report.find_remote_resources(cleaned) == []
    assert 'src="local.js"' in cleaned


# ---------------------------------------------------------------------------------------------- index


def _artifact(root: Path, stage: str, key: dict, stats: dict) -> cache.Artifact:
    """A complete artifact in the cache's layout (key folder, CURRENT, version folder)."""
    return cache.build(stage, {"stage": stage, **key}, root, lambda out, resume: stats)


# Obviously ours: no number here is one of the paper's.
PROBE = {
    "stage": "probe",
    "profile": "smoke",
    "weights": "hub",
    "backbone": "vit_small_patch14_dinov2.lvd142m",
    "results": {
        "seg": {
            "original": {"miou": 0.4123, "macc": 0.5234, "aacc": 0.7345},
            "finetuned": {"miou": 0.4177, "macc": 0.5288, "aacc": 0.7399},
            "concat": {"miou": 0.4456, "macc": 0.5567, "aacc": 0.7678},
            "add": {"miou": 0.4311, "macc": 0.5411, "aacc": 0.7511},
            "linear": {"miou": 0.4322, "macc": 0.5422, "aacc": 0.7522},
        },
        "depth": {
            "original": {"rmse": 0.6123, "absrel": 0.2123, "delta1": 0.7012},
            "finetuned": {"rmse": 0.6011, "absrel": 0.2011, "delta1": 0.7111},
            "concat": {"rmse": 0.5987, "absrel": 0.1987, "delta1": 0.7222},
        },
    },
    "awareness": {
        "original": {"recall@14px": 0.5111, "median_px_error": 21.5, "cos_true": 0.61},
        "finetuned": {"recall@14px": 0.5777, "median_px_error": 17.25, "cos_true": 0.66},
    },
}


def test_build_index_tables_from_stats(tmp_path):
    arts, rep = tmp_path / "artifacts", tmp_path / "report"
    lift = {
        "stage": "lift",
        "profile": "smoke",
        "psnr": 28.71,
        "feat_cos": 0.991,
        "iters": 600,
        "nested": {"gaussians": 10000},
        "per_scene": [1, 2, 3, 4, 5, 6],
        "image_hw": [168, 224],
    }
    _artifact(arts, "lift", {"i": 600}, lift)
    _artifact(arts, "lift", {"i": 300}, dict(lift, psnr=27.3, feat_cos=0.985, iters=300))
    headline = _artifact(arts, "probe", {"p": "main"}, PROBE)
    _artifact(arts, "probe", {"p": "ablation"}, dict(PROBE, ablation="feature_dim=16"))  # newer, but an ablation
    os.utime(headline.path / "stats.json", (1e9, 1e9))
    # a key folder without CURRENT (a writer died before committing) and a writer's temp folder: ignored
    (arts / "lift" / "deadbeef0000" / "v-1-0123abcd").mkdir(parents=True)
    (arts / "lift" / "deadbeef0000" / "v-1-0123abcd" / "stats.json").write_text('{"psnr": 1}')
    (arts / "lift" / "deadbeef0000" / ".tmp-1234").mkdir()
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
    assert 'href="artifacts.html"' in index
    assert "12.2 s" in index and "ValueError: x" in index
    assert "<svg" in index and "Fine-tune" in index  # pipeline figure
    # the report cites nothing outside the repository (no design notes, no "../" files), and not a "later paper"
    assert "DESIGN" not in index and "../" not in index and "later paper" not in index
    assert f"Probe artifact <code>{headline.hash}</code>" in index  # the headline is not the ablation run

    # the headline table: variants × metrics from the stats, segmentation in percent, δ1 as measured
    rows = {r["cells"][0]["text"]: row_texts(r)[1:] for r in table_with(index, "δ<1.25 (%)")[2:]}
    assert list(rows) == ["original", "finetuned", "concat", "add", "linear"]
    assert rows["original"] == ["41.23", "52.34", "73.45", "0.612", "0.212", "70.12"]  # δ<1.25 in % too
    assert rows["concat"][:3] == ["44.56", "55.67", "76.78"]
    aware = table_with(index, "recall@14px")
    heads = row_texts(aware[0])
    finetuned = dict(zip(heads[1:], row_texts(next(r for r in aware if row_texts(r)[0] == "finetuned"))[1:]))
    assert finetuned == {"recall@14px": "0.578", "median_px_error": "17.25", "cos_true": "0.660"}
    assert "<b>0.578</b>" in index and "<b>17.25</b>" in index and "<b>0.660</b>" not in index  # best: known metrics

    # the paper's segmentation table: paper rows carry their source and the paper's numbers; ours is ours
    seg = table_with(index, "Δ mIoU")
    paper_rows = {row_texts(r)[1]: row_texts(r) for r in seg if r["cls"] == "paper"}
    assert list(paper_rows) == ["ScanNet++", "NYUv2", "ScanNet", "ADE20k", "Pascal VOC"]
    spp = paper_rows["ScanNet++"]
    assert spp[0] == "arXiv 2407.20229v1, Table 1" and spp[2] == "30.19" and spp[5] == "32.76" and spp[-1] == "+2.57"
    assert paper_rows["Pascal VOC"][0] == "arXiv 2407.20229v1, Table 3"
    (ours,) = [r for r in seg if r["cls"] == "ours"]
    o = row_texts(ours)
    assert o[0] == "ours" and headline.hash in o[1]
    assert o[2:5] == ["41.23", "52.34", "73.45"] and o[5:8] == ["44.56", "55.67", "76.78"] and o[8] == "+3.33"
    assert ours["cells"][8]["cls"] == "num good"  # pretrained weights: the delta is coloured
    assert not any(v in "".join(o) for v in ("30.19", "32.76"))
    # depth: RMSE and Rel, ours from original/concat
    depth = table_with(index, "Δ RMSE")
    d_paper = {row_texts(r)[1]: row_texts(r) for r in depth if r["cls"] == "paper"}
    assert d_paper["ScanNet++"][0] == "arXiv 2407.20229v1, Table 2" and d_paper["ScanNet++"][2] == "0.3742"
    assert d_paper["KITTI"][0] == "arXiv 2407.20229v1, Table 3"
    (d_ours,) = [row_texts(r) for r in depth if r["cls"] == "ours"]
    assert d_ours[2:6] == ["0.6123", "0.2123", "0.5987", "0.1987"] and d_ours[6] == "−0.0136"
    # other backbones etc., each row with its table
    more = table_with(index, "backbone")
    sources = {row_texts(r)[0] for r in more[1:]}
    assert {f"arXiv 2407.20229v1, Table {n}" for n in (4, 9, 10, 11, 12)} == sources
    assert any(row_texts(r)[1] == "DeiT-III" for r in more)
    # assembly: the paper's Table 7 beside our variants
    # (paper mIoU, mAcc, aAcc, then ours)
    assembly = {row_texts(r)[1]: row_texts(r) for r in table_with(index, "assembly")[2:]}
    assert assembly["concat"][2:] == ["67.50", "80.52", "83.37", "44.56", "55.67", "76.78"]
    assert assembly["add"][2:] == ["66.00", "77.97", "82.85", "43.11", "54.11", "75.11"]
    assert "arXiv 2407.20229v1, Table 7" in index and "arXiv 2407.20229v1, Table 13" in index

    # the artifacts page: stage tables with the scalar stats, nested one level, lists left out; no incomplete ones
    page = (rep / "artifacts.html").read_text()
    assert_offline(page, "artifacts.html")
    assert "Stage <code>lift</code> — 2 artifacts" in page and "Stage <code>probe</code> — 2 artifacts" in page
    assert "nested.gaussians" in page and "per_scene" not in page and "[168, 224]" in page
    assert "deadbeef0000" not in page and ".tmp-" not in page
    assert "28.71" in page and "feat_cos" in page
    assert 'href="index.html"' in page


def test_random_weights_delta_is_not_a_result(tmp_path):
    arts, rep = tmp_path / "artifacts", tmp_path / "report"
    _artifact(arts, "probe", {}, dict(PROBE, weights="random"))
    index = build_index(rep, arts, {"profile": "smoke"}).read_text()
    assert BANNER_MARK in index
    (ours,) = [r for r in table_with(index, "Δ mIoU") if r["cls"] == "ours"]
    delta = ours["cells"][-1]
    # random weights: no Δ at all (a dash and why), never coloured, and no value of ours marked best
    assert delta["cls"] == "" and "+3.33" not in delta["text"] and "random weights: no Δ" in delta["text"]
    (d_ours,) = [r for r in table_with(index, "Δ RMSE") if r["cls"] == "ours"]
    assert d_ours["cells"][-1]["cls"] == "" and "−0.0136" not in d_ours["cells"][-1]["text"]
    assert table_with(index, "δ<1.25 (%)") and not re.search(r"<b>[−+]?\d", index)  # no number in bold
    assert "no value is marked best" in index
    assert "Random-init backbone" in index


def test_build_index_random_banner_only_for_this_profile(tmp_path):
    arts, rep = tmp_path / "artifacts", tmp_path / "report"
    art = _artifact(arts, "probe", {"profile": "paper"}, dict(PROBE, weights="random", profile="paper"))
    index = build_index(rep, arts, {"profile": "smoke"}).read_text()
    assert BANNER_MARK not in index  # a random artifact of another profile does not flag this run
    assert 'class="other-profile"' in (rep / "artifacts.html").read_text()
    assert "No probe artifact" in index  # nor is it this run's headline
    index = build_index(rep, arts, {"profile": "paper"}).read_text()
    assert BANNER_MARK in index and RANDOM_WEIGHTS_BANNER.split(".")[0] in index
    assert index.index(BANNER_MARK) < index.index("<h1>")
    assert BANNER_MARK in (rep / "artifacts.html").read_text()
    assert [a["hash"] for a in report.random_weights_artifacts(arts, "paper")] == [art.hash]


def test_build_index_without_run_or_artifacts(tmp_path):
    index = build_index(tmp_path / "report", tmp_path / "nothing").read_text()
    assert "No probe artifact" in index and "Reported by the paper" in index
    assert "arXiv 2407.20229v1, Table 1" in index
    assert_offline(index)
    assert "No artifacts under" in (tmp_path / "report" / "artifacts.html").read_text()


def test_build_index_ablation_tables(tmp_path):
    arts, rep = tmp_path / "artifacts", tmp_path / "report"
    rows = {
        "epochs": [
            {"ablation": "epochs", "value": 1, "seg_miou_concat": 0.1234, "depth_rmse_concat": 0.9},
            {"ablation": "epochs", "value": 2, "seg_miou_concat": 0.2345, "depth_rmse_concat": 0.8},
        ]
    }
    _artifact(arts, "ablations", {}, {"stage": "ablations", "profile": "smoke", "weights": "hub", "rows": rows})
    index = build_index(rep, arts, {"profile": "smoke"}).read_text()
    assert "ours: ablation <code>epochs</code> (notebook 05)" in index and "seg_miou_concat" in index
    ours = {row_texts(r)[0]: row_texts(r)[1:] for r in table_with(index, "depth_rmse_concat")[1:]}
    assert ours == {"1": ["0.1234", "0.9"], "2": ["0.2345", "0.8"]}  # results first: seg, then depth
    # the paper's Table 8 beside ours, matched by epochs, ours in percent
    t8 = {row_texts(r)[0]: row_texts(r) for r in table_with(index, "fine-tuning time (h)")[1:]}
    # the paper's note sits with the paper's columns, ours last
    assert t8["1 epoch"][2] == "67.50" and t8["1 epoch"][6] == "12.34" and t8["2 epochs"][6] == "23.45"
    assert t8["3 epochs"][6] == "—" and "arXiv 2407.20229v1, Table 8 (NYUv2)" in index


# ---------------------------------------------------------------------------------------------- plotly + browser

PLOTLY_NB_CELLS = [
    'import plotly.io as pio, plotly.graph_objects as go\npio.renderers.default = "notebook"  # viz.setup_notebook()',
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
    nb.cells += [nbformat.v4.new_markdown_cell("Figures: $x^2$ and\n\n$$" + EQUATIONS[3] + "$$")]
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
    not (os.path.isfile(CHROMIUM) or os.environ.get("CHROMIUM")) or importlib.util.find_spec("playwright") is None,
    reason="headless Chromium or the playwright package not installed",
)


@needs_chromium
def test_browser_renders_plotly_and_math_offline(plotly_page, tmp_path):
    check = _load_browser_check()
    index = build_index(
        plotly_page.parent,
        tmp_path / "none",
        {
            "profile": "smoke",
            "notebooks": [{"name": "01_plots", "html": "01_plots.html", "status": "ok", "wall_s": 1.0}],
        },
    )
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<html><body><script src="http://cdn.example.invalid/lib.js"></script>'
        '<p>left as TeX: $\\frac{a}{b}$</p><img src="missing.png">'
        '<div class="plotly-graph-div" id="g"></div><script>throw new Error("boom")</script></body></html>'
    )
    shots = tmp_path / "shots"
    res = check.check_pages([index, plotly_page, bad], budget_s=20, screenshot_dir=shots)
    r_index, r_page, r_bad = res
    assert r_index.ok, r_index.problems
    assert r_page.ok, r_page.problems
    assert r_page.plots == 2 and r_page.drawn == 2 and r_page.network == []
    assert r_page.maths == 2  # the formulas are MathML the browser laid out
    assert (shots / "index.png").stat().st_size > 10_000 and (shots / "01_plots.png").is_file()
    # a page that needs the network, whose figure never draws, with TeX, a broken image and an exception fails
    assert not r_bad.ok
    assert any("example.invalid" in u for u in r_bad.network)
    problems = " | ".join(r_bad.problems)
    for what in ("not drawn", "TeX left", "broken image", "boom"):
        assert what in problems, (what, problems)
    # the report list: index first, then the pages it links
    assert [p.name for p in check.report_pages(plotly_page.parent)] == [
        "index.html",
        "slides.html",
        "glossary.html",
        "fidelity.html",
        "artifacts.html",
        "01_plots.html",
    ]


@needs_chromium
def test_browser_check_command_line(tmp_path):
    import subprocess

    index = build_index(tmp_path / "report", tmp_path / "none", {"profile": "smoke"})
    script = ROOT / "scripts" / "check_report_browser.py"
    out = subprocess.run(
        [sys.executable, str(script), str(index), "--screenshot", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "s" / "index.png").is_file() and "all 1 page(s) render offline" in out.stdout


def test_browser_check_exit_status_without_browser(tmp_path, monkeypatch, capsys):
    from fit3d_helpers.course import browser

    index = build_index(tmp_path / "report", tmp_path / "none", {"profile": "smoke"})
    monkeypatch.setattr(browser, "find_chromium", lambda explicit=None: None)
    assert browser.main([str(index)]) == 2 and "Chromium not found" in capsys.readouterr().err
    monkeypatch.setattr(browser, "find_chromium", lambda explicit=None: "/usr/bin/chromium")
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # the package is missing
    assert browser.main([str(index)]) == 2 and "playwright" in capsys.readouterr().err
    assert browser.main([str(tmp_path / "none.html")]) == 2  # status 2 comes before any page is opened


def test_paper_ablations_shown_without_ours(tmp_path):
    """Tables 5–8 and 13 are on the index even before notebook 05 ran; ours fills in where the probe has the variant."""
    arts, rep = tmp_path / "artifacts", tmp_path / "report"
    results = {t: dict(v) for t, v in PROBE["results"].items()}
    results["seg"]["dup"] = {"miou": 0.4133, "macc": 0.5, "aacc": 0.7}
    results["depth"]["dup"] = {"rmse": 0.6101, "absrel": 0.2, "delta1": 0.7}
    _artifact(arts, "probe", {}, dict(PROBE, results=results))
    index = build_index(rep, arts, {"profile": "smoke"}).read_text()
    for n in (5, 6, 7, 8, 13):
        assert f"arXiv 2407.20229v1, Table {n}" in index, n
    assert index.count("no ablations artifact yet (notebook 05 makes it)") == 3  # Tables 5, 6, 8
    t8 = {row_texts(r)[0]: row_texts(r) for r in table_with(index, "fine-tuning time (h)")[1:]}
    assert t8["1 epoch"][2] == "67.50" and t8["1 epoch"][6] == "—"
    control = {row_texts(r)[1]: row_texts(r) for r in table_with(index, "features")[2:]}
    assert control["dup"][2:] == ["30.31", "0.3676", "41.33", "0.6101"]  # Table 13's control beside our dup
    assert "<code>dup</code> = the original features twice" in index
    # δ<1.25 is ours only, and the page says so beside the headline table
    assert "δ&lt;1.25: ours only: the paper reports RMSE and Rel, no δ&lt;1.25." in index


def test_one_corrupt_stats_json_costs_only_its_own_figures_and_is_listed(tmp_path):
    arts = tmp_path / "artifacts"
    _artifact(arts, "data", {"n": 1}, {"profile": "smoke", "n_views": 24})
    bad = _artifact(arts, "probe", {"n": 2}, dict(PROBE, headline=True))
    (bad.path / "stats.json").write_text('{"stage": "pro')  # truncated, e.g. a full disk
    built = report.build_report(tmp_path / "report", arts, {"profile": "smoke"})
    errors = built["figure_errors"]
    assert set(errors) == {"probe_predictions", "probe_predictions_slide"}, errors  # not every figure
    assert "unreadable stats.json" in errors["probe_predictions"] and "04_probe" in errors["probe_predictions"]
    page = (tmp_path / "report" / "artifacts.html").read_text()
    assert bad.hash in page and "stats.json unreadable" in page  # listed, with a note, not dropped
    assert str(tmp_path) not in page  # relative paths only
