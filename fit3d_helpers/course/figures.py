"""The figures a presenter needs, drawn from artifacts (notebooks, report); never computes a stage.

* :func:`fit3d_helpers.figure_data.figure_data` (stage ``figures``, run by notebook 04) stores what the drawings need:
  three views held out of stage 1's fit of a validation scene (one fine-tuning never saw), spread in viewpoint, with
  the image, the original backbone's features, the rendered 3D-consistent features, the fine-tuned model's features
  (and FiT3D's released model's, when it loads); and one covisible pair of the 3D-awareness check with its matches.
* The ``draw_*`` functions turn that artifact (and the headline probe's examples) into matplotlib figures drawn at
  slide size (:data:`SLIDE_PX` at :data:`DPI`, every text at least :data:`MIN_PT` pt = 16.7 px), so the PNG can be
  shown at its native size on a 1280×720 slide: the paper's Figure 1 counterpart (one PCA basis for every panel), a
  k-means with one shared clustering, probe predictions with a class legend and a depth colour bar, and matched points
  across two views whose counts are those of the awareness table. :func:`export_pngs` writes them for the report and
  slides, with ``figures.json`` (each PNG's pixel size and smallest text in px).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from .. import cache
from .viz import class_colors, colorize_labels, kmeans, pca_basis, pca_rgb

FIGURES = ("figure1", "kmeans", "probe_predictions", "matches")
#: a 1280×720 slide's content area, in px: the slide figures are drawn at this size
SLIDE_PX = (1180, 560)
#: pixels per inch of every figure (matplotlib sizes text in points: px = pt · DPI / 72)
DPI = 100
#: the smallest text size used, in points: 12 pt at 100 dpi = 16.7 px (≥ 16 px, readable on a projector)
MIN_PT = 12
TITLE_PT = 14
#: the 3D-awareness check's threshold (px), as in :mod:`fit3d_helpers.figure_data`
MATCH_PX = 14.0
GOOD, BAD = "#1a9850", "#d73027"
RANDOM_NOTE = "random weights: a pipeline check, not the method"


# ----------------------------------------------------------------------------------------------------------------
# Drawing (from artifacts only)
# ----------------------------------------------------------------------------------------------------------------


def _fig(size_px: tuple[int, int] = SLIDE_PX) -> plt.Figure:
    return plt.figure(figsize=(size_px[0] / DPI, size_px[1] / DPI), dpi=DPI, layout="constrained")


def _upsample_rgb(rgb: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    t = torch.as_tensor(rgb).permute(2, 0, 1)[None]
    return F.interpolate(t, size=hw, mode="bilinear", align_corners=False)[0].permute(1, 2, 0).clamp(0, 1).numpy()


def _off(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _image(x: Any) -> np.ndarray:
    a = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)


def min_font_px(fig: plt.Figure) -> float:
    """The smallest size (px) of any visible, non-empty text of ``fig`` (titles, labels, tick labels, legends)."""
    sizes = [
        t.get_fontsize() * fig.dpi / 72
        for t in fig.findobj(lambda o: isinstance(o, plt.Text))
        if t.get_visible() and t.get_text().strip()
    ]
    return float(min(sizes)) if sizes else float("nan")


def _views_label(data: dict[str, Any]) -> str:
    ids = ", ".join(str(int(i)) for i in data.get("view_ids", []))
    scene = data.get("scene", "the first validation scene")
    if data.get("heldout") == "stage 1 and fine-tuning":
        return f"views {ids} of {scene}: held out of stage 1's fit, in a scene fine-tuning never saw"
    if data.get("heldout") == "fine-tuning":
        return f"views {ids} of {scene}: fitted by stage 1, in a scene fine-tuning never saw"
    return f"views {ids} of {scene}"


def figure1_columns(data: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Figure 1's columns: (title, key of the features or None for the image)."""
    return [
        ("image", None),
        ("DINOv2 (original)", "original"),
        ("rendered 3D-aware\n(stage 1's target)", "rendered"),
        ("FiT3D: fine-tuned\nmodel alone", "finetuned"),
    ] + ([("FiT3D released\n(fine-tuned alone)", "released")] if "released" in data else [])


def draw_figure1(
    data: dict[str, Any], *, random_weights: bool = False, size_px: tuple[int, int] = SLIDE_PX
) -> plt.Figure:
    """The paper's Figure 1, ours: image | DINOv2 | rendered 3D-aware | fine-tuned model alone (| FiT3D released), one
    row per held-out view, and ONE PCA basis fitted on every feature panel of every row (equal colours = equal
    features, across views and models); upsampled to the image size."""
    cols = figure1_columns(data)
    keys = [k for _, k in cols if k]
    n = data["images"].shape[0]
    H, W = data["images"].shape[1:3]
    basis = pca_basis(*[data[k] for k in keys])  # one basis: all rows, all feature columns
    fig = _fig(size_px)
    axes = fig.subplots(n, len(cols), squeeze=False)
    ids = [int(i) for i in data.get("view_ids", range(n))]
    for r in range(n):
        for c, (title, k) in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(_image(data["images"][r]) if k is None else _upsample_rgb(pca_rgb(data[k][r], basis), (H, W)))
            if r == 0:
                ax.set_title(title, fontsize=MIN_PT)
            _off(ax)
        axes[r, 0].set_ylabel(f"view {ids[r]}", fontsize=MIN_PT)
    lines = [_views_label(data), "one PCA basis for every feature panel: equal colours mean equal features"]
    fig.suptitle("\n".join(lines), fontsize=MIN_PT)
    if random_weights:
        fig.supxlabel(RANDOM_NOTE, fontsize=MIN_PT, color=BAD)
    return fig


def draw_kmeans(data: dict[str, Any], *, k: int = 20, seed: int = 0, size_px: tuple[int, int] = SLIDE_PX) -> plt.Figure:
    """k-means of original vs fine-tuned features with ONE clustering fitted on both, the image beside."""
    rows = [("DINOv2 (original)", "original"), ("FiT3D: fine-tuned model alone", "finetuned")]
    n = data["images"].shape[0]
    H, W = data["images"].shape[1:3]
    maps = [data[key][i] for _, key in rows for i in range(n)]
    labels = kmeans(torch.cat([m.reshape(m.shape[0], -1).T for m in maps]), k, seed=seed)
    pal = class_colors(k)
    fig = _fig(size_px)
    axes = fig.subplots(n, 3, squeeze=False)
    off = 0
    grids: dict[tuple[str, int], np.ndarray] = {}
    for _, key in rows:
        for i in range(n):
            h, w = data[key][i].shape[-2:]
            grids[(key, i)] = pal[labels[off : off + h * w].reshape(h, w).numpy()]
            off += h * w
    ids = [int(i) for i in data.get("view_ids", range(n))]
    for i in range(n):
        axes[i, 0].imshow(_image(data["images"][i]))
        for c, (name, key) in enumerate(rows, start=1):
            axes[i, c].imshow(_upsample_rgb(grids[(key, i)].astype(np.float32), (H, W)), interpolation="nearest")
            if i == 0:
                axes[i, c].set_title(name, fontsize=MIN_PT)
        for ax in axes[i]:
            _off(ax)
        axes[i, 0].set_ylabel(f"view {ids[i]}", fontsize=MIN_PT)
    axes[0, 0].set_title("image", fontsize=MIN_PT)
    fig.suptitle(f"k-means, k = {k}: one clustering of both models' features (same colour = same cluster)",
                 fontsize=MIN_PT)  # fmt: skip
    return fig


def draw_probe_predictions(
    examples: dict[str, Any],
    classes: list[str],
    max_depth: float,
    *,
    n: int = 3,
    size_px: tuple[int, int] | None = None,
) -> plt.Figure:
    """One row per held-out view: image | segmentation (truth, original, FiT3D) | depth (truth, original, FiT3D), with
    the class legend below and one depth colour bar at the right (the same scale for every depth panel)."""
    seg = {k.split("/", 1)[1]: v for k, v in examples["examples"].items() if k.startswith("seg/")}
    dep = {k.split("/", 1)[1]: v for k, v in examples["examples"].items() if k.startswith("depth/")}
    fit = "concat" if "concat" in seg else next(iter(seg))
    n = min(n, len(examples["images"]))
    H, W = examples["images"][0].shape[:2]
    fig = _fig(size_px or (SLIDE_PX[0], int(150 + n * (10 + 150 * H / W))))  # rows of 4:3 panels, no empty band
    grid = fig.add_gridspec(n, 8, width_ratios=[1] * 7 + [0.07])
    fit_name = "FiT3D" if fit == "concat" else f"FiT3D ({fit})"
    titles = ["image", "labels", "original", fit_name, "depth", "original", fit_name]
    vmax = float(examples["depth"].max()) or max_depth
    im = None
    for j in range(n):
        panels = [
            _image(examples["images"][j]),
            colorize_labels(examples["labels"][j].numpy(), len(classes)),
            colorize_labels(seg["original"]["pred"][j].numpy(), len(classes)),
            colorize_labels(seg[fit]["pred"][j].numpy(), len(classes)),
        ]
        for c in range(7):
            ax = fig.add_subplot(grid[j, c])
            if c < 4:
                ax.imshow(panels[c])
            else:
                d = (examples["depth"][j], dep["original"]["pred"][j], dep[fit]["pred"][j])[c - 4]
                im = ax.imshow(d.numpy(), cmap="turbo", vmin=0, vmax=vmax)
            if j == 0:
                ax.set_title(titles[c], fontsize=MIN_PT)
            _off(ax)
    what = "FiT3D = original ⊕ fine-tuned features" if fit == "concat" else f"FiT3D = the {fit} assembly"
    fig.suptitle(f"linear probes on held-out views: segmentation (left), depth (right); {what}", fontsize=MIN_PT)
    if im is not None:
        cb = fig.colorbar(im, cax=fig.add_subplot(grid[:, 7]))
        cb.set_label("depth (m)", fontsize=MIN_PT)
        cb.ax.tick_params(labelsize=MIN_PT)
    pal = class_colors(len(classes))
    handles = [plt.Rectangle((0, 0), 1, 1, color=pal[i]) for i in range(len(classes))]
    fig.legend(handles, classes, loc="outside lower center", ncol=min(7, max(1, len(classes))), fontsize=MIN_PT,
               frameon=False, handlelength=1.0, columnspacing=1.2)  # fmt: skip
    return fig


def _pct(x: Any) -> str:
    return f"{100 * float(x):.1f} %"


def match_counts(data: dict[str, Any], key: str) -> tuple[int, int]:
    """(correct, drawn) of the drawn sample under feature variant ``key`` (``uv_original`` / ``uv_finetuned``): a
    match is correct when it lands within :data:`MATCH_PX` of the true point, the awareness check's rule."""
    err = (data[key] - data["uv_true"]).norm(dim=1)
    return int((err <= MATCH_PX).sum()), int(err.numel())


def draw_matches(
    data: dict[str, Any],
    table: dict[str, Any] | None = None,
    *,
    random_weights: bool = False,
    size_px: tuple[int, int] = SLIDE_PX,
) -> plt.Figure:
    """One covisible pair of the 3D-awareness check: view A | gap | view B, one row per model, each drawn point of A
    joined to its nearest-feature match in B (green within 14 px of the true point, from depth and poses; red
    farther). Beside each row: the drawn count, the whole pair's count, and (``table``: the probe artifact's
    ``awareness`` stats) the table's recall pooled over all pairs, so the figure and the table agree by label."""
    imgs = [_image(x) for x in data["pair_images"]]
    H, W = imgs[0].shape[:2]
    gap = max(8, W // 12)
    canvas = np.ones((H, 2 * W + gap, 3), dtype=np.float32)
    canvas[:, :W], canvas[:, W + gap :] = imgs[0], imgs[1]
    ids = [int(i) for i in data.get("pair_ids", (0, 1))]
    rows = [("DINOv2 (original)", "original"), ("FiT3D: fine-tuned model alone", "finetuned")]
    fig = _fig(size_px)
    grid = fig.add_gridspec(len(rows), 2, width_ratios=[(2 * W + gap) / H, 1.55])
    pair_n = data.get("pair_n")
    for r, (title, variant) in enumerate(rows):
        ax = fig.add_subplot(grid[r, 0])
        ax.imshow(canvas)
        key = f"uv_{variant}"
        err = (data[key] - data["uv_true"]).norm(dim=1)
        for p, q, e in zip(data["uv_a"], data[key], err):
            col = GOOD if float(e) <= MATCH_PX else BAD
            x0, y0, x1, y1 = float(p[0]), float(p[1]), float(q[0]) + W + gap, float(q[1])
            ax.plot([x0, x1], [y0, y1], "-", lw=2.2, color=col, alpha=0.9, solid_capstyle="round")
            ax.plot([x0, x1], [y0, y1], "o", ms=5.5, color=col, mec="white", mew=1.0)
        ax.set_xlim(-0.5, 2 * W + gap - 0.5)
        ax.set_ylim(H - 0.5, -0.5)
        for x, name in ((W / 2, f"view A ({ids[0]})"), (W + gap + W / 2, f"view B ({ids[1]})")):
            ax.text(x, -4, name, ha="center", va="bottom", fontsize=MIN_PT)
        _off(ax)
        ok, drawn = match_counts(data, key)
        lines = [f"{ok} of {drawn} drawn lines correct"]
        if pair_n and "pair_correct" in data:
            c = int(data["pair_correct"][variant])
            lines.append(f"whole pair: {c} of {pair_n} points ({_pct(c / pair_n)})")
        row = (table or {}).get(variant) or {}
        if isinstance(row.get("recall@14px"), (int, float)):
            n_pairs, n_pts = row.get("n_pairs"), row.get("n")
            size = f" ({int(n_pts):,} points)" if isinstance(n_pts, (int, float)) else ""
            lines.append(f"table, all {n_pairs or ''} pairs{size}:".replace("all  pairs", "all pairs"))
            lines.append(f"recall@14px = {_pct(row['recall@14px'])}")
        tx = fig.add_subplot(grid[r, 1])
        tx.axis("off")
        tx.text(0.0, 0.92, title, fontsize=TITLE_PT, weight="bold", va="top", transform=tx.transAxes)
        tx.text(0.0, 0.72, "\n".join(lines), fontsize=MIN_PT, va="top", linespacing=1.5, transform=tx.transAxes)
    fig.suptitle(
        f"nearest-feature matches between two views of {data.get('scene', 'a held-out scene')} (a scene fine-tuning "
        f"never saw); {len(data['uv_a'])} of the pair's {pair_n or '?'} points drawn\ngreen: the match lands within "
        f"{MATCH_PX:g} px of the true point (from depth and poses); red: farther",
        fontsize=MIN_PT,
    )
    if random_weights:
        fig.supxlabel(RANDOM_NOTE, fontsize=MIN_PT, color=BAD)
    return fig


def draw_stage1(data: dict[str, Any], *, size_px: tuple[int, int] = (510, 434)) -> plt.Figure:
    """Figure 1's "rendered (3D-aware)" column beside the image, for a slide: what stage 1 produces (the PCA basis of
    :func:`draw_figure1`: one for every panel, so the colours are figure 1's)."""
    keys = [k for _, k in figure1_columns(data) if k]
    n = data["images"].shape[0]
    H, W = data["images"].shape[1:3]
    basis = pca_basis(*[data[k] for k in keys])
    fig = _fig(size_px)
    axes = fig.subplots(n, 2, squeeze=False)
    ids = [int(i) for i in data.get("view_ids", range(n))]
    for r in range(n):
        axes[r, 0].imshow(_image(data["images"][r]))
        axes[r, 1].imshow(_upsample_rgb(pca_rgb(data["rendered"][r], basis), (H, W)))
        for ax in axes[r]:
            _off(ax)
        axes[r, 0].set_ylabel(f"view {ids[r]}", fontsize=MIN_PT)
    axes[0, 0].set_title("held-out view", fontsize=TITLE_PT)
    axes[0, 1].set_title("rendered features (PCA)", fontsize=TITLE_PT)
    return fig


def awareness_of(stats: dict[str, Any], figures_stats: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The awareness table's numbers (a probe artifact's ``stats["awareness"]``) for :func:`draw_matches`, or None
    when the probe measured other models than the figures artifact's (then the figure does not quote them)."""
    aw = stats.get("awareness")
    if not isinstance(aw, dict) or not aw:
        return None
    if figures_stats and any(stats.get(k) != figures_stats.get(k) for k in ("weights", "finetuned")):
        return None
    return aw


def export_pngs(
    artifacts_dir: str | Path, out_dir: str | Path, *, profile: str | None = None, dpi: int = DPI
) -> tuple[dict[str, Path], dict[str, str]]:
    """Write the presenter's figures as PNGs from the newest ``figures`` artifact and the headline probe, plus the
    slides' variants (``stage1_slide``: image beside its rendered features; ``probe_predictions_slide``: two examples),
    and ``figures.json``: ``{name: {"width": px, "height": px, "min_font_px": px}}``. ``figure1``, ``kmeans`` and
    ``matches`` are :data:`SLIDE_PX`; ``probe_predictions`` (three examples) and ``probe_predictions_slide`` (two) are
    1180 px wide and as tall as their rows need; ``stage1_slide`` is 510×434 (a half-slide column). At ``dpi = DPI``
    every text is at least 16 px: show each at its native size on a 1280×720 slide.

    Returns ``({name: path}, {name: why it could not be drawn})``. A figure whose artifact is missing is skipped; one
    that cannot be drawn (e.g. from an artifact of an older format) is reported, and the others are still drawn.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arts, unreadable = [], {}
    for a in cache.iter_artifacts(artifacts_dir):
        try:
            if profile is None or a.stats.get("profile") in (None, profile):
                arts.append(a)
        except Exception as e:  # one corrupt stats.json: only the figures that need its stage say so (below)
            unreadable.setdefault(a.stage, f"{a.stage}/{a.hash} has an unreadable stats.json ({type(e).__name__})")
    written: dict[str, Path] = {}
    errors: dict[str, str] = {}
    sizes: dict[str, dict[str, float]] = {}

    def save(name: str, draw: Any) -> None:
        try:
            fig = draw()
            path, tmp = out_dir / f"{name}.png", out_dir / f".{name}.png.tmp"
            w, h = fig.get_size_inches() * dpi
            small = round(min_font_px(fig) * dpi / fig.dpi, 1)
            sizes[name] = {"width": int(round(w)), "height": int(round(h)), "min_font_px": small}
            # the PNG says its smallest text itself, so the deck's browser check can size it on the slide
            fig.savefig(tmp, dpi=dpi, format="png", metadata={"fit3d:min_text_px": str(small)})
            plt.close(fig)
            tmp.replace(path)
            written[name] = path
        except Exception as e:  # this figure's failure is reported; the others are still drawn
            plt.close("all")
            errors[name] = f"{type(e).__name__}: {e}"[:300]

    def load(art: Any, file: str, names: tuple[str, ...]) -> Any:
        try:
            return art.torch(file)
        except Exception as e:
            errors.update({n: f"{type(e).__name__}: {e}"[:300] for n in names})
            return None

    probes = [a for a in arts if a.stage == "probe" and a.stats.get("headline")]
    probe = max(probes, key=lambda a: a.mtime) if probes else None
    figs = [a for a in arts if a.stage == "figures"]
    if figs:
        newest = max(figs, key=lambda a: a.mtime)
        data = load(newest, "figures.pt", ("figure1", "stage1_slide", "kmeans", "matches"))
        if data is not None:
            rnd = newest.stats.get("weights") == "random"
            table = awareness_of(probe.stats, newest.stats) if probe is not None else None
            save("figure1", lambda: draw_figure1(data, random_weights=rnd))
            save("stage1_slide", lambda: draw_stage1(data))
            save("kmeans", lambda: draw_kmeans(data))
            if "uv_a" in data:
                save("matches", lambda: draw_matches(data, table, random_weights=rnd))
    if probe is not None:
        ex = load(probe, "examples.pt", ("probe_predictions", "probe_predictions_slide"))
        if ex is not None:
            classes = list(probe.stats.get("classes", []))
            save("probe_predictions", lambda: draw_probe_predictions(ex, classes, 10.0))
            save("probe_predictions_slide", lambda: draw_probe_predictions(ex, classes, 10.0, n=2))
    needs = {
        "figures": ("figure1", "stage1_slide", "kmeans", "matches"),
        "probe": ("probe_predictions", "probe_predictions_slide"),
    }
    for stage, why in unreadable.items():
        for name in needs.get(stage, ()):
            if name not in written and name not in errors:
                errors[name] = f"{why}: rerun notebook 04 (04_probe) to rewrite it"
    if sizes:
        (out_dir / "figures.json").write_text(json.dumps(sizes, indent=1, sort_keys=True) + "\n")
    return written, errors
