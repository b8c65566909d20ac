"""Self-contained HTML report: notebook pages (nbconvert, offline) and index pages built from the artifacts' stats.

Everything this module writes opens offline: no ``<script src="http…">`` and no ``<link href="http…">``.

* nbconvert's ``lab`` template loads require.js, MathJax and mermaid from CDNs. A small template on top of it
  (``templates/nbconvert_offline.html.j2``) drops those blocks; plotly's figure outputs also carry a MathJax
  CDN ``<script>`` which is stripped afterwards (:func:`strip_remote_resources`). Figures still render because
  plotly's ``"notebook"`` renderer embeds plotly.js (as a plain ``<script>``, no require.js needed with
  plotly ≥ 6) in the output of the cell that selects the renderer.
* LaTeX in markdown (``$…$``, ``$$…$$``, ``\\(…\\)``, ``\\[…\\]``, bare ``\\begin{env}…\\end{env}``) becomes MathML
  with ``latex2mathml`` before conversion; browsers draw MathML natively (no MathJax, no network). What
  latex2mathml cannot convert is shown as raw TeX in a code span.
* Markdown images with local paths are embedded (``embed_images``), relative to the source notebook's folder.
* A red random-weights banner goes at the top of a page when the notebook's outputs contain
  :data:`~fit3d_helpers.utils.RANDOM_WEIGHTS_BANNER`, or when the caller passes ``banner``.

:func:`build_report` (what the runner calls after a batch) draws the presenter's figures into ``report/figures/``
(:func:`export_figures`, i.e. :func:`fit3d_helpers.course.figures.export_pngs`) and then :func:`build_index` writes the
report's own pages from ``report/run.json`` (see :mod:`fit3d_helpers.course.runner`) and the artifacts
(:func:`fit3d_helpers.cache.iter_artifacts`), with the Jinja2 templates in ``fit3d_helpers/templates``:

* ``index.html``: the method diagram, the four figures with what to look at, the headline probe numbers, the paper's
  Tables 1–5, 7, 8, 13 (and 9–12) beside ours, the ablations, where the course deviates from the paper, the run;
* ``slides.html``: the deck (:mod:`fit3d_helpers.course.slides`), one offline file;
* ``glossary.html``: glossary and examiner questions (:mod:`fit3d_helpers.course.glossary`);
* ``fidelity.html``: ``docs/fidelity.md`` rendered, so the links to it work from the report folder;
* ``artifacts.html``: the appendix, every artifact, one table per stage.

The only typed numbers in them are the paper's, taken from :mod:`fit3d_helpers.course.paper` and labelled with their
table. Under random weights no difference of ours is coloured or worded as a gain.

Notebook pages hide their code cells by default (a "show code" button at the top shows them; outputs stay).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import functools
import html
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..utils import RANDOM_WEIGHTS_BANNER, read_json
from . import paper

__all__ = [
    "BANNER_CLASS",
    "FIGURE_INFO",
    "FIGURES_DIR",
    "REMOTE_PATTERNS",
    "SLIDE_FIGURES",
    "STAGE_ORDER",
    "apply_banner",
    "banner_html",
    "build_fidelity",
    "build_glossary",
    "build_index",
    "build_report",
    "export_figures",
    "export_html",
    "fidelity_source",
    "find_remote_resources",
    "notebook_has_random_banner",
    "random_weights_artifacts",
    "render_markdown_math",
    "report_context",
    "scan_artifacts",
    "strip_remote_resources",
]

TEMPLATES = Path(__file__).with_name("templates")
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
_REMOTE_SCRIPT_RE = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?(?:https?:)?//[^>]*>\s*</script\s*>""", re.I | re.S)
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
# LaTeX → MathML (latex2mathml), so that math reads right without MathJax
# ----------------------------------------------------------------------------------------------------------

_FENCE_RE = re.compile(r"^(?P<fence>`{3,}|~{3,})[^\n]*\n.*?^(?P=fence)[ \t]*$", re.M | re.S)
_INLINE_CODE_RE = re.compile(r"(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`)", re.S)
_MATH_RE = re.compile(
    r"(?<!\\)\$\$(?P<d1>.+?)(?<!\\)\$\$"  # $$ display $$
    r"|\\\[(?P<d2>.+?)\\\]"  # \[ display \]
    r"|(?P<d3>\\begin\{(?P<env>[A-Za-z]+\*?)\}.+?\\end\{(?P=env)\})"  # bare \begin{align}…\end{align}
    r"|\\\((?P<i2>.+?)\\\)"  # \( inline \)
    # $inline$ (not "$5 and $6"), which may wrap onto the next line (not across a blank line)
    r"|(?<![\\$\w])\$(?![\s$])(?P<i1>(?:\\\$|[^$\n]|\n(?![ \t]*\n))+?)(?<![\s\\])\$(?![$\w])",
    re.S,
)
_TEX_FIXES = (  # what latex2mathml lacks, rewritten to what it has
    (re.compile(r"\\begin\{(?:aligned|align|split|eqnarray|alignat)\*?\}(?:\{\d+\})?"), r"\\begin{align*}"),
    (re.compile(r"\\end\{(?:aligned|align|split|eqnarray|alignat)\*?\}"), r"\\end{align*}"),
    (re.compile(r"\\begin\{(?:gathered|gather|multline)\*?\}"), r"\\begin{array}{c}"),
    (re.compile(r"\\end\{(?:gathered|gather|multline)\*?\}"), r"\\end{array}"),
    (re.compile(r"\\(?:begin|end)\{(?:equation|displaymath|math)\*?\}"), ""),
    (re.compile(r"\\label\{[^}]*\}|\\nonumber\b|\\notag\b"), ""),
    (re.compile(r"\\operatorname\*"), r"\\operatorname"),
    (re.compile(r"\\(?:big|Big|bigg|Bigg)[lr]?(?=\\[lr][Vv]ert|\\\||\\[Vv]ert)"), ""),  # \big\lVert: no size
)
_MATHML_TAGS = frozenset(
    "math semantics annotation mrow mi mn mo mtext ms mspace msub msup msubsup mfrac msqrt mroot mover munder "
    "munderover mtable mtr mtd mlabeledtr mstyle mpadded mphantom menclose merror mmultiscripts mprescripts "
    "none".split()
)
_MATH_TOKEN = "FIT3DMATH{:05d}X"
_MATH_TOKEN_RE = re.compile(r"<[^>]*>|FIT3DMATH\d{5}X")


@functools.lru_cache(maxsize=1024)
def _tex_to_mathml(tex: str, display: bool) -> str | None:
    """One formula as a ``<math>`` element on one line; None when latex2mathml cannot convert it cleanly."""
    import xml.etree.ElementTree as ET

    try:
        from latex2mathml.converter import convert
    except ImportError:  # pragma: no cover - a declared dependency; without it math stays TeX
        warnings.warn("latex2mathml is not installed: math in the report stays raw TeX", stacklevel=3)
        return None
    body = tex.strip()
    for pat, rep in _TEX_FIXES:
        body = pat.sub(rep, body)
    if not body.strip():
        return None
    try:
        out = convert(body, display="block" if display else "inline")
        tree = ET.fromstring(out)  # well-formed XML: no raw "&" or "<" leaked from \text{…}
    except Exception:  # any parse failure falls back to raw TeX
        return None
    for el in tree.iter():
        if el.tag.rsplit("}", 1)[-1] not in _MATHML_TAGS:
            return None  # e.g. HTML that \text{…} let through
        if el.text and re.match(r"\s*\\[A-Za-z]", el.text):
            return None  # an unknown command, copied through as text
    return " ".join(out.split())


def _raw_tex(tex: str, display: bool) -> str:
    """What latex2mathml cannot convert stays TeX, as a markdown code span (rendered verbatim)."""
    body = ("$$" if display else "$") + " ".join(tex.split()) + ("$$" if display else "$")
    ticks = "`" * (max((len(r) for r in re.findall(r"`+", body)), default=0) + 1)
    return f"{ticks} {body} {ticks}"


def render_markdown_math(source: str, *, tokens: dict[str, str] | None = None) -> str:
    """Replace LaTeX math in a markdown string by MathML (code spans, fenced code and ``\\$`` left alone).

    tokens: when given, each formula is replaced by a placeholder word and its MathML stored in ``tokens``
        (:func:`export_html` puts them back after nbconvert, whose markdown renderer would otherwise re-parse
        each inline tag on its own and break the nesting).
    """
    if "$" not in source and "\\(" not in source and "\\[" not in source and "\\begin" not in source:
        return source

    def repl(m: re.Match) -> str:
        display = m.group("i1") is None and m.group("i2") is None
        tex = next(m.group(g) for g in ("d1", "d2", "d3", "i2", "i1") if m.group(g) is not None)
        mathml = _tex_to_mathml(tex, display)
        if mathml is None:
            return _raw_tex(tex, display)
        if tokens is None:
            return mathml
        key = _MATH_TOKEN.format(len(tokens))
        tokens[key] = mathml
        return key

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


def _render_notebook_math(nb: Any) -> dict[str, str]:
    """Math of markdown cells and markdown outputs → placeholders; returns placeholder → MathML."""
    tokens: dict[str, str] = {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = render_markdown_math(cell.source, tokens=tokens)
        elif cell.cell_type == "code":
            for out in cell.get("outputs", []):
                data = out.get("data") or {}
                if "text/markdown" in data and "text/html" not in data:
                    data["text/markdown"] = render_markdown_math(_joined(data["text/markdown"]), tokens=tokens)
    return tokens


def _restore_math(page: str, tokens: Mapping[str, str]) -> str:
    """Put the MathML back where the placeholders are, in text only (not inside a tag, e.g. a heading's id)."""
    if not tokens:
        return page

    def repl(m: re.Match) -> str:
        s = m.group(0)
        if s[0] == "<":  # a tag: drop the placeholder from attributes (nbconvert's heading ids)
            return re.sub(r"-?FIT3DMATH\d{5}X", "", s) if "FIT3DMATH" in s else s
        return tokens.get(s, s)

    return _MATH_TOKEN_RE.sub(repl, page)


# ----------------------------------------------------------------------------------------------------------
# Notebook → HTML
# ----------------------------------------------------------------------------------------------------------


def _exporter() -> Any:
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    # only this one template is shown to nbconvert: the report's own (index.html.j2, base.html.j2) would shadow lab's
    offline = (TEMPLATES / "nbconvert_offline.html.j2").read_text(encoding="utf-8")
    return HTMLExporter(
        template_name="lab",
        template_file="fit3d_offline.html.j2",
        extra_loaders=[DictLoader({"fit3d_offline.html.j2": offline})],
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
    tokens = _render_notebook_math(nb)
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
    body = _restore_math(strip_remote_resources(body), tokens)
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

# The course's stages, in pipeline order (stages not listed follow alphabetically).
STAGE_ORDER = ("data", "lift", "lift_features", "targets", "finetune", "features", "probe", "ablations")


def scan_artifacts(artifacts_dir: str | Path) -> list[dict[str, Any]]:
    """Every complete artifact (``<artifacts>/<stage>/<hash>/CURRENT`` → its version folder), in stage order,
    newest first within a stage. Unreadable ones are skipped.

    Each entry: ``stage``, ``hash``, ``path`` (the version folder), ``stats``, ``config`` (or {}), ``mtime``.
    """
    from ..cache import ArtifactError, iter_artifacts

    found: list[dict[str, Any]] = []
    for art in iter_artifacts(artifacts_dir):
        try:
            stats, config, mtime = art.stats, art.config, art.mtime
        except (ArtifactError, OSError):
            continue
        found.append(
            {
                "stage": art.stage,
                "hash": art.hash,
                "path": art.path,
                "stats": stats if isinstance(stats, dict) else {"value": stats},
                "config": config if isinstance(config, dict) else {},
                "mtime": mtime,
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


def _is_random(a: Mapping[str, Any] | None) -> bool:
    return a is not None and str(a["stats"].get("weights", "")).lower() == "random"


def random_weights_artifacts(artifacts_dir: str | Path, profile: str | None = None) -> list[dict[str, Any]]:
    """Artifacts whose stats say ``"weights": "random"`` (those of another profile are skipped when the stats
    or config name their profile)."""
    return [a for a in scan_artifacts(artifacts_dir) if _in_profile(a, profile) and _is_random(a)]


# ----------------------------------------------------------------------------------------------------------
# Table models (rendered by templates/macros.html.j2)
# ----------------------------------------------------------------------------------------------------------


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


def _th(text: Any, **kw: Any) -> Cell:
    return Cell(str(text), header=True, **kw)


_METRIC_ORDER = {"seg": ["miou", "macc", "aacc"], "depth": ["rmse", "absrel", "delta1"]}
_METRIC_LABEL = {"miou": "mIoU", "macc": "mAcc", "aacc": "aAcc", "rmse": "RMSE", "absrel": "AbsRel", "delta1": "δ<1.25"}
# what the probe and the 3D-awareness check write (awareness: recall@14px, chance@14px, median_px_error, cos_*)
_HIGHER_BETTER = {"miou", "macc", "aacc", "delta1", "recall"}
_LOWER_BETTER = {"rmse", "absrel", "median_px_error"}
_VARIANT_ORDER = ["original", "finetuned", "concat", "add", "linear", "dup"]
_NO_COUNTERPART = "ours only: the paper reports RMSE and Rel, no δ<1.25"


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


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cell(v: Any, *, bold: bool = False, digits: int = 4, sig: bool = False, fixed: int | None = None) -> Cell:
    """A value cell; ``fixed`` = that many decimals (the paper's precision), else :func:`_fmt`."""
    if fixed is not None and _is_num(v):
        return Cell(f"{v:.{fixed}f}", cls="num", bold=bold)
    title = v if isinstance(v, str) and len(v) > 60 else ""
    return Cell(_fmt(v, digits, sig), cls="num" if _is_num(v) else "", bold=bold, title=title)


def _delta_cell(a: float | None, b: float | None, higher: bool, digits: int, *, random: bool = False) -> Cell:
    """b − a, green when it goes the good way and red otherwise; never coloured for a random-weights run."""
    if a is None or b is None:
        return Cell()
    d = b - a
    text = ("+" if d >= 0 else "−") + f"{abs(d):.{digits}f}"
    if random:
        return Cell(text, cls="num", note="random weights: not a result")
    good = d != 0 and (d > 0) == higher
    return Cell(text, cls="num " + ("good" if good else "bad"))


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
    keys = [k for k in order if k != "stage"]
    ranked = sorted(keys, key=lambda k: ("." in k, seen[k] < len(rows), -seen[k], order.index(k)))
    return ranked[:limit], len(keys) - min(len(keys), limit)


def _best_flags(values: list[Any], metric: str) -> list[bool]:
    m = metric.lower().split(".")[-1].split("@")[0]
    nums = [v if _is_num(v) and math.isfinite(v) else None for v in values]
    valid = [v for v in nums if v is not None]
    if len(valid) < 2 or (m not in _HIGHER_BETTER and m not in _LOWER_BETTER):
        return [False] * len(values)
    best = max(valid) if m in _HIGHER_BETTER else min(valid)
    return [v is not None and v == best for v in nums]


def _as_percent(task_results: Mapping[str, Any], metrics: Iterable[str]) -> bool:
    """Segmentation metrics stored as fractions (all ≤ 1) are shown in percent, like the paper."""
    metrics = list(metrics)
    vals = [r.get(m) for r in task_results.values() if isinstance(r, Mapping) for m in metrics if _is_num(r.get(m))]
    return bool(vals) and all(0 <= v <= 1.0 for v in vals)


def _variant_sort(names: Iterable[str]) -> list[str]:
    names = list(names)
    rank = {n: i for i, n in enumerate(_VARIANT_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), names.index(n)))


def _probe_model(results: Mapping[str, Any], awareness: Mapping[str, Any] | None) -> dict[str, Table | None]:
    """Variant × metrics table of one probe artifact (segmentation in % like the paper), and its 3D awareness."""
    tasks = [t for t in ("seg", "depth") if isinstance(results.get(t), Mapping)]
    tasks += [t for t in results if t not in tasks and isinstance(results.get(t), Mapping)]
    columns: list[tuple[str, str]] = []
    percent: dict[str, bool] = {}
    for t in tasks:
        seen: list[str] = []
        for r in results[t].values():
            if isinstance(r, Mapping):
                seen += [m for m, v in r.items() if m not in seen and _is_num(v)]
        order = _METRIC_ORDER.get(t, [])
        ms = [m for m in order if m in seen] + [m for m in seen if m not in order]
        columns += [(t, m) for m in ms]
        percent[t] = t == "seg" and _as_percent(results[t], ms)
    variants = _variant_sort(dict.fromkeys(v for t in tasks for v, r in results[t].items() if isinstance(r, Mapping)))
    metrics = None
    if columns:
        head1 = [_th("variant", rowspan=2)] + [
            _th(
                {"seg": "segmentation", "depth": "depth"}.get(t, t) + (" (%)" if percent[t] else ""),
                colspan=sum(1 for c in columns if c[0] == t),
            )
            for t in tasks
            if any(c[0] == t for c in columns)
        ]
        head2 = [_th(_METRIC_LABEL.get(m, m), title=_NO_COUNTERPART if m == "delta1" else "") for _, m in columns]

        def value(t: str, v: str, m: str) -> Any:
            r = results[t].get(v)
            x = r.get(m) if isinstance(r, Mapping) else None
            return 100.0 * x if percent[t] and _is_num(x) else x

        vals = {c: [value(c[0], v, c[1]) for v in variants] for c in columns}
        best = {c: _best_flags(vals[c], c[1]) for c in columns}
        rows = [Row([_th(v)] + [_cell(vals[c][i], bold=best[c][i]) for c in columns]) for i, v in enumerate(variants)]
        metrics = Table([head1, head2], rows)
    aware = None
    if isinstance(awareness, Mapping) and awareness:
        aw = {k: _flatten_scalars(v) if isinstance(v, Mapping) else {"value": v} for k, v in awareness.items()}
        cols, _ = _choose_columns(list(aw.values()))
        vs = _variant_sort(aw)
        flags = {c: _best_flags([aw[v].get(c) for v in vs], c) for c in cols}
        aware = Table(
            [[_th("variant")] + [_th(c) for c in cols]],
            [Row([_th(v)] + [_cell(aw[v].get(c), bold=flags[c][i]) for c in cols]) for i, v in enumerate(vs)],
        )
    return {"metrics": metrics, "awareness": aware}


# ----------------------------------------------------------------------------------------------------------
# The paper beside ours
# ----------------------------------------------------------------------------------------------------------


def _variant(task_results: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    v = task_results.get(name)
    return v if isinstance(v, Mapping) else None


def _ours(probe: Mapping[str, Any] | None, task: str, variant: str, metric: str) -> float | None:
    """One number of our probe artifact, segmentation in percent (as the paper)."""
    if probe is None:
        return None
    tr = (probe["stats"].get("results") or {}).get(task) or {}
    r = _variant(tr, variant)
    x = r.get(metric) if r else None
    if not _is_num(x):
        return None
    return 100.0 * x if task == "seg" and _as_percent(tr, ["miou", "macc", "aacc"]) else float(x)


def _main_table(task: str, probe: Mapping[str, Any] | None, profile: str | None) -> Table:
    """The paper's Tables 1–3 for one task, one row per dataset with its source, then ours."""
    metrics = ["miou", "macc", "aacc"] if task == "seg" else ["rmse", "rel"]
    ours_key = {"rel": "absrel"}
    label = {"miou": "mIoU", "macc": "mAcc", "aacc": "aAcc", "rmse": "RMSE", "rel": "Rel"}
    unit = " (%) ↑" if task == "seg" else " ↓"
    digits = 2 if task == "seg" else 4
    n = len(metrics)
    head = [
        [
            _th("source", rowspan=2),
            _th("dataset", rowspan=2),
            _th("original" + unit, colspan=n),
            _th("FiT3D" + unit, colspan=n),
            _th(f"Δ {label[metrics[0]]}", rowspan=2),
        ],
        [_th(label[m]) for m in metrics] * 2,
    ]
    rows = []
    for c in paper.main_rows(task):  # type: ignore[arg-type]
        cells = [Cell(c.source), Cell(c.dataset)]
        cells += [_cell(getattr(c.original, m), fixed=digits) for m in metrics]
        cells += [_cell(getattr(c.fit3d, m), fixed=digits) for m in metrics]
        cells.append(_delta_cell(c.before, c.after, c.higher_is_better, digits))
        rows.append(Row(cells, cls="paper"))
    if probe is not None:
        st = probe["stats"]
        where = st.get("dataset") or f"{profile or st.get('profile', '?')} scenes"
        who = f"{where}, {st.get('backbone', '?')} ({st.get('weights', '?')} weights), artifact {probe['hash']}"
        o = [_ours(probe, task, "original", ours_key.get(m, m)) for m in metrics]
        f = [_ours(probe, task, "concat", ours_key.get(m, m)) for m in metrics]
        cells = [Cell("ours", bold=True), Cell(f"this run — {who}")]
        cells += [_cell(x, fixed=digits) for x in o + f]
        cells.append(_delta_cell(o[0], f[0], task == "seg", digits, random=_is_random(probe)))
        rows.append(Row(cells, cls="ours"))
    return Table(head, rows)


def _more_table() -> Table:
    """Tables 4 and 9–12: other backbones, ViT-B, ImageNet classification, a DPT head."""
    head = [[_th(h) for h in ("source", "backbone", "head", "dataset", "metric", "original", "FiT3D", "Δ")]]
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
                    _cell(c.before, fixed=digits),
                    _cell(c.after, fixed=digits),
                    _delta_cell(c.before, c.after, c.higher_is_better, digits),
                ],
                cls="paper",
            )
        )
    return Table(head, rows)


def _pct(x: Any) -> float | None:
    """A segmentation score of an ablation row, in percent."""
    return 100.0 * x if _is_num(x) and 0 <= x <= 1 else (float(x) if _is_num(x) else None)


def _ours_column(random: bool) -> str:
    return "ours (this run)" + (" — random weights: not a result" if random else "")


def _assembly_tables(probe: Mapping[str, Any] | None) -> tuple[Table, Table]:
    """Tables 7 and 13 beside the same variants of our headline probe artifact."""
    rnd = _is_random(probe)
    seg = ("miou", "macc", "aacc")
    t7 = paper.ablation_rows("assembly")
    assembly = Table(
        [
            [
                _th("assembly", rowspan=2),
                _th("variant", rowspan=2),
                _th("paper: NYUv2 (%)", colspan=3),
                _th(_ours_column(rnd) + " (%)", colspan=3),
            ],
            [_th(_METRIC_LABEL[m]) for m in seg] * 2,
        ],
        [
            Row(
                [Cell(r.label), Cell(str(r.value), code=True)]
                + [_cell(getattr(r.seg, m) if r.seg else None, fixed=2) for m in seg]
                + [_cell(_ours(probe, "seg", str(r.value), m), fixed=2) for m in seg]
            )
            for r in t7
        ],
        caption=f"Feature assembly — {t7[0].source} (NYUv2); ours: the variants of the headline probe artifact.",
    )
    t13 = paper.ablation_rows("control")
    control = Table(
        [
            [
                _th("features", rowspan=2),
                _th("variant", rowspan=2),
                _th("paper: ScanNet++", colspan=2),
                _th(_ours_column(rnd), colspan=2),
            ],
            [_th("mIoU (%)"), _th("RMSE")] * 2,
        ],
        [
            Row(
                [
                    Cell(r.label),
                    Cell(str(r.value), code=True),
                    _cell(r.seg.miou if r.seg else None, fixed=2),
                    _cell(r.depth.rmse if r.depth else None, fixed=4),
                    _cell(_ours(probe, "seg", str(r.value), "miou"), fixed=2),
                    _cell(_ours(probe, "depth", str(r.value), "rmse"), fixed=4),
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
        [_th(name), _th("paper: mAcc"), _th("mIoU"), _th("aAcc")]
        + [_th(e[0]) for e in extra]
        + [_th(f"{_ours_column(random)}: seg mIoU {variant} (%)"), _th("note")]
    ]
    body = []
    for r in rows_p:
        s = r.seg
        mine = by_value.get(str(r.value))
        body.append(
            Row(
                [Cell(r.label)]
                + [_cell(getattr(s, m) if s else None, fixed=2) for m in ("macc", "miou", "aacc")]
                + [_cell(getattr(r, e[1]), fixed=e[2]) for e in extra]
                + [_cell(_pct(mine.get(f"seg_miou_{variant}")) if mine else None, fixed=2), Cell(r.note)]
            )
        )
    ours_note = "" if ours_rows else " Ours: no ablations artifact yet (notebook 05 makes it)."
    return Table(
        head,
        body,
        caption=f"{rows_p[0].source} ({rows_p[0].dataset}), beside our points of the same value.{ours_note}",
    )


def _newest_ablations(arts: list[dict[str, Any]]) -> dict[str, Any] | None:
    group = [a for a in arts if a["stage"] == "ablations"]
    return max(group, key=lambda a: a["mtime"]) if group else None


def _ours_ablation_table(name: str, rows: list[Mapping[str, Any]]) -> Table:
    """Our rows of one ablation: every result column; ``cost`` (timing on a shared machine) is not a result."""
    cols = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in ("ablation", "value", "cost")]
    cols = [c for c in cols if not isinstance(next((r.get(c) for r in rows if c in r), None), Mapping)]
    rank = ("seg_miou", "depth_rmse", "recall14")  # the results first (stats.json keeps its keys sorted)
    cols.sort(key=lambda c: next((i for i, p in enumerate(rank) if c.startswith(p)), len(rank)))
    return Table(
        [[_th(name)] + [_th(c) for c in cols]],
        [Row([_th(r.get("value"))] + [_cell(r.get(c), sig=True) for c in cols]) for r in rows],
    )


def _ablation_models(arts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One section per ablation: the paper's table (Tables 5, 6, 8; always shown) with ours matched by value, and
    our rows of the newest ``ablations`` artifact (the course's own ablations too)."""
    newest = _newest_ablations(arts)
    random = _is_random(newest)
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


# ----------------------------------------------------------------------------------------------------------
# The artifacts page
# ----------------------------------------------------------------------------------------------------------


def _when(a: Mapping[str, Any]) -> str:
    return _dt.datetime.fromtimestamp(a["mtime"]).strftime("%Y-%m-%d %H:%M")


def _stage_models(arts: list[dict[str, Any]], profile: str | None) -> list[dict[str, Any]]:
    out = []
    for st in dict.fromkeys(a["stage"] for a in arts):
        group = [a for a in arts if a["stage"] == st]
        rows = [_flatten_scalars(a["stats"], depth=1 if st == "probe" else 2) for a in group]
        other = {id(a): "" if _in_profile(a, profile) else "other-profile" for a in group}
        cols, hidden = _choose_columns(rows, limit=10)
        if len(cols) > 8 and len(group) <= 4:
            # few artifacts, many stats: one row per stat reads better than a table wider than the page
            cols, hidden = _choose_columns(rows, limit=24)
            head = [
                [_th("stat")]
                + [_th(a["hash"], code=True, title=str(a["path"]), note=_when(a), cls=other[id(a)]) for a in group]
            ]
            body = [Row([_th(c)] + [_cell(r.get(c), sig=True) for r in rows]) for c in cols]
        else:
            head = [[_th("artifact"), _th("written")] + [_th(c) for c in cols]]
            body = [
                Row(
                    [Cell(a["hash"], code=True, title=str(a["path"])), Cell(_when(a))]
                    + [_cell(r.get(c), sig=True) for c in cols],
                    cls=other[id(a)],
                )
                for a, r in zip(group, rows)
            ]
        probes = [
            {
                "hash": a["hash"],
                "backbone": a["stats"].get("backbone", "?"),
                "weights": a["stats"].get("weights", "?"),
                "probe": _probe_model(a["stats"]["results"], a["stats"].get("awareness")),
            }
            for a in group
            if st == "probe" and isinstance(a["stats"].get("results"), Mapping) and a["stats"]["results"]
        ]
        out.append({"stage": st, "count": len(group), "table": Table(head, body), "hidden": hidden, "probes": probes})
    return out


# ----------------------------------------------------------------------------------------------------------
# Figures (drawn by fit3d_helpers.course.figures from the artifacts; PNGs in report/figures/)
# ----------------------------------------------------------------------------------------------------------

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
        "Held-out views; the feature columns of a row share one PCA basis, so equal colours mean similar features. "
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
        "Points of the left view joined to their nearest-feature match in the right view; green when within 14 px "
        "of the true position (from depth and poses), red otherwise. More green means more multi-view-consistent "
        "features.",
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


def export_figures(
    report_dir: str | Path, artifacts_dir: str | Path, profile: str | None = None
) -> tuple[dict[str, Path], dict[str, str]]:
    """Draw the presenter's figures and the slides' variants into ``report_dir/figures/``
    (:func:`fit3d_helpers.course.figures.export_pngs`). Returns ``({name: png}, {name: why it could not be drawn})``.

    A figure whose artifact is missing is neither drawn nor an error (the pages say which notebook makes it). PNGs of
    an earlier run are removed first, so no picture outlives its artifact.
    """
    from . import figures as _figures

    artifacts_dir = Path(artifacts_dir)
    out = Path(report_dir) / FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    for name in (*FIGURE_INFO, *SLIDE_FIGURES):
        (out / f"{name}.png").unlink(missing_ok=True)
    if not artifacts_dir.is_dir():
        return {}, {}
    return _figures.export_pngs(artifacts_dir, out, profile=profile)


def _figure_models(
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
                "look": _inline_md(info.look),
                "real": _inline_md(info.real) if random else "",
                "src": src,
                "missing": _inline_md(missing),
            }
        )
    return out


def _inline_md(text: str) -> Any:
    """A short markdown text as safe HTML: TeX → MathML, `code`, **bold**; the rest escaped."""
    tokens: dict[str, str] = {}
    t = html.escape(render_markdown_math(text, tokens=tokens), quote=False)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return _markup(_restore_math(t, tokens))


# ----------------------------------------------------------------------------------------------------------
# build_index / build_report
# ----------------------------------------------------------------------------------------------------------

_PIPELINE = (
    ("Scenes", "posed RGB views", "01", "#e8f1fb"),
    ("Lift", "feature Gaussians", "02", "#eaf7ea"),
    ("Render", "3D-consistent features", "02", "#eaf7ea"),
    ("Fine-tune", "2D backbone", "03", "#fdf0e3"),
    ("Probe", "seg · depth", "04", "#f3eafb"),
)
_NAV = (
    ("index.html", "Report"),
    ("slides.html", "Slides"),
    ("glossary.html", "Glossary & questions"),
    ("fidelity.html", "Fidelity"),
    ("artifacts.html", "All artifacts"),
)


@functools.lru_cache(maxsize=1)
def _env() -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
    )


def _render(template: str, **context: Any) -> str:
    return _env().get_template(template).render(**context)


def _fmt_seconds(s: Any) -> str:
    if not _is_num(s):
        return "—"
    if s < 120:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {s % 60:02.0f} s"


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


def _headline_probe(mine: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest probe marked ``headline``; else the newest that is not an ablation point; else any."""
    probes = [a for a in mine if a["stage"] == "probe" and isinstance(a["stats"].get("results"), Mapping)]
    main = [a for a in probes if a["stats"].get("headline") is True] or [
        a for a in probes if not a["stats"].get("ablation")
    ]
    return (main or probes or [None])[0]


def _deviation_models(run: Mapping[str, Any]) -> dict[str, Any]:
    from ..profiles import setting_types
    from .glossary import deviations

    profile = run.get("profile")
    keys = setting_types()
    try:
        rows = deviations({k: v for k, v in (run.get("overrides") or {}).items() if k in keys}, profile)
    except Exception:  # an override of an older run that no longer parses: the profiles' own values
        rows = deviations(None, profile)
    return {"rows": rows, "profile": profile if profile in ("smoke", "paper") else "smoke"}


def _differences(probe: Mapping[str, Any] | None) -> dict[str, Any]:
    """concat − original of the headline probe (seg mIoU in points, depth RMSE), for the takeaways; never a gain."""
    out: dict[str, Any] = {}
    for task, metric, digits in (("seg", "miou", 2), ("depth", "rmse", 4)):
        a, b = _ours(probe, task, "original", metric), _ours(probe, task, "concat", metric)
        if a is not None and b is not None:
            d = b - a
            out[task] = ("+" if d >= 0 else "−") + f"{abs(d):.{digits}f}"
    return out


def report_context(
    report_dir: str | Path = "report",
    artifacts_dir: str | Path | None = None,
    run_json: Mapping[str, Any] | str | Path | None = None,
    *,
    figure_errors: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Everything the report's pages show (index, slides, glossary), from the run metadata and the artifacts."""
    report_dir = Path(report_dir)
    run = _load_run(report_dir, run_json)
    if artifacts_dir is None:
        artifacts_dir = run.get("artifacts_dir_abs") or (report_dir.resolve().parent / "artifacts")
    artifacts_dir = Path(artifacts_dir)
    profile = run.get("profile")
    arts = scan_artifacts(artifacts_dir)
    mine = [a for a in arts if _in_profile(a, profile)]
    random_arts = [a for a in mine if _is_random(a)]
    notebooks = run.get("notebooks") or []
    random_pages = [n.get("name") for n in notebooks if n.get("random_weights")]
    random = bool(random_arts or random_pages)

    weights_pairs = _weights_summary(mine)
    named = [(b, w) for b, w in weights_pairs if not w.startswith("file:")]
    n_files = len(weights_pairs) - len(named)  # fine-tuned checkpoints of this run (feature caches name them)
    weights = "; ".join(f"{b} — {w} weights" for b, w in named) + (
        f"{'; ' if named else ''}{n_files} fine-tuned checkpoint{'s' if n_files != 1 else ''} of this run"
        if n_files
        else ""
    )
    commit = str(run.get("commit", "unknown")) + (" (uncommitted changes)" if run.get("dirty") else "")
    meta = [
        ("commit", commit),
        ("profile", profile or "—"),
        ("backbone / weights", weights or "— (no stats.json names a backbone yet)"),
        ("device", run.get("device", "—")),
        ("torch / python", f"{run.get('torch', '—')} / {run.get('python', '—')}"),
        ("date", run.get("date", "—")),
        ("overrides", ", ".join(f"{k}={v!r}" for k, v in (run.get("overrides") or {}).items()) or "none"),
        ("artifacts", str(run.get("artifacts_dir", artifacts_dir))),
        ("total wall time", _fmt_seconds(run.get("total_wall_s"))),
    ]
    nb_rows = [
        {
            "name": n.get("name", "?"),
            "href": n.get("html") if n.get("html") and (report_dir / n["html"]).is_file() else None,
            "status": n.get("status", "?"),
            "extra": (" — random weights" if n.get("random_weights") else "")
            + (" (earlier run)" if n.get("from_previous_run") else ""),
            "wall": _fmt_seconds(n.get("wall_s")),
            "date": n.get("date", run.get("date", "")),
            "error": n.get("error", ""),
        }
        for n in notebooks
    ]
    probe = _headline_probe(mine)
    headline = None
    if probe is not None:
        st = probe["stats"]
        headline = {
            "hash": probe["hash"],
            "backbone": st.get("backbone", "?"),
            "weights": st.get("weights", "?"),
            "dataset": st.get("dataset"),
            "random": _is_random(probe),
            "has_dup": any("dup" in (r or {}) for r in st["results"].values() if isinstance(r, Mapping)),
            "has_delta1": any(
                isinstance(r, Mapping) and "delta1" in r for r in (st["results"].get("depth") or {}).values()
            ),
            "probe": _probe_model(st["results"], st.get("awareness")),
            "stats": st,
        }
    assembly, control = _assembly_tables(probe)
    newest_abl = _newest_ablations(mine)
    budget = (newest_abl or {"stats": {}})["stats"].get("budget") or {}
    return {
        "report_dir": report_dir,
        "artifacts_dir": artifacts_dir,
        "run": run,
        "profile": profile,
        "random": random,
        "random_arts": random_arts,
        "arts": arts,
        "mine": mine,
        "probe": probe,
        "common": {
            "banner": _markup(banner_html(RANDOM_WEIGHTS_BANNER) if random else ""),
            "nav_pages": _NAV,
            "generated": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        },
        "arxiv": paper.ARXIV,
        "title": paper.TITLE,
        "meta": meta,
        "weights": named,
        "notebooks": nb_rows,
        "pages": [] if notebooks else sorted(p.name for p in report_dir.glob("[0-9]*.html")),
        "pipeline": _PIPELINE,
        "headline": headline,
        "paper": {
            "caveat": paper.CAVEAT,
            "seg": _main_table("seg", probe, profile),
            "depth": _main_table("depth", probe, profile),
            "more": _more_table(),
            "notes": [paper.NOTES[0]],
            "random": _is_random(probe),
        },
        "ablations": {
            "assembly": assembly,
            "control": control,
            "ours": _ablation_models(mine),
            "artifact": newest_abl["hash"] if newest_abl else None,
            "random": _is_random(newest_abl),
            "budget": budget,
        },
        "figure_errors": dict(figure_errors or {}),
        "figures": _figure_models(report_dir, random, figure_errors),
        "deviations": _deviation_models(run),
        "differences": _differences(probe),
        "no_counterpart": _NO_COUNTERPART,
    }


def _index_context(ctx: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("arxiv", "meta", "notebooks", "pages", "pipeline", "headline", "paper", "ablations", "deviations")
    return {
        **{k: ctx[k] for k in keys},
        "figures": [f for f in ctx["figures"] if f["name"] in FIGURE_INFO],
        "random": ctx["random"],
        "no_counterpart": ctx["no_counterpart"],
        **ctx["common"],
    }


def build_index(
    report_dir: str | Path = "report",
    artifacts_dir: str | Path | None = None,
    run_json: Mapping[str, Any] | str | Path | None = None,
    *,
    figure_errors: Mapping[str, str] | None = None,
) -> Path:
    """Write the report's own pages from the run metadata and the artifacts; returns the index's path.

    ``index.html`` (figures, method, headline, the paper beside ours, ablations, deviations, the run),
    ``artifacts.html`` (every artifact), ``slides.html`` (:mod:`fit3d_helpers.course.slides`), ``glossary.html`` and
    ``fidelity.html`` (``docs/fidelity.md``). Figures are the PNGs already in ``report_dir/figures/``
    (:func:`export_figures` draws them; :func:`build_report` does both).

    run_json: the run metadata (dict), a path to it, or None for ``report_dir/run.json`` (may be missing).
    artifacts_dir: defaults to the run's ``artifacts_dir``, else ``artifacts`` beside ``report_dir``.
    figure_errors: ``{figure: why it could not be drawn}``, shown in its place.
    """
    from . import slides

    ctx = report_context(report_dir, artifacts_dir, run_json, figure_errors=figure_errors)
    report_dir = ctx["report_dir"]
    index = _render("index.html.j2", page="index.html", **_index_context(ctx))
    artifacts_page = _render(
        "artifacts.html.j2",
        page="artifacts.html",
        artifacts_dir=str(ctx["artifacts_dir"]),
        stages=_stage_models(ctx["arts"], ctx["profile"]),
        other_profile=any(not _in_profile(a, ctx["profile"]) for a in ctx["arts"]),
        random_arts=[f"{a['stage']}/{a['hash']}" for a in ctx["random_arts"]],
        **ctx["common"],
    )
    _write_text_atomic(report_dir / "artifacts.html", artifacts_page)
    build_glossary(report_dir, ctx)
    build_fidelity(report_dir, ctx)
    slides.build_slides(report_dir, context=ctx)
    out = report_dir / "index.html"
    _write_text_atomic(out, index)
    return out


def build_glossary(report_dir: str | Path, ctx: Mapping[str, Any] | None = None) -> Path:
    """``report_dir/glossary.html``: the glossary and the examiner questions (:mod:`fit3d_helpers.course.glossary`)."""
    from .glossary import GLOSSARY, questions

    report_dir = Path(report_dir)
    ctx = ctx if ctx is not None else report_context(report_dir)
    page = _render(
        "glossary.html.j2",
        page="glossary.html",
        terms=[{"term": t.term, "anchor": t.anchor, "text": _inline_md(t.text)} for t in GLOSSARY],
        questions=[{"q": _inline_md(q), "a": _inline_md(a)} for q, a in questions()],
        **ctx["common"],
    )
    out = report_dir / "glossary.html"
    _write_text_atomic(out, page)
    return out


def fidelity_source(run: Mapping[str, Any] | None = None) -> Path | None:
    """``docs/fidelity.md`` of the run's checkout, else of the checkout this package is part of; None if neither."""
    roots = [Path(run["cwd"])] if run and run.get("cwd") else []
    roots.append(Path(__file__).resolve().parents[2])
    return next((r / "docs" / "fidelity.md" for r in roots if (r / "docs" / "fidelity.md").is_file()), None)


def build_fidelity(report_dir: str | Path, ctx: Mapping[str, Any] | None = None) -> Path:
    """``report_dir/fidelity.html``: ``docs/fidelity.md`` rendered (mistune, nbconvert's markdown renderer), so the
    report's links to it work offline from the report folder."""
    import mistune

    report_dir = Path(report_dir)
    ctx = ctx if ctx is not None else report_context(report_dir)
    src = fidelity_source(ctx["run"])
    if src is None:
        body = "<p class='muted'>docs/fidelity.md was not found beside this package or the run's checkout.</p>"
    else:
        tokens: dict[str, str] = {}
        md = mistune.create_markdown(escape=False, plugins=["table", "strikethrough"])
        body = _restore_math(md(render_markdown_math(src.read_text(encoding="utf-8"), tokens=tokens)), tokens)
    page = _render(
        "fidelity.html.j2",
        page="fidelity.html",
        body=_markup(body),
        source="docs/fidelity.md",
        **ctx["common"],
    )
    out = report_dir / "fidelity.html"
    _write_text_atomic(out, page)
    return out


def build_report(
    report_dir: str | Path = "report",
    artifacts_dir: str | Path | None = None,
    run_json: Mapping[str, Any] | str | Path | None = None,
    *,
    figures: bool = True,
) -> dict[str, Any]:
    """Draw the figures (:func:`export_figures`) and write every page of the report (:func:`build_index`).

    Returns ``{"index", "slides", "glossary", "fidelity", "artifacts": path, "figures": {name: png},
    "figure_errors": {name: why}}``.
    """
    report_dir = Path(report_dir)
    run = _load_run(report_dir, run_json)
    if artifacts_dir is None:
        artifacts_dir = run.get("artifacts_dir_abs") or (report_dir.resolve().parent / "artifacts")
    written: dict[str, Path] = {}
    errors: dict[str, str] = {}
    if figures:
        try:
            written, errors = export_figures(report_dir, artifacts_dir, run.get("profile"))
        except Exception as e:  # matplotlib or torch missing: the pages say so in each figure's place
            errors = {name: f"{type(e).__name__}: {e}"[:300] for name in (*FIGURE_INFO, *SLIDE_FIGURES)}
    index = build_index(report_dir, artifacts_dir, run, figure_errors=errors)
    return {
        "index": index,
        "slides": report_dir / "slides.html",
        "glossary": report_dir / "glossary.html",
        "fidelity": report_dir / "fidelity.html",
        "artifacts": report_dir / "artifacts.html",
        "figures": written,
        "figure_errors": errors,
    }


def _markup(text: str) -> Any:
    from markupsafe import Markup

    return Markup(text)
