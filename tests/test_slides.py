"""The deck (report/slides.html), the figures on the index, the glossary and fidelity pages, on tiny fixtures.

The artifacts are made with ``cache.build``: a ``figures`` artifact and a headline probe with ``examples.pt`` of tiny
synthetic data (so ``figures.export_pngs`` really draws), and an ablations artifact. The browser tests open the deck
in headless Chromium and press keys.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch

from fit3d_helpers import cache
from fit3d_helpers.course import paper, report, slides
from fit3d_helpers.course.glossary import GLOSSARY, deviations, questions
from fit3d_helpers.course.report import BANNER_CLASS, FIGURE_INFO, REMOTE_PATTERNS, build_report

ROOT = Path(__file__).resolve().parents[1]
BANNER_MARK = f'class="{BANNER_CLASS}"'
FIGS = ("figure1", "kmeans", "probe_predictions", "matches")

SEG = {"original": 0.4123, "finetuned": 0.4177, "concat": 0.4456, "add": 0.4311, "linear": 0.4322, "dup": 0.4133}
RMSE = {"original": 0.6123, "finetuned": 0.6011, "concat": 0.5987, "dup": 0.6101}


def probe_stats(weights: str) -> dict:
    """Obviously ours: no number here is one of the paper's."""
    return {
        "stage": "probe",
        "profile": "smoke",
        "weights": weights,
        "backbone": "dinov2_small",
        "headline": True,
        "classes": ["wall", "floor", "table"],
        "results": {
            "seg": {v: {"miou": x, "macc": x + 0.1, "aacc": x + 0.3} for v, x in SEG.items()},
            "depth": {v: {"rmse": x, "absrel": x / 3, "delta1": 0.7} for v, x in RMSE.items()},
        },
        "awareness": {
            "original": {"recall@14px": 0.5111, "chance@14px": 0.0158, "median_px_error": 21.5, "n": 90, "n_pairs": 2},
            "finetuned": {
                "recall@14px": 0.5777,
                "chance@14px": 0.0158,
                "median_px_error": 17.25,
                "n": 90,
                "n_pairs": 2,
            },
        },
    }


def _images(n: int, h: int = 42, w: int = 56) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([xx, yy, 1 - xx * yy], -1)  # [h, w, 3]
    return (base[None] * 0.8 + 0.2 * torch.rand(n, h, w, 3, generator=g)).clamp(0, 1)


def figures_data(n: int = 2, d: int = 8) -> dict:
    g = torch.Generator().manual_seed(1)
    imgs = _images(n)
    feats = {k: torch.randn(n, d, 3, 4, generator=g) for k in ("original", "rendered", "finetuned")}
    uv_a = torch.rand(10, 2, generator=g) * torch.tensor([56.0, 42.0])
    return {
        "images": imgs,
        **feats,
        "view_ids": torch.arange(n),
        "pair_images": imgs[:2],
        "pair_ids": torch.tensor([0, 1]),
        "uv_a": uv_a,
        "uv_true": uv_a + 1,
        "uv_original": uv_a + torch.randn(10, 2, generator=g) * 20,
        "uv_finetuned": uv_a + torch.randn(10, 2, generator=g) * 5,
    }


def examples_data(n: int = 2) -> dict:
    g = torch.Generator().manual_seed(2)
    imgs = _images(n)
    labels = torch.randint(0, 3, (n, 42, 56), generator=g)
    depth = torch.rand(n, 42, 56, generator=g) * 5 + 0.5
    ex = {}
    for v in ("original", "finetuned", "concat"):
        ex[f"seg/{v}"] = {"index": torch.arange(n), "pred": torch.randint(0, 3, (n, 42, 56), generator=g)}
        ex[f"depth/{v}"] = {"index": torch.arange(n), "pred": depth + torch.rand(n, 42, 56, generator=g)}
    return {"examples": ex, "index": torch.arange(n), "images": imgs, "labels": labels, "depth": depth}


def make_artifacts(arts: Path, *, weights: str = "random", figures: bool = True, ablations: bool = True) -> None:
    def with_file(name: str, obj: dict, stats: dict):
        def make(out: Path, resume: Path) -> dict:
            torch.save(obj, out / name)
            return stats

        return make

    cache.build(
        "probe", {"stage": "probe", "w": weights}, arts, with_file("examples.pt", examples_data(), probe_stats(weights))
    )
    if figures:
        stats = {"stage": "figures", "profile": "smoke", "weights": weights, "backbone": "dinov2_small"}
        cache.build("figures", {"stage": "figures", "w": weights}, arts, with_file("figures.pt", figures_data(), stats))
    if ablations:
        rows = {
            "epochs": [
                {"ablation": "epochs", "value": v, "seg_miou_concat": m, "depth_rmse_concat": 0.9, "cost": {"s": 9.0}}
                for v, m in ((1, 0.1234), (2, 0.2345))
            ],
            "feature_factor": [{"ablation": "feature_factor", "value": 2, "seg_miou_concat": 0.3456, "cost": {"s": 1}}],
        }
        stats = {
            "stage": "ablations",
            "profile": "smoke",
            "weights": weights,
            "rows": rows,
            "sources": {"epochs": "paper, arXiv 2407.20229v1 Table 8", "feature_factor": "the course's own"},
            "budget": {"refit_iterations": 100, "probe_steps": 100},
        }
        cache.build("ablations", {"stage": "ablations", "w": weights}, arts, lambda out, resume: stats)


RUN = {
    "profile": "smoke",
    "commit": "abc1234",
    "date": "2026-11-25T00:00:00+00:00",
    "notebooks": [{"name": "01_data", "html": "01_data.html", "status": "ok", "wall_s": 1.0}],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One report of a random-weights run with every figure's artifact, and one of a pretrained run without figures."""
    out = {}
    for weights, figures in (("random", True), ("hub", False)):
        root = tmp_path_factory.mktemp(weights)
        make_artifacts(root / "artifacts", weights=weights, figures=figures)
        (root / "report").mkdir()
        (root / "report" / "01_data.html").write_text("<html><body><main>nb</main></body></html>")
        out[weights] = (root / "report", build_report(root / "report", root / "artifacts", RUN))
    return out


def slide_sections(text: str) -> dict[str, str]:
    return dict(re.findall(r'<section class="slide" data-title="([^"]+)">(.*?)</section>', text, re.S))


def assert_offline(text: str, name: str) -> None:
    for pat in REMOTE_PATTERNS:
        assert not pat.search(text), f"{name} loads {pat.search(text).group(0)}"
    assert "http://" not in re.sub(r'xmlns="http://www\.w3\.org/[^"]*"', "", text).replace("http://www.w3.org", "")


# ---------------------------------------------------------------------------------------------- the pieces


def test_glossary_terms_and_questions_are_complete():
    terms = " | ".join(t.term for t in GLOSSARY)
    for word in (
        "3DGS", "EWA", "Alpha compositing", "SH", "SSIM", "PSNR", "DINOv2", "CLS token", "Token grid", "LayerNorm",
        "LayerScale", "Feature lifting", "decoder", "Multi-view consistency", "LoRA", "adapter", "Linear probe",
        "BNHead", "mIoU", "mAcc", "aAcc", "RMSE", "AbsRel", "δ<1.25", "SigLoss", "PCA", "k-means", "DDP",
    ):  # fmt: skip
        assert word in terms, word
    qs = questions()
    assert 10 <= len(qs) <= 15
    text = " ".join(q + " " + a for q, a in qs)
    for what in ("detached geometry", "concatenate", "one epoch", "linear probe", "random weights", "masks",
                 "3D-awareness", "differ from the paper"):  # fmt: skip
        assert what in text, what
    assert "does not measure" in text  # the paper does not measure correspondences
    # the paper's numbers come from paper.py, with their table
    t13 = {r.value: r for r in paper.ablation_rows("control")}
    assert f"{t13['dup'].seg.miou:.2f}" in text and paper.cite(13) in text and paper.cite(8) in text
    assert len({t.anchor for t in GLOSSARY}) == len(GLOSSARY)


def test_deviations_follow_the_profiles():
    rows = {d.what: d for d in deviations()}
    assert "200 iterations" in rows["stage 1 (lifting)"].smoke and "30 000" in rows["stage 1 (lifting)"].official
    assert "ScanNet++" in rows["scenes for fine-tuning"].official
    changed = {d.what: d for d in deviations({"lift.iterations": 1234}, "smoke")}
    assert "1 234 iterations" in changed["stage 1 (lifting)"].smoke
    assert "30 000" in changed["stage 1 (lifting)"].official  # the official column does not move


def test_equations_are_mathml():
    for name, tex in slides.EQUATIONS.items():
        out = report.render_markdown_math(f"$${tex}$$")
        assert out.startswith("<math") and "\\" not in out, name


# ---------------------------------------------------------------------------------------------- built report


def test_figures_are_drawn_and_shown_with_captions(built):
    rep, out = built["random"]
    assert set(FIGURE_INFO) == set(FIGS)
    assert set(FIGS) <= set(out["figures"]) and "probe_predictions_slide" in out["figures"], out["figure_errors"]
    for name in FIGS:
        png = rep / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    sizes = json.loads((rep / "figures" / "figures.json").read_text())  # slide size, text >= 16 px
    assert all(s["width"] <= 1180 and s["height"] <= 560 and s["min_font_px"] >= 16 for s in sizes.values()), sizes
    assert out["viewer"] == rep / "viewer.html" and 'class="fit3d-viewer"' in out["viewer"].read_text()
    index = (rep / "index.html").read_text()
    for name in FIGS:
        block = re.search(rf'<figure class="fig" id="fig-{name}">(.*?)</figure>', index, re.S).group(1)
        assert f'src="figures/{name}.png"' in block
        assert "What to look at:" in block and "Random weights:" in block  # what real weights would show
    assert index.index('id="fig-figure1"') < index.index("Headline results")
    assert "<svg" in index and "Fine-tune" in index  # the method diagram stays


def test_missing_figures_say_which_notebook(built):
    rep, out = built["hub"]
    assert "figure1" not in out["figures"] and "probe_predictions" in out["figures"]
    index = (rep / "index.html").read_text()
    block = re.search(r'<figure class="fig" id="fig-figure1">(.*?)</figure>', index, re.S).group(1)
    assert "<img" not in block and "notebook 04" in block
    assert "Random weights:" not in index  # pretrained: no "what real weights would show"
    deck = slide_sections((rep / "slides.html").read_text())
    assert "notebook 04" in deck["figure1"] and "<img" not in deck["figure1"]


def test_stale_figures_are_removed(tmp_path):
    rep = tmp_path / "report"
    (rep / "figures").mkdir(parents=True)
    (rep / "figures" / "figure1.png").write_bytes(b"old")
    (rep / "viewer.html").write_text("old")
    out = build_report(rep, tmp_path / "no-artifacts", {"profile": "smoke"})
    assert out["figures"] == {} and not (rep / "figures" / "figure1.png").exists()
    assert out["viewer"] is None and not (rep / "viewer.html").exists()
    assert "Not drawn yet" in (rep / "index.html").read_text()


def test_deck_is_one_offline_file_with_every_slide(built):
    rep, _ = built["random"]
    text = (rep / "slides.html").read_text()
    assert_offline(text, "slides.html")
    assert "<script src" not in text and "<link" not in text and "figures/" not in text.replace("figures/*", "")
    secs = slide_sections(text)
    for title in ("title", "question", "method", "stage 1", "stage 2", "why", "paper: segmentation", "paper: depth",
                  "ablations: features", "ablations: sweeps", "smoothing", "cost", "limitations", "related",
                  "takeaways", "ours", "figure1", "kmeans", "probe_predictions", "headline", "our probe",
                  "3D awareness", "our sweeps", "deviations", "glossary", "question 1"):  # fmt: skip
        assert title in secs, title
    # figures are embedded: each decodes to a PNG
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(uris) >= 5
    assert all(base64.b64decode(u)[:4] == b"\x89PNG" for u in uris)
    assert "<svg" in secs["method"] and "<math" in secs["stage 1"] and "<math" in secs["stage 2"]
    assert 'href="glossary.html"' in secs["glossary"] and 'href="fidelity.html"' in secs["deviations"]
    # navigation keys and scaling are in the inlined script; a print stylesheet gives one slide per page
    for key in ("ArrowRight", "ArrowLeft", "' '", "Home", "End", "--scale"):
        assert key in text, key
    assert "@media print" in text and "break-after:page" in text


def test_deck_random_weights_rule(built):
    rep, _ = built["random"]
    text = (rep / "slides.html").read_text()
    secs = slide_sections(text)
    assert "RANDOM WEIGHTS" in secs["title"] and BANNER_MARK in text
    # every slide that shows this run's output carries the tag (stage 1 shows this run's render); the paper's do not
    for title in ("stage 1", "ours", "figure1", "kmeans", "probe_predictions", "headline", "our probe",
                  "3D awareness", "our sweeps"):  # fmt: skip
        assert "random weights: not a result" in secs[title], title
    for title in ("paper: segmentation", "paper: depth", "ablations: features", "ablations: sweeps", "cost"):
        assert "random weights: not a result" not in secs[title], title
    tables = tables_of(secs["headline"])
    ours = [r for t in tables for r in t if r["cls"] == "ours"]
    assert len(ours) == 2 and all(r["cells"][-1]["cls"] == "" for r in ours)  # no Δ, neither green nor red
    assert all(r["cells"][-1]["text"].startswith("—") for r in ours) and "+3.33" not in secs["headline"]
    # no "best in column" bold and no "check of direction" anywhere in the deck
    assert not re.search(r"<b>[−+]?\d", secs["our probe"]) and "check of direction" not in text
    # paper first: this run's part comes after the takeaways (random weights), the paper's charts before
    order = list(secs)
    assert order.index("paper: segmentation") < order.index("takeaways") < order.index("ours") < order.index("headline")
    take = re.sub(r"<[^>]+>", "", secs["takeaways"])
    assert "random weights" in take and "say nothing about FiT3D" in take
    ours_text = take.split("random weights")[1]
    assert not re.search(r"\b(gain|improv|better|help)", ours_text, re.I)


def test_deck_pretrained_colours_deltas(built):
    rep, _ = built["hub"]
    secs = slide_sections((rep / "slides.html").read_text())
    assert "RANDOM WEIGHTS" not in secs["title"] and "not a result" not in secs["headline"]
    ours = [r for t in tables_of(secs["headline"]) for r in t if r["cls"] == "ours"]
    assert [r["cells"][-1]["cls"] for r in ours] == ["num good", "num good"]
    assert "concat − original = seg mIoU +3.33, depth RMSE −0.0136" in secs["takeaways"]
    order = list(secs)  # real weights: our reproduction joins the main story, before the takeaways
    assert order.index("related") < order.index("ours") < order.index("headline") < order.index("takeaways")


def test_deck_tables_beside_the_paper(built):
    rep, _ = built["random"]
    secs = slide_sections((rep / "slides.html").read_text())
    head = tables_of(secs["headline"])
    seg = {r["cells"][0]["text"].strip(): [c["text"].strip() for c in r["cells"]] for r in head[0][1:]}
    assert seg["ScanNet++"][1:3] == ["30.19", "32.76"] and paper.cite(1) in secs["headline"]
    assert any(k.startswith("ours") and v[1:3] == ["41.23", "44.56"] for k, v in seg.items())
    assert paper.cite(2) in secs["headline"]
    # the dup control beside concat, ours from the probe's dup variant; δ<1.25 flagged as ours only
    ctl = tables_of(secs["our sweeps"])[0]
    dup = next(r for r in ctl if "duplicated" in r["cells"][0]["text"])
    assert [c["text"].strip() for c in dup["cells"]][1:] == ["30.31", "0.3676", "41.33", "0.6101"]
    assert "the paper reports RMSE and Rel, no δ&lt;1.25" in secs["our probe"]
    # our probe: the paper's column order, % for mIoU and δ<1.25, one row per variant
    rows = {r["cells"][0]["text"]: [c["text"] for c in r["cells"][1:]] for r in tables_of(secs["our probe"])[0][2:]}
    assert rows["FiT3D = original ⊕ fine-tuned"] == ["44.6", "54.6", "74.6", "0.599", "0.200", "70.0"]
    # the paper's ablations are charts (numbers from paper.py), its note is in the paper's chart, not our column
    sweeps = secs["ablations: sweeps"]
    assert "<svg" in sweeps and "67.15" in sweeps and "not trained (memory)" in sweeps and paper.ARXIV in sweeps
    assert "not trained" not in secs["our sweeps"] and "cost" not in secs["our sweeps"]
    ours = [[c["text"] for c in r["cells"]][-3:-1] for r in tables_of(secs["our sweeps"])[1][1:]]
    assert ours[:2] == [["1", "12.3"], ["2", "23.4"]]  # the epochs sweep's points in %, at the sweep budget (said)
    assert "100 probe steps" in secs["our sweeps"] and "not the headline" in secs["our sweeps"]
    for c in paper.main_rows("seg"):
        assert f"{c.before:.2f}" in secs["paper: segmentation"] and f"{c.after:.2f}" in secs["paper: segmentation"]
    for c in paper.main_rows("depth"):
        assert f"{c.after:.4f}" in secs["paper: depth"]
    numbers = secs["3D awareness numbers"]  # the figure gets its own slide at native size, the table the next one
    assert "recall within 14 px" in numbers and "57.8" in numbers
    assert "the paper does not measure" in secs["3D awareness numbers"]


def test_index_links_glossary_fidelity_and_deviations(built):
    rep, _ = built["random"]
    index = (rep / "index.html").read_text()
    for href in ("slides.html", "glossary.html", "fidelity.html", "artifacts.html"):
        assert f'href="{href}"' in index and (rep / href).is_file(), href
    assert 'id="deviations"' in index and "Where this course deviates from the paper" in index
    assert "200 iterations" in index  # the deviations table, from the profiles
    for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13):
        assert paper.cite(n) in index, n
    # our timing is not a result: the ablation tables do not show it
    assert "<th>cost</th>" not in index and "point_seconds" not in index
    glossary = (rep / "glossary.html").read_text()
    assert_offline(glossary, "glossary.html")
    assert 'id="3dgs-3d-gaussian-splatting"' in glossary and 'id="questions"' in glossary
    assert "<math" in glossary and "$" not in re.sub(r"<[^>]+>", "", glossary).replace("$5", "")
    assert BANNER_MARK in glossary  # a random run: every page says so
    fidelity = (rep / "fidelity.html").read_text()
    assert_offline(fidelity, "fidelity.html")
    assert "<table>" in fidelity and "Stage 1: feature Gaussians per scene" in fidelity


def test_notebook_pages_hide_code(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    c = nbformat.v4.new_code_cell("print('visible output')")
    c.outputs = [nbformat.v4.new_output("stream", name="stdout", text="visible output\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), c]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    ipynb = tmp_path / "01_x.ipynb"
    nbformat.write(nb, ipynb)
    text = report.export_html(ipynb, tmp_path / "01_x.html").read_text()
    assert "html:not(.fit3d-show-code) .jp-CodeCell .jp-Cell-inputWrapper { display: none; }" in text
    assert 'id="fit3d-code-toggle"' in text and "Show code" in text and "fit3d-show-code" in text
    assert text.index('id="fit3d-code-toggle"') < text.index("visible output")
    assert_offline(text, "notebook page")


# ---------------------------------------------------------------------------------------------- helpers


def tables_of(html: str) -> list[list[dict]]:
    """The tables of an HTML fragment (test_report's parser)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_report import _Tables

    tables = _Tables(html).tables
    assert tables
    return tables


# ---------------------------------------------------------------------------------------------- browser

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not (os.path.isfile(CHROMIUM) or os.environ.get("CHROMIUM")) or importlib.util.find_spec("playwright") is None,
    reason="headless Chromium or the playwright package not installed",
)


def _browser_check():
    spec = importlib.util.spec_from_file_location("check_report_browser", ROOT / "scripts" / "check_report_browser.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@needs_chromium
def test_browser_deck_navigates_and_fits(built, tmp_path):
    rep, _ = built["random"]
    check = _browser_check()
    shots = tmp_path / "shots"
    res = check.check_pages(
        [rep / "slides.html", rep / "glossary.html", rep / "fidelity.html", rep / "index.html"],
        budget_s=20,
        screenshot_dir=shots,
    )
    deck, glossary, fidelity, index = res
    for r in res[1:]:
        assert r.ok, (r.path, r.problems)
    # figure images shown below their native size are the figures' business (figures.py): reported, and a problem
    # unless strict_figures=False; everything else must pass
    assert all("figure image" in p for p in deck.problems), deck.problems
    assert len(deck.figure_sizes) == deck.images  # every figure on a slide: its scale and dpi
    for r in res:
        assert r.network == [] and r.exceptions == []
    assert deck.small_text == [] and deck.min_text_px is not None and deck.min_text_px >= 16
    assert len(deck.smallest_text) == deck.slides and all("dpi shown at" in f for f in deck.figure_sizes)
    assert deck.slides >= 16 and deck.navigation_ok and deck.overflowing_slides == []
    assert deck.images >= 5 and glossary.maths >= 5 and index.images == 4
    assert (shots / "slides-01.png").is_file() and (shots / "slides-02.png").is_file()
    assert len(list(shots.glob("slides-*.png"))) == deck.slides


@needs_chromium
def test_browser_notebook_code_toggle(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    c = nbformat.v4.new_code_cell("secret_code_line = 1\nprint('out')")
    c.outputs = [nbformat.v4.new_output("stream", name="stdout", text="out\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# T"), c]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "01_t.ipynb")
    page = report.export_html(tmp_path / "01_t.ipynb", tmp_path / "01_t.html")
    (r,) = _browser_check().check_pages([page], budget_s=20)
    assert r.ok, r.problems
    assert r.code_toggle == "ok"  # hidden at load, shown after a click, outputs visible throughout


def test_finish_report_builds_every_page_and_the_figures(tmp_path):
    """What the runner does after a batch: banner on the notebook pages, figures, index, slides, glossary, fidelity."""
    from fit3d_helpers.course import runner

    arts, rep = tmp_path / "artifacts", tmp_path / "report"
    make_artifacts(arts)
    rep.mkdir()
    (rep / "01_data.html").write_text("<html><body><main>nb</main></body></html>")
    lines: list[str] = []
    runner._finish_report(rep, arts, dict(RUN), lines.append)
    for page in ("index.html", "slides.html", "glossary.html", "fidelity.html", "artifacts.html"):
        assert BANNER_MARK in (rep / page).read_text(), page  # random weights: every page says so
    assert BANNER_MARK in (rep / "01_data.html").read_text()
    assert {p.stem for p in (rep / "figures").glob("*.png")} >= set(FIGS)
    assert any("slides: slides.html" in line and "figure1" in line for line in lines), lines


def test_one_broken_figure_leaves_the_others(tmp_path):
    arts, rep = tmp_path / "artifacts", tmp_path / "report"
    make_artifacts(arts, figures=False, ablations=False)
    data = figures_data()
    del data["rendered"]  # an artifact of another format: figure 1 cannot be drawn, k-means and matches can

    def make(out: Path, resume: Path) -> dict:
        torch.save(data, out / "figures.pt")
        return {"stage": "figures", "profile": "smoke", "weights": "random"}

    cache.build("figures", {"stage": "figures"}, arts, make)
    out = build_report(rep, arts, {"profile": "smoke"})
    assert {"kmeans", "matches", "probe_predictions"} <= set(out["figures"]) and "figure1" not in out["figures"]
    assert "KeyError" in out["figure_errors"]["figure1"]
    block = re.search(r'<figure class="fig" id="fig-figure1">(.*?)</figure>', (rep / "index.html").read_text(), re.S)
    assert "Not drawn: KeyError" in block.group(1)


# ---------------------------------------------------------------------------------------------- issue 18: presenting


def test_banner_remedy_works_without_a_public_address():
    from fit3d_helpers.utils import RANDOM_WEIGHTS_BANNER

    assert "Colab" not in RANDOM_WEIGHTS_BANNER and "`bash scripts/course.sh`" in RANDOM_WEIGHTS_BANNER
    assert (ROOT / "scripts" / "course.sh").is_file()
    assert "fit3d_helpers run" in (ROOT / "scripts" / "course.sh").read_text()  # it runs the notebooks' backbone
    assert "cached" in RANDOM_WEIGHTS_BANNER


def test_deck_slots_cost_smoothing_and_examiner_slides(tmp_path):
    """The cost slide reads the inference_cost artifact (no number typed in the template); the smoothing slot says
    "not run" until notebook 05's control is in the ablations artifact; examiner questions become backup slides."""
    arts, rep = tmp_path / "artifacts", tmp_path / "report"
    make_artifacts(arts, figures=False)
    rep.mkdir()
    secs = slide_sections(slides.build_slides(rep, arts, RUN).read_text())
    assert "Not measured yet" in secs["cost"] and "448 GPU-h" in secs["cost"] and paper.cite(5) in secs["cost"]
    assert "456.5 GPU-hours" in secs["cost"] and paper.cite(8) in secs["cost"]  # 1.6 h × 280 scenes + 8.5 h
    assert "Not run" in secs["smoothing"]
    stats = {
        "backbone": "dinov2_small",
        "params_one": 1234567,
        "params_two": 2469134,
        "runs": 7,
        "threads": 3,
        "weights": "n/a",
        "rows": [{"size": 224, "gflops_one": 9.87, "gflops_two": 19.74, "ms_one": 111.1, "ms_two": 222.2}],
    }
    cache.build("inference_cost", {"k": 1}, arts, lambda out, resume: stats)
    rows = [
        {"ablation": "smoothing", "value": v, "seg_miou_concat": m, "depth_rmse_concat": 0.8}
        for v, m in (("3D-aware", 0.3111), ("2D-smoothed", 0.2999))
    ]
    cache.build(
        "ablations",
        {"stage": "ablations", "targets": 1},
        arts,
        lambda out, resume: {
            "stage": "ablations",
            "profile": "smoke",
            "weights": "random",
            "rows": {"targets": rows},  # ablations.py's axis: rendered vs 2D-smoothed own features
        },
    )
    secs = slide_sections(slides.build_slides(rep, arts, RUN).read_text())
    cost = secs["cost"]
    assert "1.2 M" in cost and "2.5 M" in cost and "19.7" in cost and "222" in cost and "111" in cost
    assert "median of 7 runs" in cost and "3 threads" in cost
    assert "31.1" in secs["smoothing"] and "30.0" in secs["smoothing"] and "Not run" not in secs["smoothing"]
    assert "random weights: not a result" in secs["smoothing"]
    for key in ("why", "limitations", "related"):
        assert "<li>" in secs[key], key
    rel = secs["related"]
    assert "NeurIPS 2022" in rel and "Feature 3DGS" in rel and "CVPR 2024" in rel and "El Banani" in rel
    assert "ICLR 2025" in rel
    assert "Hypothesis" in secs["why"] and "indoor" in secs["limitations"] and "smoothed" in secs["limitations"]
    from fit3d_helpers.course.glossary import questions

    backups = [k for k in secs if k.startswith("question ")]
    assert len(backups) == -(-len(questions()) // 2)


def test_speaker_notes_and_title_fields(tmp_path):
    arts, rep = tmp_path / "artifacts", tmp_path / "report"
    make_artifacts(arts, figures=False)
    rep.mkdir()
    run = dict(RUN, title={"presenter": "Ada Student", "course": "Seminar 3D", "date": "2026-12-14"})
    text = slides.build_slides(rep, arts, run).read_text()
    secs = slide_sections(text)
    assert "Ada Student" in secs["title"] and "Seminar 3D" in secs["title"] and "2026-12-14" in secs["title"]
    assert all("Ada Student" in body for body in secs.values())  # the footer
    missing = [k for k, body in secs.items() if '<aside class="notes">' not in body and not k.startswith("question")]
    assert missing == []
    assert "toggleNotes" in text and "k === 'n'" in text and "notes-panel" in text
    handout = (rep / "handout.html").read_text()
    assert handout.count("<math") == 3 and "Limitations" in handout and "GPU-h" in handout and "Ada Student" in handout
    assert paper.cite(1) in handout and "30.19" in handout


def test_title_fields_from_the_command_line(tmp_path):
    from fit3d_helpers.__main__ import build_parser, title_of
    from fit3d_helpers.course import runner

    args = build_parser().parse_args(["report", "--presenter", "P", "--course", "C", "--date", "D", "--no-pdf"])
    assert title_of(args) == {"presenter": "P", "course": "C", "date": "D"} and args.no_pdf
    args = build_parser().parse_args(["run", "--presenter", "Q", "--only", "01"])
    assert title_of(args) == {"presenter": "Q"}
    rep = tmp_path / "report"
    rep.mkdir()
    (rep / "run.json").write_text('{"profile": "smoke", "title": {"course": "old course", "date": "old"}}')
    runner.rebuild_report(rep, tmp_path / "artifacts", title={"presenter": "P", "date": "2027-01-01"})
    import json

    kept = json.loads((rep / "run.json").read_text())["title"]
    assert kept == {"course": "old course", "date": "2027-01-01", "presenter": "P"}  # updated, not replaced
    assert "2027-01-01" in slide_sections((rep / "slides.html").read_text())["title"]


def test_inference_cost_is_measured(tmp_path):
    from fit3d_helpers.inference_cost import measure_inference_cost

    a = measure_inference_cost(tmp_path, sizes=(56,), runs=2)
    import json

    st = json.loads((a.path / "stats.json").read_text())
    (row,) = st["rows"]
    assert st["params_two"] == 2 * st["params_one"] > 20e6  # ViT-S/14: ≈ 22 M
    assert row["gflops_two"] == 2 * row["gflops_one"] > 0 and row["tokens"] == 16
    assert len(row["ms_one_runs"]) == 2 and row["ms_one"] > 0 and row["ms_two"] > 0
    assert measure_inference_cost(tmp_path, sizes=(56,), runs=2).path == a.path  # cached


@needs_chromium
def test_browser_text_size_fails_with_slide_and_element(tmp_path):
    """A deck with one 12 px caption on slide 2 fails, naming the slide and the element."""
    page = tmp_path / "slides.html"
    page.write_text(
        "<!DOCTYPE html><html><body style='margin:0'>"
        "<section class='slide' data-title='a' style='width:1280px;height:720px'><div class='body'>"
        "<p style='font-size:20px'>big</p></div><footer>f</footer></section>"
        "<section class='slide' data-title='b' style='width:1280px;height:720px;display:none'><div class='body'>"
        "<p class='tiny' style='font-size:12px'>tiny text</p><svg width='200' height='50' viewBox='0 0 400 100'>"
        "<text x='0' y='40' font-size='20'>svg half size</text></svg></div><footer>f</footer></section>"
        "<script>var s=document.querySelectorAll('section.slide'),c=0;document.body.setAttribute('data-slide','1');"
        "document.addEventListener('keydown',e=>{var k=e.key;c=k==='ArrowRight'?Math.min(c+1,1):k==='ArrowLeft'||"
        "k==='Home'?0:k==='End'?1:c;s.forEach((x,i)=>x.style.display=i===c?'block':'none');"
        "document.body.setAttribute('data-slide',String(c+1));});</script></body></html>"
    )
    (r,) = _browser_check().check_pages([page], budget_s=20)
    assert not r.ok
    assert any("slide 2 (b): 12.0 px < 16 px in p.tiny" in t or "slide 2 (b): 12 px < 16 px in p.tiny" in t
               for t in r.small_text), r.small_text  # fmt: skip
    assert any("slide 2 (b)" in t and "text" in t and "svg half size" in t for t in r.small_text), r.small_text
    assert not any("slide 1" in t for t in r.small_text)


@needs_chromium
def test_browser_notes_key_and_pdfs(built, tmp_path):
    from playwright.sync_api import sync_playwright

    from fit3d_helpers.course.handout import pdf_pages, print_pdfs

    rep, _ = built["random"]
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        pg = b.new_page(viewport={"width": 1280, "height": 720})
        pg.goto((rep / "slides.html").as_uri())
        assert not pg.is_visible("#notes-panel")
        pg.keyboard.press("n")
        assert pg.is_visible("#notes-panel") and "paper" in pg.inner_text("#notes-panel")
        pg.keyboard.press("ArrowRight")
        assert "question" in pg.inner_text("#notes-panel")  # the notes follow the slide
        pg.keyboard.press("n")
        assert not pg.is_visible("#notes-panel")
        b.close()
    lines: list[str] = []
    out = print_pdfs(rep, lines.append)
    n = len(slide_sections((rep / "slides.html").read_text()))
    assert pdf_pages(out["slides.pdf"]) == n and pdf_pages(out["handout.pdf"]) == 1, lines
    assert (out["slides.pdf"]).read_bytes()[:5] == b"%PDF-"


def test_pdfs_skipped_with_a_note_without_chromium(tmp_path, monkeypatch):
    from fit3d_helpers.course import browser, handout

    monkeypatch.setattr(browser, "find_chromium", lambda explicit=None: None)
    lines: list[str] = []
    assert handout.print_pdfs(tmp_path, lines.append) == {}
    assert lines and "skipped" in lines[0]
