"""The figures a presenter needs, drawn from artifacts (notebooks, report); never computes a stage.

* :func:`fit3d_helpers.figure_data.figure_data` (stage ``figures``, run by notebook 04) stores what the drawings need
  for a few held-out views: the images, the original backbone's features, the rendered 3D-consistent features (the
  fine-tuning targets of the lifted held-out scene), the fine-tuned model's features (and FiT3D's released model's, when
  it loads), and the nearest-neighbour matches of one covisible view pair under the original and the fine-tuned
  features.
* The ``draw_*`` functions turn that artifact (and the headline probe's examples) into matplotlib figures:
  the paper's Figure 1 counterpart, a k-means with one shared clustering, probe predictions with a class legend and a
  depth colour bar, and matched points across two views. :func:`export_pngs` writes them for the report and slides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from .. import cache
from .viz import class_colors, colorize_labels, kmeans, pca_basis, pca_rgb

FIGURES = ("figure1", "kmeans", "probe_predictions", "matches")


# ----------------------------------------------------------------------------------------------------------------
# Drawing (from artifacts only)
# ----------------------------------------------------------------------------------------------------------------


def _upsample_rgb(rgb: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    t = torch.as_tensor(rgb).permute(2, 0, 1)[None]
    return F.interpolate(t, size=hw, mode="bilinear", align_corners=False)[0].permute(1, 2, 0).clamp(0, 1).numpy()


def _off(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def draw_figure1(data: dict[str, Any], *, random_weights: bool = False) -> plt.Figure:
    """The paper's Figure 1, ours: image | backbone | rendered 3D-aware | fine-tuned (| FiT3D released), one PCA basis
    per row (what looks alike in a row is alike), upsampled to the image size so it reads on a projector."""
    cols = [
        ("image", None),
        ("DINOv2 (2D)", "original"),
        ("rendered (3D-aware)", "rendered"),
        ("fine-tuned (ours)", "finetuned"),
    ] + ([("FiT3D released", "released")] if "released" in data else [])
    n = data["images"].shape[0]
    H, W = data["images"].shape[1:3]
    fig, axes = plt.subplots(n, len(cols), figsize=(3.2 * len(cols), 3.2 * n * H / W + 0.6), squeeze=False)
    for r in range(n):
        basis = pca_basis(*[data[k][r] for _, k in cols if k])
        for c, (title, k) in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(data["images"][r].numpy() if k is None else _upsample_rgb(pca_rgb(data[k][r], basis), (H, W)))
            if r == 0:
                ax.set_title(title, fontsize=13)
            _off(ax)
    note = " (random weights: a pipeline check, not the method)" if random_weights else ""
    fig.suptitle("held-out views; feature PCA with one basis per row" + note, fontsize=12)
    fig.tight_layout()
    return fig


def draw_kmeans(data: dict[str, Any], *, k: int = 20, seed: int = 0) -> plt.Figure:
    """k-means of original vs fine-tuned features with ONE clustering fitted on both, the image beside."""
    rows = [("DINOv2 (original)", "original"), ("fine-tuned (ours)", "finetuned")]
    n = data["images"].shape[0]
    H, W = data["images"].shape[1:3]
    maps = [data[key][i] for _, key in rows for i in range(n)]
    labels = kmeans(torch.cat([m.reshape(m.shape[0], -1).T for m in maps]), k, seed=seed)
    pal = class_colors(k)
    fig, axes = plt.subplots(n, 3, figsize=(9.6, 3.2 * n * H / W + 0.6), squeeze=False)
    off = 0
    grids: dict[tuple[str, int], np.ndarray] = {}
    for _, key in rows:
        for i in range(n):
            h, w = data[key][i].shape[-2:]
            grids[(key, i)] = pal[labels[off : off + h * w].reshape(h, w).numpy()]
            off += h * w
    for i in range(n):
        axes[i, 0].imshow(data["images"][i].numpy())
        for c, (name, key) in enumerate(rows, start=1):
            axes[i, c].imshow(_upsample_rgb(grids[(key, i)].astype(np.float32), (H, W)), interpolation="nearest")
            if i == 0:
                axes[i, c].set_title(name, fontsize=13)
        for ax in axes[i]:
            _off(ax)
    axes[0, 0].set_title("image", fontsize=13)
    fig.suptitle(f"k-means, k = {k}, one clustering shared by both models (same colour = same cluster)", fontsize=12)
    fig.tight_layout()
    return fig


def draw_probe_predictions(examples: dict[str, Any], classes: list[str], max_depth: float, *, n: int = 3) -> plt.Figure:
    """One row per held-out view: image | segmentation (truth, original, FiT3D) | depth (truth, original, FiT3D), with
    the class legend below and one depth colour bar at the right (the same scale for every depth panel)."""
    seg = {k.split("/", 1)[1]: v for k, v in examples["examples"].items() if k.startswith("seg/")}
    dep = {k.split("/", 1)[1]: v for k, v in examples["examples"].items() if k.startswith("depth/")}
    fit = "concat" if "concat" in seg else next(iter(seg))
    n = min(n, len(examples["images"]))
    H, W = examples["images"][0].shape[:2]
    panel_w = 2.4
    fig = plt.figure(figsize=(7 * panel_w + 0.6, n * panel_w * H / W + 1.2), layout="constrained")
    grid = fig.add_gridspec(n, 8, width_ratios=[1] * 7 + [0.07])
    titles = ["image", "labels", "original", f"FiT3D ({fit})", "depth", "original", f"FiT3D ({fit})"]
    vmax = float(examples["depth"].max()) or max_depth
    im = None
    for j in range(n):
        panels = [
            examples["images"][j].numpy(),
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
                ax.set_title(titles[c], fontsize=12)
            _off(ax)
    fig.text(0.34, 1.0, "segmentation", ha="center", va="bottom", fontsize=13, weight="bold")
    fig.text(0.78, 1.0, "depth", ha="center", va="bottom", fontsize=13, weight="bold")
    if im is not None:
        fig.colorbar(im, cax=fig.add_subplot(grid[:, 7]), label="depth (m)")
    pal = class_colors(len(classes))
    handles = [plt.Rectangle((0, 0), 1, 1, color=pal[i]) for i in range(len(classes))]
    fig.legend(handles, classes, loc="outside lower center", ncol=min(10, len(classes)), fontsize=10, frameon=False)
    return fig


def draw_matches(data: dict[str, Any]) -> plt.Figure:
    """One covisible pair: points of the left view joined to their nearest-neighbour match on the right, under the
    original and the fine-tuned features; green when within 14 px of the true position (from depth and poses)."""
    imgs = data["pair_images"].numpy()
    H, W = imgs.shape[1:3]
    fig, axes = plt.subplots(1, 2, figsize=(13, 13 * H / (2 * W) * 1.05 + 0.8), squeeze=False)
    for ax, (title, key) in zip(axes[0], (("DINOv2 (original)", "uv_original"), ("fine-tuned (ours)", "uv_finetuned"))):
        ax.imshow(np.concatenate([imgs[0], imgs[1]], axis=1))
        err = (data[key] - data["uv_true"]).norm(dim=1)
        for p, q, e in zip(data["uv_a"], data[key], err):
            ok = float(e) <= 14
            ax.plot(
                [float(p[0]), float(q[0]) + W],
                [float(p[1]), float(q[1])],
                "-",
                lw=1.0,
                color="#1a9850" if ok else "#d73027",
                alpha=0.85,
            )
        ax.set_title(f"{title}: {int((err <= 14).sum())} of {len(err)} within 14 px", fontsize=12)
        _off(ax)
    fig.suptitle("matched points across two held-out views (green: correct within 14 px, red: wrong)", fontsize=12)
    fig.tight_layout()
    return fig


def draw_stage1(data: dict[str, Any]) -> plt.Figure:
    """Figure 1's "rendered (3D-aware)" column beside the image, for a slide: what stage 1 produces (the same PCA basis
    per row as :func:`draw_figure1`, so the colours are figure 1's)."""
    keys = [k for k in ("original", "rendered", "finetuned", "released") if k in data]
    n = data["images"].shape[0]
    H, W = data["images"].shape[1:3]
    fig, axes = plt.subplots(n, 2, figsize=(6.4, 3.2 * n * H / W + 0.5), squeeze=False)
    for r in range(n):
        basis = pca_basis(*[data[k][r] for k in keys])
        axes[r, 0].imshow(data["images"][r].numpy())
        axes[r, 1].imshow(_upsample_rgb(pca_rgb(data["rendered"][r], basis), (H, W)))
        for ax in axes[r]:
            _off(ax)
    axes[0, 0].set_title("held-out view", fontsize=15)
    axes[0, 1].set_title("rendered features (PCA)", fontsize=15)
    fig.tight_layout()
    return fig


def export_pngs(
    artifacts_dir: str | Path, out_dir: str | Path, *, profile: str | None = None, dpi: int = 110
) -> tuple[dict[str, Path], dict[str, str]]:
    """Write the presenter's figures as PNGs from the newest ``figures`` artifact and the headline probe, plus the
    slides' variants (``stage1_slide``: image beside its rendered features; ``probe_predictions_slide``: two examples).

    Returns ``({name: path}, {name: why it could not be drawn})``. A figure whose artifact is missing is skipped; one
    that cannot be drawn (e.g. from an artifact of an older format) is reported, and the others are still drawn.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arts = [
        a for a in cache.iter_artifacts(artifacts_dir) if profile is None or a.stats.get("profile") in (None, profile)
    ]
    written: dict[str, Path] = {}
    errors: dict[str, str] = {}

    def save(name: str, draw: Any) -> None:
        try:
            fig = draw()
            path, tmp = out_dir / f"{name}.png", out_dir / f".{name}.png.tmp"
            fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
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

    figs = [a for a in arts if a.stage == "figures"]
    if figs:
        newest = max(figs, key=lambda a: a.mtime)
        data = load(newest, "figures.pt", ("figure1", "stage1_slide", "kmeans", "matches"))
        if data is not None:
            rnd = newest.stats.get("weights") == "random"
            save("figure1", lambda: draw_figure1(data, random_weights=rnd))
            save("stage1_slide", lambda: draw_stage1(data))
            save("kmeans", lambda: draw_kmeans(data))
            if "uv_a" in data:
                save("matches", lambda: draw_matches(data))
    probes = [a for a in arts if a.stage == "probe" and a.stats.get("headline")]
    if probes:
        newest = max(probes, key=lambda a: a.mtime)
        ex = load(newest, "examples.pt", ("probe_predictions", "probe_predictions_slide"))
        if ex is not None:
            classes = list(newest.stats.get("classes", []))
            save("probe_predictions", lambda: draw_probe_predictions(ex, classes, 10.0))
            save("probe_predictions_slide", lambda: draw_probe_predictions(ex, classes, 10.0, n=2))
    return written, errors
