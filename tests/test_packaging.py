"""The install metadata agrees with itself: environment.yml vs pyproject.toml vs the CPU pins; no .cuda() calls."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject_and_pins() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = env["dependencies"]
    assert any(str(d).startswith("python=3.11") for d in deps if isinstance(d, str))
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert "-e .[dev]" in pip  # the package (and so every pyproject dependency) comes from pyproject.toml
    pins = [
        line.strip()
        for line in (ROOT / "requirements/cpu-pins.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sorted(p for p in pip if "==" in p) == sorted(pins)
    names = {re.split(r"[<>=;\[ ]", d)[0] for d in pyproject["project"]["dependencies"]}
    extras = pyproject["project"]["optional-dependencies"]
    assert {"torch", "torchvision", "timm", "plotly", "ipywidgets"} <= names
    # Colab's kernel stays untouched: no batch-run tools or ipykernel in the core install, ipywidgets 7 allowed
    assert not names & {"papermill", "nbconvert", "ipykernel", "jupytext"}
    assert "ipywidgets>=7.6" in pyproject["project"]["dependencies"]
    assert {"papermill", "nbconvert", "ipykernel"} <= {re.split(r"[<>=;\[ ]", d)[0] for d in extras["report"]}
    assert "gsplat>=1.4" in extras["gpu"] and "fit3d-course[report]" in extras["dev"]


def test_no_hardcoded_cuda_calls() -> None:
    offenders = [str(p) for p in (ROOT / "fit3d_helpers").glob("*.py") if ".cuda()" in p.read_text()]
    assert offenders == []


def test_every_non_python_file_of_the_package_is_installed() -> None:
    """A wheel only carries what package-data names: the rasterizer's C++ source, templates."""
    import fnmatch

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    missing = []
    for path in (ROOT / "fit3d_helpers").rglob("*"):
        parts = path.relative_to(ROOT).parts
        hidden = any(part.startswith(".") or part == "__pycache__" for part in parts)  # tool caches
        if path.is_dir() or path.suffix in (".py", ".pyc") or hidden:
            continue
        rel = path.relative_to(ROOT)
        package = ".".join(rel.parent.parts)
        while package and package not in data:  # the nearest package that declares data
            package = package.rpartition(".")[0]
        inner = str(rel.relative_to(Path(*package.split(".")))) if package else str(rel)
        if not any(fnmatch.fnmatch(inner, pattern) for pattern in data.get(package, [])):
            missing.append(str(rel))
    assert missing == [], f"add these to [tool.setuptools.package-data] in pyproject.toml: {missing}"
