"""Open report pages in headless Chromium (Playwright, offline) and check that they work without the network.

For each page: every plotly figure (``div.plotly-graph-div``) is drawn (it holds a ``.main-svg`` once plotly.js
ran; 3D scenes draw with software WebGL), no request leaves the machine (anything but ``file:``, ``data:``,
``blob:``, ``about:`` is blocked and recorded), no uncaught JavaScript exception, no broken ``<img>``, and math is
MathML that the browser laid out (no TeX left in the text outside code). ``scripts/check_report_browser.py`` is
the command line.

Two kinds of page get more checks. A slide deck (``section.slide`` elements, ``report/slides.html``) is opened at
1280×720: pressing → must move to slide 2, ← back, End to the last, Home to the first, and no slide's content may
run past its footer or its right edge; with ``--screenshot`` each slide is saved as ``slides-NN.png``. A notebook page
with the "show code" toggle must hide its code cells at load (outputs visible) and show them after a click.

Playwright's Python package drives the system's Chromium (Debian: ``apt-get install -y chromium``); it downloads
nothing (no ``playwright install``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MIN_TEXT_PX", "BrowserUnavailable", "PageCheck", "check_pages", "find_chromium", "report_pages"]

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",  # software compositing; WebGL still runs on SwiftShader below
    "--disable-background-networking",
    "--disable-component-update",
    "--hide-scrollbars",
    "--use-angle=swiftshader",  # software WebGL, so that plotly's 3D scenes draw without a GPU
    "--enable-unsafe-swiftshader",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # belt and braces: nothing resolves even if a request slipped out
)
MIN_TEXT_PX = 16  # smallest readable text on a 1280×720 slide (a projector at the back of a room)
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "chrome-error:", "devtools:")

# Settled when every figure is drawn, or when plotly.js is absent after load (a figure can never draw then).
_SETTLED_JS = """() => {
  const plots = document.querySelectorAll('div.plotly-graph-div');
  const drawn = Array.from(plots).filter(d => d.querySelector('.main-svg') !== null).length;
  return drawn >= plots.length || (document.readyState === 'complete' && typeof window.Plotly === 'undefined');
}"""
# Every <img> must decode (an image in a hidden slide too): decode() rejects for a broken or undecodable source.
_DECODE_JS = """async () => {
  const bad = [];
  for (const i of Array.from(document.images)) {
    try { await i.decode(); } catch (e) { bad.push((i.getAttribute('src') || '').slice(0, 80)); }
  }
  return bad;
}"""
# The active slide of a deck: its number (from <body data-slide>, checked against the visible section), its title,
# and whether anything in it runs past the footer or the right edge.
_SLIDE_JS = """() => {
  const slides = Array.from(document.querySelectorAll('section.slide'));
  const shown = slides.map((s, i) => [s, i]).filter(([s]) => s.getBoundingClientRect().width > 0);
  if (shown.length !== 1) return {n: slides.length, current: -1, visible: shown.length};
  const [s, i] = shown[0];
  const box = s.getBoundingClientRect();
  const foot = s.querySelector('footer');
  const bottom = foot ? foot.getBoundingClientRect().top : box.bottom;
  const spill = Array.from(s.querySelectorAll('.body *')).filter(e => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && (r.bottom > bottom + 2 || r.right > box.right + 2 || r.left < box.left - 2);
  }).map(e => e.tagName.toLowerCase() + (e.className && typeof e.className === 'string' ? '.' + e.className : ''));
  const flat = Array.from(s.getElementsByTagName('math')).filter(m => !(m.getBoundingClientRect().width > 0));
  // text sizes as rendered: CSS font-size × the deck's scale (HTML), × the SVG's screen matrix (SVG text)
  const deckScale = box.width / (s.offsetWidth || box.width);
  const label = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
    + (e.className && typeof e.className === 'string' && e.className ? '.' + e.className.split(' ')[0] : '');
  const texts = [];
  const walker = document.createTreeWalker(s, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || !n.nodeValue.trim() || el.closest('aside.notes,script,style')) continue;
    if (!(el.getClientRects().length > 0)) continue;
    const cs = getComputedStyle(el);
    if (cs.visibility === 'hidden' || cs.display === 'none') continue;
    let px = parseFloat(cs.fontSize) * deckScale;
    const svg = el.closest('svg');
    if (svg && el.namespaceURI === 'http://www.w3.org/2000/svg') {
      const m = el.getScreenCTM();
      px = parseFloat(cs.fontSize) * (m ? Math.hypot(m.a, m.b) : 1);
    }
    texts.push({px: Math.round(px * 10) / 10, el: label(el), text: n.nodeValue.trim().slice(0, 40)});
  }
  texts.sort((a, b) => a.px - b.px);
  const imgs = Array.from(s.querySelectorAll('img')).filter(i => i.getClientRects().length > 0).map(i => {
    const r = i.getBoundingClientRect();
    const scale = i.naturalWidth ? r.width / i.naturalWidth : 0;
    const minText = parseFloat(i.getAttribute('data-min-text-px') || 'NaN');
    return {alt: i.getAttribute('alt') || '', natural: [i.naturalWidth, i.naturalHeight],
            shown: [Math.round(r.width), Math.round(r.height)], scale: Math.round(scale * 1000) / 1000,
            dpi: parseFloat(i.getAttribute('data-dpi') || 'NaN') || null,
            text_px: isNaN(minText) ? null : Math.round(minText * scale * 10) / 10};
  });
  return {n: slides.length, current: i + 1, visible: 1, attr: Number(document.body.getAttribute('data-slide')),
          title: s.getAttribute('data-title') || '', spill: spill.slice(0, 3), unrendered_maths: flat.length,
          min_text: texts[0] || null, small_text: texts.filter(t => t.px < 16).slice(0, 3), images: imgs};
}"""
_CODE_JS = """() => {
  const inputs = Array.from(document.querySelectorAll('.jp-CodeCell .jp-Cell-inputWrapper'));
  const outputs = Array.from(document.querySelectorAll('.jp-OutputArea-output'));
  return {inputs: inputs.length, inputs_shown: inputs.filter(e => e.getClientRects().length > 0).length,
          outputs: outputs.length, outputs_shown: outputs.filter(e => e.getClientRects().length > 0).length};
}"""
_STATE_JS = r"""() => {
  const plots = Array.from(document.querySelectorAll('div.plotly-graph-div'));
  const imgs = Array.from(document.images);
  const maths = Array.from(document.getElementsByTagName('math'));
  // a formula on a slide not shown now is checked when the deck check shows that slide
  const offSlide = m => { const s = m.closest('section.slide'); return s !== null && s.getClientRects().length === 0; };
  const shown = m => typeof MathMLElement !== 'undefined' && m instanceof MathMLElement
                     && (m.getBoundingClientRect().width > 0 || offSlide(m));
  // TeX left in the page's text (outside code, scripts and math): math that did not become MathML
  const walker = document.createTreeWalker(document.body || document.documentElement, NodeFilter.SHOW_TEXT, {
    acceptNode: n => n.parentElement && n.parentElement.closest('code,pre,script,style,math,textarea,svg')
                     ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  const tex = [];
  const re = /\$\$?[^$]*\\[A-Za-z]+[^$]*\$\$?|\\\(.+?\\\)|\\begin\{[a-z]+\*?\}/;
  for (let n = walker.nextNode(); n && tex.length < 5; n = walker.nextNode()) {
    const m = n.nodeValue.match(re);
    if (m) tex.push(m[0].slice(0, 80));
  }
  return {
    plotly_loaded: typeof window.Plotly !== 'undefined',
    plots: plots.length,
    drawn: plots.filter(d => d.querySelector('.main-svg') !== null).length,
    undrawn_ids: plots.filter(d => d.querySelector('.main-svg') === null).map(d => d.id).slice(0, 10),
    gl_plots: plots.filter(d => d.querySelector('.gl-container canvas') !== null).length,
    images: imgs.length,
    broken_images: imgs.filter(i => i.complete && i.naturalWidth === 0)
                       .map(i => (i.getAttribute('src') || '').slice(0, 80)),
    maths: maths.length,
    unrendered_maths: maths.filter(m => !shown(m)).length,
    raw_tex: tex,
    banner: document.querySelector('.fit3d-banner') !== null,
    height: Math.max(document.body ? document.body.scrollHeight : 0, document.documentElement.scrollHeight),
  };
}"""


class BrowserUnavailable(FileNotFoundError):
    """Chromium or the playwright package is missing, or Chromium does not start (the command line exits 2)."""


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium binary: ``explicit``, ``$CHROMIUM``, the Debian paths, then ``PATH``."""
    for c in (explicit, os.environ.get("CHROMIUM"), *CHROMIUM_CANDIDATES):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageCheck:
    """What one page did in the browser; ``problems`` empty = pass."""

    path: str
    plots: int = 0
    drawn: int = 0
    gl_plots: int = 0
    images: int = 0
    maths: int = 0
    banner: bool = False
    load_s: float = 0.0
    network: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    screenshot: str | None = None
    slides: int = 0  # a deck: its number of slides
    navigation_ok: bool | None = None  # a deck: → / ← / Home / End move between slides
    overflowing_slides: list[str] = field(default_factory=list)  # a deck: "N (title)" of slides whose content spills
    slide_screenshots: list[str] = field(default_factory=list)
    smallest_text: list[str] = field(default_factory=list)  # a deck: "N (title): 16.0 px span …" per slide
    min_text_px: float | None = None  # a deck: the smallest text on any slide, px at 1280×720
    small_text: list[str] = field(default_factory=list)  # a deck: text under MIN_TEXT_PX, with slide and element
    figure_sizes: list[str] = field(default_factory=list)  # a deck: each figure image's display scale and dpi
    small_figures: list[str] = field(default_factory=list)  # figure images shown below native size (text shrinks)
    code_toggle: str = ""  # a notebook page: "" (no toggle), "ok", or what is wrong
    viewer_click: str = ""  # the feature-similarity viewer: "" (none on the page), "ok", or what is wrong

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_one(
    context, path: Path, *, budget_s: float, screenshot: Path | None, max_shot_h: int, strict_figures: bool = True
) -> PageCheck:
    from playwright.sync_api import Error as PlaywrightError

    res = PageCheck(path=str(path))
    page = context.new_page()
    page.on("pageerror", lambda e: res.exceptions.append(str(e).splitlines()[0][:300] if str(e) else "exception"))
    page.on("console", lambda m: res.console_errors.append(m.text[:300]) if m.type == "error" else None)
    page.on(
        "request",
        lambda r: None if r.url.startswith(LOCAL_SCHEMES) or r.url in res.network else res.network.append(r.url),
    )
    t0 = time.monotonic()
    try:
        page.goto(path.resolve().as_uri(), wait_until="load", timeout=budget_s * 1000)
    except PlaywrightError as e:
        res.problems.append(f"page did not load in {budget_s:.0f} s: {str(e).splitlines()[0]}")
    try:
        page.wait_for_function(_SETTLED_JS, timeout=max(budget_s - (time.monotonic() - t0), 0.5) * 1000, polling=100)
    except PlaywrightError:
        pass  # reported below as "not drawn"
    page.wait_for_timeout(200)  # late requests / errors
    state = page.evaluate(_STATE_JS)
    res.load_s = round(time.monotonic() - t0, 2)
    res.plots, res.drawn, res.gl_plots = state["plots"], state["drawn"], state["gl_plots"]
    res.images, res.maths, res.banner = state["images"], state["maths"], bool(state["banner"])
    res.broken_images = list(state["broken_images"])
    try:
        undecoded = page.evaluate(_DECODE_JS)
    except PlaywrightError as e:
        undecoded = [f"decode check failed: {str(e).splitlines()[0][:80]}"]
    res.broken_images += [u for u in undecoded if u not in res.broken_images]

    if res.network:
        res.problems.append(f"{len(res.network)} network request(s), e.g. {res.network[0]}")
    if res.drawn < res.plots:
        res.problems.append(
            f"{res.plots - res.drawn} of {res.plots} plotly figure(s) not drawn (ids {state['undrawn_ids']}); "
            f"plotly.js loaded: {state['plotly_loaded']}"
        )
    if res.exceptions:
        res.problems.append(f"JavaScript exception(s): {res.exceptions[:3]}")
    if res.broken_images:
        res.problems.append(f"{len(res.broken_images)} broken image(s), e.g. {res.broken_images[0]}")
    if state["unrendered_maths"]:
        res.problems.append(f"{state['unrendered_maths']} of {res.maths} MathML element(s) not laid out")
    if state["raw_tex"]:
        res.problems.append(f"TeX left in the text (not MathML): {state['raw_tex'][:3]}")

    deck = page.evaluate("() => document.querySelectorAll('section.slide').length")
    if deck:
        _check_deck(page, res, deck, screenshot, strict_figures)
    elif page.evaluate("() => document.getElementById('fit3d-code-toggle') !== null"):
        _check_code_toggle(page, res)
    if page.evaluate("() => document.querySelector('.fit3d-viewer canvas.fv-img') !== null"):
        _check_viewer(page, res)

    if screenshot is not None and not deck:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        width = page.viewport_size["width"] if page.viewport_size else 1280
        height = int(min(max(state["height"], 200), max_shot_h))
        page.screenshot(path=str(screenshot), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": height})
        res.screenshot = str(screenshot)
    page.close()
    return res


def _check_deck(page, res: PageCheck, n: int, screenshot: Path | None, strict_figures: bool = True) -> None:
    """Keys move between slides; no slide spills; text ≥ :data:`MIN_TEXT_PX` on every slide (HTML and SVG text as
    rendered; a figure image must be shown at ≥ its native size, or carry ``data-min-text-px`` whose value times the
    display scale is ≥ 16 px); one screenshot per slide (``<stem>-NN.png``)."""
    page.set_viewport_size({"width": 1280, "height": 720})
    res.slides = n

    def at() -> dict:
        return page.evaluate(_SLIDE_JS)

    steps = [("Home", 1), ("ArrowRight", 2), ("ArrowLeft", 1), ("End", n), ("Home", 1)]
    wrong = []
    for key, want in steps:
        page.keyboard.press(key)
        s = at()
        if s.get("current") != want or s.get("attr") != want:
            wrong.append(f"{key} → slide {s.get('current')} (want {want}; {s.get('visible')} visible)")
    res.navigation_ok = not wrong
    if wrong:
        res.problems.append(f"slide navigation: {'; '.join(wrong)}")
    for i in range(1, n + 1):
        s = at()
        if s.get("spill"):
            res.overflowing_slides.append(f"{i} ({s.get('title')}): {', '.join(s['spill'])}")
        where = f"slide {i} ({s.get('title')})"
        if s.get("min_text"):
            t = s["min_text"]
            res.smallest_text.append(f"{where}: {t['px']} px {t['el']} “{t['text']}”")
            res.min_text_px = t["px"] if res.min_text_px is None else min(res.min_text_px, t["px"])
        for t in s.get("small_text") or []:
            res.small_text.append(f"{where}: {t['px']} px < {MIN_TEXT_PX} px in {t['el']} “{t['text']}”")
        for im in s.get("images") or []:
            txt = f", text ≈ {im['text_px']} px" if im.get("text_px") is not None else ""
            res.figure_sizes.append(
                f"{where}: <img alt='{im['alt'][:30]}'> {im['natural'][0]}×{im['natural'][1]} px at {im['dpi'] or '?'} "
                f"dpi shown at {im['shown'][0]}×{im['shown'][1]} (scale {im['scale']}){txt}"
            )
            ok = im["scale"] >= 0.999 or (im.get("text_px") is not None and im["text_px"] >= MIN_TEXT_PX)
            if not ok:
                res.small_figures.append(
                    f"{where}: <img alt='{im['alt'][:30]}'> shown at {im['scale']:.2f}× its native size"
                    + (f" (its smallest text ≈ {im['text_px']} px)" if im.get("text_px") is not None else "")
                )
        if s.get("unrendered_maths"):
            res.problems.append(f"slide {i} ({s.get('title')}): {s['unrendered_maths']} formula(s) not laid out")
        if screenshot is not None:
            shot = screenshot.with_name(f"{screenshot.stem}-{i:02d}.png")
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot))
            res.slide_screenshots.append(str(shot))
            if i == 1:
                page.screenshot(path=str(screenshot))
                res.screenshot = str(screenshot)
        page.keyboard.press("ArrowRight")
    if res.overflowing_slides:
        res.problems.append(f"content runs off {len(res.overflowing_slides)} slide(s): {res.overflowing_slides[:3]}")
    if res.small_text:
        res.problems.append(f"text smaller than {MIN_TEXT_PX} px at 1280×720: {res.small_text[:3]}")
    if res.small_figures and strict_figures:
        res.problems.append(
            f"{len(res.small_figures)} figure image(s) shown below native size, so their text shrinks "
            f"(draw them at slide size, or set data-min-text-px): {res.small_figures[:3]}"
        )


_HEAT_JS = """() => Array.from(document.querySelectorAll('.fit3d-viewer canvas.fv-heat')).map(c => [
    c.dataset.argmax || '', Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data
        .filter((_, i) => i % 4 === 0)).reduce((a, b) => a + b, 0)])"""


def _check_viewer(page, res: PageCheck) -> None:
    """The click-a-pixel viewer (``course/viewer.py``): a click in the first view must redraw the heat maps of the
    other views (their pixels change and each names its best match), and a click elsewhere must move them again."""
    img = page.locator(".fit3d-viewer canvas.fv-img").first
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    states = [page.evaluate(_HEAT_JS)]
    for fx, fy in ((0.2, 0.3), (0.8, 0.7)):
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        page.wait_for_timeout(100)
        states.append(page.evaluate(_HEAT_JS))
    wrong = []
    if not states[1] or any(not argmax for argmax, _ in states[1]):
        wrong.append("a click left a heat map without a best match")
    if states[1] == states[0]:
        wrong.append("a click did not change the heat maps")
    if states[2] == states[1]:
        wrong.append("a second click elsewhere did not move them")
    res.viewer_click = "; ".join(wrong) or "ok"
    if wrong:
        res.problems.append(f"feature viewer: {res.viewer_click}")


def _check_code_toggle(page, res: PageCheck) -> None:
    """Code cells hidden at load with their outputs shown; a click on the toggle shows them, a second hides them."""
    before = page.evaluate(_CODE_JS)
    page.click("#fit3d-code-toggle")
    after = page.evaluate(_CODE_JS)
    page.click("#fit3d-code-toggle")
    again = page.evaluate(_CODE_JS)
    wrong = []
    if before["inputs_shown"]:
        wrong.append(f"{before['inputs_shown']} of {before['inputs']} code cells visible at load")
    if before["outputs_shown"] < before["outputs"]:
        wrong.append(f"{before['outputs'] - before['outputs_shown']} output(s) hidden")
    if after["inputs_shown"] < after["inputs"]:
        wrong.append(f"the toggle shows {after['inputs_shown']} of {after['inputs']} code cells")
    if again["inputs_shown"]:
        wrong.append("a second click does not hide the code again")
    res.code_toggle = "; ".join(wrong) or "ok"
    if wrong:
        res.problems.append(f"show-code toggle: {res.code_toggle}")


def check_pages(
    pages: list[str | Path],
    *,
    chromium: str | None = None,
    budget_s: float = 15.0,
    screenshot_dir: str | Path | None = None,
    width: int = 1280,
    max_screenshot_height: int = 6000,
    strict_figures: bool = True,
) -> list[PageCheck]:
    """Load each page in one headless Chromium; see :class:`PageCheck`. Raises :class:`BrowserUnavailable`
    (a FileNotFoundError) without Chromium or the playwright package."""
    exe = find_chromium(chromium)
    if exe is None:
        raise BrowserUnavailable("Chromium not found (Debian: apt-get install -y chromium, or set $CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise BrowserUnavailable(f"the playwright package is missing ({e}); pip install playwright") from None

    results = []
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=exe, headless=True, args=list(CHROMIUM_ARGS))
        except Exception as e:  # a browser that does not start is a missing browser
            raise BrowserUnavailable(f"Chromium at {exe} did not start: {str(e).splitlines()[0]}") from None
        try:
            context = browser.new_context(viewport={"width": width, "height": 900}, service_workers="block")
            # anything not local is refused; the "request" listener of each page records it
            context.route(re.compile(r"^(?!(file|data|blob|about):)"), lambda route: route.abort())
            for p in pages:
                p = Path(p)
                if not p.is_file():
                    results.append(PageCheck(path=str(p), problems=["file does not exist"]))
                    continue
                shot = Path(screenshot_dir) / (p.stem + ".png") if screenshot_dir is not None else None
                results.append(
                    _check_one(
                        context,
                        p,
                        budget_s=budget_s,
                        screenshot=shot,
                        max_shot_h=max_screenshot_height,
                        strict_figures=strict_figures,
                    )
                )
        finally:
            browser.close()
    return results


def report_pages(report_dir: str | Path) -> list[Path]:
    """``index.html`` first, then every local ``.html`` page it links to, then other ``NN_*.html`` pages."""
    report_dir = Path(report_dir)
    index = report_dir / "index.html"
    pages: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            pages.append(p)

    if index.is_file():
        add(index)
        for href in re.findall(r'href="([^"#?:]+\.html)"', index.read_text(encoding="utf-8")):
            add(report_dir / href)
    for p in sorted(report_dir.glob("[0-9][0-9]_*.html")):
        add(p)
    return pages


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python scripts/check_report_browser.py [pages] [--screenshot DIR]``."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description="Open the HTML report in headless Chromium and check it works offline.")
    ap.add_argument("pages", nargs="*", help="HTML files (default: report/index.html and the pages it links)")
    ap.add_argument("--report-dir", default="report")
    ap.add_argument("--screenshot", metavar="DIR", default=None, help="save one PNG per page into DIR")
    ap.add_argument("--budget", type=float, default=15.0, help="seconds per page to load and draw (default 15)")
    ap.add_argument("--chromium", default=None, help="browser binary (default: /usr/bin/chromium)")
    ap.add_argument(
        "--allow-small-figures",
        action="store_true",
        help="report figure images shown below native size without failing",
    )
    args = ap.parse_args(argv)
    pages = [Path(p) for p in args.pages] or report_pages(args.report_dir)
    if not pages:
        print(f"no pages: {args.report_dir}/index.html does not exist", file=sys.stderr)
        return 1
    try:
        results = check_pages(
            pages,
            chromium=args.chromium,
            budget_s=args.budget,
            screenshot_dir=args.screenshot,
            strict_figures=not args.allow_small_figures,
        )
    except BrowserUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bad = 0
    for r in results:
        extra = f", screenshot {r.screenshot}" if r.screenshot else ""
        print(
            f"{'ok  ' if r.ok else 'FAIL'} {r.path}: {r.drawn}/{r.plots} plotly figures drawn ({r.gl_plots} WebGL), "
            f"{r.maths} formulas, {r.images} images, {len(r.network)} network requests, "
            f"banner={'yes' if r.banner else 'no'}, {r.load_s:.1f} s{extra}"
            + (f", {r.slides} slides, navigation {'ok' if r.navigation_ok else 'BROKEN'}" if r.slides else "")
            + (f", code toggle {r.code_toggle}" if r.code_toggle else "")
            + (f", viewer click {r.viewer_click}" if r.viewer_click else "")
        )
        if r.smallest_text:
            print(f"     smallest text on any slide: {r.min_text_px} px (at 1280×720; ≥ {MIN_TEXT_PX} required)")
        for f in r.figure_sizes:
            print(f"     figure {f}")
        for p in r.problems:
            print(f"     - {p}")
        for c in r.console_errors[:3]:
            print(f"     console error (not fatal): {c}")
        bad += not r.ok
    if bad:
        print(f"{bad} of {len(results)} page(s) failed the offline browser check", file=sys.stderr)
        return 1
    print(f"all {len(results)} page(s) render offline")
    return 0
