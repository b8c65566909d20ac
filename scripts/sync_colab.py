#!/usr/bin/env python3
"""Write the course's public address, from its one home, into the places that need it as text.

The address lives in ``pyproject.toml`` (``[project.urls] Repository``). A Colab install cell runs before the course
is installed, so it cannot import the address: the notebooks' ``COURSE_REPO = ...`` lines, their "Open in Colab"
badges and the README's badge table are written here from pyproject. While the address is a placeholder they say so
instead of carrying it (``tests/test_colab.py`` fails if the placeholder appears anywhere else).

    python scripts/sync_colab.py           # rewrite notebooks/*.py (+ their .ipynb) and README.md
    python scripts/sync_colab.py --check   # exit 1 if anything is out of date
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER_OWNER = "ORG"
BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
NO_ADDRESS = "*Colab: this copy of the course has no public address yet (README, section Colab).*"


def repository() -> str | None:
    """The course's git address, or None while pyproject holds the placeholder."""
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"].rstrip("/")
    return None if f"/{PLACEHOLDER_OWNER}/" in url else url


def colab_url(repo: str, notebook: str) -> str:
    path = repo.split("github.com/", 1)[1]
    return f"https://colab.research.google.com/github/{path}/blob/main/notebooks/{notebook}"


def badge(repo: str | None, notebook: str) -> str:
    return f"[![Open in Colab]({BADGE_SVG})]({colab_url(repo, notebook)})" if repo else NO_ADDRESS


_BADGE_LINE = re.compile(rf"^# (\[!\[Open in Colab\]\(.*\)\]\(.*\)|{re.escape(NO_ADDRESS)})$", re.M)
_REPO_LINE = re.compile(r"^COURSE_REPO = .*$", re.M)


def notebook_text(text: str, repo: str | None, notebook: str) -> str:
    text = _BADGE_LINE.sub(lambda m: f"# {badge(repo, notebook)}", text)
    value = repr(repo) if repo else "None"
    return _REPO_LINE.sub(f"COURSE_REPO = {value}  # written by scripts/sync_colab.py from pyproject.toml", text)


def readme_text(text: str, repo: str | None, notebooks: list[str]) -> str:
    if repo:
        rows = "\n".join(f"| {nb[:2]} {nb[3:-6].replace('_', ' ')} | {badge(repo, nb)} |" for nb in notebooks)
        block = f"| notebook | |\n|---|---|\n{rows}"
    else:
        block = (
            "The badges appear here once the course's public address is set in `pyproject.toml` "
            "(`[project.urls] Repository`) and `python scripts/sync_colab.py` has run."
        )
    return re.sub(
        r"(<!-- colab-badges -->\n).*?(\n<!-- /colab-badges -->)",
        lambda m: m.group(1) + block + m.group(2),
        text,
        flags=re.S,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="report what is out of date, change nothing")
    args = p.parse_args()
    repo = repository()
    sources = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    stale = []
    for src in sources:
        old = src.read_text()
        new = notebook_text(old, repo, src.with_suffix(".ipynb").name)
        if new != old:
            stale.append(src)
            if not args.check:
                src.write_text(new)
    readme = ROOT / "README.md"
    old = readme.read_text()
    new = readme_text(old, repo, [s.with_suffix(".ipynb").name for s in sources])
    if new != old:
        stale.append(readme)
        if not args.check:
            readme.write_text(new)
    if args.check:
        for s in stale:
            print(f"out of date: {s.relative_to(ROOT)} (run python scripts/sync_colab.py)")
        return 1 if stale else 0
    changed = [s for s in stale if s.suffix == ".py"]
    if changed:
        subprocess.run([sys.executable, "-m", "jupytext", "--sync", *map(str, changed)], check=True, cwd=ROOT)
    updated = [str(s.relative_to(ROOT)) for s in stale] or "nothing"
    print(f"address: {repo or 'placeholder (not written)'}; updated: {updated}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
