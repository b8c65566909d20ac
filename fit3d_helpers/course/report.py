"""Self-contained HTML report: notebook pages (nbconvert, offline) and index pages built from the artifacts' stats.

Everything this module writes opens offline: no ``<script src="http…">`` and no ``<link href="http…">``.

* nbconvert's ``lab`` template loads require.js, MathJax and mermaid from CDNs. A small template on top of it
  (``templates/nbconvert_offline.html.j2``) drops those blocks; plotly's figure outputs also carry a MathJax
  CDN ``<script>`` which is stripped afterwards (:func:`strip_remote_resources`). Figures still render because
  plotly's ``"notebook"`` renderer embeds plotly.js (as a plain ``<script>``, no require.js needed with
  plotly ≥ 6) in the output of the cell that selects the renderer.
* LaTeX in markdown (``$…$``, ``$$…$$``, ``\\(…\\)``, ``\\[…\\]``, bare ``\\begin{env}…\\end{env}``) becomes MathML
  with ``latex2mathml`` before conversion; browsers draw MathML natively (no MathJax, no network). What
  latex2mathml cannot convert is shown as raw TeX in a code span.
* Markdown images with local paths are embedded (``embed_images``), relative to the source notebook's folder.
* A red random-weights banner goes at the top of a page when the notebook's outputs contain
  :data:`~fit3d_helpers.utils.RANDOM_WEIGHTS_BANNER`, or when the caller passes ``banner``.

:func:`build_report` (what the runner calls after a batch) draws the presenter's figures into ``report/figures/``
(:func:`export_figures`, i.e. :func:`fit3d_helpers.course.figures.export_pngs`) and then :func:`build_index` writes the
report's own pages from ``report/run.json`` (see :mod:`fit3d_helpers.course.runner`) and the artifacts
(:func:`fit3d_helpers.cache.iter_artifacts`), with the Jinja2 templates in ``fit3d_helpers/course/templates``:

* ``index.html``: the method diagram, the four figures with what to look at, the headline probe numbers, the paper's
  Tables 1–5, 7, 8, 13 (and 9–12) beside ours, the ablations, where the course deviates from the paper, the run;
* ``slides.html``: the deck (:mod:`fit3d_helpers.course.slides`), one offline file;
* ``glossary.html``: glossary and examiner questions (:mod:`fit3d_helpers.course.glossary`);
* ``fidelity.html``: ``docs/fidelity.md`` rendered, so the links to it work from the report folder;
* ``artifacts.html``: the appendix, every artifact, one table per stage.

The only typed numbers in them are the paper's, taken from :mod:`fit3d_helpers.course.paper` and labelled with their
table. Under random weights no difference of ours is coloured or worded as a gain.

Notebook pages hide their code cells by default (a "show code" button at the top shows them; outputs stay).

The pieces live beside it: :mod:`~fit3d_helpers.course.pages` (notebook → offline page, banner, templates),
:mod:`~fit3d_helpers.course.mathml` (LaTeX → MathML), :mod:`~fit3d_helpers.course.artifacts` (what the artifacts
say), :mod:`~fit3d_helpers.course.tables` (table and figure models, shared with the slides) and
:mod:`~fit3d_helpers.course.context` (what the pages show). The names below are re-exported for callers.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..utils import BANNER_CLASS, banner_html
from .artifacts import STAGE_ORDER, in_profile, random_weights_artifacts, scan_artifacts
from .context import load_run, rel_path, report_context, run_artifacts_dir, run_root
from .mathml import inline_md, markup, render_markdown_math, restore_math
from .pages import (
    REMOTE_PATTERNS,
    apply_banner,
    export_html,
    find_remote_resources,
    notebook_has_random_banner,
    render_template,
    strip_remote_resources,
    write_text_atomic,
)
from .tables import (
    FIGURE_INFO,
    FIGURES_DIR,
    SLIDE_FIGURES,
    Cell,
    Row,
    Table,
    choose_columns,
    flatten_scalars,
    probe_model,
    th,
    value_cell,
)

__all__ = [
    "BANNER_CLASS",
    "FIGURE_INFO",
    "FIGURES_DIR",
    "REMOTE_PATTERNS",
    "SLIDE_FIGURES",
    "STAGE_ORDER",
    "apply_banner",
    "banner_html",
    "build_fidelity",
    "build_glossary",
    "build_index",
    "build_report",
    "export_figures",
    "export_html",
    "fidelity_source",
    "find_remote_resources",
    "notebook_has_random_banner",
    "random_weights_artifacts",
    "render_markdown_math",
    "report_context",
    "scan_artifacts",
    "strip_remote_resources",
]


def _when(a: Mapping[str, Any]) -> str:
    return _dt.datetime.fromtimestamp(a["mtime"]).strftime("%Y-%m-%d %H:%M")


def _error_note(a: Mapping[str, Any]) -> str:
    return f"stats.json unreadable, its numbers are not shown: {a['error'][:200]}" if a.get("error") else ""


def _when_note(a: Mapping[str, Any]) -> str:
    return _when(a) + (f" — {_error_note(a)}" if a.get("error") else "")


def _stage_models(arts: list[dict[str, Any]], profile: str | None) -> list[dict[str, Any]]:
    out = []
    for st in dict.fromkeys(a["stage"] for a in arts):
        group = [a for a in arts if a["stage"] == st]
        rows = [flatten_scalars(a["stats"], depth=1 if st == "probe" else 2) for a in group]
        other = {id(a): "" if in_profile(a, profile) else "other-profile" for a in group}
        cols, hidden = choose_columns(rows, limit=10)
        if len(cols) > 8 and len(group) <= 4:
            # few artifacts, many stats: one row per stat reads better than a table wider than the page
            cols, hidden = choose_columns(rows, limit=24)
            head = [
                [th("stat")]
                + [th(a["hash"], code=True, title=a["rel"], note=_when_note(a), cls=other[id(a)]) for a in group]
            ]
            body = [Row([th(c)] + [value_cell(r.get(c), sig=True) for r in rows]) for c in cols]
        else:
            head = [[th("artifact"), th("written")] + [th(c) for c in cols]]
            body = [
                Row(
                    [Cell(a["hash"], code=True, title=a["rel"], note=_error_note(a)), Cell(_when(a))]
                    + [value_cell(r.get(c), sig=True) for c in cols],
                    cls=other[id(a)],
                )
                for a, r in zip(group, rows)
            ]
        probes = [
            {
                "hash": a["hash"],
                "backbone": a["stats"].get("backbone", "?"),
                "weights": a["stats"].get("weights", "?"),
                "probe": probe_model(
                    a["stats"]["results"], a["stats"].get("awareness"), random=a["stats"].get("weights") == "random"
                ),
                "random": a["stats"].get("weights") == "random",
            }
            for a in group
            if st == "probe" and isinstance(a["stats"].get("results"), Mapping) and a["stats"]["results"]
        ]
        out.append({"stage": st, "count": len(group), "table": Table(head, body), "hidden": hidden, "probes": probes})
    return out


def export_figures(
    report_dir: str | Path, artifacts_dir: str | Path, profile: str | None = None
) -> tuple[dict[str, Path], dict[str, str]]:
    """Draw the presenter's figures and the slides' variants into ``report_dir/figures/``
    (:func:`fit3d_helpers.course.figures.export_pngs`). Returns ``({name: png}, {name: why it could not be drawn})``.

    A figure whose artifact is missing is neither drawn nor an error (the pages say which notebook makes it). PNGs of
    an earlier run are removed first, so no picture outlives its artifact.
    """
    from . import figures as _figures

    artifacts_dir = Path(artifacts_dir)
    out = Path(report_dir) / FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    for name in (*FIGURE_INFO, *SLIDE_FIGURES):
        (out / f"{name}.png").unlink(missing_ok=True)
    if not artifacts_dir.is_dir():
        return {}, {}
    return _figures.export_pngs(artifacts_dir, out, profile=profile)


def _write_viewer(report_dir: Path, artifacts_dir: str | Path, profile: str | None) -> Path | None:
    """``report/viewer.html``, the click-a-pixel feature-similarity viewer (:mod:`fit3d_helpers.course.viewer`)."""
    try:
        from .viewer import write_viewer

        return write_viewer(artifacts_dir, report_dir, profile=profile)
    except Exception as e:  # the viewer is an extra: the report is still built
        import warnings

        warnings.warn(f"report/viewer.html not written: {type(e).__name__}: {e}", stacklevel=2)
        return None


def _index_context(ctx: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("arxiv", "meta", "notebooks", "pages", "pipeline", "headline", "paper", "ablations", "deviations")
    return {
        **{k: ctx[k] for k in keys},
        "figures": [f for f in ctx["figures"] if f["name"] in FIGURE_INFO],
        "random": ctx["random"],
        "no_counterpart": ctx["no_counterpart"],
        "has_viewer": (Path(ctx["report_dir"]) / "viewer.html").is_file(),
        **ctx["common"],
    }


def build_index(
    report_dir: str | Path = "report",
    artifacts_dir: str | Path | None = None,
    run_json: Mapping[str, Any] | str | Path | None = None,
    *,
    figure_errors: Mapping[str, str] | None = None,
) -> Path:
    """Write the report's own pages from the run metadata and the artifacts; returns the index's path.

    ``index.html`` (figures, method, headline, the paper beside ours, ablations, deviations, the run),
    ``artifacts.html`` (every artifact), ``slides.html`` (:mod:`fit3d_helpers.course.slides`), ``glossary.html`` and
    ``fidelity.html`` (``docs/fidelity.md``). Figures are the PNGs already in ``report_dir/figures/``
    (:func:`export_figures` draws them; :func:`build_report` does both).

    run_json: the run metadata (dict), a path to it, or None for ``report_dir/run.json`` (may be missing).
    artifacts_dir: defaults to the run's ``artifacts_dir``, else ``artifacts`` beside ``report_dir``.
    figure_errors: ``{figure: why it could not be drawn}``, shown in its place.
    """
    from . import slides

    ctx = report_context(report_dir, artifacts_dir, run_json, figure_errors=figure_errors)
    report_dir = ctx["report_dir"]
    index = render_template("index.html.j2", page="index.html", **_index_context(ctx))
    artifacts_page = render_template(
        "artifacts.html.j2",
        page="artifacts.html",
        artifacts_dir=rel_path(ctx["artifacts_dir"], run_root(report_dir, ctx["run"])),
        stages=_stage_models(ctx["arts"], ctx["profile"]),
        other_profile=any(not in_profile(a, ctx["profile"]) for a in ctx["arts"]),
        random_arts=[f"{a['stage']}/{a['hash']}" for a in ctx["random_arts"]],
        **ctx["common"],
    )
    write_text_atomic(report_dir / "artifacts.html", artifacts_page)
    build_glossary(report_dir, ctx)
    build_fidelity(report_dir, ctx)
    slides.build_slides(report_dir, context=ctx)
    out = report_dir / "index.html"
    write_text_atomic(out, index)
    return out


def build_glossary(report_dir: str | Path, ctx: Mapping[str, Any] | None = None) -> Path:
    """``report_dir/glossary.html``: the glossary and the examiner questions (:mod:`fit3d_helpers.course.glossary`)."""
    from .glossary import GLOSSARY, questions

    report_dir = Path(report_dir)
    ctx = ctx if ctx is not None else report_context(report_dir)
    page = render_template(
        "glossary.html.j2",
        page="glossary.html",
        terms=[{"term": t.term, "anchor": t.anchor, "text": inline_md(t.text)} for t in GLOSSARY],
        questions=[{"q": inline_md(q), "a": inline_md(a)} for q, a in questions()],
        **ctx["common"],
    )
    out = report_dir / "glossary.html"
    write_text_atomic(out, page)
    return out


def fidelity_source(run: Mapping[str, Any] | None = None, report_dir: str | Path | None = None) -> Path | None:
    """``docs/fidelity.md`` of the run's checkout, else of the checkout this package is part of; None if neither."""
    roots = [run_root(report_dir or ".", run)] if run and (run.get("root") or run.get("cwd")) else []
    roots.append(Path(__file__).resolve().parents[2])
    return next((r / "docs" / "fidelity.md" for r in roots if (r / "docs" / "fidelity.md").is_file()), None)


def build_fidelity(report_dir: str | Path, ctx: Mapping[str, Any] | None = None) -> Path:
    """``report_dir/fidelity.html``: ``docs/fidelity.md`` rendered (mistune, nbconvert's markdown renderer), so the
    report's links to it work offline from the report folder."""
    import mistune

    report_dir = Path(report_dir)
    ctx = ctx if ctx is not None else report_context(report_dir)
    src = fidelity_source(ctx["run"], report_dir)
    if src is None:
        body = "<p class='muted'>docs/fidelity.md was not found beside this package or the run's checkout.</p>"
    else:
        tokens: dict[str, str] = {}
        md = mistune.create_markdown(escape=False, plugins=["table", "strikethrough"])
        body = restore_math(md(render_markdown_math(src.read_text(encoding="utf-8"), tokens=tokens)), tokens)
    page = render_template(
        "fidelity.html.j2",
        page="fidelity.html",
        body=markup(body),
        source="docs/fidelity.md",
        **ctx["common"],
    )
    out = report_dir / "fidelity.html"
    write_text_atomic(out, page)
    return out


def build_report(
    report_dir: str | Path = "report",
    artifacts_dir: str | Path | None = None,
    run_json: Mapping[str, Any] | str | Path | None = None,
    *,
    figures: bool = True,
) -> dict[str, Any]:
    """Draw the figures (:func:`export_figures`) and write every page of the report (:func:`build_index`).

    Returns ``{"index", "slides", "glossary", "fidelity", "artifacts": path, "figures": {name: png},
    "figure_errors": {name: why}}``.
    """
    report_dir = Path(report_dir)
    run = load_run(report_dir, run_json)
    if artifacts_dir is None:
        artifacts_dir = run_artifacts_dir(report_dir, run)
    written: dict[str, Path] = {}
    errors: dict[str, str] = {}
    if figures:
        try:
            written, errors = export_figures(report_dir, artifacts_dir, run.get("profile"))
        except Exception as e:  # matplotlib or torch missing: the pages say so in each figure's place
            errors = {name: f"{type(e).__name__}: {e}"[:300] for name in (*FIGURE_INFO, *SLIDE_FIGURES)}
    viewer = _write_viewer(report_dir, artifacts_dir, run.get("profile")) if figures else None
    index = build_index(report_dir, artifacts_dir, run, figure_errors=errors)
    return {
        "index": index,
        "slides": report_dir / "slides.html",
        "glossary": report_dir / "glossary.html",
        "fidelity": report_dir / "fidelity.html",
        "artifacts": report_dir / "artifacts.html",
        "figures": written,
        "figure_errors": errors,
        "viewer": viewer,
    }
