#!/usr/bin/env python3
"""Open the HTML report in headless Chromium and check that it works offline.

    python scripts/check_report_browser.py                      # report/index.html + every page it links
    python scripts/check_report_browser.py report/02_lift.html --screenshot shots/

For each page: every plotly figure (``div.plotly-graph-div``) must have been drawn (it holds a ``.main-svg``
after plotly.js ran), no request may leave the machine (anything but ``file:``, ``data:``, ``blob:``,
``about:``), no uncaught JavaScript exception, no broken ``<img>``. Exit status 0 when all pages pass, 1
otherwise (with one line per problem), 2 when Chromium is missing.

Chromium is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``: fds 3 and 4),
standard library only. Name resolution is disabled (``--host-resolver-rules``), so a page that needs the
network fails here instead of fetching. Debian: ``apt-get install -y chromium``.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    # software WebGL, so that plotly's 3D scenes draw without a GPU
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    # nothing resolves: a page that needs the network shows it in the request log and fails to load it
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-pipe",
)
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "chrome-error:", "devtools:")

_PAGE_STATE_JS = r"""
(() => {
  const plots = Array.from(document.querySelectorAll('div.plotly-graph-div'));
  const imgs = Array.from(document.images);
  return JSON.stringify({
    ready: document.readyState,
    plotly_loaded: typeof window.Plotly !== 'undefined',
    plots: plots.length,
    drawn: plots.filter(d => d.querySelector('.main-svg') !== null).length,
    undrawn_ids: plots.filter(d => d.querySelector('.main-svg') === null).map(d => d.id).slice(0, 10),
    gl_plots: plots.filter(d => d.querySelector(".gl-container canvas") !== null).length,
    images: imgs.length,
    broken_images: imgs.filter(i => i.complete && i.naturalWidth === 0).map(i => (i.getAttribute('src') || '').slice(0, 80)),
    banner: document.querySelector('.fit3d-banner') !== null,
    height: Math.max(document.body ? document.body.scrollHeight : 0, document.documentElement.scrollHeight),
  });
})()
"""


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
    banner: bool = False
    load_s: float = 0.0
    network: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    screenshot: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


class _CDP:
    """Minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (NUL-separated JSON)."""

    def __init__(self, chromium: str, user_data_dir: str, extra_flags: tuple[str, ...] = ()):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        # Move the child's ends above 10 so that dup2 onto 3 and 4 cannot clobber one another.
        hi_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        hi_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        for fd in (to_child_r, from_child_w):
            os.close(fd)

        def child_fds() -> None:  # runs in the child before exec
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        args = [chromium, *CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={user_data_dir}", "about:blank"]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(3, 4, hi_r, hi_w),
            preexec_fn=child_fds,
        )
        os.close(hi_r)
        os.close(hi_w)
        self.wfd, self.rfd = to_child_w, from_child_r
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self.wfd, data)
            data = data[n:]
        return self._next_id

    def _read_one(self, deadline: float) -> dict[str, Any] | None:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.rfd], [], [], min(left, 0.5))
            if not r:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.stderr else ""
                    raise RuntimeError(f"Chromium exited with status {self.proc.returncode}: {err}")
                continue
            chunk = os.read(self.rfd, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        mid = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_one(deadline)
            if msg is None:
                raise TimeoutError(f"DevTools call {method} timed out after {timeout:.0f} s")
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"DevTools {method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def pump(self, seconds: float) -> None:
        """Collect events for ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            msg = self._read_one(deadline)
            if msg is None:
                return
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, session: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
                return True
            msg = self._read_one(deadline)
            if msg is None:
                return False
            if "method" in msg:
                self.events.append(msg)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close")
                    self.proc.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    self.proc.kill()
                    self.proc.wait(timeout=5)
        finally:
            for fd in (self.wfd, self.rfd):
                try:
                    os.close(fd)
                except OSError:
                    pass
            if self.proc.stderr:
                self.proc.stderr.close()


def _check_one(
    cdp: _CDP, path: Path, *, budget_s: float, screenshot: Path | None, width: int, max_shot_h: int, settle_s: float = 4.0
) -> PageCheck:
    res = PageCheck(path=str(path))
    target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for dom in ("Page.enable", "Network.enable", "Runtime.enable", "Log.enable"):
        cdp.call(dom, session=session)
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        session=session,
    )
    cdp.events.clear()
    t0 = time.monotonic()
    nav = cdp.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
    if nav.get("errorText"):
        res.problems.append(f"navigation failed: {nav['errorText']}")
    loaded = cdp.wait_event("Page.loadEventFired", session, budget_s)
    if not loaded:
        res.problems.append(f"page did not finish loading in {budget_s:.0f} s")
    # give plotly's scripts (run at parse time, some drawing deferred) until everything is drawn or budget
    # (stop early once nothing has changed for `settle_s` after the load event: a figure without plotly.js
    # never draws)
    state: dict[str, Any] = {}
    last, last_change = None, time.monotonic()
    while True:
        out = cdp.call("Runtime.evaluate", {"expression": _PAGE_STATE_JS, "returnByValue": True}, session=session)
        state = json.loads(out.get("result", {}).get("value") or "{}")
        now = time.monotonic()
        key = (state.get("drawn"), state.get("plots"), state.get("plotly_loaded"), state.get("ready"))
        if key != last:
            last, last_change = key, now
        if state.get("drawn", 0) >= state.get("plots", 0) or now - t0 > budget_s:
            break
        if loaded and now - last_change > (settle_s if state.get("plotly_loaded") else min(settle_s, 1.0)):
            break
        cdp.pump(0.25)
    cdp.pump(0.3)  # late requests / errors
    res.load_s = round(time.monotonic() - t0, 2)
    res.plots, res.drawn, res.gl_plots = state.get("plots", 0), state.get("drawn", 0), state.get("gl_plots", 0)
    res.images, res.banner = state.get("images", 0), bool(state.get("banner"))
    res.broken_images = list(state.get("broken_images", []))

    for e in cdp.events:
        if e.get("sessionId") != session:
            continue
        m, p = e.get("method"), e.get("params", {})
        if m == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            if not url.startswith(LOCAL_SCHEMES):
                res.network.append(url)
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            desc = (d.get("exception") or {}).get("description") or d.get("text", "")
            res.exceptions.append(desc.splitlines()[0][:300] if desc else "unknown exception")
        elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            res.console_errors.append(args[:300])
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            res.console_errors.append(p["entry"].get("text", "")[:300])

    if res.network:
        res.problems.append(f"{len(res.network)} network request(s), e.g. {res.network[0]}")
    if res.drawn < res.plots:
        res.problems.append(
            f"{res.plots - res.drawn} of {res.plots} plotly figure(s) not drawn (ids {state.get('undrawn_ids')}); "
            f"plotly.js loaded: {state.get('plotly_loaded')}"
        )
    if res.exceptions:
        res.problems.append(f"JavaScript exception(s): {res.exceptions[:3]}")
    if res.broken_images:
        res.problems.append(f"{len(res.broken_images)} broken image(s), e.g. {res.broken_images[0]}")

    if screenshot is not None:
        height = int(min(max(state.get("height", 900), 200), max_shot_h))
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        cdp.pump(0.5)  # relayout (plotly figures are responsive)
        shot = cdp.call(
            "Page.captureScreenshot",
            {"format": "png", "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}},
            session=session,
            timeout=60,
        )
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        res.screenshot = str(screenshot)
    cdp.call("Target.closeTarget", {"targetId": target})
    return res


def check_pages(
    pages: list[str | Path],
    *,
    chromium: str | None = None,
    budget_s: float = 15.0,
    screenshot_dir: str | Path | None = None,
    width: int = 1280,
    max_screenshot_height: int = 6000,
) -> list[PageCheck]:
    """Load each page in one headless Chromium; see :class:`PageCheck`. Raises FileNotFoundError without
    Chromium."""
    exe = find_chromium(chromium)
    if exe is None:
        raise FileNotFoundError("Chromium not found (Debian: apt-get install -y chromium, or set $CHROMIUM)")
    results = []
    with tempfile.TemporaryDirectory(prefix="fit3d-chromium-") as profile_dir:
        cdp = _CDP(exe, profile_dir)
        try:
            for p in pages:
                p = Path(p)
                if not p.is_file():
                    results.append(PageCheck(path=str(p), problems=["file does not exist"]))
                    continue
                shot = Path(screenshot_dir) / (p.stem + ".png") if screenshot_dir is not None else None
                results.append(
                    _check_one(cdp, p, budget_s=budget_s, screenshot=shot, width=width, max_shot_h=max_screenshot_height)
                )
        finally:
            cdp.close()
    return results


def report_pages(report_dir: str | Path) -> list[Path]:
    """``index.html`` first, then every local ``.html`` page it links to, then other ``NN_*.html`` pages."""
    report_dir = Path(report_dir)
    index = report_dir / "index.html"
    pages: list[Path] = []
    if index.is_file():
        pages.append(index)
        for href in re.findall(r'href="([^"#?:]+\.html)"', index.read_text(encoding="utf-8")):
            p = (report_dir / href).resolve()
            if p not in [q.resolve() for q in pages]:
                pages.append(report_dir / href)
    for p in sorted(report_dir.glob("[0-9][0-9]_*.html")):
        if p.resolve() not in [q.resolve() for q in pages]:
            pages.append(p)
    return pages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pages", nargs="*", help="HTML files (default: report/index.html and the pages it links)")
    ap.add_argument("--report-dir", default="report")
    ap.add_argument("--screenshot", metavar="DIR", default=None, help="save one PNG per page into DIR")
    ap.add_argument("--budget", type=float, default=15.0, help="seconds per page to load and draw (default 15)")
    ap.add_argument("--chromium", default=None, help="browser binary (default: /usr/bin/chromium)")
    args = ap.parse_args(argv)
    pages = [Path(p) for p in args.pages] or report_pages(args.report_dir)
    if not pages:
        print(f"no pages: {args.report_dir}/index.html does not exist", file=sys.stderr)
        return 1
    try:
        results = check_pages(pages, chromium=args.chromium, budget_s=args.budget, screenshot_dir=args.screenshot)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bad = 0
    for r in results:
        status = "ok  " if r.ok else "FAIL"
        extra = f", screenshot {r.screenshot}" if r.screenshot else ""
        print(
            f"{status} {r.path}: {r.drawn}/{r.plots} plotly figures drawn ({r.gl_plots} WebGL), {r.images} images, "
            f"{len(r.network)} network requests, banner={'yes' if r.banner else 'no'}, {r.load_s:.1f} s{extra}"
        )
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


if __name__ == "__main__":
    sys.exit(main())
