"""Notebook sources (jupytext percent .py) and the committed .ipynb files: in sync, without outputs, one layout."""

from __future__ import annotations

import ast
from pathlib import Path

import jupytext
import nbformat
import pytest

from fit3d_helpers.profiles import setting_types

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def test_there_are_six_notebooks_each_with_its_pair() -> None:
    assert [p.stem for p in SOURCES] == [
        "01_data",
        "02_lift_to_gaussians",
        "03_finetune",
        "04_probe",
        "05_ablations",
        "06_your_photo",
        "07_your_scene",
    ]
    assert sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) == [p.stem for p in SOURCES]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_pair_in_sync_and_without_outputs(src: Path) -> None:
    """Edit the .py, then `jupytext --sync notebooks/*.py` (this test fails until the .ipynb matches)."""
    text_nb = jupytext.read(src)
    ipynb = nbformat.read(src.with_suffix(".ipynb"), as_version=4)
    assert _cells(text_nb) == _cells(ipynb), (
        f"{src.name} and its .ipynb differ: run `jupytext --sync {src.relative_to(ROOT)}`"
    )
    for cell in ipynb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{src.stem}.ipynb has outputs: clear them"
    assert ipynb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_title_summary_then_parameters(src: Path) -> None:
    nb = jupytext.read(src)
    first, second = nb.cells[0], nb.cells[1]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {src.stem[:2]} · ")
    assert len(first.source.split("\n\n", 1)[-1]) > 200  # a one-paragraph summary under the title
    assert second.cell_type == "code" and second.metadata.get("tags") == ["parameters"]
    names = [t.id for node in ast.parse(second.source).body if isinstance(node, ast.Assign) for t in node.targets]
    assert names[:2] == ["profile", "overrides"]
    leaves = {k.rpartition(".")[2] for k in setting_types()}
    duplicated = sorted(set(names) & leaves)
    assert not duplicated, f"{src.stem}: {duplicated} are profile settings; pass them through `overrides`"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_every_formula_of_the_markdown_becomes_mathml(src: Path) -> None:
    """A formula latex2mathml cannot read falls back to raw TeX in the report: none of the course's may."""
    from fit3d_helpers.course.report import render_markdown_math

    nb = jupytext.read(src)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            out = render_markdown_math(cell.source)
            assert "` $" not in out, f"{src.name}: a formula stays TeX in the report:\n{out[:600]}"


def _code_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#"))


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_the_opening_is_one_install_cell_and_one_setup_call(src: Path) -> None:
    """A thin shell: the parameters, a short Colab install cell, then imports and `course.notebook.start(...)`."""
    params, install, setup = [c for c in jupytext.read(src).cells if c.cell_type == "code"][:3]
    assert "COURSE_REPO" in install.source and _code_lines(install.source) <= 12, install.source
    *before, call = ast.parse(setup.source).body
    others = [node for node in before if not isinstance(node, ast.Import | ast.ImportFrom)]
    # besides imports, at most one check call (e.g. `fit3d_helpers.profiles.check_knobs(globals(), ...)`)
    assert len(others) <= 1 and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) for n in others), (
        setup.source
    )
    names = {t.id for node in ast.parse(params.source).body if isinstance(node, ast.Assign) for t in node.targets}
    has_device = "device" in names
    args = "profile, overrides, artifacts_dir, drive_folder" + (", device" if has_device else "")
    assert ast.unparse(call) == f"prof, artifacts_dir = fit3d_helpers.course.notebook.start({args})"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_modules_by_their_full_names(src: Path) -> None:
    """`from fit3d_helpers import lift`, then `lift.decode(...)`: no one-letter aliases (`L`, `FT`, `P`) to decode."""
    for cell in jupytext.read(src).cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                module = node.module if isinstance(node, ast.ImportFrom) else ""
                for alias in node.names:
                    full = f"{module}.{alias.name}".strip(".")
                    if alias.asname and full.startswith("fit3d_helpers"):
                        assert alias.asname == alias.name.rpartition(".")[2], f"{src.name}: {ast.unparse(node)}"
                    assert not (alias.asname and alias.asname.isupper()), f"{src.name}: {ast.unparse(node)}"


def test_start_loads_the_profile_seeds_and_sets_the_renderer(monkeypatch, capsys) -> None:
    import plotly.io as pio
    import torch

    from fit3d_helpers.course.notebook import start
    from fit3d_helpers.profiles import ConfigError

    monkeypatch.setattr(pio.renderers, "default", pio.renderers.default)  # restored afterwards
    monkeypatch.delenv("FIT3D_BATCH", raising=False)
    monkeypatch.chdir(ROOT / "notebooks")  # where Jupyter starts a notebook's kernel
    prof, artifacts_dir = start("smoke", {"lift.iterations": 3}, "artifacts", None, "cpu")
    assert Path.cwd() == ROOT and artifacts_dir == "artifacts" and prof.lift.iterations == 3
    assert pio.renderers.default == "plotly_mimetype+notebook"  # JupyterLab draws it interactively
    first = torch.rand(4)
    monkeypatch.setenv("FIT3D_BATCH", "1")
    start("smoke", None, "artifacts", None, "cpu")
    assert torch.equal(torch.rand(4), first)  # seeded from the profile
    assert pio.renderers.default == "notebook"  # batch runs inline plotly.js: the exported HTML works offline
    out = capsys.readouterr().out
    assert "profile 'smoke' with 1 override(s) ['lift.iterations'], device cpu" in out
    with pytest.raises(ConfigError):
        start("smoke", {"lift.iteratons": 3}, "artifacts", None, "cpu")


def test_ci_runs_a_notebook_through_nbmake_and_jupyterlab_is_one_command() -> None:
    import tomllib

    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    assert "--nbmake" in test_sh and "notebooks/06_your_photo.ipynb" in test_sh
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"nbmake>=1.5", "fit3d-course[lab]"} <= set(extras["dev"])
    assert {"jupyterlab>=4", "ipywidgets>=8", "jupyterlab_widgets>=3"} <= set(extras["lab"])
    assert "jupyter lab" in (ROOT / "scripts" / "lab.sh").read_text()
    assert "bash scripts/lab.sh" in (ROOT / "README.md").read_text()
