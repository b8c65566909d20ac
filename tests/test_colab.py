"""The Colab path: one home for the course's address, an install cell that stops with a clear message, and the
notebooks' shared install cell."""

from __future__ import annotations

import os
import re
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
    """One install cell everywhere, up to the extras: 07 needs pycolmap (``capture``), the others only ``gpu``."""
    cells = {src.name: _install_cell(src) for src in NOTEBOOKS}
    extras = {name: re.search(r"fit3d-course\[([a-z,]+)\]", cell).group(1) for name, cell in cells.items()}
    same = {re.sub(r"fit3d-course\[[a-z,]+\]", "fit3d-course[EXTRAS]", cell) for cell in cells.values()}
    assert len(same) == 1, "the install cells differ between notebooks (beyond their extras)"
    assert len(cells) == 7
    assert all(e == "gpu" for n, e in extras.items() if not n.startswith("07_")), extras
    assert extras["07_your_scene.py"] == "gpu,capture", extras


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
def test_outside_colab_the_cell_does_nothing(src: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _install_cell(src)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "pip" not in done.stderr  # no install attempt: the setup call imports the course


def test_readme_colab_section_says_what_runs_where() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Colab", 1)[1].split("\n## ", 1)[0]
    for needle in ("T4", "Drive", "gsplat", "estimate", "06_your_photo"):
        assert needle in section, needle
    assert textwrap.dedent(section).count("|") > 10  # the per-notebook time table


# ---------------------------------------------------------------------------------------------- batch runs in Colab


def _colab_stand_in(tmp_path: Path) -> dict[str, str]:
    """A kernel environment that looks like Colab: `google.colab` imported at start-up (sitecustomize), whose file
    chooser raises instead of waiting forever for a person, and no FIT3D_BATCH (a run not started by our runner)."""
    colab = tmp_path / "stand_in" / "google" / "colab"
    colab.mkdir(parents=True)
    (colab / "__init__.py").write_text("")
    (colab / "files.py").write_text(
        "def upload():\n    raise RuntimeError('STAND-IN: the file chooser opened in a batch run (never returns)')\n"
    )
    (tmp_path / "stand_in" / "sitecustomize.py").write_text("import google.colab\n")
    env = {k: v for k, v in os.environ.items() if k != "FIT3D_BATCH"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path / "stand_in"), env.get("PYTHONPATH")) if p)
    return env


def test_a_batch_run_in_colab_never_opens_the_file_chooser(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """papermill, nbmake and nbconvert all execute through nbclient: notebook 06's photo cell must not wait for an
    upload there, although `google.colab` is loaded and our runner's FIT3D_BATCH is not set."""
    import nbformat
    from nbclient import NotebookClient

    for k, v in _colab_stand_in(tmp_path).items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("FIT3D_BATCH", raising=False)
    code = (
        "import sys\nassert 'google.colab' in sys.modules\nfrom fit3d_helpers import photo\n"
        "img, source = photo.load_photo(None, max_side=28, ask=True)\nprint(source)"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert "coffee" in nb.cells[0].outputs[0]["text"]  # the bundled picture


def test_an_interactive_frontend_is_not_a_batch_run(tmp_path) -> None:
    """The signal `photo.batch_run` reads: a frontend sends `allow_stdin=True` (input() works in Colab and Jupyter),
    nbclient sends False. One kernel, both kinds of request."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", env=_colab_stand_in(tmp_path))
    try:
        seen = {}
        for allow in (True, False):
            out: list[str] = []
            kc.execute_interactive(
                "from fit3d_helpers import photo; print(photo.batch_run())",
                allow_stdin=allow,
                timeout=120,
                output_hook=lambda m, out=out: out.append(m["content"].get("text", "")),
                stdin_hook=lambda m: None,
            )
            seen[allow] = "".join(out).strip()
        assert seen == {True: "False", False: "True"}
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_readme_gives_each_notebooks_time_after_the_earlier_ones_and_alone() -> None:
    """A notebook opened alone recomputes the stages before it: the table must not pass its own time off as that."""
    section = (ROOT / "README.md").read_text().split("## Colab", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in section.splitlines() if line.startswith("| notebook"))
    assert "after the earlier notebooks" in header and "opened alone" in header, header
    row = next(line for line in section.splitlines() if line.startswith("| 03 fine-tune"))
    after, alone = (c.strip() for c in row.split("|")[2:4])
    assert after != alone and "02's lifts" in alone, row  # both, and alone says what it recomputes
    assert "estimate" in alone or "measured" in alone, row  # and whether it was measured
    assert "estimates, not measurements" in section and "142 s for 03 alone" in section
