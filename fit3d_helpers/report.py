"""Self-contained HTML report: notebook pages (nbconvert, offline) and an index built from ``stats.json`` files.

Everything this module writes opens offline: no ``<script src="http…">`` and no ``<link href="http…">``.

* nbconvert's ``lab`` template loads require.js, MathJax and mermaid from CDNs. A small template on top of it
  drops those blocks; plotly's figure outputs also carry a MathJax CDN ``<script>`` which is stripped
  afterwards (:func:`strip_remote_resources`). Figures still render because plotly's ``"notebook"`` renderer
  embeds plotly.js (as a plain ``<script>``, no require.js needed with plotly ≥ 6) in the output of the cell
  that selects the renderer.
* LaTeX in markdown cells (``$…$``, ``$$…$$``, ``\\(…\\)``, ``\\[…\\]``) is rendered to SVG images with
  matplotlib's mathtext before conversion, since MathJax is not available offline. What mathtext cannot
  parse is shown as raw TeX in a ``<code>`` span.
* Markdown images with local paths are embedded (``embed_images``), relative to the source notebook's folder.
* A red random-weights banner goes at the top of a page when the notebook's outputs contain
  :data:`~fit3d_helpers.utils.RANDOM_WEIGHTS_BANNER`, or when the caller passes ``banner``.

:func:`build_index` writes ``report/index.html`` from ``report/run.json`` (see :mod:`fit3d_helpers.runner`)
and every ``artifacts/<stage>/<hash>/stats.json``; the only typed numbers in it are the paper's, in a table
labelled as such.
"""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import functools
import html
import io
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .utils import RANDOM_WEIGHTS_BANNER, read_json

__all__ = [
    "PAPER_SOURCE",
    "apply_banner",
    "banner_html",
    "build_index",
    "export_html",
    "find_remote_resources",
    "notebook_has_random_banner",
    "random_weights_artifacts",
    "render_markdown_math",
    "scan_artifacts",
    "strip_remote_resources",
]

BANNER_CLASS = "fit3d-banner"
_BANNER_MARK = f'class="{BANNER_CLASS}"'
# The first sentence of the banner is what we look for in outputs (robust to wrapping of the rest).
_BANNER_KEY = RANDOM_WEIGHTS_BANNER.split(":")[0] + ":"  # "RANDOM WEIGHTS:"
_BANNER_PROBE = RANDOM_WEIGHTS_BANNER.split(".")[0]

# The checks the tests run on every produced page (and scripts/check_report_browser.py too).
REMOTE_PATTERNS = (
    re.compile(r"""<script[^>]+src=["']?(?:https?:)?//""", re.I),
    re.compile(r"""<link[^>]+href=["']?(?:https?:)?//""", re.I),
)
_REMOTE_SCRIPT_RE = re.compile(
    r"""<script\b[^>]*\bsrc\s*=\s*["']?(?:https?:)?//[^>]*>\s*</script\s*>""", re.I | re.S
)
_REMOTE_LINK_RE = re.compile(r"""<link\b[^>]*\bhref\s*=\s*["']?(?:https?:)?//[^>]*>""", re.I)


# ----------------------------------------------------------------------------------------------------------
# Offline helpers
# ----------------------------------------------------------------------------------------------------------


def find_remote_resources(text: str) -> list[str]:
    """Tags in ``text`` that would load a script or stylesheet from the network (empty list when offline)."""
    hits = []
    for pat in REMOTE_PATTERNS:
        for m in pat.finditer(text):
            end = text.find(">", m.start())
            hits.append(text[m.start() : end + 1 if end >= 0 else m.end() + 80][:300])
    return hits


def strip_remote_resources(text: str) -> str:
    """Remove ``<script src="http…"></script>`` and ``<link href="http…">`` tags (plotly's MathJax CDN tag)."""
    text = _REMOTE_SCRIPT_RE.sub("<!-- remote script removed for offline viewing -->", text)
    return _REMOTE_LINK_RE.sub("<!-- remote stylesheet removed for offline viewing -->", text)


def banner_html(text: str = RANDOM_WEIGHTS_BANNER) -> str:
    """The red banner, with inline style so that it looks the same on notebook pages and the index."""
    return (
        f'<div {_BANNER_MARK} role="alert" style="background:#b00020;color:#fff;padding:14px 20px;'
        "font:600 16px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;border-bottom:4px solid #6d0014;"
        f'margin:0 0 8px 0">&#9888; {html.escape(text)}</div>'
    )


def apply_banner(html_path: str | Path, text: str = RANDOM_WEIGHTS_BANNER) -> bool:
    """Put the banner at the top of an existing page (after ``<body …>`` / ``<main>``); idempotent.

    Returns True when the page was changed.
    """
    html_path = Path(html_path)
    page = html_path.read_text(encoding="utf-8")
    if _BANNER_MARK in page:
        return False
    m = re.search(r"<main\b[^>]*>", page) or re.search(r"<body\b[^>]*>", page)
    if m is None:
        page = banner_html(text) + page
    else:
        page = page[: m.end()] + "\n" + banner_html(text) + page[m.end() :]
    _write_text_atomic(html_path, page)
    return True


def _output_texts(nb: Any) -> Iterable[str]:
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) or []:
            if "text" in out:
                yield _joined(out["text"])
            for key in ("data",):
                for mime, val in (out.get(key) or {}).items():
                    if mime.startswith("text/"):
                        yield _joined(val)
            if out.get("output_type") == "error":
                yield out.get("evalue", "")


def _joined(val: Any) -> str:
    return "".join(val) if isinstance(val, list) else str(val)


def notebook_has_random_banner(nb: Any) -> bool:
    """True when any output of the (executed) notebook contains the random-weights banner text."""
    return any(_BANNER_PROBE in t or _BANNER_KEY in t for t in _output_texts(nb))


# ----------------------------------------------------------------------------------------------------------
# LaTeX → SVG (matplotlib mathtext), so that math reads right without MathJax
# ----------------------------------------------------------------------------------------------------------

_FENCE_RE = re.compile(r"^(?P<fence>`{3,}|~{3,})[^\n]*\n.*?^(?P=fence)[ \t]*$", re.M | re.S)
_INLINE_CODE_RE = re.compile(r"(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`)", re.S)
_MATH_RE = re.compile(
    r"(?<!\\)\$\$(?P<d1>.+?)(?<!\\)\$\$"  # $$ display $$
    r"|\\\[(?P<d2>.+?)\\\]"  # \[ display \]
    r"|\\\((?P<i2>.+?)\\\)"  # \( inline \)
    r"|(?<![\\$\w])\$(?![\s$])(?P<i1>(?:\\\$|[^$\n])+?)(?<![\s\\])\$(?![$\w])",  # $inline$ (not "$5 and $6")
    re.S,
)
_TEX_FIXES = (
    (re.compile(r"\\tfrac\b"), r"\\frac"),
    (re.compile(r"\\[lr]Vert\b"), r"\\Vert "),
    (re.compile(r"\\[lr]vert\b"), "|"),
    (re.compile(r"\\\|"), r"\\Vert "),
    (re.compile(r"\\bm\b"), r"\\boldsymbol"),
    (re.compile(r"\\coloneqq\b"), ":="),
    (re.compile(r"\\displaystyle\b"), ""),
    (re.compile(r"\\textrm\b"), r"\\mathrm"),
)
_MATH_SIZE_PT = 12.0
_OVERSAMPLE = 4  # parse at 4 × 72 dpi for sub-point metrics


@functools.lru_cache(maxsize=512)
def _tex_to_img(tex: str, display: bool) -> str | None:
    """One formula as an ``<img>`` with an SVG data URI sized in em; None when mathtext cannot parse it."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties

    body = tex.strip()
    for pat, rep in _TEX_FIXES:
        body = pat.sub(rep, body)
    body = " ".join(body.split())  # mathtext wants one line
    if display:  # mathtext has no display style: make fractions display-sized at least
        body = re.sub(r"\\frac\b", r"\\dfrac", body)
    if not body:
        return None
    s = f"${body}$"
    prop = FontProperties(size=_MATH_SIZE_PT)
    try:
        width, height, depth, *_ = mathtext.MathTextParser("path").parse(s, dpi=72 * _OVERSAMPLE, prop=prop)
        buf = io.BytesIO()
        with matplotlib.rc_context({"savefig.transparent": True, "svg.fonttype": "path"}):
            mathtext.math_to_image(s, buf, prop=prop, format="svg")
    except Exception:  # noqa: BLE001 - any parse/layout failure falls back to raw TeX
        return None
    em = _MATH_SIZE_PT * _OVERSAMPLE
    h, d, w = height / em, depth / em, width / em
    uri = "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()
    alt = html.escape(tex.strip(), quote=True)
    # One void tag, nothing else: nbconvert passes each inline-HTML fragment through an HTML parser on its
    # own (embed_images), which would close an opening <span>/<code> before its content.
    layout = (
        "display:block;margin:0.6em auto" if display else f"display:inline;vertical-align:{-d * 1.1:.3f}em;margin:0 0.1em"
    )
    cls = "fit3d-math fit3d-math-display" if display else "fit3d-math"
    return (
        f'<img class="{cls}" src="{uri}" alt="{alt}" title="{alt}" '
        f'style="height:{h * 1.1:.3f}em;width:{w * 1.1:.3f}em;{layout}">'
    )


def _raw_tex(tex: str, display: bool) -> str:
    """What mathtext cannot draw stays TeX, as a markdown code span (rendered verbatim)."""
    body = ("$$" if display else "$") + " ".join(tex.split()) + ("$$" if display else "$")
    ticks = "`" * (max((len(r) for r in re.findall(r"`+", body)), default=0) + 1)
    return f"{ticks} {body} {ticks}"


def render_markdown_math(source: str) -> str:
    """Replace LaTeX math in a markdown string by inline SVG images (code spans and fences left alone)."""
    if "$" not in source and "\\(" not in source and "\\[" not in source:
        return source

    def repl(m: re.Match) -> str:
        display = m.group("d1") is not None or m.group("d2") is not None
        tex = next(g for g in (m.group("d1"), m.group("d2"), m.group("i2"), m.group("i1")) if g is not None)
        return _tex_to_img(tex, display) or _raw_tex(tex, display)

    def prose(text: str) -> str:
        out, pos = [], 0
        for cm in _INLINE_CODE_RE.finditer(text):
            out.append(_MATH_RE.sub(repl, text[pos : cm.start()]))
            out.append(cm.group(0))
            pos = cm.end()
        out.append(_MATH_RE.sub(repl, text[pos:]))
        return "".join(out)

    out, pos = [], 0
    for fm in _FENCE_RE.finditer(source):
        out.append(prose(source[pos : fm.start()]))
        out.append(fm.group(0))
        pos = fm.end()
    out.append(prose(source[pos:]))
    return "".join(out)


def _render_notebook_math(nb: Any) -> None:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = render_markdown_math(cell.source)
        elif cell.cell_type == "code":
            for out in cell.get("outputs", []):
                data = out.get("data") or {}
                if "text/markdown" in data and "text/html" not in data:
                    data["text/markdown"] = render_markdown_math(_joined(data["text/markdown"]))


# ----------------------------------------------------------------------------------------------------------
# Notebook → HTML
# ----------------------------------------------------------------------------------------------------------

_OFFLINE_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}
<style type="text/css">
code.fit3d-tex { background: #f3f3f3; padding: 0 0.2em; }
img.fit3d-math { border: 0; background: transparent; }
</style>
{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block body_header -%}
{{ super() }}
{{ resources.get('fit3d_banner', '') }}
{%- endblock body_header -%}
"""


def _exporter() -> Any:
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab",
        template_file="fit3d_offline.html.j2",
        extra_loaders=[DictLoader({"fit3d_offline.html.j2": _OFFLINE_TEMPLATE})],
        embed_images=True,
        require_js_url="",
        mathjax_url="",
        mermaid_js_url="",
        mermaid_layout_elk_js_url="",
        jquery_url="",
        jupyter_widgets_base_url="",
    )


def export_html(
    executed_ipynb: str | Path,
    html_path: str | Path,
    banner: str | None = None,
    *,
    detect_banner: bool = True,
    source_dir: str | Path | None = None,
    title: str | None = None,
) -> Path:
    """Convert an executed notebook to one self-contained, offline HTML page.

    banner: text for a red banner at the top of the page. When None and ``detect_banner`` is true, the banner
        is :data:`RANDOM_WEIGHTS_BANNER` if the notebook's outputs contain it, else there is none.
    source_dir: where relative markdown image paths are resolved (the original notebook's folder);
        defaults to the executed notebook's folder.
    """
    import nbformat

    executed_ipynb, html_path = Path(executed_ipynb), Path(html_path)
    nb = nbformat.read(executed_ipynb, as_version=4)
    if banner is None and detect_banner and notebook_has_random_banner(nb):
        banner = RANDOM_WEIGHTS_BANNER
    nb = copy.deepcopy(nb)
    _render_notebook_math(nb)
    if title:
        nb.metadata["title"] = title
    resources = {
        "metadata": {
            "name": executed_ipynb.stem,
            "path": str(Path(source_dir) if source_dir is not None else executed_ipynb.parent),
        },
        "fit3d_banner": banner_html(banner) if banner else "",
    }
    body, _ = _exporter().from_notebook_node(nb, resources=resources)
    body = strip_remote_resources(body)
    if 'require(["plotly"]' in body or "require(['plotly']" in body:
        warnings.warn(
            f"{executed_ipynb.name}: plotly figures were made by a plotly < 6 'notebook' renderer, which needs "
            "require.js; they will not render in the offline page. Use plotly >= 6.",
            stacklevel=2,
        )
    _write_text_atomic(html_path, body)
    return html_path


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------
# Artifacts
# ----------------------------------------------------------------------------------------------------------

# Pipeline order for the index; stages not listed follow alphabetically.
STAGE_ORDER = ("data", "scenes", "lift", "gaussians", "targets", "finetune", "features", "probe", "ablations")


def scan_artifacts(artifacts_dir: str | Path) -> list[dict[str, Any]]:
    """Every complete-looking ``<artifacts>/<stage>/<hash>/stats.json`` (temp folders skipped), in stage order.

    Each entry: ``stage``, ``hash``, ``path``, ``stats``, ``config`` (or {}), ``mtime``.
    """
    root = Path(artifacts_dir)
    found: list[dict[str, Any]] = []
    if not root.is_dir():
        return found
    for stats_path in root.glob("*/*/stats.json"):
        folder = stats_path.parent
        if folder.name.startswith(".") or folder.parent.name.startswith("."):
            continue
        try:
            stats = read_json(stats_path)
        except (OSError, ValueError):
            continue
        if not isinstance(stats, dict):
            stats = {"value": stats}
        config: Any = {}
        if (folder / "config.json").is_file():
            try:
                config = read_json(folder / "config.json")
            except (OSError, ValueError):
                config = {}
        found.append(
            {
                "stage": folder.parent.name,
                "hash": folder.name,
                "path": folder,
                "stats": stats,
                "config": config if isinstance(config, dict) else {},
                "mtime": stats_path.stat().st_mtime,
            }
        )

    def key(a: dict[str, Any]) -> tuple:
        st = a["stage"]
        rank = STAGE_ORDER.index(st) if st in STAGE_ORDER else len(STAGE_ORDER)
        return (rank, st, -a["mtime"], a["hash"])

    return sorted(found, key=key)


def _artifact_profile(a: Mapping[str, Any]) -> str | None:
    for src in (a["stats"], a["config"]):
        p = src.get("profile") if isinstance(src, Mapping) else None
        if isinstance(p, str):
            return p
    return None


def _in_profile(a: Mapping[str, Any], profile: str | None) -> bool:
    p = _artifact_profile(a)
    return profile is None or p is None or p == profile


def random_weights_artifacts(artifacts_dir: str | Path, profile: str | None = None) -> list[dict[str, Any]]:
    """Artifacts whose stats.json says ``"weights": "random"`` (those of another profile are skipped when
    the stats or config name their profile)."""
    return [
        a
        for a in scan_artifacts(artifacts_dir)
        if _in_profile(a, profile) and str(a["stats"].get("weights", "")).lower() == "random"
    ]


# ----------------------------------------------------------------------------------------------------------
# Index page
# ----------------------------------------------------------------------------------------------------------

PAPER_SOURCE = (
    "Reported by the paper — FiT3D, “Improving 2D Feature Representations by 3D-Aware Fine-Tuning” "
    "(ECCV 2024), DINOv2 ViT-S/14 with a linear probe, “FiT3D” = original ⊕ fine-tuned features. Transcribed "
    "in DESIGN.md §5 from public notes that reproduce the paper's tables (the PDF itself was not consulted). "
    "These are the paper's numbers on the paper's datasets, not ours."
)
# dataset: (seg mIoU DINOv2, seg mIoU FiT3D, depth RMSE DINOv2, depth RMSE FiT3D); None = not reported
PAPER_MAIN = {
    "ScanNet++": (30.19, 32.76, 0.374, 0.336),
    "NYUv2": (65.55, 67.50, 0.442, 0.420),
    "ScanNet": (43.60, 44.84, 0.309, 0.292),
    "ADE20K": (44.28, 45.93, None, None),
    "Pascal VOC": (81.14, 82.35, None, None),
    "KITTI": (None, None, 3.03, 2.91),
}
PAPER_ASSEMBLY_NYU_MIOU = {"concatenation": 67.50, "linear fusion": 66.39, "addition": 66.00}
PAPER_EPOCHS_NYU_MIOU = {1: 67.50, 2: 67.25}
PAPER_BACKBONES_SCANNETPP_MIOU = {
    "DINOv2": (30.19, 32.76),
    "DINOv2-reg": (30.92, 33.39),
    "CLIP": (25.61, 28.82),
    "MAE": (17.19, 20.27),
    "DeiT-III": (18.62, 22.98),
}

_METRIC_ORDER = {
    "seg": ["miou", "macc", "aacc"],
    "depth": ["rmse", "absrel", "delta1", "delta2", "delta3"],
}
_METRIC_LABEL = {
    "miou": "mIoU",
    "macc": "mAcc",
    "aacc": "aAcc",
    "rmse": "RMSE",
    "absrel": "AbsRel",
    "delta1": "δ<1.25",
    "delta2": "δ<1.25²",
    "delta3": "δ<1.25³",
}
_HIGHER_BETTER = {"miou", "macc", "aacc", "delta1", "delta2", "delta3", "acc", "accuracy", "psnr", "cosine", "pck"}
_LOWER_BETTER = {"rmse", "absrel", "loss", "error", "mse", "l1"}
_VARIANT_ORDER = ["original", "finetuned", "fine_tuned", "concat", "concatenation", "add", "addition", "linear"]

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d1d1f;margin:0;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:8px 28px 48px}
h1{font-size:28px;margin:18px 0 4px}h2{font-size:21px;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:16px;margin:20px 0 6px}
table{border-collapse:collapse;margin:8px 0 14px;background:#fff;font-size:14px}
th,td{border:1px solid #d5d5d5;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f0f0f3;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.other-profile td{color:#888}.muted{color:#666;font-size:13px}.ok{color:#0a7a2f;font-weight:600}
.failed{color:#b00020;font-weight:600}.skipped{color:#8a6d00}.note{background:#fff8e1;border-left:4px solid #f0b400;
padding:8px 12px;margin:10px 0}.paper{background:#eef4ff;border-left:4px solid #3b6fd8;padding:8px 12px;margin:10px 0}
code{background:#f0f0f3;padding:0 3px;border-radius:3px}svg{max-width:100%;height:auto}
details{margin:6px 0}summary{cursor:pointer}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v: Any, digits: int = 4, sig: bool = False) -> str:
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


def _td(v: Any, *, bold: bool = False, digits: int = 4, sig: bool = False) -> str:
    num = isinstance(v, (int, float)) and not isinstance(v, bool)
    text = _e(_fmt(v, digits, sig))
    if isinstance(v, str) and len(v) > 60:
        text = f'<span title="{_e(v)}">{text}</span>'
    if bold:
        text = f"<b>{text}</b>"
    return f'<td class="num">{text}</td>' if num else f"<td>{text}</td>"


def _flatten_scalars(d: Mapping[str, Any], prefix: str = "", depth: int = 2) -> dict[str, Any]:
    """Scalar entries, nested dicts as ``a.b`` (``depth`` levels), short lists of scalars as text."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            if depth > 1:
                out.update(_flatten_scalars(v, key + ".", depth - 1))
        elif v is None or isinstance(v, (int, float, str, bool)):
            out[key] = v
        elif isinstance(v, (list, tuple)) and 0 < len(v) <= 4 and all(isinstance(x, (int, float, str)) for x in v):
            out[key] = "[" + ", ".join(_fmt(x, sig=True) for x in v) + "]"
    return out


def _choose_columns(rows: list[dict[str, Any]], limit: int = 14) -> tuple[list[str], int]:
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
    skip = {"stage"}
    keys = [k for k in order if k not in skip]
    ranked = sorted(keys, key=lambda k: ("." in k, seen[k] < len(rows), -seen[k], order.index(k)))
    cols = ranked[:limit]
    return cols, len(keys) - len(cols)


def _best_flags(values: list[Any], metric: str) -> list[bool]:
    m = metric.lower().split(".")[-1]
    nums = [v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None for v in values]
    valid = [v for v in nums if v is not None]
    if len(valid) < 2 or (m not in _HIGHER_BETTER and m not in _LOWER_BETTER):
        return [False] * len(values)
    best = max(valid) if m in _HIGHER_BETTER else min(valid)
    return [v is not None and v == best for v in nums]


def _as_percent(task_results: Mapping[str, Mapping[str, Any]], metrics: Iterable[str]) -> bool:
    """Segmentation metrics stored as fractions (all ≤ 1) are shown in percent, like the paper."""
    vals = [
        r.get(m)
        for r in task_results.values()
        if isinstance(r, Mapping)
        for m in metrics
        if isinstance(r.get(m), (int, float))
    ]
    return bool(vals) and all(0 <= v <= 1.0 for v in vals)


def _variant_sort(names: Iterable[str]) -> list[str]:
    names = list(names)
    return sorted(names, key=lambda n: (_VARIANT_ORDER.index(n) if n in _VARIANT_ORDER else len(_VARIANT_ORDER), names.index(n)))


def _probe_table(results: Mapping[str, Any], awareness: Mapping[str, Any] | None) -> str:
    """Variant × metrics table for one probe artifact (segmentation and depth side by side)."""
    tasks = [t for t in ("seg", "depth") if isinstance(results.get(t), Mapping)]
    tasks += [t for t in results if t not in tasks and isinstance(results.get(t), Mapping)]
    columns: list[tuple[str, str]] = []
    percent: dict[str, bool] = {}
    for t in tasks:
        tr = results[t]
        seen: list[str] = []
        for r in tr.values():
            if isinstance(r, Mapping):
                for m, v in r.items():
                    if m not in seen and isinstance(v, (int, float)) and not isinstance(v, bool):
                        seen.append(m)
        order = _METRIC_ORDER.get(t, [])
        ms = [m for m in order if m in seen] + [m for m in seen if m not in order]
        columns += [(t, m) for m in ms]
        percent[t] = t == "seg" and _as_percent(tr, ms)
    variants: list[str] = []
    for t in tasks:
        for v, r in results[t].items():
            if isinstance(r, Mapping) and v not in variants:
                variants.append(v)
    variants = _variant_sort(variants)
    if not columns:
        return '<p class="muted">No probe metrics in this artifact.</p>'
    head1 = "".join(
        f'<th colspan="{sum(1 for c in columns if c[0] == t)}">{_e({"seg": "segmentation", "depth": "depth"}.get(t, t))}'
        f'{" (%)" if percent.get(t) else ""}</th>'
        for t in tasks
        if any(c[0] == t for c in columns)
    )
    head2 = "".join(f"<th>{_e(_METRIC_LABEL.get(m, m))}</th>" for _, m in columns)
    def cell(task: str, variant: str, metric: str) -> Any:
        r = results[task].get(variant)
        return r.get(metric) if isinstance(r, Mapping) else None

    col_vals = {c: [cell(c[0], v, c[1]) for v in variants] for c in columns}
    best = {c: _best_flags(col_vals[c], c[1]) for c in columns}
    rows = []
    for i, v in enumerate(variants):
        cells = []
        for c in columns:
            val = col_vals[c][i]
            if percent.get(c[0]) and isinstance(val, (int, float)):
                val = 100.0 * val
            cells.append(_td(val, bold=best[c][i]))
        rows.append(f"<tr><th>{_e(v)}</th>{''.join(cells)}</tr>")
    out = f'<table><tr><th rowspan="2">variant</th>{head1}</tr><tr>{head2}</tr>{"".join(rows)}</table>'
    if isinstance(awareness, Mapping) and awareness:
        aw_rows = {k: _flatten_scalars(v) if isinstance(v, Mapping) else {"value": v} for k, v in awareness.items()}
        cols, _ = _choose_columns(list(aw_rows.values()))
        vs = _variant_sort(aw_rows)
        flags = {c: _best_flags([aw_rows[v].get(c) for v in vs], c) for c in cols}
        body = "".join(
            f"<tr><th>{_e(v)}</th>{''.join(_td(aw_rows[v].get(c), bold=flags[c][i]) for c in cols)}</tr>"
            for i, v in enumerate(vs)
        )
        out += (
            "<h3>3D awareness</h3><table><tr><th>variant</th>"
            + "".join(f"<th>{_e(c)}</th>" for c in cols)
            + f"</tr>{body}</table>"
        )
    return out + '<p class="muted">Bold: best value in the column.</p>'


def _pipeline_svg() -> str:
    boxes = [
        ("Scenes", "posed RGB views", "01"),
        ("Lift", "feature Gaussians", "02"),
        ("Render", "3D-consistent features", "02"),
        ("Fine-tune", "2D backbone", "03"),
        ("Probe", "seg · depth", "04"),
    ]
    w, h, gap, x0, y0 = 170, 74, 40, 10, 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {x0 * 2 + len(boxes) * w + (len(boxes) - 1) * gap} 150" '
        'width="1040" role="img" aria-label="FiT3D pipeline">',
        '<defs><marker id="arr" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#444"/></marker></defs>',
    ]
    colors = ["#e8f1fb", "#eaf7ea", "#eaf7ea", "#fdf0e3", "#f3eafb"]
    for i, (title, sub, nb) in enumerate(boxes):
        x = x0 + i * (w + gap)
        parts.append(
            f'<rect x="{x}" y="{y0}" width="{w}" height="{h}" rx="10" fill="{colors[i]}" stroke="#555" stroke-width="1.2"/>'
            f'<text x="{x + w / 2}" y="{y0 + 30}" text-anchor="middle" font-family="sans-serif" font-size="17" '
            f'font-weight="600" fill="#222">{_e(title)}</text>'
            f'<text x="{x + w / 2}" y="{y0 + 53}" text-anchor="middle" font-family="sans-serif" font-size="13" '
            f'fill="#444">{_e(sub)}</text>'
            f'<text x="{x + w - 8}" y="{y0 - 6}" text-anchor="end" font-family="monospace" font-size="12" '
            f'fill="#777">notebook {nb}</text>'
        )
        if i:
            xa = x - gap + 2
            parts.append(
                f'<line x1="{xa}" y1="{y0 + h / 2}" x2="{x - 3}" y2="{y0 + h / 2}" stroke="#444" '
                'stroke-width="2" marker-end="url(#arr)"/>'
            )
    # the feedback loop: the fine-tuned backbone's features are what the probe reads, original ⊕ fine-tuned
    xl, xr = x0 + w / 2, x0 + 3 * (w + gap) + w / 2
    yb = y0 + h + 30
    parts.append(
        f'<path d="M{xl},{y0 + h} L{xl},{yb} L{xr},{yb} L{xr},{y0 + h + 3}" fill="none" stroke="#999" '
        'stroke-dasharray="5,4" stroke-width="1.5" marker-end="url(#arr)"/>'
        f'<text x="{(xl + xr) / 2}" y="{yb - 6}" text-anchor="middle" font-family="sans-serif" font-size="12" '
        'fill="#666">the same training views are the fine-tuning inputs</text></svg>'
    )
    return "".join(parts)


_METHOD = (
    "<p>FiT3D makes a 2D vision foundation model (here a DINOv2-style ViT from timm) <em>3D-aware</em>. "
    "For each posed scene, the backbone's patch features of the training views are <b>lifted</b> into a "
    "3D Gaussian splatting model whose Gaussians carry low-dimensional feature vectors and a small decoder; "
    "geometry is fitted from RGB only. <b>Rendering</b> this model gives multi-view-consistent feature maps, "
    "which become the targets to <b>fine-tune</b> the backbone for one epoch (masked L1 on its normed patch "
    "tokens). The original and fine-tuned features are then <b>probed</b> with linear heads for semantic "
    "segmentation and depth; the paper's default uses both, concatenated.</p>"
)


def _load_run(report_dir: Path, run_json: Any) -> dict[str, Any]:
    if run_json is None:
        p = report_dir / "run.json"
        return read_json(p) if p.is_file() else {}
    if isinstance(run_json, (str, os.PathLike)):
        return read_json(run_json)
    return dict(run_json)


def _weights_summary(arts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for a in arts:
        s = a["stats"]
        if "backbone" in s or "weights" in s:
            p = (str(s.get("backbone", "?")), str(s.get("weights", "?")))
            if p not in pairs:
                pairs.append(p)
    return pairs


def _find_variant(tr: Mapping[str, Any], *names: str) -> Mapping[str, Any] | None:
    for n in names:
        for k, v in tr.items():
            if k.lower().replace("-", "_") == n and isinstance(v, Mapping):
                return v
    return None


def _paper_section(probe: dict[str, Any] | None, profile: str | None) -> str:
    ours_seg = ours_depth = None
    ours_label = ""
    if probe is not None:
        res = probe["stats"].get("results") or {}
        seg, depth = res.get("seg") or {}, res.get("depth") or {}
        o_s, f_s = _find_variant(seg, "original"), _find_variant(seg, "concat", "concatenation", "fit3d")
        o_d, f_d = _find_variant(depth, "original"), _find_variant(depth, "concat", "concatenation", "fit3d")
        pct = 100.0 if _as_percent(seg, ["miou"]) else 1.0
        if o_s and f_s and isinstance(o_s.get("miou"), (int, float)) and isinstance(f_s.get("miou"), (int, float)):
            ours_seg = (o_s["miou"] * pct, f_s["miou"] * pct)
        if o_d and f_d and isinstance(o_d.get("rmse"), (int, float)) and isinstance(f_d.get("rmse"), (int, float)):
            ours_depth = (o_d["rmse"], f_d["rmse"])
        st = probe["stats"]
        dataset = st.get("dataset") or f"{profile or st.get('profile', '?')} scenes"
        ours_label = (
            f"this run — {dataset}, "
            f"{st.get('backbone', '?')} ({st.get('weights', '?')} weights), artifact {probe['hash']}"
        )

    def pair_cells(p: tuple[float, float] | None, higher: bool, digits: int) -> str:
        if p is None:
            return "<td>—</td><td>—</td><td>—</td>"
        a, b = p
        d = b - a
        good = (d > 0) == higher and d != 0
        sign = "+" if d >= 0 else "−"
        return (
            f'<td class="num">{a:.{digits}f}</td><td class="num">{b:.{digits}f}</td>'
            f'<td class="num" style="color:{"#0a7a2f" if good else "#b00020"}">{sign}{abs(d):.{digits}f}</td>'
        )

    head = (
        '<table><tr><th rowspan="2">source</th><th rowspan="2">dataset</th><th colspan="3">seg mIoU (%) ↑</th>'
        '<th colspan="3">depth RMSE ↓</th></tr><tr><th>original</th><th>FiT3D</th><th>Δ</th>'
        "<th>original</th><th>FiT3D</th><th>Δ</th></tr>"
    )
    rows = []
    for ds, (s0, s1, d0, d1) in PAPER_MAIN.items():
        rows.append(
            f"<tr><td>paper</td><td>{_e(ds)}</td>"
            + pair_cells((s0, s1) if s0 is not None else None, True, 2)
            + pair_cells((d0, d1) if d0 is not None else None, False, 3)
            + "</tr>"
        )
    if probe is not None:
        rows.append(
            f'<tr style="background:#fff8e1"><td><b>ours</b></td><td>{_e(ours_label)}</td>'
            + pair_cells(ours_seg, True, 2)
            + pair_cells(ours_depth, False, 3)
            + "</tr>"
        )
    out = [
        "<h2>Reported by the paper, beside ours</h2>",
        f'<div class="paper">{_e(PAPER_SOURCE)}</div>',
        head + "".join(rows) + "</table>",
        '<p class="muted">“ours” uses the <code>original</code> and <code>concat</code> variants of the '
        "probe artifact above. Our scenes, resolution and schedule differ from the paper's (see the profile), so "
        "the row is a sanity check of direction, not a reproduction.</p>",
    ]
    # assembly ablation (paper: NYUv2) beside ours when our probe has those variants
    seg = (probe["stats"].get("results") or {}).get("seg") or {} if probe else {}
    pct = 100.0 if _as_percent(seg, ["miou"]) else 1.0
    names = {
        "concatenation": ("concat", "concatenation"),
        "linear fusion": ("linear", "linear_fusion", "fusion"),
        "addition": ("add", "addition", "sum"),
    }
    arows = []
    for label, paper in PAPER_ASSEMBLY_NYU_MIOU.items():
        v = _find_variant(seg, *names[label])
        ours = v.get("miou") * pct if v and isinstance(v.get("miou"), (int, float)) else None
        arows.append(f'<tr><td>{_e(label)}</td><td class="num">{paper:.2f}</td>{_td(ours, digits=4)}</tr>')
    out.append(
        "<h3>Feature assembly (paper: NYUv2 seg mIoU %)</h3><table><tr><th>assembly</th><th>paper</th>"
        f"<th>ours (this run)</th></tr>{''.join(arows)}</table>"
    )
    erows = "".join(f'<tr><td>{k}</td><td class="num">{v:.2f}</td></tr>' for k, v in PAPER_EPOCHS_NYU_MIOU.items())
    out.append(
        "<h3>Fine-tuning epochs (paper: NYUv2 seg mIoU %)</h3><table><tr><th>epochs</th><th>paper</th></tr>"
        f"{erows}</table>"
    )
    brows = "".join(
        f'<tr><td>{_e(k)}</td><td class="num">{a:.2f}</td><td class="num">{b:.2f}</td>'
        f'<td class="num" style="color:#0a7a2f">+{b - a:.2f}</td></tr>'
        for k, (a, b) in PAPER_BACKBONES_SCANNETPP_MIOU.items()
    )
    out.append(
        "<h3>Other backbones (paper: ScanNet++ seg mIoU %)</h3><table><tr><th>backbone</th><th>original</th>"
        f"<th>FiT3D</th><th>Δ</th></tr>{brows}</table>"
        '<p class="muted">The paper also notes (via a later paper\'s measurement) that fine-tuned features alone '
        "lose correspondence quality, which is why the default assembly concatenates them with the originals.</p>"
    )
    return "\n".join(out)


def _ablation_tables(group: list[dict[str, Any]]) -> str:
    """One table per ablation (setting value × numbers) from the newest ``ablations`` artifact's rows."""
    newest = max(group, key=lambda a: a["mtime"])
    out = [f"<h3>Ablations (notebook 05) — <code>{_e(newest['hash'])}</code></h3>"]
    for name, rows in newest["stats"].get("rows", {}).items():
        if not rows:
            continue
        cols = [c for c in rows[0] if c not in ("ablation", "value")]
        head = f"<tr><th>{_e(name)}</th>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>"
        body = "".join(f"<tr><th>{_e(str(r.get('value')))}</th>" + "".join(_td(r.get(c), sig=True) for c in cols) + "</tr>" for r in rows)
        out.append(f'<div style="overflow-x:auto"><table>{head}{body}</table></div>')
    return "".join(out)


def _stage_tables(arts: list[dict[str, Any]], profile: str | None) -> str:
    out: list[str] = []
    stages: list[str] = []
    for a in arts:
        if a["stage"] not in stages:
            stages.append(a["stage"])
    for st in stages:
        group = [a for a in arts if a["stage"] == st]
        if st == "ablations":
            out.append(_ablation_tables(group))
            continue
        rows = []
        for a in group:
            s = a["stats"]
            flat = (
                {k: v for k, v in _flatten_scalars(s, depth=1).items()}
                if st == "probe"
                else _flatten_scalars(s)
            )
            rows.append(flat)
        when = {a["hash"]: _dt.datetime.fromtimestamp(a["mtime"]).strftime("%Y-%m-%d %H:%M") for a in group}
        out.append(f"<h3>Stage <code>{_e(st)}</code> — {len(group)} artifact{'s' if len(group) != 1 else ''}</h3>")
        cols, hidden = _choose_columns(rows, limit=10)
        if len(cols) > 8 and len(group) <= 4:
            # few artifacts, many stats: one row per stat reads better than a table wider than the page
            cols, hidden = _choose_columns(rows, limit=24)
            other = ' class="other-profile"'
            head = "<tr><th>stat</th>" + "".join(
                f'<th{"" if _in_profile(a, profile) else other}><code title="{_e(a["path"])}">'
                f'{_e(a["hash"])}</code><br><span class="muted">{when[a["hash"]]}</span></th>'
                for a in group
            ) + "</tr>"
            body = [f"<tr><th>{_e(c)}</th>" + "".join(_td(r.get(c), sig=True) for r in rows) + "</tr>" for c in cols]
        else:
            head = "<tr><th>artifact</th><th>written</th>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>"
            body = []
            for a, r in zip(group, rows):
                cls = "" if _in_profile(a, profile) else ' class="other-profile"'
                body.append(
                    f'<tr{cls}><td><code title="{_e(a["path"])}">{_e(a["hash"])}</code></td>'
                    f'<td style="white-space:nowrap">{when[a["hash"]]}</td>'
                    + "".join(_td(r.get(c), sig=True) for c in cols)
                    + "</tr>"
                )
        out.append(f'<div style="overflow-x:auto"><table>{head}{"".join(body)}</table></div>')
        if hidden:
            out.append(f'<p class="muted">{hidden} more value(s) in the <code>stats.json</code> files.</p>')
        if st == "probe":
            for a in group:
                res = a["stats"].get("results")
                if isinstance(res, Mapping) and res:
                    out.append(
                        f"<details><summary>probe artifact <code>{_e(a['hash'])}</code> — "
                        f"{_e(a['stats'].get('backbone', '?'))}, {_e(a['stats'].get('weights', '?'))} weights</summary>"
                        f"{_probe_table(res, a['stats'].get('awareness'))}</details>"
                    )
    if any(not _in_profile(a, profile) for a in arts):
        out.append('<p class="muted">Grey rows: artifacts of another profile found in the same folder.</p>')
    return "\n".join(out)


def _fmt_seconds(s: Any) -> str:
    if not isinstance(s, (int, float)):
        return "—"
    if s < 120:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {s % 60:02.0f} s"


def build_index(
    report_dir: str | Path = "report",
    artifacts_dir: str | Path | None = None,
    run_json: Mapping[str, Any] | str | Path | None = None,
) -> Path:
    """Write ``report_dir/index.html`` from the run metadata and the artifacts' ``stats.json``; returns its path.

    run_json: the run metadata (dict), a path to it, or None for ``report_dir/run.json`` (may be missing).
    artifacts_dir: defaults to the run's ``artifacts_dir``, else ``artifacts`` beside ``report_dir``.
    """
    report_dir = Path(report_dir)
    run = _load_run(report_dir, run_json)
    if artifacts_dir is None:
        artifacts_dir = run.get("artifacts_dir_abs") or (report_dir.resolve().parent / "artifacts")
    artifacts_dir = Path(artifacts_dir)
    profile = run.get("profile")
    arts = scan_artifacts(artifacts_dir)
    mine = [a for a in arts if _in_profile(a, profile)]
    random_arts = [a for a in mine if str(a["stats"].get("weights", "")).lower() == "random"]
    notebooks = run.get("notebooks") or []
    random_pages = [n.get("name") for n in notebooks if n.get("random_weights")]

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>FiT3D course — report</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    if random_arts or random_pages:
        parts.append(banner_html(RANDOM_WEIGHTS_BANNER))
    parts.append("<main>")
    parts.append("<h1>FiT3D course — report</h1>")
    parts.append(
        '<p class="muted">Re-implementation of FiT3D (3D-aware fine-tuning of 2D features) as a notebook course. '
        "Every number on this page comes from this run's artifacts, except the table labelled “reported by the "
        "paper”.</p>"
    )

    # ---- run metadata
    weights = _weights_summary(mine)
    wtxt = "; ".join(f"{b} — {w} weights" for b, w in weights) or "— (no stats.json names a backbone yet)"
    commit = str(run.get("commit", "unknown")) + (" (uncommitted changes)" if run.get("dirty") else "")
    total = run.get("total_wall_s")
    meta = [
        ("commit", commit),
        ("profile", profile or "—"),
        ("backbone / weights", wtxt),
        ("device", run.get("device", "—")),
        ("torch / python", f"{run.get('torch', '—')} / {run.get('python', '—')}"),
        ("date", run.get("date", "—")),
        ("overrides", ", ".join(f"{k}={v!r}" for k, v in (run.get("overrides") or {}).items()) or "none"),
        ("artifacts", str(run.get("artifacts_dir", artifacts_dir))),
        ("total wall time", _fmt_seconds(total)),
    ]
    parts.append("<h2>Run</h2><table>")
    parts += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in meta]
    parts.append("</table>")
    if notebooks:
        parts.append("<h3>Notebooks</h3><table><tr><th>notebook</th><th>status</th><th>wall time</th><th>run at</th></tr>")
        for n in notebooks:
            name = n.get("name", "?")
            href = n.get("html")
            exists = href and (report_dir / href).is_file()
            link = f'<a href="{_e(href)}">{_e(name)}</a>' if exists else _e(name)
            st = n.get("status", "?")
            extra = " — random weights" if n.get("random_weights") else ""
            extra += " (earlier run)" if n.get("from_previous_run") else ""
            parts.append(
                f'<tr><td>{link}</td><td class="{_e(st)}">{_e(st)}{_e(extra)}</td>'
                f'<td class="num">{_fmt_seconds(n.get("wall_s"))}</td><td>{_e(n.get("date", run.get("date", "")))}</td></tr>'
            )
        parts.append("</table>")
        failed = [n for n in notebooks if n.get("status") == "failed"]
        for n in failed:
            parts.append(
                f'<div class="note"><b>{_e(n.get("name"))} failed</b>: {_e(n.get("error", ""))} — the page shows the '
                "traceback.</div>"
            )
    else:
        pages = sorted(p.name for p in report_dir.glob("[0-9]*.html"))
        if pages:
            parts.append("<h3>Notebooks</h3><ul>")
            parts += [f'<li><a href="{_e(p)}">{_e(p)}</a></li>' for p in pages]
            parts.append("</ul>")

    # ---- method
    parts.append("<h2>Method</h2>")
    parts.append(_METHOD)
    parts.append(_pipeline_svg())

    # ---- headline results
    probes = [a for a in mine if a["stage"] == "probe" and isinstance(a["stats"].get("results"), Mapping)]
    # newest first within the stage; ablation runs (stats with an "ablation" key) only when nothing else exists
    main = [a for a in probes if a["stats"].get("headline") is True] or [
        a for a in probes if not a["stats"].get("ablation")
    ]
    headline = (main or probes or [None])[0]
    parts.append("<h2>Headline results (this run)</h2>")
    if headline is None:
        parts.append('<p class="muted">No probe artifact (<code>artifacts/probe/*/stats.json</code>) yet.</p>')
    else:
        st = headline["stats"]
        parts.append(
            f'<p>Probe artifact <code>{_e(headline["hash"])}</code>: backbone <b>{_e(st.get("backbone", "?"))}</b>, '
            f'weights <b>{_e(st.get("weights", "?"))}</b>'
            + (f', dataset {_e(st["dataset"])}' if "dataset" in st else "")
            + ". Variants: <code>original</code> = frozen backbone, <code>finetuned</code> = after FiT3D, "
            "<code>concat</code> = both (the paper's FiT3D).</p>"
        )
        if str(st.get("weights", "")).lower() == "random":
            parts.append(
                '<div class="note">Random-init backbone: these numbers check that the pipeline runs; they say '
                "nothing about FiT3D.</div>"
            )
        parts.append(_probe_table(st["results"], st.get("awareness")))

    parts.append(_paper_section(headline, profile))

    # ---- all artifacts
    parts.append("<h2>All artifacts</h2>")
    if arts:
        parts.append(
            f'<p class="muted">One table per stage folder under <code>{_e(artifacts_dir)}</code>, one row per '
            "<code>stats.json</code>, newest first; columns are the scalar stats.</p>"
        )
        parts.append(_stage_tables(arts, profile))
    else:
        parts.append(f'<p class="muted">No artifacts under <code>{_e(artifacts_dir)}</code>.</p>')
    if random_arts:
        parts.append(
            '<p class="muted">Random-weights artifacts: '
            + ", ".join(f"<code>{_e(a['stage'])}/{_e(a['hash'])}</code>" for a in random_arts)
            + ".</p>"
        )
    gen = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    parts.append(f'<p class="muted" style="margin-top:32px">Generated {gen} by <code>fit3d_helpers.report.build_index</code>.</p>')
    parts.append("</main></body></html>")
    out = report_dir / "index.html"
    _write_text_atomic(out, "\n".join(parts))
    return out
