"""The slide deck of a run: ``report/slides.html``, one idea per slide, 16:9, one file that works offline.

Built with the report (:func:`fit3d_helpers.course.report.build_index`, called by the runner after a batch run) from
the same context as the index: this run's figures (embedded as data URIs, so the deck is one file that can be mailed),
its tables beside the paper's, the deviations, the glossary pointer. No CDN and no framework: the CSS and a few lines
of JavaScript are inlined (``templates/slides.html.j2``): → / space / PageDown next, ← / PageUp previous, Home / End,
``#N`` in the address opens slide N, and the 1280×720 slide is scaled to the window. Printing gives one slide per page;
without JavaScript the slides are shown one below the other.

Under random weights the title slide says so in red, every slide with our numbers carries a "random weights: not a
result" tag, and no difference of ours is coloured or worded as a gain.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import paper
from .report import (
    FIGURE_INFO,
    Cell,
    Row,
    Table,
    _cell,
    _delta_cell,
    _inline_md,
    _is_num,
    _is_random,
    _newest_ablations,
    _ours,
    _pct,
    _render,
    _th,
    _write_text_atomic,
    report_context,
)

__all__ = ["SLIDE_HEIGHT", "SLIDE_WIDTH", "EQUATIONS", "build_slides", "deck_context"]

SLIDE_WIDTH, SLIDE_HEIGHT = 1280, 720

# The method's equations as TeX (rendered to MathML with the report's latex2mathml path).
EQUATIONS = {
    "composite": r"\hat F(p) = \sum_i f_i\, \alpha_i(p) \prod_{j<i} \bigl(1 - \alpha_j(p)\bigr)",
    "rgb": r"\mathcal{L}_{\mathrm{rgb}} = 0.8\, \lVert \hat I - I \rVert_1"
    r" + 0.2\, \bigl(1 - \mathrm{SSIM}(\hat I, I)\bigr)",
    "feat": r"\mathcal{L}_{\mathrm{feat}} = \lVert \mathrm{dec}(\hat F) - \mathrm{up}(F_{\mathrm{2D}}) \rVert_1",
    "masked_l1": r"\mathcal{L} = \frac{\sum_p w_p\, \lVert f_\theta(I)_p - T_p \rVert_1}{D \sum_p w_p}",
    "concat": r"F_{\mathrm{FiT3D}} = F_{\mathrm{original}} \oplus F_{\mathrm{fine\text{-}tuned}}",
}


def _math(tex: str) -> Any:
    return _inline_md(f"$${tex}$$")


def _ours_label(ctx: Mapping[str, Any]) -> str:
    st = ctx["probe"]["stats"] if ctx.get("probe") else {}
    where = st.get("dataset") or {"smoke": "synthetic rooms"}.get(ctx.get("profile") or "", "our scenes")
    return f"ours: {where}"


def _slide_delta(a: float | None, b: float | None, higher: bool, digits: int, *, random: bool) -> Cell:
    c = _delta_cell(a, b, higher, digits, random=random)
    if random and c.note:
        c.note = "not a result"
    return c


def _compact_main(ctx: Mapping[str, Any], task: str) -> Table:
    """The paper's Table 1 (segmentation) or Table 2 (depth) in its headline metric, then ours."""
    probe = ctx.get("probe")
    metric, digits = ("miou", 2) if task == "seg" else ("rmse", 4)
    table = 1 if task == "seg" else 2
    head = [[_th("dataset"), _th("original"), _th("FiT3D"), _th("Δ")]]
    rows = []
    for c in paper.main_rows(task):  # type: ignore[arg-type]
        if c.table != table:
            continue
        rows.append(
            Row(
                [
                    Cell(c.dataset),
                    _cell(c.before, fixed=digits),
                    _cell(c.after, fixed=digits),
                    _delta_cell(c.before, c.after, c.higher_is_better, digits),
                ],
                cls="paper",
            )
        )
    if probe is not None:
        o = _ours(probe, task, "original", metric)
        f = _ours(probe, task, "concat", metric)
        rows.append(
            Row(
                [
                    Cell(_ours_label(ctx), bold=True),
                    _cell(o, fixed=digits),
                    _cell(f, fixed=digits),
                    _slide_delta(o, f, task == "seg", digits, random=_is_random(probe)),
                ],
                cls="ours",
            )
        )
    return Table(head, rows, caption=f"{paper.cite(table)} · ours: original vs concat")


def _variants_table(headline: Mapping[str, Any] | None) -> Table | None:
    """The headline probe's variants × the metrics (no counts such as ``n_valid``)."""
    from .report import _METRIC_ORDER, _probe_model

    if headline is None:
        return None
    results = {
        task: {
            v: {m: x for m, x in r.items() if m in _METRIC_ORDER[task]} for v, r in vs.items() if isinstance(r, Mapping)
        }
        for task, vs in (headline["stats"].get("results") or {}).items()
        if task in _METRIC_ORDER and isinstance(vs, Mapping)
    }
    return _probe_model(results, None)["metrics"]


def _awareness_table(ctx: Mapping[str, Any]) -> Table | None:
    """Recall of the nearest-neighbour match within 14 px, its chance level, the median error, per variant."""
    st = ctx["probe"]["stats"] if ctx.get("probe") else {}
    aw = st.get("awareness")
    if not isinstance(aw, Mapping) or not aw:
        return None
    cols = [("recall@14px", "recall within 14 px (%)", True), ("chance@14px", "chance (%)", True)]
    cols.append(("median_px_error", "median error (px)", False))
    order = [v for v in ("original", "finetuned", "concat", "dup", "add", "linear") if v in aw]
    order += [v for v in aw if v not in order]
    rows = []
    for v in order:
        r = aw[v] if isinstance(aw[v], Mapping) else {}
        cells = [_th(v)]
        for key, _, pct in cols:
            x = r.get(key)
            cells.append(_cell(100 * x if pct and _is_num(x) else x, fixed=1))
        rows.append(Row(cells))
    return Table([[_th("features")] + [_th(c[1]) for c in cols]], rows)


def _control_table(ctx: Mapping[str, Any]) -> Table:
    """Table 13 (ScanNet++): original, original twice, original ⊕ fine-tuned; ours beside."""
    probe = ctx.get("probe")
    rows = []
    for r in paper.ablation_rows("control"):
        rows.append(
            Row(
                [
                    Cell(r.label),
                    _cell(r.seg.miou if r.seg else None, fixed=2),
                    _cell(r.depth.rmse if r.depth else None, fixed=4),
                    _cell(_ours(probe, "seg", str(r.value), "miou"), fixed=2),
                    _cell(_ours(probe, "depth", str(r.value), "rmse"), fixed=4),
                ]
            )
        )
    head = [
        [_th("features", rowspan=2), _th("paper (ScanNet++)", colspan=2), _th("ours", colspan=2)],
        [_th("mIoU (%)"), _th("RMSE")] * 2,
    ]
    return Table(head, rows, caption=f"{paper.cite(13)}: is the gain only the extra dimensions?")


def _assembly_table(ctx: Mapping[str, Any]) -> Table:
    probe = ctx.get("probe")
    rows = [
        Row(
            [
                Cell(r.label),
                _cell(r.seg.miou if r.seg else None, fixed=2),
                _cell(_ours(probe, "seg", str(r.value), "miou"), fixed=2),
            ]
        )
        for r in paper.ablation_rows("assembly")
    ]
    return Table(
        [[_th("assembly"), _th("paper: NYUv2 mIoU (%)"), _th("ours: mIoU (%)")]],
        rows,
        caption=f"{paper.cite(7)}: how to combine the two feature sets",
    )


def _sweep_table(ctx: Mapping[str, Any], name: str) -> Table | None:
    """Table 5 or 8 in mIoU beside our points of the same value (concat); our timing is not shown."""
    rows_p = paper.ablation_rows(name)
    if not rows_p:
        return None
    newest = _newest_ablations(ctx["mine"])
    mine = ((newest or {"stats": {}})["stats"].get("rows") or {}).get(name) or []
    ours = {str(r.get("value")): r for r in mine if isinstance(r, Mapping)}
    rows = [
        Row(
            [
                Cell(r.label),
                _cell(r.seg.miou if r.seg else None, fixed=2),
                _cell(_pct(ours[str(r.value)].get("seg_miou_concat")) if str(r.value) in ours else None, fixed=2),
                Cell(r.note),
            ]
        )
        for r in rows_p
    ]
    return Table(
        [[_th(name), _th(f"paper: {rows_p[0].dataset} mIoU (%)"), _th("ours: mIoU concat (%)"), _th("note")]],
        rows,
        caption=rows_p[0].source,
    )


def _takeaways(ctx: Mapping[str, Any]) -> list[Any]:
    spp = paper.comparison("ScanNet++", "seg")
    nyu_d = paper.comparison("NYUv2", "depth")
    ade = paper.comparison("ADE20k", "seg")
    ctl = {r.value: r for r in paper.ablation_rows("control")}
    ep = paper.epochs_miou()
    assert spp and nyu_d and ade and ctl["dup"].seg and ctl["concat"].seg and ctl["original"].seg
    out = [
        f"The paper: 3D-aware fine-tuning improves every dense task it tried with a linear probe, e.g. ScanNet++ "
        f"mIoU {spp.before:.2f} → {spp.after:.2f} ({spp.source}), NYUv2 RMSE {nyu_d.before:.4f} → {nyu_d.after:.4f} "
        f"({nyu_d.source}), and off-domain ADE20k {ade.before:.2f} → {ade.after:.2f} ({ade.source}).",
        f"It needs both feature sets: the original features twice give {ctl['dup'].seg.miou:.2f} mIoU, original ⊕ "
        f"fine-tuned {ctl['concat'].seg.miou:.2f} ({ctl['concat'].source}).",
        f"One epoch is enough: {ep[1]:.2f} mIoU after 1 epoch, {ep[max(ep)]:.2f} after {max(ep)} ({paper.cite(8)}).",
    ]
    n_ok = sum(1 for n in ctx["notebooks"] if n["status"] == "ok")
    n_all = len(ctx["notebooks"])
    ran = f"{n_ok} of {n_all} notebooks ran" if n_all else "the pipeline ran"
    if ctx["random"]:
        out.append(
            f"This run has **random weights**: {ran} end to end, which checks the pipeline; its numbers say nothing "
            "about FiT3D, for or against."
        )
    elif ctx.get("probe") is not None:
        d = ctx["differences"]
        diff = (
            ", ".join(f"{'seg mIoU' if k == 'seg' else 'depth RMSE'} {v}" for k, v in d.items())
            or "no comparable numbers"
        )
        out.append(
            f"This run ({ctx.get('profile') or '?'} profile; {ran}): concat − original = {diff} on "
            f"{_ours_label(ctx)[len('ours: ') :]}, a check of direction at a miniature scale, not a reproduction."
        )
    out.append("The course's own 3D-awareness check (nearest-neighbour matches across views) has no paper counterpart.")
    return [_inline_md(t) for t in out]


def deck_context(ctx: Mapping[str, Any], *, inline_figures: bool = True) -> dict[str, Any]:
    """What ``templates/slides.html.j2`` shows, from :func:`fit3d_helpers.course.report.report_context`."""
    from .report import _figure_models

    figs = {
        f["name"]: f
        for f in _figure_models(ctx["report_dir"], ctx["random"], ctx["figure_errors"], inline=inline_figures)
    }
    if figs["probe_predictions_slide"]["src"]:  # two examples read on a projector; three do not
        figs["probe_predictions"] = dict(figs["probe_predictions"], src=figs["probe_predictions_slide"]["src"])
    figs["stage1"] = figs["stage1_slide"] if figs["stage1_slide"]["src"] else figs["figure1"]
    run = ctx["run"]
    headline = ctx["headline"]
    if headline is not None:
        weights = f"{headline['backbone']} ({headline['weights']} weights)"
    else:
        weights = ", ".join(f"{b} ({w} weights)" for b, w in ctx["weights"]) or "no backbone recorded yet"
    dev = ctx["deviations"]
    assert set(FIGURE_INFO) <= set(figs)
    return {
        "title": paper.TITLE,
        "arxiv": paper.ARXIV,
        "authors": "Yuanwen Yue, Anurag Das, Francis Engelmann, Siyu Tang, Jan Eric Lenssen",
        "random": ctx["random"],
        "run_line": f"profile {ctx.get('profile') or '—'} · {weights} · {run.get('date', '')[:10] or 'no date'}"
        + (f" · commit {str(run['commit'])[:8]}" if run.get("commit") else ""),
        "pipeline": ctx["pipeline"],
        "eq": {k: _math(v) for k, v in EQUATIONS.items()},
        "fig": figs,
        "seg": _compact_main(ctx, "seg"),
        "depth": _compact_main(ctx, "depth"),
        "headline": headline,
        "variants": _variants_table(headline),
        "awareness": _awareness_table(ctx),
        "control": _control_table(ctx),
        "assembly": _assembly_table(ctx),
        "sweeps": [t for t in (_sweep_table(ctx, "feature_dim"), _sweep_table(ctx, "epochs")) if t is not None],
        "ablations_artifact": ctx["ablations"]["artifact"],
        "deviations": [(d.what, d.official, d.for_profile(dev["profile"])) for d in dev["rows"]],
        "dev_profile": dev["profile"],
        "takeaways": _takeaways(ctx),
        "no_counterpart": ctx["no_counterpart"],
        "width": SLIDE_WIDTH,
        "height": SLIDE_HEIGHT,
        **ctx["common"],
    }


def build_slides(
    report_dir: str | Path = "report",
    artifacts_dir: str | Path | None = None,
    run_json: Mapping[str, Any] | str | Path | None = None,
    *,
    context: Mapping[str, Any] | None = None,
    inline_figures: bool = True,
) -> Path:
    """Write ``report_dir/slides.html``; returns its path.

    context: :func:`fit3d_helpers.course.report.report_context` of this report (built from the arguments when None).
    inline_figures: embed the PNGs of ``report_dir/figures/`` as data URIs (one file that can be mailed); False
        references them as ``figures/*.png`` (offline too, but the deck then needs its folder).
    """
    ctx = context if context is not None else report_context(report_dir, artifacts_dir, run_json)
    page = _render("slides.html.j2", **deck_context(ctx, inline_figures=inline_figures))
    out = Path(ctx["report_dir"]) / "slides.html"
    _write_text_atomic(out, page)
    return out
