"""LaTeX → MathML for the report's pages (``latex2mathml``), so that math reads right offline, without MathJax.

Used by the notebook pages (:mod:`fit3d_helpers.course.pages`), the report's own pages and the slides
(:func:`inline_md` for short texts). What latex2mathml cannot convert is shown as raw TeX in a code span.
"""

from __future__ import annotations

import functools
import html
import re
import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["inline_md", "joined", "markup", "render_markdown_math", "restore_math"]

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


def restore_math(page: str, tokens: Mapping[str, str]) -> str:
    """Put the MathML back where the placeholders are, in text only (not inside a tag, e.g. a heading's id)."""
    if not tokens:
        return page

    def repl(m: re.Match) -> str:
        s = m.group(0)
        if s[0] == "<":  # a tag: drop the placeholder from attributes (nbconvert's heading ids)
            return re.sub(r"-?FIT3DMATH\d{5}X", "", s) if "FIT3DMATH" in s else s
        return tokens.get(s, s)

    return _MATH_TOKEN_RE.sub(repl, page)


def inline_md(text: str) -> Any:
    """A short markdown text as safe HTML: TeX → MathML, `code`, **bold**; the rest escaped."""
    tokens: dict[str, str] = {}
    t = html.escape(render_markdown_math(text, tokens=tokens), quote=False)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return markup(restore_math(t, tokens))


def markup(text: str) -> Any:
    from markupsafe import Markup

    return Markup(text)


def joined(val: Any) -> str:
    """A notebook's multi-line field (a list of strings or one string) as one string."""
    return "".join(val) if isinstance(val, list) else str(val)
