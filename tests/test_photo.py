"""Notebook 06's photo and models (fit3d_helpers.photo): a user's photo read as a phone shows it, one image reader with
the scene loader, clear errors, and a 3D-aware model that is only called "FiT3D" when it is FiT3D's release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from fit3d_helpers import cache, photo
from fit3d_helpers.backbone import load_backbone
from fit3d_helpers.profiles import load_profile


def _asymmetric(h: int = 30, w: int = 40) -> np.ndarray:
    """uint8 [h, w, 3] with no symmetry, so every orientation gives another picture."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 6, y * 8, (x * y) % 251], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_honoured_as_pillow_does(tmp_path, orientation: int) -> None:
    im = Image.fromarray(_asymmetric())
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    im.save(path, exif=exif)
    got = photo.read_photo(path)
    with Image.open(path) as again:
        want = np.asarray(ImageOps.exif_transpose(again).convert("RGB"), dtype=np.float32) / 255.0
    assert got.shape == want.shape and np.array_equal(got, want), orientation
    if orientation in (6, 8):  # a portrait shot stored sideways comes out portrait
        assert got.shape[:2] == (40, 30)
    loaded, _ = photo.load_photo(path, max_side=40)
    assert loaded.shape == want.shape


def test_a_16_bit_grey_photo_keeps_its_grey(tmp_path) -> None:
    grey = np.full((20, 28), 21845, dtype=np.uint16)  # one third of 65535
    grey[:, :14] = 43690  # two thirds
    path = tmp_path / "grey16.png"
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode.startswith("I;16")
    img, _ = photo.load_photo(path, max_side=28)
    assert img.shape == (20, 28, 3)
    np.testing.assert_allclose(img[:, 20], 1 / 3, atol=1e-3)  # not white (the old convert("RGB") clipped it)
    np.testing.assert_allclose(img[:, 3], 2 / 3, atol=1e-3)


@pytest.mark.parametrize("bad", [0, -5, 13, 2.5, "abc", True, None])
def test_max_side_must_be_a_whole_patch_or_more(bad) -> None:
    with pytest.raises(ValueError, match=r"max_side=.*at least 14"):
        photo.load_photo(None, max_side=bad)


def test_a_truncated_photo_is_an_error_naming_it(tmp_path) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(_asymmetric(120, 160)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=str(path)):
        photo.load_photo(path, max_side=56)


def test_batch_runs_never_open_a_file_chooser(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a kernel (pytest, a script) nobody can answer: the chooser must not be imported at all."""
    monkeypatch.delenv("FIT3D_BATCH", raising=False)
    assert photo.batch_run()
    img, source = photo.load_photo(None, max_side=28, ask=True)  # no google.colab here: importing it would fail
    assert source == photo.BUNDLED and max(img.shape[:2]) == 28


def _finetune_artifact(root: Path, original, model_pth: bytes | None, tag: str) -> None:
    def make(out: Path, resume: Path) -> dict:
        if model_pth is not None:
            (out / "model.pth").write_bytes(model_pth)
        return {"stage": "finetune"}

    cache.build("finetune", {**original.identity(), "stage": "finetune", "tag": tag}, root, make)


def test_an_unloadable_fine_tuned_model_falls_back_and_says_so(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No release (offline); the newest fine-tuned model.pth is truncated: the older good one is used, or none."""
    monkeypatch.setenv("FIT3D_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch_hub"))  # no cached release
    prof = load_profile("smoke", {"backbone.weights": "random"})
    original = load_backbone("dinov2_small", "random", device="cpu")
    good = tmp_path / "good.pth"
    torch.save(original.model.state_dict(), good)
    arts = tmp_path / "artifacts"
    _finetune_artifact(arts, original, good.read_bytes(), "older")
    _finetune_artifact(arts, original, good.read_bytes()[:1000], "newer")  # written last: the newest
    models = photo.models_for(prof, arts, "cpu")
    assert models.tuned is not None and models.tuned_label == "this course's fine-tuned model (random weights)"
    assert "skipped this course's fine-tuned model" in models.note and "cannot read weights file" in models.note
    assert "FiT3D" not in models.tuned_label
    # the whole release message, not its text up to the first colon ("... checkpoint https")
    assert "dinov2_small_finetuned.pth" in models.note and "(the course looks there first)" in models.note
    rows = photo.features(np.zeros((28, 42, 3), np.float32), models.original, models.tuned, models.tuned_label)
    assert list(rows) == ["dinov2_small (original, random weights)", "this course's fine-tuned model (random weights)"]

    only_bad = tmp_path / "artifacts2"
    _finetune_artifact(only_bad, original, b"not weights", "bad")
    models = photo.models_for(prof, only_bad, "cpu")
    assert models.tuned is None and models.note.startswith("none, only the original is shown")
    assert "cannot be loaded" in models.note
