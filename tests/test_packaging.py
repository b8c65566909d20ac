"""The install metadata agrees with itself: environment.yml vs pyproject.toml vs the CPU pins; no .cuda() calls."""

from __future__ import annotations

import re
import subprocess
import sys
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
    pins = [l.strip() for l in (ROOT / "requirements/cpu-pins.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert sorted(p for p in pip if "==" in p) == sorted(pins)
    names = {re.split(r"[<>=;\[ ]", d)[0] for d in pyproject["project"]["dependencies"]}
    assert {"torch", "torchvision", "timm", "papermill", "plotly"} <= names
    assert "gsplat>=1.4" in pyproject["project"]["optional-dependencies"]["gpu"]


def test_no_hardcoded_cuda_calls() -> None:
    offenders = [str(p) for p in (ROOT / "fit3d_helpers").glob("*.py") if ".cuda()" in p.read_text()]
    assert offenders == []


def test_notebooks_match_their_builder() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts/build_notebooks.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


PIPELINE_PARAMS = {"profile", "artifacts_dir", "n_train", "n_val", "n_views", "backbone", "weights", "iterations", "feature_dim",
                   "sh_degree", "strategy", "mode", "epochs", "lr", "target_factor", "seg_steps", "depth_steps"}


def test_every_notebook_takes_the_shared_pipeline_parameters() -> None:
    """So `--set iterations=2000` reaches every stage, and each finds the previous stage's artifacts by hash."""
    import papermill

    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        names = set(papermill.inspect_notebook(str(nb)))
        assert PIPELINE_PARAMS <= names, f"{nb.name} lacks {sorted(PIPELINE_PARAMS - names)}"


def test_course_profile_maps_parameters() -> None:
    from fit3d_helpers.profiles import course_profile

    prof = course_profile("smoke", iterations=7, feature_dim=16, epochs=2, lr=3e-4, mode="lora", seg_steps=5, n_train=1)
    assert (prof.lift.iterations, prof.lift.feature_dim, prof.finetune.epochs, prof.finetune.lr, prof.finetune.mode) == (7, 16, 2, 3e-4, "lora")
    assert prof.probe_steps_seg == 5 and prof.n_train == 1
    assert course_profile("smoke").lift == course_profile("smoke", iterations=None).lift
    assert course_profile("smoke", strategy="gsplat").lift.strategy == "gsplat" and course_profile("paper").lift.strategy == "gsplat"
