"""A notebook opened alone (a fresh Colab runtime: empty working directory, nothing computed) completes, or stops
with the documented one-line message; artifacts moved elsewhere are still found."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fit3d_helpers import pipeline
from fit3d_helpers.cache import MissingArtifact
from fit3d_helpers.course.runner import NotebookFailed, execute_notebook
from fit3d_helpers.profiles import load_profile
from fit3d_helpers.scenes import SceneSplit

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "data.n_train": 1,
    "data.n_val": 1,
    "data.n_views": 6,
    "data.width": 84,
    "data.height": 56,
    "lift.iterations": 12,
    "lift.holdout_every": 3,
    "probe.seg_steps": 5,
    "probe.depth_steps": 5,
    "probe.variants": ["original", "concat"],
}


def _alone(tmp_path: Path, name: str, overrides: dict) -> tuple[float, Path]:
    """Execute notebooks/<name> with an empty working directory, as a fresh runtime would."""
    work = tmp_path / "runtime"
    work.mkdir()
    dst = work / f"{name}.out.ipynb"
    wall = execute_notebook(
        ROOT / "notebooks" / f"{name}.ipynb", dst, {"profile": "smoke", "overrides": overrides}, work, timeout=900
    )
    return wall, work


@pytest.mark.slow
@pytest.mark.parametrize("name", ["03_finetune", "04_probe"])
def test_notebook_alone_computes_what_it_needs(tmp_path, name) -> None:
    _, work = _alone(tmp_path, name, TINY)
    text = (work / f"{name}.out.ipynb").read_text()
    assert "not found: computing it now" in text  # the printed note about the missing stage
    assert "notebook 02_lift_to_gaussians shows this step" in text
    assert (work / "artifacts" / "finetune").is_dir() and (work / "data" / "synthetic").is_dir()


@pytest.mark.slow
def test_notebook_alone_stops_with_one_line_when_told_not_to_compute(tmp_path) -> None:
    with pytest.raises(NotebookFailed) as err:
        _alone(tmp_path, "03_finetune", {**TINY, "on_missing": "error"})
    assert "MissingArtifact" in str(err.value)
    assert "run notebook 02_lift_to_gaussians first with the same profile ('smoke') and overrides" in str(err.value)


def test_moved_artifacts_are_found_by_the_next_stage(tmp_path, tiny_dataset, vit_small) -> None:
    """Stage 1 in one folder, the folder moved (another checkout path, a Drive mounted elsewhere): stage 2 finds every
    lift there and computes none (the profile says to stop if one were missing)."""
    prof = load_profile(
        "smoke", {**TINY, "data.root": str(Path(tiny_dataset.train[0]).parents[1]), "on_missing": "error"}
    )
    split = SceneSplit(list(tiny_dataset.train), list(tiny_dataset.val), list(tiny_dataset.classes))
    made = pipeline.lift_stage(prof, vit_small, split, tmp_path / "a")
    (tmp_path / "elsewhere").mkdir()
    shutil.move(str(tmp_path / "a"), str(tmp_path / "elsewhere" / "b"))
    found = pipeline.lifts_for(prof, vit_small, split.train + split.val[:1], tmp_path / "elsewhere" / "b")
    assert [f.hash for f in found] == [m.hash for m in made]
    with pytest.raises(MissingArtifact, match="run notebook 02_lift_to_gaussians first"):
        pipeline.lifts_for(prof, vit_small, split.train, tmp_path / "a")  # the old place is empty now


def test_nyu_profile_probes_the_official_evaluation_data(tmp_path, vit_small, monkeypatch) -> None:
    """The `nyu` profile (probes only, official protocol) reads eval_data/nyuv2 and eval_data/nyu; the artifact does
    not depend on where eval_data lies."""
    from fit3d_helpers import evaldata_fake
    from fit3d_helpers.backbone import load_backbone

    for where in ("a", "b"):
        evaldata_fake.write_fake_nyuv2(tmp_path / where / "nyuv2", n_train=4, n_val=2, size=(48, 64))
        evaldata_fake.write_fake_nyu(tmp_path / where / "nyu", n_train=4, n_test=2, size=(48, 64))
    over = {"probe.eval_root": str(tmp_path / "a"), "probe.seg_steps": 2, "probe.depth_steps": 2,
            "probe.seg_batch_size": 2, "probe.depth_batch_size": 2, "probe.official_scale": 0.1,
            "probe.num_workers": 0}  # fmt: skip
    prof = load_profile("nyu", over)
    split, stats = pipeline.data_stage(prof, tmp_path / "art")
    assert split.train == split.val == [] and len(split.classes) == 13 and stats["train_scenes"] == 0
    tuned = load_backbone("dinov2_small", "random", device="cpu", seed=1)  # stands in for the released checkpoint
    res = pipeline.probe_stage(prof, split, vit_small, tuned, tmp_path / "art", device="cpu", tag={"headline": True})
    assert set(res["results"]["seg"]) == {"original", "concat"} and set(res["results"]["depth"]) == {
        "original",
        "concat",
    }
    assert res["awareness"] == {}  # no poses in NYUv2: the correspondence check is for scenes
    moved = pipeline.probe_stage(load_profile("nyu", {**over, "probe.eval_root": str(tmp_path / "b")}), split,
                                 vit_small, tuned, tmp_path / "art", device="cpu")  # fmt: skip
    assert moved["path"] == res["path"]  # found, not recomputed: eval_data's location is not part of the key
