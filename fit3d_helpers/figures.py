"""The figures a presenter needs, from artifacts: computed once (a cached stage), drawn anywhere (notebooks, report).

* :func:`figure_data` (stage ``figures``, run by notebook 04) stores what the drawings need for a few held-out views:
  the images, the original backbone's features, the rendered 3D-consistent features (the fine-tuning targets of the
  lifted held-out scene), the fine-tuned model's features (and FiT3D's released model's, when it loads), and the
  nearest-neighbour matches of one covisible view pair under the original and the fine-tuned features.
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
from torch import Tensor

from . import cache
from .viz import class_colors, colorize_labels, kmeans, pca_basis, pca_rgb

FIGURES = ("figure1", "kmeans", "probe_predictions", "matches")


# ----------------------------------------------------------------------------------------------------------------
# Computing (needs the models)
# ----------------------------------------------------------------------------------------------------------------


def _spread(n_total: int, n: int) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, n_total - 1, min(n, n_total))})


@torch.no_grad()
def nearest_matches(feat_a: Tensor, feat_b: Tensor, uv_a: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """For points ``uv_a [M, 2]`` of view A: the centre of B's token most similar (cosine) to A's feature there."""
    from .awareness import sample_features, token_centres

    fa = F.normalize(sample_features(feat_a.float(), uv_a.float(), image_hw), dim=1)  # [M, D]
    fb = F.normalize(feat_b.float().reshape(feat_b.shape[0], -1).T, dim=1)  # [P, D]
    centres = token_centres(tuple(feat_b.shape[-2:]), image_hw).float()  # [P, 2]
    return centres[(fa @ fb.T).argmax(dim=1)]  # [M, 2]


def figure_data(
    prof: Any,
    split: Any,
    original: Any,
    tuned: Any,
    root: str | Path,
    *,
    n_views: int = 3,
    n_matches: int = 40,
    force: bool = False,
) -> cache.Artifact:
    """Compute (once, cached) the data of the presenter's figures on the first held-out scene."""
    from . import pipeline
    from .awareness import correspondences, covisible_pairs
    from .backbone import WeightsError, load_backbone
    from .data import load_scene
    from .finetune import scene_targets

    scene_path = split.val[0]
    key = {
        "stage": "figures",
        "original": original.identity(),
        "finetuned": tuned.identity(),
        "scene": cache.scene_id(scene_path),
        "n_views": n_views,
        "n_matches": n_matches,
        "seed": prof.seed,
        "mask": prof.finetune.mask,
    }

    def make(out: Path, resume: Path) -> dict[str, Any]:
        scene = load_scene(scene_path)
        ids = _spread(len(scene.views), n_views)
        images = torch.stack([torch.as_tensor(scene.views[i].image) for i in ids])  # [n, H, W, 3]
        x = images.permute(0, 3, 1, 2)
        f_orig, _ = original.features(x)
        f_ft, _ = tuned.features(x)
        (lift,) = pipeline.lifts_for(prof, original, [scene_path], root, needed_by="the report's figures")
        targets, _ = scene_targets(lift, original, mask=prof.finetune.mask, root=root)
        rendered = targets.targets[ids]  # [n, D, h, w] the 3D-consistent features stage 2 trains towards
        data: dict[str, Any] = {
            "images": images,
            "original": f_orig,
            "rendered": rendered,
            "finetuned": f_ft,
            "view_ids": torch.tensor(ids),
        }
        released = "not loaded"
        if tuned.identity()["weights"] != "fit3d":
            try:
                fit3d = load_backbone(original.name, "fit3d", device=original.device,
                                      precision="bf16" if original.bf16 else "fp32")  # fmt: skip
                data["released"] = fit3d.features(x)[0]
                released = "loaded"
            except WeightsError as err:
                released = f"not available ({str(err).split(':')[0]})"
        # one covisible pair, matched by nearest neighbour under each feature variant
        grid = tuple(f_orig.shape[-2:])
        pairs = covisible_pairs(scene.views, grid, max_pairs=6)
        if pairs:
            a, b, _ = pairs[len(pairs) // 2]
            va, vb = scene.views[a], scene.views[b]
            uv_a, uv_b = correspondences(va.depth, va.K, va.cam_to_world, vb.depth, vb.K, vb.cam_to_world, grid)
            pick = torch.randperm(uv_a.shape[0], generator=torch.Generator().manual_seed(prof.seed))[:n_matches]
            uv_a, uv_b = uv_a[pick], uv_b[pick]
            pair_x = torch.stack([torch.as_tensor(va.image), torch.as_tensor(vb.image)]).permute(0, 3, 1, 2)
            hw = (va.height, va.width)
            fo, ff = original.features(pair_x)[0], tuned.features(pair_x)[0]
            data.update(
                pair_images=pair_x.permute(0, 2, 3, 1),
                pair_ids=torch.tensor([a, b]),
                uv_a=uv_a,
                uv_true=uv_b,
                uv_original=nearest_matches(fo[0], fo[1], uv_a, hw),
                uv_finetuned=nearest_matches(ff[0], ff[1], uv_a, hw),
            )
        torch.save(data, out / "figures.pt")
        return {
            "stage": "figures",
            **{k: v for k, v in original.describe().items() if k in ("backbone", "weights")},
            "finetuned": tuned.identity()["weights"],
            "scene": scene.name,
            "views": ids,
            "released": released,
            "pair": data["pair_ids"].tolist() if "pair_ids" in data else None,
        }

    return cache.build("figures", key, root, make, force=force, what="the report's figures")


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


def export_pngs(
    artifacts_dir: str | Path, out_dir: str | Path, *, profile: str | None = None, dpi: int = 110
) -> dict[str, Path]:
    """Write the presenter's figures as PNGs from the newest ``figures`` artifact and the headline probe; returns
    ``{name: path}`` of what could be drawn (a figure whose artifact is missing is skipped)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arts = [
        a for a in cache.iter_artifacts(artifacts_dir) if profile is None or a.stats.get("profile") in (None, profile)
    ]
    written: dict[str, Path] = {}

    def save(fig: plt.Figure, name: str) -> None:
        path = out_dir / f"{name}.png"
        tmp = out_dir / f".{name}.png.tmp"
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
        plt.close(fig)
        tmp.replace(path)
        written[name] = path

    figs = [a for a in arts if a.stage == "figures"]
    if figs:
        newest = max(figs, key=lambda a: a.mtime)
        data = newest.torch("figures.pt")
        random = newest.stats.get("weights") == "random"
        save(draw_figure1(data, random_weights=random), "figure1")
        save(draw_kmeans(data), "kmeans")
        if "uv_a" in data:
            save(draw_matches(data), "matches")
    probes = [a for a in arts if a.stage == "probe" and a.stats.get("headline")]
    if probes:
        newest = max(probes, key=lambda a: a.mtime)
        ex = newest.torch("examples.pt")
        save(
            draw_probe_predictions(ex, newest.stats.get("classes", []), float(ex["depth"].max() or 10)),
            "probe_predictions",
        )
    return written
