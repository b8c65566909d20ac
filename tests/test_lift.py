"""Stage 1 on a tiny scene: artifacts by hash, resume, gradient routing, and the bad-input errors."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from fit3d_helpers import lift as L
from fit3d_helpers.data import load_scene
from fit3d_helpers.gaussians import PARAM_NAMES


def test_lift_writes_a_complete_artifact_found_by_hash(lifted, tiny_dataset, vit_small, tiny_lift_cfg, artifacts) -> None:
    res = lifted[0]
    assert res.path == L.lift_dir(tiny_dataset.train[0], vit_small, tiny_lift_cfg, artifacts)
    for name in ("gaussians.pt", "decoder.pt", "config.json", "stats.json", "losses.json"):
        assert (res.path / name).is_file()
    s = res.stats
    for key in ("heldout_psnr", "heldout_ssim", "heldout_feature_l1", "heldout_feature_cosine", "n_gaussians", "iterations", "wall_seconds"):
        assert key in s
    assert s["weights"] == "random" and s["iterations"] == 24
    assert res.decoder.weight.shape == (384, tiny_lift_cfg.feature_dim, 3, 3) and res.decoder.bias is None
    assert len(res.losses["rgb"]) == 24
    # a second call loads, it does not refit
    again = L.lift_scene(tiny_dataset.train[0], vit_small, tiny_lift_cfg, root=artifacts)
    assert torch.equal(again.params["means"], res.params["means"])
    assert not list(artifacts.glob("lift/.partial-*"))  # the checkpoint folder is gone once finished


def test_fitting_improves_over_the_initial_state(lifted) -> None:
    losses = lifted[0].losses
    assert sum(losses["rgb"][-5:]) < sum(losses["rgb"][:5])
    assert sum(losses["feature"][-5:]) < sum(losses["feature"][:5])


def test_feature_loss_does_not_move_geometry(lifted) -> None:
    params = {k: v.clone().requires_grad_(True) for k, v in lifted[0].params.items() if k in PARAM_NAMES}
    K = torch.tensor([[[40.0, 0, 21], [0, 40.0, 14], [0, 0, 1]]])
    scene = load_scene(lifted[0].config["scene"])
    viewmat = torch.as_tensor(scene.views[0].world_to_cam, dtype=torch.float32)[None]
    feats, _ = L.render_features(params, viewmat, K, 42, 28)
    lifted[0].decoder(feats).abs().mean().backward()
    assert params["features"].grad is not None and params["features"].grad.abs().sum() > 0
    for k in ("means", "quats", "log_scales", "opacity_logits"):
        assert params[k].grad is None


def test_load_checks_widths(lifted) -> None:
    with pytest.raises(L.LiftError, match="another backbone"):
        L.load_lift(lifted[0].path, expect_dim=768)
    with pytest.raises(L.LiftError, match="feature_dim=32"):
        L.load_lift(lifted[0].path, expect_feature_dim=32)
    with pytest.raises(L.LiftError, match="no finished lift artifact"):
        L.load_lift(lifted[0].path.parent / "nope")


def test_resume_after_interruption(tiny_dataset, vit_small, tiny_lift_cfg, tmp_path) -> None:
    cfg = dataclasses.replace(tiny_lift_cfg, iterations=12, checkpoint_every=100)
    with pytest.raises(TimeoutError, match="resume"):
        L.lift_scene(tiny_dataset.train[0], vit_small, cfg, root=tmp_path, max_seconds=0.0)
    out = L.lift_dir(tiny_dataset.train[0], vit_small, cfg, tmp_path)
    assert not out.exists()  # nothing that looks complete
    ck = torch.load(out.parent / f".partial-{out.name}" / "checkpoint.pt", weights_only=False)
    assert ck["iteration"] == 1 and set(ck["optimizers"]) == set(PARAM_NAMES)
    assert ck["strategy_state"]["count"] is not None  # the densification statistics resume too
    res = L.lift_scene(tiny_dataset.train[0], vit_small, cfg, root=tmp_path)
    assert len(res.losses["rgb"]) == 12 and res.losses["iteration"][0] == 0 and res.losses["iteration"][-1] == 11


def test_checkpoint_of_an_older_version_restarts_with_a_warning(tiny_dataset, vit_small, tiny_lift_cfg, tmp_path) -> None:
    cfg = dataclasses.replace(tiny_lift_cfg, iterations=3)
    out = L.lift_dir(tiny_dataset.train[0], vit_small, cfg, tmp_path)
    (out.parent / f".partial-{out.name}").mkdir(parents=True)
    torch.save({"iteration": 2, "optimizer": {}}, out.parent / f".partial-{out.name}" / "checkpoint.pt")  # format 1
    with pytest.warns(UserWarning, match="older version"):
        res = L.lift_scene(tiny_dataset.train[0], vit_small, cfg, root=tmp_path)
    assert res.losses["iteration"] == [0, 1, 2]


def test_nan_loss_names_iteration_and_term_and_writes_nothing(tiny_dataset, vit_small, tiny_lift_cfg, tmp_path, monkeypatch) -> None:
    cfg = dataclasses.replace(tiny_lift_cfg, iterations=5)
    monkeypatch.setattr(L, "rgb_loss", lambda img, ref: torch.tensor(float("nan")))
    with pytest.raises(L.LiftError, match=r"iteration 0: the rgb loss is nan"):
        L.lift_scene(tiny_dataset.train[0], vit_small, cfg, root=tmp_path)
    assert not L.lift_dir(tiny_dataset.train[0], vit_small, cfg, tmp_path).exists()


def test_scene_without_points_or_depth(tiny_dataset, tmp_path) -> None:
    scene_dir = tmp_path / "nodepth"
    shutil.copytree(tiny_dataset.train[0], scene_dir)
    meta = json.loads((scene_dir / "transforms.json").read_text())
    for f in meta["frames"]:
        f.pop("depth_file_path", None)
    meta.pop("ply_file_path", None)
    (scene_dir / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(L.LiftError, match="points3D.txt.*depth maps"):
        L.scene_points(load_scene(scene_dir), 100, 0)


def test_refit_features_keeps_geometry(lifted, vit_small, artifacts) -> None:
    r = L.refit_features(lifted[0], vit_small, 16, iterations=10, root=artifacts)
    assert r.params["features"].shape[1] == 16 and r.decoder.weight.shape[1] == 16
    assert torch.equal(r.params["means"], lifted[0].params["means"])
    assert r.stats["feature_dim"] == 16 and "heldout_feature_cosine" in r.stats


def test_ssim_matches_skimage() -> None:
    from skimage.metrics import structural_similarity

    a, b = torch.rand(1, 3, 32, 40), torch.rand(1, 3, 32, 40)
    b = 0.7 * a + 0.3 * b
    ref = structural_similarity(a[0].permute(1, 2, 0).numpy(), b[0].permute(1, 2, 0).numpy(), channel_axis=2, data_range=1.0,
                                gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert abs(float(L.ssim(a, b)) - ref) < 2e-2
    assert float(L.rgb_loss(a, a)) == pytest.approx(0.0, abs=1e-5)
    assert L.psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-3)
