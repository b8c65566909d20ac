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

from markupsafe import Markup

from . import paper
from .artifacts import is_random, newest_ablations
from .charts import COLORS, Bar, Panel, bar_chart
from .context import report_context
from .mathml import inline_md
from .pages import render_template, write_text_atomic
from .tables import (
    FIGURE_INFO,
    VARIANT_ORDER,
    Cell,
    Row,
    Table,
    delta_cell,
    figure_models,
    is_num,
    ours_value,
    pct,
    th,
    value_cell,
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
    return inline_md(f"$${tex}$$")


def _ours_label(ctx: Mapping[str, Any]) -> str:
    st = ctx["probe"]["stats"] if ctx.get("probe") else {}
    where = st.get("dataset") or {"smoke": "synthetic rooms"}.get(ctx.get("profile") or "", "our scenes")
    return f"ours: {where}"


def _slide_delta(a: float | None, b: float | None, higher: bool, digits: int, *, random: bool) -> Cell:
    """Our Δ; with random weights none is printed (a dash and why), so no difference reads as an effect."""
    if random:
        return Cell("—", note="random weights")
    return delta_cell(a, b, higher, digits)


def _compact_main(ctx: Mapping[str, Any], task: str) -> Table:
    """The paper's Table 1 (segmentation) or Table 2 (depth) in its headline metric, then ours."""
    probe = ctx.get("probe")
    metric, digits = ("miou", 2) if task == "seg" else ("rmse", 4)
    table = 1 if task == "seg" else 2
    unit = " (%)" if task == "seg" else ""
    head = [[th("dataset"), th("original" + unit), th("FiT3D" + unit), th("Δ")]]
    rows = []
    for c in paper.main_rows(task):  # type: ignore[arg-type]
        if c.table != table:
            continue
        rows.append(
            Row(
                [
                    Cell(c.dataset),
                    value_cell(c.before, fixed=digits),
                    value_cell(c.after, fixed=digits),
                    delta_cell(c.before, c.after, c.higher_is_better, digits),
                ],
                cls="paper",
            )
        )
    if probe is not None:
        o = ours_value(probe, task, "original", metric)
        f = ours_value(probe, task, "concat", metric)
        rows.append(
            Row(
                [
                    Cell(_ours_label(ctx), bold=True),
                    value_cell(o, fixed=digits),
                    value_cell(f, fixed=digits),
                    _slide_delta(o, f, task == "seg", digits, random=is_random(probe)),
                ],
                cls="ours",
            )
        )
    return Table(head, rows, caption=f"{paper.cite(table)} · FiT3D = original ⊕ fine-tuned (ours too)")


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
        cells = [th(v)]
        for key, _, in_pct in cols:
            x = r.get(key)
            cells.append(value_cell(100 * x if in_pct and is_num(x) else x, fixed=1))
        rows.append(Row(cells))
    return Table([[th("features")] + [th(c[1]) for c in cols]], rows)


def _control_table(ctx: Mapping[str, Any]) -> Table:
    """Table 13 (ScanNet++): original, original twice, original ⊕ fine-tuned; ours beside."""
    probe = ctx.get("probe")
    rows = []
    for r in paper.ablation_rows("control"):
        rows.append(
            Row(
                [
                    Cell(r.label),
                    value_cell(r.seg.miou if r.seg else None, fixed=2),
                    value_cell(r.depth.rmse if r.depth else None, fixed=4),
                    value_cell(ours_value(probe, "seg", str(r.value), "miou"), fixed=2),
                    value_cell(ours_value(probe, "depth", str(r.value), "rmse"), fixed=4),
                ]
            )
        )
    head = [
        [th("features", rowspan=2), th("paper (ScanNet++)", colspan=2), th("ours", colspan=2)],
        [th("mIoU (%)"), th("RMSE")] * 2,
    ]
    return Table(head, rows, caption=f"{paper.cite(13)}: is the gain only the extra dimensions?")


def _assembly_table(ctx: Mapping[str, Any]) -> Table:
    probe = ctx.get("probe")
    rows = [
        Row(
            [
                Cell(r.label),
                value_cell(r.seg.miou if r.seg else None, fixed=2),
                value_cell(ours_value(probe, "seg", str(r.value), "miou"), fixed=2),
            ]
        )
        for r in paper.ablation_rows("assembly")
    ]
    return Table(
        [[th("assembly"), th("paper: NYUv2 mIoU (%)"), th("ours: mIoU (%)")]],
        rows,
        caption=f"{paper.cite(7)}: how to combine the two feature sets",
    )


def _our_sweeps(ctx: Mapping[str, Any]) -> Table | None:
    """Every sweep of the newest ablations artifact, ours only (the paper's are charted in the main part):
    FiT3D (= original ⊕ fine-tuned) seg mIoU in % and depth RMSE per point; timing is not a result."""
    newest = newest_ablations(ctx["mine"])
    if newest is None:
        return None
    rows = []
    for name, points in (newest["stats"].get("rows") or {}).items():
        pts = [r for r in points or [] if isinstance(r, Mapping)]
        for i, r in enumerate(pts):
            cells = [th(name.replace("_", " "), rowspan=len(pts))] if i == 0 else []
            cells += [
                Cell(str(r.get("value"))),
                value_cell(pct(r.get("seg_miou_concat")), fixed=1),
                value_cell(r.get("depth_rmse_concat"), fixed=3),
            ]
            rows.append(Row(cells))
    if not rows:
        return None
    head = [[th("sweep"), th("value"), th("mIoU (%) ↑"), th("RMSE ↓")]]
    return Table(head, rows)


def _pct_cell(x: Any) -> Cell:
    return value_cell(100 * x if is_num(x) else None, fixed=1)


def _ours_numbers(ctx: Mapping[str, Any]) -> Table | None:
    """The headline probe (notebook 04's protocol): one row per variant, the same columns as the paper's tables
    (mIoU, mAcc, aAcc in %; RMSE, AbsRel; then δ<1.25 in %, ours only). No bold: nothing is ranked."""
    probe = ctx.get("probe")
    if probe is None:
        return None
    res = probe["stats"].get("results") or {}
    variants = [v for v in VARIANT_ORDER if any(isinstance((res.get(t) or {}).get(v), Mapping) for t in res)]
    rows = []
    for v in variants:
        seg = (res.get("seg") or {}).get(v) or {}
        dep = (res.get("depth") or {}).get(v) or {}
        rows.append(
            Row(
                [th(_VARIANT_LABEL.get(v, v))]
                + [_pct_cell(seg.get(m)) for m in ("miou", "macc", "aacc")]
                + [value_cell(dep.get(m) if is_num(dep.get(m)) else None, fixed=3) for m in ("rmse", "absrel")]
                + [_pct_cell(dep.get("delta1"))]
            )
        )
    head = [
        [th("features", rowspan=2), th("segmentation (%) ↑", colspan=3), th("depth ↓", colspan=2), th("δ<1.25 (%) ↑")],
        [th("mIoU"), th("mAcc"), th("aAcc"), th("RMSE"), th("AbsRel"), th("ours only")],
    ]
    return Table(head, rows)


_VARIANT_LABEL = {
    "original": "original",
    "finetuned": "fine-tuned alone",
    "concat": "FiT3D = original ⊕ fine-tuned",
    "dup": "original ⊕ original",
    "add": "original + fine-tuned",
    "linear": "linear fusion",
}


def _paper_charts() -> dict[str, str]:
    """The paper's Tables 1–3 (per dataset) and its ablations (Tables 5, 7, 8, 13) as inline SVG bar charts."""
    o, f = COLORS["original"], COLORS["FiT3D"]

    def main(task: str, tables: tuple[int, ...], digits: int) -> str:
        panels = []
        for c in paper.main_rows(task):  # type: ignore[arg-type]
            if c.table in tables:
                d = c.after - c.before
                panels.append(
                    Panel(
                        c.dataset,
                        [Bar("original", c.before, o), Bar("FiT3D", c.after, f)],
                        footer=f"Δ {'+' if d >= 0 else '−'}{abs(d):.{digits}f} (T{c.table})",
                    )
                )
        return bar_chart(panels, width=1160, height=400, digits=digits, label=f"paper {task}")

    ctl = paper.ablation_rows("control")

    def bar(r: Any, value: float | None) -> Bar:
        return Bar("FiT3D" if r.value == "concat" else str(r.value), value, f if r.value == "concat" else o)

    control_seg = Panel("T13: ScanNet++ mIoU (%)", [bar(r, r.seg.miou if r.seg else None) for r in ctl])
    control_depth = Panel("T13: ScanNet++ RMSE ↓", [bar(r, r.depth.rmse if r.depth else None) for r in ctl], digits=4)
    asm = Panel(
        "T7: NYUv2 mIoU (%)",
        [
            Bar(r.label.split()[0], r.seg.miou if r.seg else None, f if r.value == "concat" else o)
            for r in paper.ablation_rows("assembly")
        ],
    )
    dims = Panel(
        "T5: feature size, NYUv2 mIoU (%)",
        [
            Bar(r.label, r.seg.miou if r.seg else None, f if r.value == 64 else o, note=r.note)
            for r in paper.ablation_rows("feature_dim")
        ],
    )
    eps = Panel(
        "T8: epochs, NYUv2 mIoU (%)",
        [Bar(r.label, r.seg.miou if r.seg else None, f if r.value == 1 else o) for r in paper.ablation_rows("epochs")],
    )
    return {
        "seg": main("seg", (1, 3), 2),
        "depth": main("depth", (2, 3), 4),
        "ablations": bar_chart(
            [control_seg, control_depth, asm], width=1160, height=380, digits=2, label="Tables 13 and 7"
        ),
        "sweeps": bar_chart([dims, eps], width=1160, height=400, digits=2, label="Tables 5 and 8"),
    }


def _figure_notes(figs: Mapping[str, Any]) -> dict[str, str]:
    """A figure slide shows its figure at native size (text >= 16 px on a 1280x720 slide), so what to look at goes to
    the speaker notes, with what real weights would show."""
    out = {}
    for name in ("figure1", "kmeans", "probe_predictions", "matches"):
        f = figs.get(name) or {}
        text = Markup(" ").join(t for t in (f.get("look"), f.get("real")) if t)
        if text:
            out[name if name != "matches" else "3D awareness"] = text
    return out


def _smoothing(ctx: Mapping[str, Any]) -> dict[str, Any]:
    """The "is it just smoothing?" control (notebook 05): its rows from the ablations artifact, else not run."""
    newest = newest_ablations(ctx["mine"])
    rows = ((newest or {"stats": {}})["stats"].get("rows") or {}).get("targets") or []  # ablations.py's axis
    rows = [r for r in rows if isinstance(r, Mapping)]
    if not rows:
        return {"ran": False, "table": None}
    table = Table(
        [[th("fine-tuning targets"), th("seg mIoU (%) ↑"), th("depth RMSE ↓")]],
        [
            Row(
                [
                    th(str(r.get("value"))),
                    value_cell(pct(r.get("seg_miou_concat")), fixed=1),
                    value_cell(r.get("depth_rmse_concat"), fixed=3),
                ]
            )
            for r in rows
        ],
    )
    return {"ran": True, "table": table, "random": is_random(newest)}


def _cost(ctx: Mapping[str, Any]) -> dict[str, Any]:
    """Inference: the ``inference_cost`` artifact (measured here); training: the paper's own figures."""
    arts = [a for a in ctx["arts"] if a["stage"] == "inference_cost" and isinstance(a["stats"].get("rows"), list)]
    table = None
    meas = None
    if arts:
        st = max(arts, key=lambda a: a["mtime"])["stats"]
        meas = st
        rows = []
        for r in st["rows"]:
            if not isinstance(r, Mapping):
                continue
            rows.append(
                Row(
                    [
                        th(f"{r.get('size')}×{r.get('size')}"),
                        value_cell(r.get("gflops_one"), fixed=1),
                        value_cell(r.get("ms_one"), fixed=0),
                        value_cell(r.get("gflops_two"), fixed=1),
                        value_cell(r.get("ms_two"), fixed=0),
                    ]
                )
            )
        table = Table(
            [
                [th("input", rowspan=2), th("one ViT (original)", colspan=2), th("two ViTs (FiT3D)", colspan=2)],
                [th("GFLOPs"), th("CPU ms"), th("GFLOPs"), th("CPU ms")],
            ],
            rows,
        )
    return {"table": table, "m": meas, "train": paper.training_compute()}


# Examiner-facing text slides (the paper's claims, hypotheses marked as such; one line per related work).
MECHANISM = [
    "A 3D point seen in many views gets <b>one</b> rendered feature: the targets agree across views and are "
    "averaged over many observations (less view-dependent noise).",
    "Fine-tuning towards them asks one image's features to predict what <b>other views</b> saw: a multi-view "
    "prior distilled into a single-image model.",
    "<b>Hypothesis</b> (the paper shows the gains, not the cause): features that are constant on surfaces and change "
    "at object borders are easier for a <b>linear</b> probe to turn into labels and depth.",
    "The original features stay in the assembly: the paper's Table 13 says the concatenation, not the width, helps.",
]
LIMITATIONS = [
    "Needs <b>posed multi-view</b> images (ScanNet++ DSLR, COLMAP poses) to build the targets.",
    "Trained on <b>indoor</b> scenes only (230 ScanNet++ scenes); the off-domain gains (ADE20k, VOC, KITTI) are "
    "smaller, and ImageNet classification does not gain (Table 11).",
    "The targets are <b>smoothed</b>: a 64-d Gaussian field decoded back, so fine detail can be lost; the paper "
    "has no smoothing-only control.",
    "Costs a second ViT at test time and ≈ 450 GPU-hours of stage 1 before fine-tuning (see the costs).",
    "Evaluated with frozen features and linear probes; the DPT head (Table 12) is the only stronger head.",
]
RELATED = [
    (
        "Distilled feature fields",
        "Kobayashi, Matsumoto, Sitzmann: Decomposing NeRF for Editing via Feature Field "
        "Distillation, NeurIPS 2022 — 2D features distilled into a NeRF.",
    ),
    (
        "Feature 3DGS",
        "Zhou et al.: Feature 3DGS, Supercharging 3D Gaussian Splatting to Enable Distilled Feature "
        "Fields, CVPR 2024 — the same into Gaussians (FiT3D's stage 1).",
    ),
    (
        "Probe3D",
        "El Banani et al.: Probing the 3D Awareness of Visual Foundation Models, CVPR 2024 — measures "
        "depth, normals and multi-view correspondence of frozen features.",
    ),
    (
        "Multiview equivariance",
        "You et al.: Multiview Equivariance Improves 3D Correspondence Understanding with "
        "Minimal Feature Finetuning, ICLR 2025 — fine-tunes ViTs on multi-view correspondences.",
    ),
]

NOTES = {
    "3D awareness numbers": "Recall: share of points whose nearest-feature match lands within 14 px of the true "
    "position; chance is a random token. The paper does not measure this: it is the course's own check of the "
    "claim, and with random weights it ranks nothing.",
    "title": "Say what the paper is, and that the numbers you will show as results are the paper's own.",
    "question": "One minute. The question: can 2D features become 3D-aware without 3D labels, and does it help?",
    "method": "Walk the pipeline left to right; the dashed arrow: the same training views are lifted and then used "
    "as fine-tuning inputs.",
    "stage 1": "Geometry from the photos; features composited like colours with detached geometry. The figure is this "
    "run's own render of held-out views: it illustrates the mechanism, it is not a result.",
    "stage 2": "The loss is a masked L1 to the rendered features; at test time both feature sets are concatenated.",
    "why": "Present it as a hypothesis: the paper shows the gains, not the cause.",
    "paper: segmentation": "Tables 1 (indoor) and 3 (other domains): each dataset gains 1.2–2.6 points.",
    "paper: depth": "Table 2 and KITTI from Table 3: RMSE drops on every dataset; lower is better.",
    "ablations: features": "Table 13 answers 'is it the extra dimensions?': duplicating the original does not help.",
    "ablations: sweeps": "Table 5: 64-d is the default, 128-d did not fit in memory. Table 8: one epoch is best.",
    "smoothing": "The paper has no control for 'the targets are just smoother'; the course adds one in notebook 05.",
    "cost": "Two ViTs at test time double parameters and FLOPs; training compute is the paper's own figures.",
    "limitations": "Be upfront: posed multi-view data, indoor training, smoothed targets, extra inference cost.",
    "related": "One line each; FiT3D's novelty is fine-tuning the 2D model on the lifted features.",
    "takeaways": "Three sentences, the paper's numbers with their tables; then what this run checked.",
    "ours": "From here on: this run's own output. Say which weights made it before showing any number.",
    "figure1": "One PCA basis for all rows and columns; the fine-tuned column is the fine-tuned model alone.",
    "kmeans": "One clustering of both models' features; same colour = same cluster.",
    "probe_predictions": "Linear probes on the original and on FiT3D's (concatenated) features.",
    "headline": "The paper's headline rows, and ours below, at a miniature scale.",
    "our probe": "Notebook 04's protocol: this is the one number per quantity of this run.",
    "3D awareness": "The course's own check: nearest-feature matches between views; the paper does not measure it.",
    "our sweeps": "Notebook 05's sweeps run at a smaller budget: compare within a sweep, not with the headline.",
    "deviations": "What differs from the official recipe, setting by setting.",
    "glossary": "Backup: the glossary and the examiner questions follow.",
}


def _takeaways(ctx: Mapping[str, Any]) -> list[Any]:
    spp = paper.comparison("ScanNet++", "seg")
    nyu_d = paper.comparison("NYUv2", "depth")
    ade = paper.comparison("ADE20k", "seg")
    ctl = {r.value: r for r in paper.ablation_rows("control")}
    ep = paper.epochs_miou()
    assert spp and nyu_d and ade and ctl["dup"].seg and ctl["concat"].seg and ctl["original"].seg
    out = [
        f"The paper: 3D-aware fine-tuning improves every dense task it tried with a linear probe, e.g. ScanNet++ "
        f"mIoU {spp.before:.2f} → {spp.after:.2f} % ({spp.source}), NYUv2 RMSE {nyu_d.before:.4f} → "
        f"{nyu_d.after:.4f} ({nyu_d.source}), and off-domain ADE20k {ade.before:.2f} → {ade.after:.2f} % "
        f"({ade.source}).",
        f"It needs both feature sets: the original features twice give {ctl['dup'].seg.miou:.2f} % mIoU, original ⊕ "
        f"fine-tuned {ctl['concat'].seg.miou:.2f} % ({ctl['concat'].source}).",
        f"One epoch is enough: {ep[1]:.2f} % mIoU after 1 epoch, {ep[max(ep)]:.2f} % after {max(ep)} "
        f"({paper.cite(8)}).",
    ]
    n_ok = sum(1 for n in ctx["notebooks"] if n["status"] == "ok")
    n_all = len(ctx["notebooks"])
    ran = f"{n_ok} of {n_all} notebooks ran" if n_all else "the pipeline ran"
    if ctx["random"]:
        out.append(
            f"This run has **random weights**: {ran} end to end, which checks the pipeline; its numbers say nothing "
            "about FiT3D, for or against (they are in the separate part “our reproduction”)."
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
    return [inline_md(t) for t in out]


def _backup_questions() -> list[list[tuple[Any, Any]]]:
    """The glossary's examiner questions, two per backup slide."""
    from .glossary import questions

    qs = [(inline_md(q), inline_md(a)) for q, a in questions()]
    return [qs[i : i + 2] for i in range(0, len(qs), 2)]


def title_fields(run: Mapping[str, Any]) -> dict[str, str]:
    """Presenter, course and date of the title slide (``run.json``'s ``title``, set from the command line)."""
    t = run.get("title") if isinstance(run.get("title"), Mapping) else {}
    return {k: str(t.get(k) or "") for k in ("presenter", "course", "date")}


MIN_TEXT_KEY = "fit3d:min_text_px"  # a PNG text chunk: the figure's smallest text in its own pixels (optional)


def png_info(path: Path) -> tuple[float | None, float | None]:
    """The dpi a PNG records (matplotlib writes it) and its smallest text in pixels when the figure says so
    (``savefig(metadata={"fit3d:min_text_px": "..."})``): with the display scale they give the figure's text size on
    a slide, which the browser check reports and checks."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            dpi, small = im.info.get("dpi"), im.info.get(MIN_TEXT_KEY)
        return (round(float(dpi[0]), 1) if dpi else None), (float(small) if small else None)
    except Exception:
        return None, None


def deck_context(ctx: Mapping[str, Any], *, inline_figures: bool = True) -> dict[str, Any]:
    """What ``templates/slides.html.j2`` shows, from :func:`fit3d_helpers.course.context.report_context`."""

    figs = {
        f["name"]: f
        for f in figure_models(ctx["report_dir"], ctx["random"], ctx["figure_errors"], inline=inline_figures)
    }
    for name, f in figs.items():
        f["dpi"], f["min_text_px"] = (
            png_info(Path(ctx["report_dir"]) / "figures" / f"{name}.png") if f["src"] else (None, None)
        )
    if figs["probe_predictions_slide"]["src"]:  # two examples read on a projector; three do not
        s = figs["probe_predictions_slide"]
        figs["probe_predictions"] = dict(
            figs["probe_predictions"], src=s["src"], dpi=s["dpi"], min_text_px=s["min_text_px"]
        )
    figs["stage1"] = figs["stage1_slide"] if figs["stage1_slide"]["src"] else figs["figure1"]
    run = ctx["run"]
    headline = ctx["headline"]
    if headline is not None:
        weights = f"{headline['backbone']} ({headline['weights']} weights)"
    else:
        weights = ", ".join(f"{b} ({w} weights)" for b, w in ctx["weights"]) or "no backbone recorded yet"
    dev = ctx["deviations"]
    assert set(FIGURE_INFO) <= set(figs)
    random = ctx["random"]
    return {
        "title": paper.TITLE,
        "arxiv": paper.ARXIV,
        "authors": "Yuanwen Yue, Anurag Das, Francis Engelmann, Siyu Tang, Jan Eric Lenssen",
        "random": random,
        "fields": title_fields(run),
        "run_line": f"profile {ctx.get('profile') or '—'} · {weights} · {run.get('date', '')[:10] or 'no date'}"
        + (f" · commit {str(run['commit'])[:8]}" if run.get("commit") else ""),
        "pipeline": ctx["pipeline"],
        "eq": {k: _math(v) for k, v in EQUATIONS.items()},
        "fig": figs,
        "charts": _paper_charts(),
        "seg": _compact_main(ctx, "seg"),
        "depth": _compact_main(ctx, "depth"),
        "headline": headline,
        "ours_table": _ours_numbers(ctx),
        "awareness": _awareness_table(ctx),
        "control": _control_table(ctx),
        "assembly": _assembly_table(ctx),
        "our_sweeps": _our_sweeps(ctx),
        "ablations_artifact": ctx["ablations"]["artifact"],
        "budget": ctx["ablations"]["budget"],
        "smoothing": _smoothing(ctx),
        "cost": _cost(ctx),
        "mechanism": MECHANISM,
        "limitations": LIMITATIONS,
        "related": RELATED,
        "notes": {**NOTES, **_figure_notes(figs)},
        "backup": _backup_questions(),
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

    context: :func:`fit3d_helpers.course.context.report_context` of this report (built from the arguments when None).
    inline_figures: embed the PNGs of ``report_dir/figures/`` as data URIs (one file that can be mailed); False
        references them as ``figures/*.png`` (offline too, but the deck then needs its folder).
    """
    ctx = context if context is not None else report_context(report_dir, artifacts_dir, run_json)
    from .handout import build_handout

    deck = deck_context(ctx, inline_figures=inline_figures)
    page = render_template("slides.html.j2", **deck)
    out = Path(ctx["report_dir"]) / "slides.html"
    write_text_atomic(out, page)
    build_handout(ctx["report_dir"], deck)
    return out
