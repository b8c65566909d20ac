"""The presenter's printouts: ``report/handout.html`` (one A4 page: method, three equations, the headline table,
costs, limitations) and, printed by headless Chromium when it is present (playwright's ``page.pdf``),
``report/slides.pdf`` (one 16:9 page per slide) and ``report/handout.pdf``. Without Chromium or playwright the PDFs
are skipped with a printed note; the HTML is always written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .pages import render_template, write_text_atomic

__all__ = ["build_handout", "pdf_pages", "print_pdfs"]


def build_handout(report_dir: str | Path, deck: Mapping[str, Any]) -> Path:
    """``report_dir/handout.html`` from the deck's context (:func:`fit3d_helpers.course.slides.deck_context`)."""
    out = Path(report_dir) / "handout.html"
    write_text_atomic(out, render_template("handout.html.j2", **deck))
    return out


def pdf_pages(path: str | Path) -> int:
    """How many pages a PDF has (counts its ``/Type /Page`` objects; enough for Chromium's output)."""
    import re

    return len(re.findall(rb"/Type\s*/Page(?![s\w])", Path(path).read_bytes()))


def print_pdfs(
    report_dir: str | Path, echo: Callable[[str], None] = print, *, chromium: str | None = None
) -> dict[str, Path]:
    """Print ``slides.html`` → ``slides.pdf`` (1280×720 px pages) and ``handout.html`` → ``handout.pdf`` (A4).
    Returns the PDFs written; a missing browser is a note, not an error."""
    from .browser import CHROMIUM_ARGS, find_chromium

    report_dir = Path(report_dir)
    exe = find_chromium(chromium)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        exe = None
    if exe is None:
        echo("note: slides.pdf and handout.pdf skipped (no headless Chromium / playwright on this machine)")
        return {}
    jobs = [
        ("slides.html", "slides.pdf", {"width": "1280px", "height": "720px", "prefer_css_page_size": True}),
        ("handout.html", "handout.pdf", {"format": "A4", "prefer_css_page_size": True}),
    ]
    written: dict[str, Path] = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, headless=True, args=list(CHROMIUM_ARGS))
            try:
                ctx = browser.new_context(viewport={"width": 1280, "height": 720}, service_workers="block")
                ctx.route(lambda url: not url.startswith(("file:", "data:", "blob:", "about:")), lambda r: r.abort())
                for src, dst, opts in jobs:
                    if not (report_dir / src).is_file():
                        continue
                    page = ctx.new_page()
                    page.goto((report_dir / src).resolve().as_uri(), wait_until="load")
                    page.emulate_media(media="print")
                    tmp = report_dir / (dst + ".tmp")
                    page.pdf(path=str(tmp), print_background=True, margin={"top": "0", "bottom": "0"}, **opts)
                    tmp.replace(report_dir / dst)
                    written[dst] = report_dir / dst
                    page.close()
            finally:
                browser.close()
    except Exception as e:  # a browser that does not start: the HTML pages stay
        echo(f"note: PDFs not printed ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
    for name, p in written.items():
        echo(f"{name}: {pdf_pages(p)} page(s)")
    return written
