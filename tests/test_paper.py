"""The paper's numbers (fit3d_helpers.course.paper): checks that catch a transcription slip, not a copy of the tables.

Each check uses a relation the paper itself states or implies: a difference it quotes, a row that two tables share,
the direction of every main result, the ordering mIoU ≤ mAcc ≤ aAcc that holds for any segmentation.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from fit3d_helpers.course import paper


def test_every_record_names_its_table_and_is_frozen():
    assert paper.RECORDS
    for r in paper.RECORDS:
        assert re.fullmatch(r"arXiv 2407\.20229v1, Table \d+", r.source), r
        assert r.source == f"arXiv 2407.20229v1, Table {r.table}"
        with pytest.raises(dataclasses.FrozenInstanceError):
            r.table = 99  # type: ignore[misc]
    # every table of the paper from 1 to 13 is represented
    assert {r.table for r in paper.RECORDS} == set(range(1, 14))


def test_main_table_deltas():
    """FiT3D − DINOv2, as the paper's text and tables put it (ScanNet++ mIoU +2.57 etc.)."""
    deltas = {(c.dataset, c.task): c.delta for c in paper.main_rows()}
    assert deltas[("ScanNet++", "seg")] == pytest.approx(2.57)
    assert deltas[("NYUv2", "seg")] == pytest.approx(1.95)
    assert deltas[("ScanNet", "seg")] == pytest.approx(1.24)
    assert deltas[("ScanNet++", "depth")] == pytest.approx(-0.0381)
    assert deltas[("KITTI", "depth")] == pytest.approx(-0.1197)
    assert {c.table for c in paper.main_rows("seg")} == {1, 3} and {c.table for c in paper.main_rows("depth")} == {2, 3}


def test_fit3d_improves_every_main_backbone_and_vit_b_result():
    for c in paper.MAIN + paper.BACKBONES + paper.VIT_B_ROWS:
        assert c.improved, c  # a swapped before/after pair shows up here
    imagenet = paper.comparison("ImageNet-1k", "cls")
    assert imagenet is not None and not imagenet.improved and abs(imagenet.delta) < 0.1  # Table 11: no gain
    dpt = paper.comparison("ScanNet++", "depth", head="DPT")
    assert dpt is not None and dpt.improved and dpt.table == 12


def test_rows_shared_between_tables_agree():
    t1_spp = paper.comparison("ScanNet++", "seg")
    t2_spp = paper.comparison("ScanNet++", "depth")
    control = {r.value: r for r in paper.ablation_rows("control")}
    assert control["concat"].seg.miou == t1_spp.fit3d.miou and control["concat"].depth.rmse == t2_spp.fit3d.rmse
    assert control["original"].seg.miou == t1_spp.original.miou
    assert control["original"].depth.rmse == t2_spp.original.rmse
    # the duplicated control sits between the original and FiT3D: the gain is not from the dimensions
    assert t1_spp.original.miou < control["dup"].seg.miou < t1_spp.fit3d.miou
    nyu = paper.comparison("NYUd", "seg")  # §4.1's name for NYUv2
    assert nyu is paper.comparison("NYUv2", "seg")
    default = {
        7: next(r for r in paper.ablation_rows("assembly") if r.value == "concat"),
        5: next(r for r in paper.ablation_rows("feature_dim") if r.value == 64),
        8: next(r for r in paper.ablation_rows("epochs") if r.value == 1),
    }
    for t, row in default.items():
        assert row.table == t and row.seg == nyu.fit3d, (t, row)  # default setting = Table 1's NYUv2 FiT3D row
    tuned = next(r for r in paper.ablation_rows("mode") if r.value == "full")
    assert tuned.dataset == "Pascal VOC" and tuned.seg == paper.comparison("Pascal VOC", "seg").fit3d
    # Table 4 does not repeat DINOv2; the ViT-B rows are another backbone than Table 1's
    assert all(c.backbone != paper.VIT_S for c in paper.BACKBONES + paper.VIT_B_ROWS)


def test_segmentation_scores_are_ordered_and_percentages():
    segs = [s for c in paper.COMPARISONS if c.task == "seg" for s in (c.original, c.fit3d)]
    segs += [r.seg for r in paper.ABLATIONS if r.seg is not None]
    for s in segs:
        assert 0 < s.miou < 100
        if s.macc is not None:
            assert s.miou <= s.macc <= s.aacc <= 100, s  # mIoU ≤ mAcc ≤ aAcc: catches a column swap


def test_helpers_for_presenters():
    summary = paper.main_summary()
    assert list(summary) == ["ScanNet++", "NYUv2", "ScanNet", "ADE20k", "Pascal VOC", "KITTI"]
    assert summary["KITTI"][:2] == (None, None) and summary["ADE20k"][2:] == (None, None)
    assert list(paper.assembly_miou()) == ["addition", "linear fusion", "concatenation"]
    assert max(paper.assembly_miou().values()) == paper.assembly_miou()["concatenation"]
    assert sorted(paper.epochs_miou()) == [1, 2, 3]
    memory = [r.memory_mb for r in paper.ablation_rows("feature_dim")]
    assert memory == sorted(memory)  # more dimensions, more memory
    assert paper.by_table(13) == paper.ablation_rows("control")
    assert paper.REPORTS_DELTA1 is False and paper.MEASURES_CORRESPONDENCE is False
    assert "δ<1.25" in paper.__doc__ and "NYUd" in paper.__doc__ and "does NOT measure correspondence" in paper.__doc__
