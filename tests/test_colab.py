"""The Colab path: one home for the course's address, an install cell that stops with a clear message, and the
notebooks' shared install cell."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
PLACEHOLDER = "github.com/" + "ORG/"  # built, so that this file does not hold it


def _files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / f for f in out if (ROOT / f).is_file()]


def test_the_address_has_one_home() -> None:
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    assert url.startswith("https://github.com/")
    holders = [
        f.relative_to(ROOT).as_posix()
        for f in _files()
        if f.suffix in (".py", ".ipynb", ".md", ".toml", ".yml", ".sh", ".txt", ".j2", ".html")
        and PLACEHOLDER in f.read_text(errors="ignore")
    ]
    assert holders == ["pyproject.toml"] or (PLACEHOLDER not in url and holders == []), holders


def test_badges_and_install_cells_are_derived_from_it() -> None:
    """Run `python scripts/sync_colab.py` after changing the address; this fails until you do."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sync_colab.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "<!-- colab-badges -->" in (ROOT / "README.md").read_text()


def _install_cell(src: Path) -> str:
    return next(c.source for c in jupytext.read(src).cells if c.cell_type == "code" and "COURSE_REPO" in c.source)


def test_every_notebook_has_the_same_install_cell() -> None:
    cells = {src.name: _install_cell(src) for src in NOTEBOOKS}
    assert len(set(cells.values())) == 1, "the install cells differ between notebooks"
    assert len(cells) == 6


def _run_as_in_colab(cell: str, repo: str | None, tmp_path: Path) -> subprocess.CompletedProcess:
    """The install cell in a fresh interpreter that looks like Colab: `google.colab` imported, the course missing
    (``python -S``: no site-packages, so no fit3d_helpers), pip still reachable as ``python -m pip``."""
    code = cell.replace("COURSE_REPO = None", f"COURSE_REPO = {repo!r}")
    script = tmp_path / "cell.py"
    script.write_text("import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')\n" + code)
    return subprocess.run(
        [sys.executable, "-S", str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )


def test_install_cell_without_an_address_stops_with_the_fix(tmp_path) -> None:
    done = _run_as_in_colab(_install_cell(NOTEBOOKS[0]), None, tmp_path)
    assert done.returncode != 0
    assert "RuntimeError: this copy of the course has no public address yet" in done.stderr
    assert "README, section Colab" in done.stderr


def test_install_cell_stops_when_pip_fails(tmp_path) -> None:
    done = _run_as_in_colab(_install_cell(NOTEBOOKS[0]), f"file://{tmp_path}/missing", tmp_path)
    assert done.returncode != 0
    tail = done.stderr.strip().splitlines()[-1]
    assert tail.startswith("RuntimeError: installing fit3d-course[gpu] @ git+file://") and "run this cell again" in tail
    assert "No module named 'fit3d_helpers'" not in done.stderr  # it stops before the import would fail


@pytest.mark.parametrize("src", NOTEBOOKS, ids=lambda p: p.stem)
def test_outside_colab_the_cell_only_checks_the_import(src: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _install_cell(src)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("fit3d_helpers ")


def test_readme_colab_section_says_what_runs_where() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Colab", 1)[1].split("\n## ", 1)[0]
    for needle in ("T4", "Drive", "gsplat", "estimate", "06_your_photo"):
        assert needle in section, needle
    assert textwrap.dedent(section).count("|") > 10  # the per-notebook time table
