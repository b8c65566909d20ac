"""Offline HTML pages: executed notebook → one self-contained page (nbconvert), the banner, the templates.

Everything written here opens offline: no ``<script src="http…">`` and no ``<link href="http…">``. nbconvert's
``lab`` template loads require.js, MathJax and mermaid from CDNs; a small template on top of it
(``templates/nbconvert_offline.html.j2``) drops those blocks, and plotly's MathJax CDN ``<script>`` is stripped
afterwards (:func:`strip_remote_resources`). Markdown images with local paths are embedded. A red random-weights
banner goes at the top of a page when the notebook's outputs contain it, or when the caller passes ``banner``.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..utils import BANNER_CLASS, RANDOM_WEIGHTS_BANNER, banner_html
from .mathml import joined as _joined
from .mathml import render_markdown_math, restore_math

__all__ = [
    "REMOTE_PATTERNS",
    "TEMPLATES",
    "apply_banner",
    "export_html",
    "find_remote_resources",
    "notebook_has_random_banner",
    "render_template",
    "strip_remote_resources",
    "write_text_atomic",
]

TEMPLATES = Path(__file__).with_name("templates")
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
    write_text_atomic(html_path, page)
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


def _plain(out: Any) -> str:
    return _joined((out.get("data") or {}).get("text/plain", ""))


def drop_banner_outputs(nb: Any) -> None:
    """Remove the notebook's own random-weights banner outputs (``viz.weights_banner``), kept once at the page top."""
    for cell in nb.get("cells", []):
        outs = cell.get("outputs") or []
        keep = [o for o in outs if _plain(o).strip() != RANDOM_WEIGHTS_BANNER]
        if len(keep) != len(outs):
            cell["outputs"] = keep


def notebook_has_random_banner(nb: Any) -> bool:
    """True when any output of the (executed) notebook contains the random-weights banner text."""
    return any(_BANNER_PROBE in t or _BANNER_KEY in t for t in _output_texts(nb))


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


def _tags(cell: Any) -> list[str]:
    return list((cell.get("metadata") or {}).get("tags") or [])


def merge_parameter_cells(nb: Any) -> bool:
    """Show one parameters cell: papermill leaves the notebook's ``parameters`` cell (the defaults, with their
    comments) and adds an ``injected-parameters`` cell after it. The page keeps the first, with each injected value
    written in place of its default (``# this run; default: …``) and injected names it lacks appended, and drops the
    second. Display only: the executed notebook is not changed and nothing is run. Returns True when merged."""
    import ast

    cells = nb.get("cells", [])
    inj = next((i for i, c in enumerate(cells) if "injected-parameters" in _tags(c)), None)
    orig = next((i for i, c in enumerate(cells) if "parameters" in _tags(c)), None)
    if inj is None or orig is None:
        return False
    src, inj_src = _joined(cells[orig].source), _joined(cells[inj].source)
    try:
        values = {
            node.targets[0].id: ast.get_source_segment(inj_src, node.value)
            for node in ast.parse(inj_src).body
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        }
        body = ast.parse(src).body
    except SyntaxError:
        del cells[orig]  # cannot merge: the injected cell (the values this run used) is the one shown
        return True
    lines = src.split("\n")
    seen: set[str] = set()
    for node in reversed(body):  # bottom-up, so line numbers stay valid
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        target = node.target if isinstance(node, ast.AnnAssign) else target
        if not isinstance(target, ast.Name) or target.id not in values or node.value is None:
            continue
        name = target.id
        seen.add(name)
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        head = lines[first][: node.value.col_offset]
        default = ast.get_source_segment(src, node.value) or ""
        one_line = " ".join(default.split())
        note = lines[last][node.value.end_col_offset or 0 :].strip().lstrip("#").strip()
        note = f"; {note}" if note else ""
        lines[first : last + 1] = [f"{head}{values[name]}  # this run (default: {one_line[:80]}){note}"]
    extra = [f"{k} = {v}  # this run" for k, v in values.items() if k not in seen]
    cells[orig].source = "\n".join(lines + extra)
    del cells[inj]
    return True


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
    if banner:
        drop_banner_outputs(nb)  # the page says it once, at the top
    merge_parameter_cells(nb)
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
    body = restore_math(strip_remote_resources(body), tokens)
    if 'require(["plotly"]' in body or "require(['plotly']" in body:
        warnings.warn(
            f"{executed_ipynb.name}: plotly figures were made by a plotly < 6 'notebook' renderer, which needs "
            "require.js; they will not render in the offline page. Use plotly >= 6.",
            stacklevel=2,
        )
    write_text_atomic(html_path, body)
    return html_path


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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


def render_template(template: str, **context: Any) -> str:
    """One of ``templates/*.j2`` rendered (autoescaped; an undefined name is an error, not an empty string)."""
    return _env().get_template(template).render(**context)
