"""The presenter's figures: which views Figure 1 shows, one PCA basis for all of it, slide-size PNGs with text of at
least 16 px, and a matches figure whose counts are those it draws and the awareness table's. Tiny synthetic data."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from fit3d_helpers import cache
from fit3d_helpers.course import figures
from fit3d_helpers.figure_data import pick_views, spread_views

H, W = 42, 56


def ring_cameras(n: int = 24) -> np.ndarray:
    """``n`` cameras on a circle, each looking at the centre (OpenCV: z forward)."""
    out = []
    for i in range(n):
        a = 2 * math.pi * i / n
        pos = np.array([math.cos(a), math.sin(a), 0.0])
        z = -pos
        x = np.cross([0.0, 0.0, 1.0], z)
        x /= np.linalg.norm(x)
        c2w = np.eye(4)
        c2w[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
        c2w[:3, 3] = pos
        out.append(c2w)
    return np.stack(out)


def test_figure1_views_are_held_out_of_stage1_and_spread() -> None:
    c2w = ring_cameras(24)
    ids, heldout = pick_views(c2w, 8, 3)  # holdout_split(24, 8) holds out 4, 12, 20
    assert ids == [4, 12, 20] and heldout == "stage 1 and fine-tuning"
    ids, _ = pick_views(c2w, 4, 3)  # 2, 6, 10, 14, 18, 22: three of six, about 120 degrees apart
    angles = sorted(360 * i / 24 for i in ids)
    gaps = np.diff(angles + [angles[0] + 360])
    assert set(ids) <= {2, 6, 10, 14, 18, 22} and gaps.min() >= 90, ids
    ids, heldout = pick_views(c2w, 0, 3)  # the official recipe: stage 1 fits every view
    assert heldout == "fine-tuning" and len(set(ids)) == 3
    assert np.diff(sorted(360 * i / 24 for i in ids)).min() >= 90
    # near-identical viewpoints are not both picked (the old figure showed views 0 and 23)
    assert spread_views(c2w, [0, 1, 8, 16, 23], 3) == [0, 8, 16]


def fig_data(n: int = 3, d: int = 8) -> dict:
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    imgs = (torch.stack([xx, yy, 1 - xx * yy], -1)[None] * 0.8 + 0.2 * torch.rand(n, H, W, 3, generator=g)).clamp(0, 1)
    feats = {k: torch.randn(n, d, 3, 4, generator=g) for k in ("original", "rendered", "finetuned")}
    uv_a = torch.rand(10, 2, generator=g) * torch.tensor([W * 1.0, H * 1.0])
    uv_true = uv_a.clone()
    uv_orig = uv_true.clone()
    uv_orig[:7] += 30  # 3 of 10 within 14 px
    uv_ft = uv_true.clone()
    uv_ft[:2] += torch.tensor([14.5, 0.0])  # 8 of 10 (14.5 px is out, as in the check)
    return {
        "images": imgs,
        **feats,
        "view_ids": torch.tensor([4, 12, 20][:n]),
        "heldout": "stage 1 and fine-tuning",
        "scene": "val_000",
        "pair_images": imgs[:2],
        "pair_ids": torch.tensor([22, 18]),
        "uv_a": uv_a,
        "uv_true": uv_true,
        "uv_original": uv_orig,
        "uv_finetuned": uv_ft,
        "pair_n": 94,
        "pair_correct": {"original": 37, "finetuned": 41},
        "pair_features": {k: v[:2].half() for k, v in feats.items()},
    }


def texts(fig: plt.Figure) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(plt.Text) if t.get_visible())


def test_figure1_one_pca_basis_for_every_row_and_column() -> None:
    data = fig_data()
    data["finetuned"][2] = data["original"][0]  # the same features in another row and column ...
    fig = figures.draw_figure1(data, random_weights=True)
    axes = np.array(fig.axes).reshape(3, -1)
    a, b = axes[0, 1].images[0].get_array(), axes[2, 3].images[0].get_array()
    np.testing.assert_allclose(a, b)  # ... get the same colours (one basis per row would not)
    assert not np.allclose(axes[0, 1].images[0].get_array(), axes[1, 1].images[0].get_array())
    t = texts(fig)
    assert "views 4, 12, 20 of val_000: held out of stage 1's fit" in t and "fine-tuning never saw" in t
    assert "fine-tuned\nmodel alone" in t and "one PCA basis for every feature panel" in t
    assert "random weights" in t
    plt.close(fig)


def test_matches_counts_are_what_it_draws_and_the_table() -> None:
    data = fig_data()
    assert figures.match_counts(data, "uv_original") == (3, 10)
    assert figures.match_counts(data, "uv_finetuned") == (8, 10)
    table = {
        "original": {"recall@14px": 0.33, "n": 2599, "n_pairs": 24},
        "finetuned": {"recall@14px": 0.3508, "n": 2599, "n_pairs": 24},
    }
    fig = figures.draw_matches(data, table)
    t = texts(fig)
    assert "3 of 10 drawn lines correct" in t and "8 of 10 drawn lines correct" in t
    assert "whole pair: 37 of 94 points (39.4 %)" in t and "whole pair: 41 of 94 points (43.6 %)" in t
    assert "recall@14px = 33.0 %" in t and "recall@14px = 35.1 %" in t and "all 24 pairs (2,599 points)" in t
    assert "view A (22)" in t and "view B (18)" in t
    ax = fig.axes[0]
    greens = [ln for ln in ax.lines if ln.get_linestyle() == "-" and ln.get_color() == figures.GOOD]
    assert len(greens) == 3 and all(ln.get_linewidth() >= 2 for ln in greens)  # thick, one line per good match
    dots = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert len(dots) == 10  # endpoint dots at both ends of each line
    plt.close(fig)
    # the table of another model is not quoted
    assert figures.awareness_of({"awareness": table, "finetuned": "a"}, {"finetuned": "b"}) is None
    assert figures.awareness_of({"awareness": table, "finetuned": "a"}, {"finetuned": "a"}) == table


def png_size(path: Path) -> tuple[int, int]:
    w, h = struct.unpack(">II", path.read_bytes()[16:24])
    return w, h


def make_artifacts(root: Path) -> None:
    data = fig_data()

    def save_figs(out: Path, resume: Path) -> dict:
        torch.save(data, out / "figures.pt")
        return {"stage": "figures", "weights": "random", "finetuned": "finetune/x"}

    cache.build("figures", {"stage": "figures", "t": 1}, root, save_figs)
    g = torch.Generator().manual_seed(2)
    ex = {
        "images": data["images"][:3],
        "labels": torch.randint(0, 3, (3, H, W), generator=g),
        "depth": torch.rand(3, H, W, generator=g) * 4,
        "examples": {
            **{f"seg/{v}": {"pred": torch.randint(0, 3, (3, H, W), generator=g)} for v in ("original", "concat")},
            **{f"depth/{v}": {"pred": torch.rand(3, H, W, generator=g) * 4} for v in ("original", "concat")},
        },
    }

    def save_probe(out: Path, resume: Path) -> dict:
        torch.save(ex, out / "examples.pt")
        return {
            "stage": "probe",
            "headline": True,
            "weights": "random",
            "finetuned": "finetune/x",
            "classes": ["wall", "floor", "table"],
            "awareness": {"original": {"recall@14px": 0.33, "n": 2599, "n_pairs": 24}},
        }

    cache.build("probe", {"stage": "probe", "t": 1}, root, save_probe)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    root = tmp_path_factory.mktemp("figs")
    make_artifacts(root / "artifacts")
    written, errors = figures.export_pngs(root / "artifacts", root / "out")
    return root / "out", written, errors


def test_every_slide_figure_is_slide_size_with_text_of_16_px(exported: tuple[Path, dict, dict]) -> None:
    out, written, errors = exported
    assert not errors, errors
    names = {"figure1", "kmeans", "matches", "probe_predictions", "probe_predictions_slide", "stage1_slide"}
    assert set(written) == names
    sizes = json.loads((out / "figures.json").read_text())
    for name in names:
        w, h = png_size(out / f"{name}.png")
        assert (w, h) == (sizes[name]["width"], sizes[name]["height"]), name
        assert w <= figures.SLIDE_PX[0] and h <= figures.SLIDE_PX[1], (name, w, h)  # fits a 1280×720 slide
        assert sizes[name]["min_font_px"] >= 16, (name, sizes[name])
    assert png_size(out / "figure1.png") == figures.SLIDE_PX and png_size(out / "matches.png") == figures.SLIDE_PX


def test_min_font_px_sees_a_small_label() -> None:
    fig = figures.draw_kmeans(fig_data())
    assert figures.min_font_px(fig) >= 16
    fig.axes[0].set_xlabel("tiny", fontsize=8)
    assert figures.min_font_px(fig) == pytest.approx(8 * figures.DPI / 72)
    plt.close(fig)
