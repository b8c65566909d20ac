"""Pictures for the notebooks: feature PCA with one shared basis, k-means clusters, 3D scenes in plotly.

Everything returns a figure (matplotlib or plotly) so the notebooks stay one-liners and the exported HTML
shows the same thing the student saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor


def class_colors(n: int, seed: int = 3) -> np.ndarray:
    """A fixed palette [n, 3] in 0..1 (tab20 first, then random)."""
    base = np.array(plt.get_cmap("tab20").colors)
    if n <= len(base):
        return base[:n]
    extra = np.random.default_rng(seed).uniform(0.1, 0.9, (n - len(base), 3))
    return np.concatenate([base, extra])


def colorize_labels(labels: np.ndarray, n_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Class ids [H, W] -> RGB [H, W, 3]; ignored pixels black."""
    pal = np.concatenate([class_colors(n_classes), np.zeros((1, 3))])
    idx = np.where((labels >= 0) & (labels < n_classes), labels, n_classes)
    return pal[idx]


def view_grid(
    views: Sequence, classes: Sequence[str] | None, max_views: int = 4, max_depth: float | None = None
) -> plt.Figure:
    """RGB / depth / class overlay for a few views of a scene (views: data.View)."""
    views = list(views)[:max_views]
    fig, axes = plt.subplots(3, len(views), figsize=(3.2 * len(views), 7.2), squeeze=False)
    for j, v in enumerate(views):
        axes[0, j].imshow(v.image)
        axes[0, j].set_title(v.name, fontsize=9)
        if v.depth is not None:
            im = axes[1, j].imshow(
                np.where(v.depth > 0, v.depth, np.nan),
                cmap="turbo",
                vmin=0,
                vmax=max_depth or float(np.nanmax(v.depth)),
            )
            fig.colorbar(im, ax=axes[1, j], fraction=0.046, label="m")
        if v.labels is not None and classes is not None:
            axes[2, j].imshow(0.45 * v.image + 0.55 * colorize_labels(v.labels, len(classes)))
    for ax, name in zip(axes[:, 0], ["RGB", "depth", "classes"]):
        ax.set_ylabel(name)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def class_legend(classes: Sequence[str]) -> plt.Figure:
    pal = class_colors(len(classes))
    fig, ax = plt.subplots(figsize=(8, 0.35 * ((len(classes) + 3) // 4) + 0.3))
    for i, name in enumerate(classes):
        r, c = divmod(i, 4)
        ax.add_patch(plt.Rectangle((c * 2.0, -r), 0.3, 0.7, color=pal[i]))
        ax.text(c * 2.0 + 0.4, -r + 0.35, f"{i}: {name}", va="center", fontsize=9)
    ax.set_xlim(0, 8)
    ax.set_ylim(-((len(classes) - 1) // 4) - 0.2, 1)
    ax.axis("off")
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Feature PCA and clusters
# ----------------------------------------------------------------------------------------------------------------


def pca_basis(*feature_maps: Tensor, k: int = 3) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One PCA basis fitted on all given maps [.., D, h, w] together: (mean [D], components [D, k], lo [k], hi [k])."""
    flat = torch.cat(
        [
            f.detach()
            .float()
            .reshape(-1, f.shape[-3], f.shape[-2] * f.shape[-1])
            .transpose(1, 2)
            .reshape(-1, f.shape[-3])
            for f in feature_maps
        ]
    )
    mean = flat.mean(0)
    _, _, v = torch.pca_lowrank(flat - mean, q=k, center=False, niter=4)
    proj = (flat - mean) @ v
    lo, hi = proj.quantile(0.01, dim=0), proj.quantile(0.99, dim=0)
    return mean, v, lo, hi


def pca_rgb(features: Tensor, basis: tuple[Tensor, Tensor, Tensor, Tensor]) -> np.ndarray:
    """Features [D, h, w] -> RGB [h, w, 3] in 0..1 with a shared basis (so before/after are comparable)."""
    mean, v, lo, hi = basis
    d, h, w = features.shape
    proj = (features.detach().float().reshape(d, -1).T - mean) @ v  # [h*w, 3]
    return ((proj - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1).reshape(h, w, 3).numpy()


def pca_figure(
    rows: dict[str, Sequence[Tensor]],
    images: Sequence[np.ndarray] | dict[str, Sequence[np.ndarray]] | None = None,
    title: str = "",
) -> plt.Figure:
    """Rows of feature maps (e.g. {"original": [...], "fine-tuned": [...]}) as PCA images with ONE shared basis,
    under rows of images (a list: one row called "image"; a dict: one row per entry, e.g. photo and render)."""
    basis = pca_basis(*[f for fs in rows.values() for f in fs])
    image_rows = {} if images is None else (dict(images) if isinstance(images, dict) else {"image": images})
    ncols = len(next(iter(rows.values())))
    nrows = len(rows) + len(image_rows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.8 * ncols, 2.3 * nrows), squeeze=False)
    for r, (name, ims) in enumerate(image_rows.items()):
        for j, im in enumerate(ims):
            axes[r, j].imshow(np.clip(im, 0, 1))
        axes[r, 0].set_ylabel(name)
    r0 = len(image_rows)
    for i, (name, fs) in enumerate(rows.items()):
        for j, f in enumerate(fs):
            axes[r0 + i, j].imshow(pca_rgb(f, basis), interpolation="nearest")
        axes[r0 + i, 0].set_ylabel(name)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or "feature PCA (one basis shared by all rows)")
    fig.tight_layout()
    return fig


def kmeans(features: Tensor, k: int = 6, iters: int = 20, seed: int = 0) -> Tensor:
    """Plain k-means on rows [M, D] (cosine, on normalised features) -> labels [M]."""
    x = torch.nn.functional.normalize(features.float(), dim=-1)
    gen = torch.Generator().manual_seed(seed)
    centres = x[torch.randperm(x.shape[0], generator=gen)[:k]].clone()
    for _ in range(iters):
        labels = (x @ centres.T).argmax(-1)
        for c in range(k):
            sel = x[labels == c]
            if len(sel):
                centres[c] = torch.nn.functional.normalize(sel.mean(0), dim=0)
    return labels


def kmeans_figure(
    rows: dict[str, Sequence[Tensor]], k: int = 20, seed: int = 0, images: Sequence[np.ndarray] | None = None
) -> plt.Figure:
    """k-means clusters of feature maps [D, h, w] with ONE clustering shared by all rows (cosine k-means fitted on the
    tokens of every row together), so a colour means the same cluster in "original" and "fine-tuned". The official
    demo (k = 20) clusters each model separately, where colours cannot be compared across rows."""
    ncols = len(next(iter(rows.values())))
    nrows = len(rows) + (images is not None)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.8 * ncols, 2.3 * nrows), squeeze=False)
    pal = class_colors(k)
    maps = [f for fs in rows.values() for f in fs]
    labels = kmeans(torch.cat([f.reshape(f.shape[0], -1).T for f in maps]), k, seed=seed)
    r0 = 0
    if images is not None:
        for j, im in enumerate(images):
            axes[0, j].imshow(im)
        axes[0, 0].set_ylabel("image")
        r0 = 1
    off = 0
    for i, (name, fs) in enumerate(rows.items()):
        for j, f in enumerate(fs):
            n = f.shape[1] * f.shape[2]
            axes[r0 + i, j].imshow(
                pal[labels[off : off + n].reshape(f.shape[1], f.shape[2]).numpy()], interpolation="nearest"
            )
            off += n
        axes[r0 + i, 0].set_ylabel(name)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"k-means, k = {k}, one clustering shared by all rows")
    fig.tight_layout()
    return fig


def loss_figure(
    curves: dict[str, Sequence[float]],
    title: str = "loss",
    smooth: int = 10,
    logy: bool = True,
    counts: Sequence[int] | None = None,
    ylabel: str = "loss",
) -> plt.Figure:
    """Loss curves (raw, faint, and a moving average), optionally the number of Gaussians on a second axis."""
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    for name, ys in curves.items():
        ys = np.asarray(ys, dtype=float)
        ax.plot(ys, alpha=0.3)
        if len(ys) > smooth:
            ax.plot(
                np.arange(smooth - 1, len(ys)),
                np.convolve(ys, np.ones(smooth) / smooth, mode="valid"),
                label=name,
                color=ax.lines[-1].get_color(),
            )
        else:
            ax.lines[-1].set_label(name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel + (" (log scale)" if logy else ""))
    if logy:
        ax.set_yscale("log")
    handles, labels = ax.get_legend_handles_labels()
    if counts is not None:
        ax2 = ax.twinx()
        ax2.plot(np.asarray(counts), color="0.3", lw=1.5, ls="--", label="number of Gaussians")
        ax2.set_ylabel("Gaussians")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper right", fontsize=9)
    ax.set_title(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------------------
# 3D (plotly)
# ----------------------------------------------------------------------------------------------------------------


def frustum_lines(cam_to_world: np.ndarray, K: np.ndarray, width: int, height: int, scale: float = 0.25) -> np.ndarray:
    """Line segments of one camera frustum in world space (OpenCV camera), as a [M, 3] array with NaN breaks."""
    corners_px = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=float)
    rays = np.linalg.solve(K, np.concatenate([corners_px, np.ones((4, 1))], 1).T).T  # [4, 3] at z = 1
    pts_cam = np.concatenate([np.zeros((1, 3)), rays * scale])
    pts = (cam_to_world[:3, :3] @ pts_cam.T).T + cam_to_world[:3, 3]
    order = [0, 1, 0, 2, 0, 3, 0, 4, 1, 2, 3, 4, 1]
    return np.concatenate([pts[order], np.full((1, 3), np.nan)])


def scene_figure(
    views: Sequence,
    points: np.ndarray | None = None,
    colors: np.ndarray | None = None,
    max_points: int = 20_000,
    title: str = "",
) -> plotly.graph_objects.Figure:  # noqa: F821
    """Interactive 3D view: camera frustums + a point cloud coloured by RGB."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if points is not None and len(points):
        if len(points) > max_points:
            idx = np.random.default_rng(0).choice(len(points), max_points, replace=False)
            points, colors = points[idx], None if colors is None else colors[idx]
        col = (
            None
            if colors is None
            else [f"rgb({int(r * 255)},{int(g * 255)},{int(b * 255)})" for r, g, b in np.clip(colors, 0, 1)]
        )
        fig.add_trace(
            go.Scatter3d(
                x=points[:, 0],
                y=points[:, 1],
                z=points[:, 2],
                mode="markers",
                marker=dict(size=1.5, color=col),
                name="points",
            )
        )
    lines = np.concatenate([frustum_lines(v.cam_to_world, v.K, v.width, v.height) for v in views])
    fig.add_trace(
        go.Scatter3d(
            x=lines[:, 0],
            y=lines[:, 1],
            z=lines[:, 2],
            mode="lines",
            line=dict(color="crimson", width=3),
            name="cameras",
        )
    )
    fig.update_layout(title=title, scene=dict(aspectmode="data"), height=550, margin=dict(l=0, r=0, t=40, b=0))
    return fig


def gaussians_figure(
    means: Tensor, features: Tensor, opacities: Tensor | None = None, max_points: int = 15_000, title: str = ""
) -> plotly.graph_objects.Figure:  # noqa: F821
    """Gaussian centres coloured by a 3-component PCA of their features."""
    import plotly.graph_objects as go

    keep = torch.arange(means.shape[0])
    if opacities is not None:  # the opaque ones; a short fit (< ~16 iterations) has none yet: its 1,000 most opaque
        opaque = keep[opacities.detach() > 0.2]
        keep = opaque if len(opaque) else keep[opacities.detach().argsort(descending=True)[:1000]]
    if len(keep) > max_points:
        keep = keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(0))[:max_points]]
    m, f = means.detach()[keep].numpy(), features.detach()[keep].float()
    basis = pca_basis(f.T[:, :, None])
    rgb = pca_rgb(f.T[:, :, None], basis)[:, 0]
    col = [f"rgb({int(r * 255)},{int(g * 255)},{int(b * 255)})" for r, g, b in rgb]
    fig = go.Figure(
        go.Scatter3d(
            x=m[:, 0], y=m[:, 1], z=m[:, 2], mode="markers", marker=dict(size=1.6, color=col), name="Gaussians"
        )
    )
    fig.update_layout(
        title=title or "Gaussian centres coloured by feature PCA",
        scene=dict(aspectmode="data"),
        height=550,
        margin=dict(l=0, r=0, t=40, b=0),
    )
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Notebook set-up and banners
# ----------------------------------------------------------------------------------------------------------------


_STARTED: float | None = None  # when setup_notebook ran: notebook_time() reports the time since


def notebook_time() -> None:
    """Print how long this notebook has run (measured now, on this machine): each notebook ends with it."""
    import time

    if _STARTED is not None:
        s = time.time() - _STARTED
        print(f"this notebook ran in {s:.0f} s on this machine" + (f" ({s / 60:.1f} min)" if s >= 120 else ""))


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    import sys

    return "google.colab" in sys.modules


def setup_notebook(artifacts_dir: str = "artifacts", drive_folder: str | None = None) -> str:
    """Run once at the top of each notebook; returns the artifacts folder to use.

    * plotly: Colab's own renderer in Colab; in a batch run (FIT3D_BATCH=1) ``"notebook"`` (plotly.js inlined in the
      output, so the exported HTML renders offline); elsewhere (JupyterLab, Jupyter, VS Code) plotly's mime bundle as
      well, which JupyterLab draws interactively with the ``jupyterlab-plotly`` extension that plotly ships;
    * working directory: the repository root when started in ``notebooks/`` (paths are relative to the root);
    * ``drive_folder`` (Colab): mounts Google Drive and keeps the artifacts in ``MyDrive/<drive_folder>/artifacts``, so
      a notebook opened later from its badge (a fresh runtime) finds what earlier notebooks made (keys are portable).
    """
    import os
    import time
    from pathlib import Path

    import plotly.io as pio

    global _STARTED
    _STARTED = time.time()
    batch = os.environ.get("FIT3D_BATCH") == "1"
    pio.renderers.default = "notebook" if batch else "colab" if in_colab() else "plotly_mimetype+notebook"
    here = Path.cwd()
    if here.name == "notebooks" and (here.parent / "pyproject.toml").is_file():
        os.chdir(here.parent)  # paths in the course are relative to the repo root (papermill runs there too)
    if drive_folder:
        if not in_colab():
            print(f"drive_folder={drive_folder!r} is for Colab; outside it the artifacts stay in {artifacts_dir!r}")
            return artifacts_dir
        from google.colab import drive  # type: ignore[import-not-found]

        drive.mount("/content/drive")
        artifacts_dir = f"/content/drive/MyDrive/{drive_folder}/artifacts"
        Path(artifacts_dir).mkdir(parents=True, exist_ok=True)
        # the generated scenes too (relative data roots resolve under it: synthetic.dataset.data_root)
        os.environ["FIT3D_DATA_HOME"] = f"/content/drive/MyDrive/{drive_folder}"
        print(f"artifacts and generated scenes on Google Drive: {artifacts_dir}, {os.environ['FIT3D_DATA_HOME']}/data")
    return artifacts_dir


def weights_banner(weights: str) -> None:
    """A loud red banner (HTML in Jupyter, plain text in logs) when the backbone's weights are random."""
    from IPython.display import display

    from ..utils import RANDOM_WEIGHTS_BANNER, banner_html

    if weights == "random":  # one output: Jupyter and the report draw the HTML, logs and terminals read the text
        display({"text/plain": RANDOM_WEIGHTS_BANNER, "text/html": banner_html(RANDOM_WEIGHTS_BANNER)}, raw=True)
    else:
        print(f"backbone weights: {weights}")


_SHARES = ("miou", "macc", "aacc", "delta1", "recall@", "chance@")


def in_percent(rows: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Shares (mIoU, mAcc, aAcc, δ<1.25, recall@…, chance@…) in %, as the paper writes them; other values unchanged."""
    return {
        r: {
            k + (" (%)" if k.startswith(_SHARES) else ""): (100 * v if k.startswith(_SHARES) else v)
            for k, v in vals.items()
        }
        for r, vals in rows.items()
    }


def table(rows: list[dict] | dict, title: str | None = None) -> None:
    """Show a small table (list of dicts, or dict of dicts) as HTML with 4 significant digits."""
    import pandas as pd
    from IPython.display import display

    if isinstance(rows, dict) and not any(isinstance(v, dict) for v in rows.values()):
        df = pd.DataFrame({"value": list(rows.values())}, index=list(rows))  # flat dict: one row per key
    else:
        df = pd.DataFrame(rows).T if isinstance(rows, dict) else pd.DataFrame(rows)
    if title:
        print(title)
    display(df.style.format(precision=4) if hasattr(df, "style") else df)


def assembly_tables(probe_stats: dict) -> None:
    """The assembly ablation (concat / add / linear, and the duplicated-features control dup = original ⊕ original) and
    fine-tuned-only vs concatenated, from one probe run's stats; segmentation in %, as the paper."""
    res = probe_stats["results"]
    rows = {
        v: {
            "seg mIoU (%)": 100 * res["seg"][v]["miou"],
            "seg mAcc (%)": 100 * res["seg"][v]["macc"],
            "depth RMSE (m)": res["depth"][v]["rmse"],
            "depth δ<1.25": res["depth"][v]["delta1"],
        }
        for v in res["seg"]
        if v in res.get("depth", {})
    }
    table(
        {k: rows[k] for k in ("original", "dup", "concat", "add", "linear") if k in rows},
        "assembly of original and fine-tuned features (dup: the original twice, the width control):",
    )
    aware = probe_stats.get("awareness", {})
    both = {
        k: {
            **rows.get(k, {}),
            **{f"3D {m}": x for m, x in aware.get(k, {}).items() if m.startswith(("recall", "cos_true"))},
        }
        for k in ("original", "finetuned", "concat")
        if k in rows
    }
    table(both, "fine-tuned only vs concatenated (with the original for reference):")


def ablation_figure(rows: dict[str, list[dict]]) -> plotly.graph_objects.Figure:  # noqa: F821
    """One panel per ablation: seg mIoU and depth RMSE of the concatenated features against the setting."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(rows)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, specs=[[{"secondary_y": True}] * len(names)])
    for j, name in enumerate(names, start=1):
        xs = [str(r["value"]) for r in rows[name]]
        fig.add_trace(
            go.Bar(
                x=xs,
                y=[r["seg_miou_concat"] for r in rows[name]],
                name="seg mIoU (concat)",
                marker_color="#3b6fd8",
                showlegend=j == 1,
            ),
            row=1,
            col=j,
            secondary_y=False,
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[r["depth_rmse_concat"] for r in rows[name]],
                name="depth RMSE (concat)",
                mode="lines+markers",
                marker_color="#d8553b",
                showlegend=j == 1,
            ),
            row=1,
            col=j,
            secondary_y=True,
        )
    # both axes start at zero: an auto-zoomed RMSE axis makes run-to-run noise look like an effect
    fig.update_yaxes(rangemode="tozero", secondary_y=False)
    fig.update_yaxes(rangemode="tozero", secondary_y=True)
    fig.update_yaxes(title_text="mIoU", secondary_y=False, row=1, col=1)
    fig.update_yaxes(title_text="RMSE (m)", secondary_y=True, row=1, col=len(names))
    fig.update_layout(height=380, margin=dict(l=30, r=30, t=60, b=30), legend=dict(orientation="h", y=-0.15))
    return fig


def interactive(show: Callable[..., None], **sliders: tuple[int, int, int]) -> None:  # noqa: F821
    """``ipywidgets.interact`` with integer sliders ``name=(start, min, max)``; in batch runs (papermill under
    ``python -m fit3d_helpers run``, FIT3D_BATCH=1) it draws the start values once instead, since a widget has
    no one to move it there and exported HTML keeps widgets as text only."""
    import os

    if os.environ.get("FIT3D_BATCH") == "1":
        show(**{name: start for name, (start, _, _) in sliders.items()})
        print("(batch run: static view; open the notebook in Jupyter for the slider)")
        return
    import ipywidgets as widgets

    widgets.interact(
        show,
        **{
            name: widgets.IntSlider(value=v, min=lo, max=hi, step=1, description=name)
            for name, (v, lo, hi) in sliders.items()
        },
    )
