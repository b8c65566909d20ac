#!/usr/bin/env python3
"""Open the HTML report in headless Chromium and check that it works offline.

    python scripts/check_report_browser.py                      # report/index.html + every page it links
    python scripts/check_report_browser.py report/02_lift.html --screenshot shots/

Checks each page for: plotly figures drawn, no network request, no uncaught JavaScript exception, every image
decodes, math laid out as MathML (see fit3d_helpers/browser.py). The slide deck (report/slides.html) is opened at
1280x720: → must move to slide 2 (← back, Home, End), no slide may spill past its footer, and --screenshot saves
every slide (slides-NN.png). Notebook pages must hide their code at load and show it with the "show code" button.
Exit status 0 when all pages pass, 1 otherwise (one line per problem), 2 when Chromium or the playwright package is
missing. Playwright drives the system's
Chromium (Debian: ``apt-get install -y chromium``); nothing is downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import fit3d_helpers  # noqa: F401
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fit3d_helpers.course.browser import (
    BrowserUnavailable,
    PageCheck,
    check_pages,
    find_chromium,
    main,
    report_pages,
)

__all__ = ["BrowserUnavailable", "PageCheck", "check_pages", "find_chromium", "main", "report_pages"]

if __name__ == "__main__":
    sys.exit(main())
