"""The click-a-pixel feature-similarity viewer: pick a point in one view, see the cosine similarity of its feature to
every token of every view, for the original, the fine-tuned and the rendered (3D-aware) features. Offline: one
self-contained HTML fragment (data as base64 float16, a few lines of vanilla JavaScript, no CDN).

* :func:`viewer_payload` turns the ``figures`` artifact (:func:`fit3d_helpers.figure_data.figure_data`) into what the
  page needs: Figure 1's three held-out views and the matches figure's pair, their images (JPEG), and per feature
  variant the token features projected on the variant's top ``k`` singular directions (uncentred, so dot products are
  kept as well as ``k`` dimensions can), normalised to unit length and stored as float16.
* :func:`viewer_fragment` is the HTML fragment (a ``<div class="fit3d-viewer">`` with its style, data and script): it
  can sit in any page, the slides included, several times. :func:`viewer_page` wraps it in a page;
  :func:`write_viewer` writes ``report/viewer.html`` from the newest ``figures`` artifact; :func:`show_viewer` displays
  it in Jupyter (an ``<iframe srcdoc>``, which works in JupyterLab and in the exported notebook page).

In the page, each heat-map canvas carries ``data-argmax`` (``"col,row"`` of its most similar token) and ``data-max``
(that cosine); the root carries ``data-clicks`` (the clicks so far) and ``data-query`` (``"view,col,row"``).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import cache

VARIANTS = (
    ("original", "DINOv2 (original)"),
    ("finetuned", "FiT3D: fine-tuned model alone"),
    ("rendered", "rendered 3D-aware (stage 1's target)"),
    ("released", "FiT3D released (fine-tuned alone)"),
)
#: the most tokens per view the page keeps (larger grids are area-pooled)
MAX_TOKENS = 1200
#: the bytes of float16 features the page may hold in all (base64 adds a third): keeps it under ~2 MB at paper size
FEATURE_BYTES = 1_100_000
#: the widest image the page embeds, in px
MAX_IMAGE_W = 320


def _jpeg_b64(image: Any, max_w: int = MAX_IMAGE_W) -> tuple[str, int, int]:
    from PIL import Image

    a = image.numpy() if hasattr(image, "numpy") else np.asarray(image)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    im = Image.fromarray(a)
    if im.width > max_w:
        im = im.resize((max_w, round(im.height * max_w / im.width)), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), im.width, im.height


def _pool(feat: torch.Tensor, max_tokens: int) -> torch.Tensor:
    """``[N, D, h, w]`` -> area-pooled so that ``h * w <= max_tokens`` (unchanged when it already is)."""
    h, w = feat.shape[-2:]
    if h * w <= max_tokens:
        return feat
    s = (h * w / max_tokens) ** 0.5
    return F.adaptive_avg_pool2d(feat, (max(1, int(h / s)), max(1, int(w / s))))


def reduce_features(feats: torch.Tensor, k: int = 64) -> tuple[np.ndarray, float]:
    """``[N, D, h, w]`` -> unit vectors ``[N, h, w, k]`` (float16) on the top ``k`` right singular directions of all
    tokens together (uncentred: the projection that keeps dot products best), and the share of the squared norm kept."""
    n, d, h, w = feats.shape
    flat = feats.float().permute(0, 2, 3, 1).reshape(-1, d)
    k = min(k, d, flat.shape[0])
    _, s, vh = torch.linalg.svd(flat, full_matrices=False)
    kept = float((s[:k] ** 2).sum() / (s**2).sum().clamp_min(1e-12))
    proj = F.normalize(flat @ vh[:k].T, dim=1)
    return proj.reshape(n, h, w, k).numpy().astype("<f2"), kept


def viewer_payload(data: dict[str, Any], *, k: int = 64, max_tokens: int = MAX_TOKENS) -> dict[str, Any]:
    """What the page needs from a ``figures`` artifact's data (see the module). Views: Figure 1's rows, then the
    matches figure's pair when the artifact has its features."""
    ids = [int(i) for i in data.get("view_ids", range(data["images"].shape[0]))]
    held = data.get("heldout", "")
    views = [
        {"id": i, "label": f"view {i}" + (" · held out of stage 1" if held == "stage 1 and fine-tuning" else "")}
        for i in ids
    ]
    images = list(data["images"])
    feats: dict[str, list[torch.Tensor]] = {
        key: [data[key][r] for r in range(len(ids))] for key, _ in VARIANTS if key in data
    }
    pf = data.get("pair_features") or {}
    if "pair_images" in data and pf and all(key in pf for key in feats if key != "released"):
        for j, (i, tag) in enumerate(zip(data["pair_ids"].tolist(), ("A", "B"))):
            views.append({"id": int(i), "label": f"view {int(i)} · matches' view {tag}"})
            images.append(data["pair_images"][j])
        feats.pop("released", None)  # the pair has no released-model features
        for key in feats:
            feats[key] += [pf[key][0], pf[key][1]]
    variants = []
    max_tokens = min(max_tokens, FEATURE_BYTES // (2 * k * len(views) * max(1, len(feats))))
    for key, label in VARIANTS:
        if key not in feats:
            continue
        stack = _pool(torch.stack([f.float() for f in feats[key]]), max_tokens)
        vec, kept = reduce_features(stack, k)
        variants.append(
            {
                "key": key,
                "label": label,
                "k": int(vec.shape[-1]),
                "grid": [int(vec.shape[1]), int(vec.shape[2])],
                "kept": round(kept, 4),
                "data": base64.b64encode(vec.tobytes()).decode("ascii"),
            }
        )
    for v, im in zip(views, images):
        v["img"], v["w"], v["h"] = _jpeg_b64(im)
    return {"scene": str(data.get("scene", "")), "heldout": held, "views": views, "variants": variants}


_STYLE = """
.fit3d-viewer{font:16px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;color:#111;max-width:1240px}
.fit3d-viewer .fv-grid{display:grid;gap:6px 8px;align-items:center}
.fit3d-viewer .fv-grid canvas{width:100%;height:auto;display:block;border-radius:3px}
.fit3d-viewer .fv-img{cursor:crosshair;outline:2px solid transparent}
.fit3d-viewer .fv-img.fv-src{outline-color:#0a6}
.fit3d-viewer .fv-head{font-weight:600;text-align:center;font-size:16px}
.fit3d-viewer .fv-row{font-weight:600;font-size:16px;max-width:11em}
.fit3d-viewer .fv-bar{display:flex;align-items:center;gap:10px;margin:10px 0 4px}
.fit3d-viewer .fv-ramp{width:260px;height:16px;border-radius:3px}
.fit3d-viewer p{margin:6px 0}
"""

# cosine in [0, 1] -> colour (magma-like); below 0 is the first colour
_STOPS = ((0, (0, 0, 4)), (0.25, (81, 18, 124)), (0.5, (183, 55, 121)), (0.75, (252, 137, 97)), (1, (252, 253, 191)))

_SCRIPT = r"""
(function (root) {
  if (!root || root.dataset.ready) return;
  root.dataset.ready = "1";
  var D = JSON.parse(root.querySelector(".fv-data").textContent);
  var STOPS = __STOPS__;
  function half(h) {
    var s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, f = h & 1023;
    if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
    if (e === 31) return f ? NaN : s * Infinity;
    return s * Math.pow(2, e - 15) * (1 + f / 1024);
  }
  function decode(b64) {
    var bin = atob(b64), u = new Uint16Array(bin.length / 2), out = new Float32Array(bin.length / 2);
    for (var i = 0; i < u.length; i++) u[i] = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
    for (var j = 0; j < u.length; j++) out[j] = half(u[j]);
    return out;
  }
  function colour(c) {
    c = Math.max(0, Math.min(1, c));
    for (var i = 1; i < STOPS.length; i++) {
      if (c <= STOPS[i][0]) {
        var a = STOPS[i - 1], b = STOPS[i], t = (c - a[0]) / (b[0] - a[0]);
        return [0, 1, 2].map(function (q) { return Math.round(a[1][q] + t * (b[1][q] - a[1][q])); });
      }
    }
    return STOPS[STOPS.length - 1][1];
  }
  var nv = D.views.length;
  D.variants.forEach(function (v) { v.vec = decode(v.data); delete v.data; });
  var imgs = [], loaded = 0;
  var query = {view: 0, x: D.views[0].w / 2, y: D.views[0].h / 2};
  D.views.forEach(function (view, i) {
    var im = new Image();
    im.onload = function () { loaded++; if (loaded === nv) draw(); };
    im.src = view.img;
    imgs.push(im);
  });
  function draw() {
    var q = query, qv = D.views[q.view];
    root.querySelectorAll("canvas.fv-img").forEach(function (cv) {
      var i = +cv.dataset.view, ctx = cv.getContext("2d");
      ctx.drawImage(imgs[i], 0, 0, cv.width, cv.height);
      cv.classList.toggle("fv-src", i === q.view);
      if (i === q.view) cross(ctx, q.x, q.y, "#0f0");
    });
    D.variants.forEach(function (v) {
      var h = v.grid[0], w = v.grid[1], k = v.k, per = h * w * k;
      var col = Math.min(w - 1, Math.floor(q.x / qv.w * w)), row = Math.min(h - 1, Math.floor(q.y / qv.h * h));
      var qo = q.view * per + (row * w + col) * k;
      root.dataset.query = q.view + "," + col + "," + row;
      root.querySelectorAll('canvas.fv-heat[data-variant="' + v.key + '"]').forEach(function (cv) {
        var i = +cv.dataset.view, ctx = cv.getContext("2d"), best = -2, arg = 0;
        var off = document.createElement("canvas");
        off.width = w; off.height = h;
        var octx = off.getContext("2d"), px = octx.createImageData(w, h);
        for (var t = 0; t < h * w; t++) {
          var s = 0, o = i * per + t * k;
          for (var d = 0; d < k; d++) s += v.vec[qo + d] * v.vec[o + d];
          if (s > best) { best = s; arg = t; }
          var c = colour(s);
          px.data[4 * t] = c[0]; px.data[4 * t + 1] = c[1]; px.data[4 * t + 2] = c[2]; px.data[4 * t + 3] = 255;
        }
        octx.putImageData(px, 0, 0);
        ctx.globalAlpha = 1;
        ctx.drawImage(imgs[i], 0, 0, cv.width, cv.height);
        ctx.globalAlpha = 0.8;
        ctx.imageSmoothingEnabled = true;
        ctx.drawImage(off, 0, 0, cv.width, cv.height);
        ctx.globalAlpha = 1;
        var ac = arg % w, ar = Math.floor(arg / w);
        cv.dataset.argmax = ac + "," + ar;
        cv.dataset.max = best.toFixed(3);
        if (i === q.view) cross(ctx, q.x, q.y, "#0f0");
        else ring(ctx, (ac + 0.5) * cv.width / w, (ar + 0.5) * cv.height / h);
      });
    });
  }
  function cross(ctx, x, y, c) {
    ctx.lineWidth = 3; ctx.strokeStyle = "#000";
    ctx.beginPath(); ctx.moveTo(x - 9, y); ctx.lineTo(x + 9, y);
    ctx.moveTo(x, y - 9); ctx.lineTo(x, y + 9); ctx.stroke();
    ctx.lineWidth = 1.5; ctx.strokeStyle = c; ctx.stroke();
  }
  function ring(ctx, x, y) {
    ctx.lineWidth = 3; ctx.strokeStyle = "#000";
    ctx.beginPath(); ctx.arc(x, y, 8, 0, 2 * Math.PI); ctx.stroke();
    ctx.lineWidth = 1.5; ctx.strokeStyle = "#0ff"; ctx.stroke();
  }
  root.querySelectorAll("canvas.fv-img").forEach(function (cv) {
    cv.addEventListener("click", function (ev) {
      var r = cv.getBoundingClientRect();
      query = {view: +cv.dataset.view, x: (ev.clientX - r.left) / r.width * cv.width,
               y: (ev.clientY - r.top) / r.height * cv.height};
      root.dataset.clicks = (+root.dataset.clicks || 0) + 1;
      draw();
    });
  });
})(document.currentScript ? document.currentScript.closest(".fit3d-viewer")
   : document.querySelector(".fit3d-viewer:not([data-ready])"));
"""


def viewer_fragment(payload: dict[str, Any], *, random_weights: bool = False) -> str:
    """The viewer as one self-contained HTML fragment (``<div class="fit3d-viewer">`` with style, data, script)."""
    views, variants = payload["views"], payload["variants"]
    cols = f"minmax(7em,11em) repeat({len(views)}, minmax(0,1fr))"
    cells = ["<div></div>"] + [f'<div class="fv-head">{html.escape(v["label"])}</div>' for v in views]
    cells.append('<div class="fv-row">image (click a point)</div>')
    cells += [
        f'<canvas class="fv-img" data-view="{i}" width="{v["w"]}" height="{v["h"]}" '
        f'aria-label="{html.escape(v["label"])}: click to pick a point"></canvas>'
        for i, v in enumerate(views)
    ]
    for var in variants:
        cells.append(f'<div class="fv-row">{html.escape(var["label"])}</div>')
        cells += [
            f'<canvas class="fv-heat" data-variant="{var["key"]}" data-view="{i}" width="{v["w"]}" '
            f'height="{v["h"]}"></canvas>'
            for i, v in enumerate(views)
        ]
    ramp = ", ".join(f"rgb{c} {int(100 * t)}%" for t, c in _STOPS)
    kept = ", ".join(f"{html.escape(v['label'])} {100 * v['kept']:.0f} %" for v in variants)
    k = variants[0]["k"] if variants else 0
    where = html.escape(payload.get("scene") or "a held-out scene")
    note = (
        '<p style="color:#b00020;font-weight:600">Random weights: this shows the pipeline working, not the method; '
        "similar colours follow image colour, not 3D points.</p>"
        if random_weights
        else ""
    )
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    script = _SCRIPT.replace("__STOPS__", json.dumps([[t, list(c)] for t, c in _STOPS]))
    return (
        f'<div class="fit3d-viewer" data-clicks="0"><style>{_STYLE}</style>{note}'
        f"<p>Click a point in any image of {where} (a scene fine-tuning never saw). Each row below colours every "
        "token of every view by the cosine similarity of its feature to the feature at that point (green cross); "
        "a cyan ring marks the most similar token in each other view. A 3D-aware feature lights up the same 3D point "
        "in the other views.</p>"
        f'<div class="fv-grid" style="grid-template-columns:{cols}">{"".join(cells)}</div>'
        f'<div class="fv-bar"><span>cosine similarity 0</span><span class="fv-ramp" '
        f'style="background:linear-gradient(to right, {ramp})"></span><span>1</span></div>'
        f'<p style="font-size:16px;color:#444">Features projected on each variant\'s top {k} singular directions '
        f"(share of the squared norm kept: {kept}), stored as float16; token grid "
        f"{variants[0]['grid'][1] if variants else 0}×{variants[0]['grid'][0] if variants else 0}.</p>"
        f'<script type="application/json" class="fv-data">{data}</script><script>{script}</script></div>'
    )


def viewer_page(
    payload: dict[str, Any], *, random_weights: bool = False, title: str = "Feature similarity", banner: bool = True
) -> str:
    """A whole offline page around :func:`viewer_fragment` (the random-weights banner on top when they are, unless
    ``banner=False``: inside a notebook, whose page already has one; the fragment's own one-line note stays)."""
    from ..utils import banner_html

    top = banner_html() if random_weights and banner else ""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<style>body{margin:0;padding:0 16px 16px}h1{font:600 24px system-ui,sans-serif}</style></head><body>"
        f"{top}<h1>{html.escape(title)}: click a pixel</h1>"
        f"{viewer_fragment(payload, random_weights=random_weights)}</body></html>"
    )


def _newest_figures(artifacts_dir: str | Path, profile: str | None) -> Any:
    arts = []
    for a in cache.iter_artifacts(artifacts_dir):
        try:
            if a.stage == "figures" and (profile is None or a.stats.get("profile") in (None, profile)):
                arts.append(a)
        except Exception:  # an unreadable stats.json: export_pngs reports it
            continue
    return max(arts, key=lambda a: a.mtime) if arts else None


def write_viewer(artifacts_dir: str | Path, report_dir: str | Path, *, profile: str | None = None) -> Path | None:
    """Write ``report_dir/viewer.html`` from the newest ``figures`` artifact; None (and no stale page) without one."""
    out = Path(report_dir) / "viewer.html"
    out.unlink(missing_ok=True)
    art = _newest_figures(artifacts_dir, profile) if Path(artifacts_dir).is_dir() else None
    if art is None:
        return None
    data = art.torch("figures.pt")
    page = viewer_page(viewer_payload(data), random_weights=art.stats.get("weights") == "random")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(".viewer.html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


def show_viewer(data: dict[str, Any], *, random_weights: bool = False, height: int = 760) -> Any:
    """The viewer in Jupyter: an ``<iframe srcdoc>`` holding :func:`viewer_page` (works in JupyterLab, in the
    executed notebook's HTML page and offline)."""
    import warnings

    from IPython.display import HTML

    page = viewer_page(viewer_payload(data), random_weights=random_weights, banner=False)
    with warnings.catch_warnings():  # IPython suggests IFrame, which needs a URL: srcdoc keeps the page offline
        warnings.simplefilter("ignore", UserWarning)
        return HTML(
            f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{height}px;border:0" '
            'title="feature-similarity viewer"></iframe>'
        )
