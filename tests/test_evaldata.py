"""Readers of the official evaluation data: layouts, label/depth conventions and errors, on tiny fake datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fit3d_helpers import evaldata as ed
from fit3d_helpers import evaldata_fake


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ``eval_data`` folder with all three fake datasets."""
    root = tmp_path_factory.mktemp("eval_data")
    evaldata_fake.write_fake_nyuv2(root / "nyuv2", n_train=3, n_val=2)
    evaldata_fake.write_fake_nyu(root / "nyu", n_train=4, n_test=2)
    evaldata_fake.write_fake_scannetpp(root / "scannetpp", n_train=3, n_val=2)
    return root


def _raw(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im).astype(np.int64)


def test_class_tables_match_official():
    assert len(ed.NYUV2_CLASSES) == 13 and len(set(ed.NYUV2_CLASSES)) == 13
    assert ed.NYUV2_CLASSES[0] == "bed" and ed.NYUV2_CLASSES[11] == "wall" and ed.NYUV2_CLASSES[-1] == "window"
    assert len(ed.SCANNETPP_CLASSES) == 100 and len(set(ed.SCANNETPP_CLASSES)) == 100
    assert ed.SCANNETPP_CLASSES[:3] == ("wall", "ceiling", "floor")
    assert ed.SCANNETPP_CLASSES[51] == "painting" and ed.SCANNETPP_CLASSES[-2:] == ("stapler", "marker")


def test_nyuv2_layout_splits_and_reduce_zero_label(fake_root: Path):
    train, val = ed.nyuv2_seg(fake_root / "nyuv2", "train"), ed.nyuv2_seg(fake_root / "nyuv2", "val")
    assert (len(train), len(val)) == (3, 2)
    assert val.task == "seg" and val.reduce_zero_label and val.ignore_index == 255 and len(val.classes) == 13
    assert all(
        it.image_path.suffix == ".png" and it.label_path.parent == fake_root / "nyuv2/annotations/validation"
        for it in val.items
    )
    s = val.load(0)
    assert s["image"].dtype == np.uint8 and s["image"].shape == (48, 64, 3)
    assert s["labels"].dtype == np.int64 and s["labels"].shape == (48, 64) and s["depth"] is None
    raw = _raw(val.items[0].label_path)
    assert raw.min() == 0 and raw.max() == 13  # fake labels include unlabelled and the last class
    np.testing.assert_array_equal(s["labels"], np.where(raw == 0, 255, raw - 1))
    assert s["labels"][0, :3].tolist() == [255, 0, 12]  # file 0 -> ignore, 1 -> class 0, 13 -> class 12
    # the parent eval_data folder is accepted as root, and "test" is the validation split
    assert [it.image_path for it in ed.nyuv2_seg(fake_root, "test").items] == [it.image_path for it in val.items]


def test_reduce_zero_label_is_mmseg_uint8_arithmetic(tmp_path: Path):
    path = tmp_path / "ann.png"
    Image.fromarray(np.array([[0, 1, 13, 255, 7]], dtype=np.uint8)).save(path)
    assert ed.read_labels(path, reduce_zero_label=True).tolist() == [[255, 0, 12, 255, 6]]
    assert ed.read_labels(path, reduce_zero_label=False).tolist() == [[0, 1, 13, 255, 7]]
    Image.fromarray(np.zeros((2, 3, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ed.EvalDataError, match=r"rgb\.png.*single-channel"):
        ed.read_labels(tmp_path / "rgb.png", reduce_zero_label=True)


def test_nyu_depth_split_files_scale_and_range(fake_root: Path):
    train, test = ed.nyu_depth(fake_root / "nyu", "train"), ed.nyu_depth(fake_root / "nyu")
    assert (len(train), len(test)) == (4, 2) and train.n_skipped == 1  # the 'None' line is dropped
    assert test.split == "nyu_test.txt" and test.task == "depth"
    assert (test.depth_scale, test.min_depth, test.max_depth) == (1000.0, 1e-3, 10.0)
    paths = [str(it.image_path) for it in train.items]
    assert paths == sorted(paths) and all(p.startswith(str(fake_root / "nyu")) for p in paths)  # '/x' joined to root
    assert all(it.image_path.is_file() and it.depth_path.is_file() for it in train.items + test.items)  # both forms
    assert {it.focal for it in train.items} == {518.8579}
    s = test.load(0)
    assert s["labels"] is None and s["depth"].dtype == np.float32 and s["depth"].shape == (48, 64)
    assert _raw(test.items[0].depth_path)[0, 1] == 1234
    assert s["depth"][0, 1] == np.float32(1.234)  # PNG 1234 / 1000 (official depth_scale)
    assert s["depth"][0, 0] == 0.0 and s["depth"][0, 2] == np.float32(10.0) and s["depth"][0, 3] == np.float32(10.5)
    np.testing.assert_array_equal(s["depth"], _raw(test.items[0].depth_path).astype(np.float32) / 1000)


def test_nyu_eigen_crop_and_eval_mask(fake_root: Path):
    nyu = ed.nyu_depth(fake_root / "nyu")
    assert nyu.eval_crop == (45, 471, 41, 601) and nyu.eval_crop_size == (480, 640)
    m = nyu.crop_mask(480, 640)
    assert m.shape == (480, 640) and m.sum() == (471 - 45) * (601 - 41)
    assert m[45, 41] and m[470, 600] and not m[44, 41] and not m[45, 40] and not m[471, 600] and not m[45, 601]
    depth = np.full((480, 640), 5.0, dtype=np.float32)
    depth[100, 100:104] = (0.0, 10.0, 9.999, 0.001)
    valid = nyu.eval_mask(depth)
    assert valid[100, 100:104].tolist() == [False, False, True, False]  # open interval (0.001, 10)
    assert valid.sum() == m.sum() - 3
    small = nyu.crop_mask(48, 64)  # other sizes: the crop scaled proportionally
    rows, cols = np.nonzero(small.any(1))[0], np.nonzero(small.any(0))[0]
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (5, 47, 4, 60)
    scannetpp = ed.scannetpp_depth(fake_root / "scannetpp")
    assert scannetpp.eval_crop is None and scannetpp.crop_mask(6, 9).all()


def test_scannetpp_both_tasks(fake_root: Path):
    seg_tr, seg = ed.scannetpp_seg(fake_root / "scannetpp", "train"), ed.scannetpp_seg(fake_root / "scannetpp", "val")
    assert (len(seg_tr), len(seg)) == (3, 2) and len(seg.classes) == 100 and seg.reduce_zero_label
    assert all(it.image_path.suffix == ".JPG" and it.label_path.suffix == ".png" for it in seg.items)
    lab = seg.load(0)["labels"]
    assert lab[0, :3].tolist() == [255, 0, 99] and set(np.unique(lab).tolist()) <= set(range(100)) | {255}
    dep_tr, dep = ed.scannetpp_depth(fake_root / "scannetpp", "train"), ed.scannetpp_depth(fake_root / "scannetpp")
    assert (len(dep_tr), len(dep)) == (3, 2) and dep.split == "scannetpp_val.txt"
    assert (dep.max_depth, dep.test_size) == (20.0, (584, 876))
    assert dep.load(1)["depth"][0, 1] == np.float32(1.234) and dep.items[0].focal is None
    # a true absolute path in a split file (our extension) and the dispatcher
    (fake_root / "scannetpp/abs_split").mkdir(exist_ok=True)
    it = dep.items[0]
    split = fake_root / "scannetpp/abs_split/scannetpp_val.txt"
    split.write_text(f"{it.image_path} {it.depth_path}\n\n")
    assert [x.image_path for x in ed.scannetpp_depth(split.parent).items] == [it.image_path]
    for name, n in (("nyuv2", 2), ("nyu", 2), ("scannetpp_seg", 2), ("scannetpp_depth", 2)):
        assert len(ed.load_eval(name, fake_root)) == n
    assert len(ed.load_eval("nyu", fake_root / "nyu", "train")) == 4
    with pytest.raises(ValueError, match="scannetpp_depth"):
        ed.load_eval("ade20k", fake_root)


def test_missing_data_errors_name_the_path(tmp_path: Path, fake_root: Path):
    with pytest.raises(ed.EvalDataError) as err:
        ed.nyuv2_seg(tmp_path / "nowhere", "val")
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "images" / "validation") in msg and "FiT3D README" in msg
    assert "unpack it so that" in msg
    with pytest.raises(ed.EvalDataError, match="nyu_test.txt") as err:
        ed.nyu_depth(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / "nyu_test.txt") in str(err.value)
    with pytest.raises(ed.EvalDataError, match="scannetpp_train.txt"):
        ed.scannetpp_depth(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split"):
        ed.nyuv2_seg(fake_root, "dev")
    # lower-case .jpg images are not found by the official '.JPG' suffix: say so
    bad = tmp_path / "scannetpp"
    for sub in ("images/validation", "annotations/validation"):
        (bad / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bad / "images/validation/a.jpg")
    with pytest.raises(ed.EvalDataError, match=r"no '\*\.JPG' images.*1 '\*\.jpg'"):
        ed.scannetpp_seg(bad)
    # a missing annotation names the file it expected
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bad / "images/validation/b.JPG")
    with pytest.raises(ed.EvalDataError, match=r"annotations/validation/b\.png"):
        ed.scannetpp_seg(bad)
    # a missing depth file listed in a split file names the file and the line
    (tmp_path / "nyu").mkdir()
    (tmp_path / "nyu/nyu_test.txt").write_text("a/rgb_1.jpg a/sync_depth_1.png 518.8579\n")
    with pytest.raises(ed.EvalDataError, match=r"nyu_test\.txt:1.*a/rgb_1\.jpg"):
        ed.nyu_depth(tmp_path / "nyu").load(0)


def test_stack_shapes_dtypes_masks_and_resize(fake_root: Path):
    seg = ed.nyuv2_seg(fake_root / "nyuv2", "train")
    images, labels, depth = seg.stack()
    assert images.shape == (3, 48, 64, 3) and images.dtype == torch.float32 and 0 <= images.min() <= images.max() <= 1
    assert labels.shape == (3, 48, 64) and labels.dtype == torch.int64 and depth is None
    assert set(labels.unique().tolist()) <= set(range(13)) | {255}
    images, labels, _ = seg.stack([2, 0], size=(24, 32))
    assert images.shape == (2, 24, 32, 3) and labels.shape == (2, 24, 32)
    assert set(labels.unique().tolist()) <= set(seg.load(2)["labels"].ravel()) | set(seg.load(0)["labels"].ravel())

    nyu = ed.nyu_depth(fake_root / "nyu", "train")
    images, labels, depth = nyu.stack(depth_mask="none")
    assert labels is None and depth.shape == (4, 48, 64) and depth.dtype == torch.float32
    assert depth[0, 0, :4].tolist() == pytest.approx([0.0, 1.234, 10.0, 10.5])
    _, _, ranged = nyu.stack(depth_mask="range")
    assert ranged[0, 0, :4].tolist() == pytest.approx([0.0, 1.234, 0.0, 0.0])  # 10 and 10.5 m are outside (0.001, 10)
    _, _, cropped = nyu.stack(depth_mask="eval")
    outside = ~torch.from_numpy(nyu.crop_mask(48, 64))
    assert (cropped[:, outside] == 0).all() and (cropped[:, ~outside] == ranged[:, ~outside]).all()

    # samples of different sizes need size=
    mixed = ed.EvalSet("mixed", "depth", (), nyu.items[:1] + ed.scannetpp_depth(fake_root).items[:1])
    with pytest.raises(ed.EvalDataError, match=r"48x72.*48x64.*size=\(H, W\)"):
        mixed.stack()
    assert mixed.stack(size=(16, 16))[2].shape == (2, 16, 16)
    # ScanNet++ label ids (up to 99) read against the NYUv2 table: a clear error, not a silent probe bug
    wrong = ed.EvalSet("wrong", "seg", ed.NYUV2_CLASSES, ed.scannetpp_seg(fake_root).items, reduce_zero_label=True)
    with pytest.raises(ed.EvalDataError, match=r"13-class table"):
        wrong.stack(size=(16, 16))


def test_probe_data_adapter(fake_root: Path):
    pd_seg = ed.nyuv2_seg(fake_root / "nyuv2", "val").probe_data(size=(28, 42))
    assert pd_seg.images.shape == (2, 28, 42, 3) and pd_seg.labels.shape == (2, 28, 42)
    assert pd_seg.depth.shape == (2, 28, 42) and (pd_seg.depth == 0).all() and len(pd_seg.classes) == 13
    pd_depth = ed.nyu_depth(fake_root / "nyu").probe_data()
    assert (pd_depth.labels == 255).all() and pd_depth.depth.max() < 10 and pd_depth.scene_of == [0, 0]


def test_fake_writers_are_deterministic(tmp_path: Path):
    a, b = (
        evaldata_fake.write_fake_nyuv2(tmp_path / "a", 1, 1, seed=3),
        evaldata_fake.write_fake_nyuv2(tmp_path / "b", 1, 1, seed=3),
    )
    for rel in ("images/training/0000.png", "annotations/validation/0001.png"):
        np.testing.assert_array_equal(_raw(a / rel), _raw(b / rel))
    c = evaldata_fake.write_fake_nyuv2(tmp_path / "c", 1, 1, seed=4)
    assert not np.array_equal(_raw(a / "annotations/training/0000.png"), _raw(c / "annotations/training/0000.png"))
    s1, s2 = (
        evaldata_fake.write_fake_scannetpp(tmp_path / "s1", 1, 1),
        evaldata_fake.write_fake_scannetpp(tmp_path / "s2", 1, 1),
    )
    assert (s1 / "scannetpp_val.txt").read_text() == (s2 / "scannetpp_val.txt").read_text()


# ----------------------------------------------------------------------------------------------- wrong depth formats


def _nyu_with_depth(tmp_path: Path, write) -> tuple[ed.EvalSet, Path]:
    """A fake NYU set whose first test depth map is replaced by ``write(path_stem) -> path`` (split file updated)."""
    root = evaldata_fake.write_fake_nyu(tmp_path / "nyu", n_train=1, n_test=1)
    ev = ed.nyu_depth(root, "test")
    old = ev.items[0].depth_path
    mm = _raw(old)  # [H, W] millimetres, uint16 in the file
    new = write(old.with_suffix(""), mm)
    split = root / "nyu_test.txt"
    split.write_text(split.read_text().replace(old.name, new.name))
    return ed.nyu_depth(root, "test"), new


def test_8bit_depth_png_is_refused_with_the_expected_format(tmp_path: Path):
    def write(stem: Path, mm: np.ndarray) -> Path:
        path = stem.with_name(stem.name + "_8bit.png")
        Image.fromarray(np.clip(mm // 16, 0, 255).astype(np.uint8)).save(path)  # 8-bit: reads as 0.0-0.26 m
        return path

    ev, path = _nyu_with_depth(tmp_path, write)
    with pytest.raises(ed.EvalDataError, match=r"8-bit") as err:
        ev.load(0)
    msg = str(err.value)
    assert str(path) in msg and "16-bit" in msg and "millimetres" in msg


def test_float_tiff_depth_in_metres_is_refused(tmp_path: Path):
    def write(stem: Path, mm: np.ndarray) -> Path:
        path = stem.with_name(stem.name + "_m.tiff")
        Image.fromarray((mm / 1000.0).astype(np.float32)).save(path)  # metres as float: reads as 0.001-0.01 m
        return path

    ev, path = _nyu_with_depth(tmp_path, write)
    with pytest.raises(ed.EvalDataError, match=r"float") as err:
        ev.load(0)
    msg = str(err.value)
    assert str(path) in msg and "16-bit" in msg and "metres" in msg


def test_16bit_depth_in_metres_is_refused_by_its_range(tmp_path: Path):
    def write(stem: Path, mm: np.ndarray) -> Path:
        path = stem.with_name(stem.name + "_m16.png")
        Image.fromarray(np.round(mm / 1000.0).astype(np.uint16)).save(path)  # whole metres as uint16
        return path

    ev, path = _nyu_with_depth(tmp_path, write)
    with pytest.raises(ed.EvalDataError, match=r"millimetres") as err:
        ev.load(0)
    assert str(path) in str(err.value)


def test_official_16bit_depth_still_reads(tmp_path: Path):
    ev, _ = _nyu_with_depth(tmp_path, lambda stem, mm: _save_png16(stem, mm))
    d = ev.load(0)["depth"]
    assert d.dtype == np.float32 and 1.0 <= float(d[d > 0].min()) and float(d.max()) <= 10.6


def _save_png16(stem: Path, mm: np.ndarray) -> Path:
    path = stem.with_name(stem.name + "_16.png")
    Image.fromarray(mm.astype(np.uint16)).save(path)
    return path


def test_subset_out_of_range_names_the_set_and_its_size(fake_root: Path):
    ev = ed.nyu_depth(fake_root / "nyu", "test")
    with pytest.raises(IndexError, match=r"nyu .*2 samples.*\[99\]"):
        ev.subset([99])
    with pytest.raises(ValueError, match=r"at least 0"):
        ev.subset(-1)
    assert [it.image_path for it in ev.subset([-1]).items] == [ev.items[-1].image_path]
    assert len(ev.subset(5)) == 2  # an int is "the first n", capped at the set's size
