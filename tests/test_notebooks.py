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
