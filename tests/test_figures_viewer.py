"""The click-a-pixel feature-similarity viewer: its payload (size, what cosine it keeps) and, in headless Chromium, that
a click in one view moves the heat maps' argmax in the others to where the features say (skipped without Chromium)."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fit3d_helpers import cache
from fit3d_helpers.course import viewer

GH, GW, D = 6, 8, 32  # token grid and feature width
IH, IW = 60, 80  # image size: 10 px per token
VARIANTS = ("original", "finetuned", "rendered")


def known_data() -> dict:
    """Three views whose token (row, col) carries the same feature in every view, per variant: clicking token (c, r)
    of one view must light up token (c, r) of every other view. ``finetuned`` is ``original`` rolled by one column in
    every view alike, so it too matches the same token."""
    g = torch.Generator().manual_seed(0)
    base = F.normalize(torch.randn(D, GH, GW, generator=g), dim=0)
    orig = base[None].repeat(3, 1, 1, 1)
    ft = torch.roll(orig, shifts=1, dims=-1)  # ft[.., c] = orig[.., c - 1]
    imgs = torch.rand(3, IH, IW, 3, generator=g)
    return {
        "images": imgs,
        "original": orig,
        "finetuned": ft,
        "rendered": orig.clone(),
        "view_ids": torch.tensor([4, 12, 20]),
        "heldout": "stage 1 and fine-tuning",
        "scene": "val_000",
    }


def test_reduced_features_keep_cosine() -> None:
    g = torch.Generator().manual_seed(1)
    low = torch.randn(2, 16, 5, 7, generator=g)  # rank 16 < k: the projection is exact
    feats = torch.einsum("nkhw,kd->ndhw", low, torch.randn(16, 384, generator=g))
    vec, kept = viewer.reduce_features(feats, 64)
    assert vec.dtype == np.float16 and vec.shape == (2, 5, 7, 64) and kept == pytest.approx(1.0, abs=1e-4)
    flat = F.normalize(feats.permute(0, 2, 3, 1).reshape(-1, 384), dim=1)
    v = torch.from_numpy(vec.astype(np.float32)).reshape(-1, 64)
    assert torch.allclose(v @ v.T, flat @ flat.T, atol=5e-3)


def test_payload_stays_small_at_paper_size() -> None:
    g = torch.Generator().manual_seed(2)
    n, hw = 3, (41, 62)  # 876x584 ScanNet++ DSLR at patch 14
    data = {
        "images": torch.rand(n, 584, 876, 3, generator=g),
        **{k: torch.randn(n, 384, *hw, generator=g) for k in VARIANTS},
        "view_ids": torch.arange(n),
        "pair_images": torch.rand(2, 584, 876, 3, generator=g),
        "pair_ids": torch.tensor([5, 9]),
        "pair_features": {k: torch.randn(2, 384, *hw, generator=g).half() for k in VARIANTS},
    }
    payload = viewer.viewer_payload(data)
    assert len(payload["views"]) == 5 and tuple(v["key"] for v in payload["variants"]) == VARIANTS
    assert all(v["grid"][0] * v["grid"][1] <= viewer.MAX_TOKENS for v in payload["variants"])
    page = viewer.viewer_page(payload, random_weights=True)
    assert len(page.encode()) < 2_000_000, len(page)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # offline: nothing from the network


def test_write_viewer_from_the_figures_artifact(tmp_path: Path) -> None:
    def make(out: Path, resume: Path) -> dict:
        torch.save(known_data(), out / "figures.pt")
        return {"stage": "figures", "weights": "random"}

    assert viewer.write_viewer(tmp_path / "artifacts", tmp_path / "report") is None
    cache.build("figures", {"stage": "figures", "t": 1}, tmp_path / "artifacts", make)
    path = viewer.write_viewer(tmp_path / "artifacts", tmp_path / "report")
    page = path.read_text()
    assert path.name == "viewer.html" and 'class="fit3d-viewer"' in page and "fit3d-banner" in page
    payload = json.loads(re.search(r'class="fv-data">(.*?)</script>', page, re.S).group(1))
    assert [v["label"] for v in payload["views"]][0] == "view 4 · held out of stage 1"
    assert len(base64.b64decode(payload["variants"][0]["data"])) == 3 * GH * GW * D * 2  # float16
    html = viewer.show_viewer(known_data(), random_weights=True).data
    assert html.startswith("<iframe srcdoc=") and "fit3d-viewer" in html and "fit3d-banner" not in html


def _chromium() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return None
    from fit3d_helpers.course.browser import find_chromium

    return find_chromium()


@pytest.mark.skipif(_chromium() is None, reason="needs playwright and Chromium (Debian: apt-get install chromium)")
def test_click_moves_the_heat_maps(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from fit3d_helpers.course.browser import CHROMIUM_ARGS

    page_path = tmp_path / "viewer.html"
    page_path.write_text(viewer.viewer_page(viewer.viewer_payload(known_data())), encoding="utf-8")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), headless=True, args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri())
            page.wait_for_function("document.querySelector('canvas.fv-heat[data-view=\"2\"]').dataset.argmax")
            heat_b = 'canvas.fv-heat[data-variant="original"][data-view="1"]'
            pixels = f"""() => {{ const c = document.querySelector('{heat_b}');
                return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data
                    .filter((_, i) => i % 4 === 0)).reduce((a, b) => a + b, 0); }}"""

            def argmax(variant: str, view: int) -> str:
                sel = f'canvas.fv-heat[data-variant="{variant}"][data-view="{view}"]'
                return page.get_attribute(sel, "data-argmax")

            def click(view: int, col: int, row: int) -> None:
                box = page.locator(f'canvas.fv-img[data-view="{view}"]').bounding_box()
                x, y = box["x"] + (col + 0.5) / GW * box["width"], box["y"] + (row + 0.5) / GH * box["height"]
                page.mouse.click(x, y)

            before = page.evaluate(pixels)
            click(0, 1, 1)
            assert page.get_attribute(".fit3d-viewer", "data-clicks") == "1"
            assert page.get_attribute(".fit3d-viewer", "data-query") == "0,1,1"
            assert argmax("original", 1) == "1,1" and argmax("rendered", 2) == "1,1"
            assert argmax("finetuned", 1) == "1,1"  # the same shift in every view: the same token
            after = page.evaluate(pixels)
            assert after != before  # the heat map in view B was redrawn
            click(0, 6, 4)
            assert argmax("original", 1) == "6,4" and argmax("original", 2) == "6,4" and argmax("rendered", 1) == "6,4"
            assert page.evaluate(pixels) != after
            click(2, 3, 2)  # a click in another view makes it the source
            assert argmax("original", 0) == "3,2" and page.get_attribute(".fit3d-viewer", "data-clicks") == "3"
            assert float(page.get_attribute(heat_b, "data-max")) == pytest.approx(1.0, abs=0.01)
            assert not errors, errors
        finally:
            browser.close()


@pytest.mark.skipif(_chromium() is None, reason="needs playwright and Chromium (Debian: apt-get install chromium)")
def test_the_browser_check_clicks_the_viewer(tmp_path: Path) -> None:
    """The report's browser check clicks the viewer: a working page passes, one whose clicks do nothing fails."""
    from fit3d_helpers.course.browser import check_pages

    good = tmp_path / "viewer.html"
    good.write_text(viewer.viewer_page(viewer.viewer_payload(known_data())), encoding="utf-8")
    bad = tmp_path / "dead.html"
    bad.write_text(good.read_text(encoding="utf-8").replace('addEventListener("click"', 'addEventListener("x"'))
    ok, dead = check_pages([good, bad], chromium=_chromium())
    assert ok.viewer_click == "ok" and ok.ok, ok.problems
    assert "did not change the heat maps" in dead.viewer_click and not dead.ok
