"""The report's table and figure models, shared by the report pages and the slides (one public home).

:class:`Table` / :class:`Row` / :class:`Cell` are rendered by ``templates/macros.html.j2``. The helpers here format
numbers (:func:`fmt`, :func:`value_cell`, :func:`delta_cell`), order metrics and variants like the paper, build the
probe tables (:func:`probe_model`), the paper's tables beside ours, the ablation sections, and the figure entries
(:data:`FIGURE_INFO`, :func:`figure_models`). The only typed numbers are the paper's
(:mod:`fit3d_helpers.course.paper`). Under random weights no difference of ours is coloured or worded as a gain.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import paper
from .artifacts import is_random, newest_ablations
from .mathml import inline_md

__all__ = [
    "FIGURES_DIR",
    "FIGURE_INFO",
    "HIGHER_BETTER",
    "LOWER_BETTER",
    "METRIC_LABEL",
    "METRIC_ORDER",
    "NO_COUNTERPART",
    "SLIDE_FIGURES",
    "VARIANT_ORDER",
    "Cell",
    "FigureInfo",
    "Row",
    "Table",
    "ablation_models",
    "as_percent",
    "assembly_tables",
    "best_flags",
    "choose_columns",
    "delta_cell",
    "figure_models",
    "flatten_scalars",
    "fmt",
    "is_num",
    "main_table",
    "more_table",
    "ours_value",
    "pct",
    "probe_model",
    "th",
    "value_cell",
    "variant_sort",
]


@dataclasses.dataclass
class Cell:
    text: str = "—"
    cls: str = ""
    bold: bool = False
    code: bool = False
    header: bool = False
    title: str = ""
    note: str = ""
    colspan: int = 1
    rowspan: int = 1


@dataclasses.dataclass
class Row:
    cells: list[Cell]
    cls: str = ""


@dataclasses.dataclass
class Table:
    head: list[list[Cell]]
    rows: list[Row]
    caption: str = ""


def th(text: Any, **kw: Any) -> Cell:
    return Cell(str(text), header=True, **kw)


METRIC_ORDER = {"seg": ["miou", "macc", "aacc"], "depth": ["rmse", "absrel", "delta1"]}
METRIC_LABEL = {"miou": "mIoU", "macc": "mAcc", "aacc": "aAcc", "rmse": "RMSE", "absrel": "AbsRel", "delta1": "δ<1.25"}
# what the probe and the 3D-awareness check write (awareness: recall@14px, chance@14px, median_px_error, cos_*)
HIGHER_BETTER = {"miou", "macc", "aacc", "delta1", "recall"}
LOWER_BETTER = {"rmse", "absrel", "median_px_error"}
VARIANT_ORDER = ["original", "finetuned", "concat", "add", "linear", "dup"]
NO_COUNTERPART = "ours only: the paper reports RMSE and Rel, no δ<1.25"


def fmt(v: Any, digits: int = 4, sig: bool = False) -> str:
    """Numbers for tables: fixed decimals (metric tables) or ``sig`` = 5 significant digits (raw stats)."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}".replace(",", " ") if abs(v) >= 10000 else str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        if sig:
            return f"{v:.5g}"
        return f"{v:.{digits - 1}f}" if abs(v) < 1 else f"{v:.{max(digits - len(str(int(abs(v)))), 1)}f}"
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "…"


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def value_cell(v: Any, *, bold: bool = False, digits: int = 4, sig: bool = False, fixed: int | None = None) -> Cell:
    """A value cell; ``fixed`` = that many decimals (the paper's precision), else :func:`fmt`."""
    if fixed is not None and is_num(v):
        return Cell(f"{v:.{fixed}f}", cls="num", bold=bold)
    title = v if isinstance(v, str) and len(v) > 60 else ""
    return Cell(fmt(v, digits, sig), cls="num" if is_num(v) else "", bold=bold, title=title)


def delta_cell(a: float | None, b: float | None, higher: bool, digits: int, *, random: bool = False) -> Cell:
    """b − a, green when it goes the good way and red otherwise; a random-weights run prints no Δ (a dash, and why),
    so that no difference of a random backbone reads as an effect."""
    if a is None or b is None:
        return Cell()
    if random:
        return Cell("—", note="random weights: no Δ")
    d = b - a
    text = ("+" if d >= 0 else "−") + f"{abs(d):.{digits}f}"
    good = d != 0 and (d > 0) == higher
    return Cell(text, cls="num " + ("good" if good else "bad"))


def flatten_scalars(d: Mapping[str, Any], prefix: str = "", depth: int = 2) -> dict[str, Any]:
    """Scalar entries, nested dicts as ``a.b`` (``depth`` levels), short lists of scalars as text."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            if depth > 1:
                out.update(flatten_scalars(v, key + ".", depth - 1))
        elif v is None or isinstance(v, (int, float, str, bool)):
            out[key] = v
        elif isinstance(v, (list, tuple)) and 0 < len(v) <= 4 and all(isinstance(x, (int, float, str)) for x in v):
            out[key] = "[" + ", ".join(fmt(x, sig=True) for x in v) + "]"
    return out


def choose_columns(rows: list[dict[str, Any]], limit: int = 14) -> tuple[list[str], int]:
    """Top-level keys before nested ones; within each, keys shared by all rows first (first-seen order), then
    the most frequent; at most ``limit``. Returns the columns and how many were left out."""
    seen: dict[str, int] = {}
    order: list[str] = []
    for r in rows:
        for k in r:
            if k not in seen:
                order.append(k)
                seen[k] = 0
            seen[k] += 1
    keys = [k for k in order if k != "stage"]
    ranked = sorted(keys, key=lambda k: ("." in k, seen[k] < len(rows), -seen[k], order.index(k)))
    return ranked[:limit], len(keys) - min(len(keys), limit)


def best_flags(values: list[Any], metric: str) -> list[bool]:
    m = metric.lower().split(".")[-1].split("@")[0]
    nums = [v if is_num(v) and math.isfinite(v) else None for v in values]
    valid = [v for v in nums if v is not None]
    if len(valid) < 2 or (m not in HIGHER_BETTER and m not in LOWER_BETTER):
        return [False] * len(values)
    best = max(valid) if m in HIGHER_BETTER else min(valid)
    return [v is not None and v == best for v in nums]


def as_percent(task_results: Mapping[str, Any], metrics: Iterable[str]) -> bool:
    """Segmentation metrics stored as fractions (all ≤ 1) are shown in percent, like the paper."""
    metrics = list(metrics)
    vals = [r.get(m) for r in task_results.values() if isinstance(r, Mapping) for m in metrics if is_num(r.get(m))]
    return bool(vals) and all(0 <= v <= 1.0 for v in vals)


def variant_sort(names: Iterable[str]) -> list[str]:
    names = list(names)
    rank = {n: i for i, n in enumerate(VARIANT_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), names.index(n)))


def probe_model(
    results: Mapping[str, Any], awareness: Mapping[str, Any] | None, *, random: bool = False
) -> dict[str, Table | None]:
    """Variant × metrics table of one probe artifact (segmentation and δ<1.25 in %, like the paper), and its 3D
    awareness. ``random``: no value is marked best (a random backbone ranks nothing)."""
    tasks = [t for t in ("seg", "depth") if isinstance(results.get(t), Mapping)]
    tasks += [t for t in results if t not in tasks and isinstance(results.get(t), Mapping)]
    columns: list[tuple[str, str]] = []
    percent: dict[str, bool] = {}
    for t in tasks:
        seen: list[str] = []
        for r in results[t].values():
            if isinstance(r, Mapping):
                seen += [m for m, v in r.items() if m not in seen and is_num(v)]
        order = METRIC_ORDER.get(t, [])
        ms = [m for m in order if m in seen] + [m for m in seen if m not in order]
        columns += [(t, m) for m in ms]
        percent[t] = t == "seg" and as_percent(results[t], ms)
    variants = variant_sort(dict.fromkeys(v for t in tasks for v, r in results[t].items() if isinstance(r, Mapping)))
    metrics = None
    if columns:
        head1 = [th("variant", rowspan=2)] + [
            th(
                {"seg": "segmentation", "depth": "depth"}.get(t, t) + (" (%)" if percent[t] else ""),
                colspan=sum(1 for c in columns if c[0] == t),
            )
            for t in tasks
            if any(c[0] == t for c in columns)
        ]
        head2 = [
            th(
                METRIC_LABEL.get(m, m) + (" (%)" if m == "delta1" else ""),
                title=NO_COUNTERPART if m == "delta1" else "",
            )
            for _, m in columns
        ]

        def value(t: str, v: str, m: str) -> Any:
            r = results[t].get(v)
            x = r.get(m) if isinstance(r, Mapping) else None
            return 100.0 * x if (percent[t] or m == "delta1") and is_num(x) else x

        vals = {c: [value(c[0], v, c[1]) for v in variants] for c in columns}
        best = {c: [False] * len(variants) if random else best_flags(vals[c], c[1]) for c in columns}
        rows = [
            Row([th(v)] + [value_cell(vals[c][i], bold=best[c][i]) for c in columns]) for i, v in enumerate(variants)
        ]
        metrics = Table([head1, head2], rows)
    aware = None
    if isinstance(awareness, Mapping) and awareness:
        aw = {k: flatten_scalars(v) if isinstance(v, Mapping) else {"value": v} for k, v in awareness.items()}
        cols, _ = choose_columns(list(aw.values()))
        vs = variant_sort(aw)
        flags = {c: [False] * len(vs) if random else best_flags([aw[v].get(c) for v in vs], c) for c in cols}
        aware = Table(
            [[th("variant")] + [th(c) for c in cols]],
            [Row([th(v)] + [value_cell(aw[v].get(c), bold=flags[c][i]) for c in cols]) for i, v in enumerate(vs)],
        )
    return {"metrics": metrics, "awareness": aware}


# ----------------------------------------------------------------------------------------------------------
# The paper beside ours
# ----------------------------------------------------------------------------------------------------------


def _variant(task_results: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    v = task_results.get(name)
    return v if isinstance(v, Mapping) else None


def ours_value(probe: Mapping[str, Any] | None, task: str, variant: str, metric: str) -> float | None:
    """One number of our probe artifact, segmentation in percent (as the paper)."""
    if probe is None:
        return None
    tr = (probe["stats"].get("results") or {}).get(task) or {}
    r = _variant(tr, variant)
    x = r.get(metric) if r else None
    if not is_num(x):
        return None
    return 100.0 * x if task == "seg" and as_percent(tr, ["miou", "macc", "aacc"]) else float(x)


def main_table(task: str, probe: Mapping[str, Any] | None, profile: str | None) -> Table:
    """The paper's Tables 1–3 for one task, one row per dataset with its source, then ours."""
    metrics = ["miou", "macc", "aacc"] if task == "seg" else ["rmse", "rel"]
    ours_key = {"rel": "absrel"}
    label = {"miou": "mIoU", "macc": "mAcc", "aacc": "aAcc", "rmse": "RMSE", "rel": "Rel"}
    unit = " (%) ↑" if task == "seg" else " ↓"
    digits = 2 if task == "seg" else 4
    n = len(metrics)
    head = [
        [
            th("source", rowspan=2),
            th("dataset", rowspan=2),
            th("original" + unit, colspan=n),
            th("FiT3D" + unit, colspan=n),
            th(f"Δ {label[metrics[0]]}", rowspan=2),
        ],
        [th(label[m]) for m in metrics] * 2,
    ]
    rows = []
    for c in paper.main_rows(task):  # type: ignore[arg-type]
        cells = [Cell(c.source), Cell(c.dataset)]
        cells += [value_cell(getattr(c.original, m), fixed=digits) for m in metrics]
        cells += [value_cell(getattr(c.fit3d, m), fixed=digits) for m in metrics]
        cells.append(delta_cell(c.before, c.after, c.higher_is_better, digits))
        rows.append(Row(cells, cls="paper"))
    if probe is not None:
        st = probe["stats"]
        where = st.get("dataset") or f"{profile or st.get('profile', '?')} scenes"
        who = f"{where}, {st.get('backbone', '?')} ({st.get('weights', '?')} weights), artifact {probe['hash']}"
        o = [ours_value(probe, task, "original", ours_key.get(m, m)) for m in metrics]
        f = [ours_value(probe, task, "concat", ours_key.get(m, m)) for m in metrics]
        cells = [Cell("ours", bold=True), Cell(f"this run — {who}")]
        cells += [value_cell(x, fixed=digits) for x in o + f]
        cells.append(delta_cell(o[0], f[0], task == "seg", digits, random=is_random(probe)))
        rows.append(Row(cells, cls="ours"))
    return Table(head, rows)


def more_table() -> Table:
    """Tables 4 and 9–12: other backbones, ViT-B, ImageNet classification, a DPT head."""
    head = [[th(h) for h in ("source", "backbone", "head", "dataset", "metric", "original", "FiT3D", "Δ")]]
    unit = {"miou": "mIoU (%) ↑", "rmse": "RMSE ↓", "top1": "top-1 (%) ↑"}
    rows = []
    for c in paper.BACKBONES + paper.VIT_B_ROWS + paper.OTHER:
        digits = 4 if c.metric == "rmse" else 2
        rows.append(
            Row(
                [
                    Cell(c.source),
                    Cell(c.backbone),
                    Cell(c.head),
                    Cell(c.dataset),
                    Cell(unit[c.metric]),
                    value_cell(c.before, fixed=digits),
                    value_cell(c.after, fixed=digits),
                    delta_cell(c.before, c.after, c.higher_is_better, digits),
                ],
                cls="paper",
            )
        )
    return Table(head, rows)


def pct(x: Any) -> float | None:
    """A segmentation score of an ablation row, in percent."""
    return 100.0 * x if is_num(x) and 0 <= x <= 1 else (float(x) if is_num(x) else None)


def _ours_column(random: bool) -> str:
    return "ours (this run)" + (" — random weights: not a result" if random else "")


def assembly_tables(probe: Mapping[str, Any] | None) -> tuple[Table, Table]:
    """Tables 7 and 13 beside the same variants of our headline probe artifact."""
    rnd = is_random(probe)
    seg = ("miou", "macc", "aacc")
    t7 = paper.ablation_rows("assembly")
    assembly = Table(
        [
            [
                th("assembly", rowspan=2),
                th("variant", rowspan=2),
                th("paper: NYUv2 (%)", colspan=3),
                th(_ours_column(rnd) + " (%)", colspan=3),
            ],
            [th(METRIC_LABEL[m]) for m in seg] * 2,
        ],
        [
            Row(
                [Cell(r.label), Cell(str(r.value), code=True)]
                + [value_cell(getattr(r.seg, m) if r.seg else None, fixed=2) for m in seg]
                + [value_cell(ours_value(probe, "seg", str(r.value), m), fixed=2) for m in seg]
            )
            for r in t7
        ],
        caption=f"Feature assembly — {t7[0].source} (NYUv2); ours: the variants of the headline probe artifact.",
    )
    t13 = paper.ablation_rows("control")
    control = Table(
        [
            [
                th("features", rowspan=2),
                th("variant", rowspan=2),
                th("paper: ScanNet++", colspan=2),
                th(_ours_column(rnd), colspan=2),
            ],
            [th("mIoU (%)"), th("RMSE")] * 2,
        ],
        [
            Row(
                [
                    Cell(r.label),
                    Cell(str(r.value), code=True),
                    value_cell(r.seg.miou if r.seg else None, fixed=2),
                    value_cell(r.depth.rmse if r.depth else None, fixed=4),
                    value_cell(ours_value(probe, "seg", str(r.value), "miou"), fixed=2),
                    value_cell(ours_value(probe, "depth", str(r.value), "rmse"), fixed=4),
                ]
            )
            for r in t13
        ],
        caption=f"Duplicated-features control — {t13[0].source} (ScanNet++): is the gain only the extra "
        "dimensions? Ours has a row where the probe artifact holds the variant (dup = original ⊕ original).",
    )
    return assembly, control


# Our ablation grid's names are the paper's where the paper has the ablation; "mode" is Table 6's counterpart only
# in name (the paper's adapter is a Swin block, ours a LoRA).
_PAPER_ABLATIONS = (
    ("feature_dim", "Feature dimension of the Gaussians"),
    ("mode", "Fine-tuning vs an adapter"),
    ("epochs", "Fine-tuning epochs"),
)


def _ablation_variant(ours_rows: list[Mapping[str, Any]]) -> str:
    if any("seg_miou_concat" in r for r in ours_rows) or not ours_rows:
        return "concat"
    return next((k[len("seg_miou_") :] for r in ours_rows for k in r if k.startswith("seg_miou_")), "concat")


def _paper_ablation_table(name: str, ours_rows: list[Mapping[str, Any]] | None, random: bool) -> Table | None:
    """The paper's table for one of our ablations (T5 feature_dim, T6 mode, T8 epochs), ours matched by value (a
    dash where we have no point of that value, or no ablations artifact)."""
    rows_p = paper.ablation_rows(name)
    if not rows_p:
        return None
    ours_rows = list(ours_rows or [])
    by_value = {str(r.get("value")): r for r in ours_rows}
    variant = _ablation_variant(ours_rows)
    hours = {"feature_dim": "stage-1 time per scene (h)", "epochs": "fine-tuning time (h)"}.get(name, "time (h)")
    extra = [("memory (MB)", "memory_mb", 0), (hours, "hours", 1)]
    extra = [e for e in extra if any(getattr(r, e[1]) is not None for r in rows_p)]
    head = [
        [th(name), th("paper: mAcc"), th("mIoU"), th("aAcc")]
        + [th(e[0]) for e in extra]
        + [th("paper's note"), th(f"{_ours_column(random)}: seg mIoU {variant} (%)")]
    ]
    body = []
    for r in rows_p:
        s = r.seg
        mine = by_value.get(str(r.value))
        body.append(
            Row(
                [Cell(r.label)]
                + [value_cell(getattr(s, m) if s else None, fixed=2) for m in ("macc", "miou", "aacc")]
                + [value_cell(getattr(r, e[1]), fixed=e[2]) for e in extra]
                + [Cell(r.note), value_cell(pct(mine.get(f"seg_miou_{variant}")) if mine else None, fixed=2)]
            )
        )
    ours_note = "" if ours_rows else " Ours: no ablations artifact yet (notebook 05 makes it)."
    return Table(
        head,
        body,
        caption=f"{rows_p[0].source} ({rows_p[0].dataset}), beside our points of the same value.{ours_note}",
    )


def _ours_ablation_table(name: str, rows: list[Mapping[str, Any]]) -> Table:
    """Our rows of one ablation: every result column; ``cost`` (timing on a shared machine) is not a result."""
    cols = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in ("ablation", "value", "cost")]
    cols = [c for c in cols if not isinstance(next((r.get(c) for r in rows if c in r), None), Mapping)]
    rank = ("seg_miou", "depth_rmse", "recall14")  # the results first (stats.json keeps its keys sorted)
    cols.sort(key=lambda c: next((i for i, p in enumerate(rank) if c.startswith(p)), len(rank)))
    return Table(
        [[th(name)] + [th(c) for c in cols]],
        [Row([th(r.get("value"))] + [value_cell(r.get(c), sig=True) for c in cols]) for r in rows],
    )


def ablation_models(arts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One section per ablation: the paper's table (Tables 5, 6, 8; always shown) with ours matched by value, and
    our rows of the newest ``ablations`` artifact (the course's own ablations too)."""
    newest = newest_ablations(arts)
    random = is_random(newest)
    ours = {}
    sources: Mapping[str, Any] = {}
    if newest is not None:
        sources = newest["stats"].get("sources") or {}
        for name, rows in (newest["stats"].get("rows") or {}).items():
            rows = [r for r in rows or [] if isinstance(r, Mapping)]
            if rows:
                ours[name] = rows
    out = []
    for name, title in _PAPER_ABLATIONS:
        rows = ours.get(name)
        t = _paper_ablation_table(name, rows, random)
        out.append(
            {
                "name": name,
                "title": title,
                "source": t.caption.split(" (")[0] if t else "",
                "whose": str(sources.get(name, "")),
                "paper": t,
                "table": _ours_ablation_table(name, rows) if rows else None,
            }
        )
    for name, rows in ours.items():
        if name not in dict(_PAPER_ABLATIONS):
            out.append(
                {
                    "name": name,
                    "title": name.replace("_", " "),
                    "source": "",
                    "whose": str(sources.get(name, "the course's own")),
                    "paper": None,
                    "table": _ours_ablation_table(name, rows),
                }
            )
    return out


FIGURES_DIR = "figures"


@dataclasses.dataclass(frozen=True)
class FigureInfo:
    """What a figure of the report shows: ``look`` = what to look at, ``real`` = what it would look like with real
    (pretrained) weights, said under random weights; ``made_by`` = what writes its artifact."""

    title: str
    look: str
    real: str
    made_by: str


FIGURE_INFO: dict[str, FigureInfo] = {
    "figure1": FigureInfo(
        "The paper's Figure 1, ours",
        "Three views held out of stage 1's fit of a validation scene (one fine-tuning never saw), spread around the "
        "room; one PCA basis for every panel, so equal colours mean similar features. Here "
        "“fine-tuned” is the fine-tuned model alone (the tables' FiT3D is original ⊕ fine-tuned). "
        "Look at whether the fine-tuned column takes on the rendered column's clean, view-consistent regions.",
        "With real DINOv2 weights the original column shows blurry, noisy object parts, the rendered column crisp "
        "regions that agree across views, and the fine-tuned column sits between them (the paper's Figure 1).",
        "the `figures` artifact, written by notebook 04 (04_probe)",
    ),
    "kmeans": FigureInfo(
        "k-means clusters (k = 20)",
        "One clustering fitted on both models' features: a colour is the same cluster in both columns. Look for "
        "clusters that follow whole surfaces and objects and stay the same from view to view.",
        "With real weights the clusters follow objects and parts, and the paper's claim predicts that fine-tuned "
        "features follow surfaces and object boundaries more tightly. With random weights they follow colour and "
        "position.",
        "the `figures` artifact, written by notebook 04 (04_probe)",
    ),
    "probe_predictions": FigureInfo(
        "Linear-probe predictions",
        "Held-out views: image, ground truth, the probe on the original features, the probe on FiT3D's features "
        "(original ⊕ fine-tuned), for segmentation and depth. Compare edges and flat surfaces with the ground truth.",
        "With real weights both probes give recognisable rooms, and the paper reports better scores and shows "
        "sharper maps with FiT3D; with random weights both give coarse blobs and their difference is noise.",
        "the headline probe artifact, written by notebook 04 (04_probe)",
    ),
    "matches": FigureInfo(
        "Matched points across two views",
        "One of the covisible pairs the 3D-awareness table pools: points of view A joined to their nearest-feature "
        "match in view B; green when within 14 px of the true position (from depth and poses), red otherwise. Beside "
        "each row: the drawn lines, the whole pair, and the table's recall over all pairs.",
        "With real weights the fine-tuned features are expected to match more points correctly, though the paper "
        "itself does not measure this; with random weights matches follow colour, not geometry.",
        "the `figures` artifact, written by notebook 04 (04_probe)",
    ),
}
# figures drawn for the slides only, each with the figure it is cut from: one probe example reads on a projector
# (three do not); stage 1's slide shows figure 1's rendered column beside the image.
SLIDE_FIGURES = {"probe_predictions_slide": "probe_predictions", "stage1_slide": "figure1"}


def _png_to_data_uri(path: str | Path) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def figure_models(
    report_dir: Path, random: bool, errors: Mapping[str, str] | None, *, inline: bool = False
) -> list[dict[str, Any]]:
    """Per figure: title, captions, and ``src`` (``figures/<name>.png``, or a data URI when ``inline``) or why not."""
    out = []
    for name, info in (*FIGURE_INFO.items(), *((n, FIGURE_INFO[base]) for n, base in SLIDE_FIGURES.items())):
        png = report_dir / FIGURES_DIR / f"{name}.png"
        src = None
        if png.is_file():
            src = _png_to_data_uri(png) if inline else f"{FIGURES_DIR}/{name}.png"
        err = (errors or {}).get(name, "")
        missing = ""
        if src is None:
            missing = (
                f"Not drawn: {err}"
                if err
                else f"Not drawn yet: it needs {info.made_by}. Run that notebook, then "
                "`python -m fit3d_helpers report`."
            )
        out.append(
            {
                "name": name,
                "title": info.title,
                "look": inline_md(info.look),
                "real": inline_md(info.real) if random else "",
                "src": src,
                "missing": inline_md(missing),
            }
        )
    return out
