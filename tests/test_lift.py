"""Stage 1 on a tiny scene: artifacts by hash, resume, gradient routing, and the bad-input errors."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from fit3d_helpers import cache
from fit3d_helpers import lift as L
from fit3d_helpers.data import load_scene
from fit3d_helpers.gaussians import PARAM_NAMES


def _key_dir(scene, bb, cfg, root):
    return cache.key_dir(root, "lift", L.lift_key(scene, bb, cfg))


def test_lift_writes_a_complete_artifact_found_by_hash(
    lifted, tiny_dataset, vit_small, tiny_lift_cfg, artifacts
) -> None:
    res = lifted[0]
    assert res.artifact.key_dir == _key_dir(tiny_dataset.train[0], vit_small, tiny_lift_cfg, artifacts)
    assert (
        res.config["scene"] == cache.scene_id(tiny_dataset.train[0]) and "/" not in res.config["scene"]
    )  # portable key
    for name in ("gaussians.pt", "decoder.pt", "config.json", "stats.json", "losses.json"):
        assert (res.path / name).is_file()
    s = res.stats
    for key in (
        "heldout_psnr",
        "heldout_ssim",
        "heldout_feature_l1",
        "heldout_feature_cosine",
        "n_gaussians",
        "iterations",
        "wall_seconds",
    ):
        assert key in s
    assert s["weights"] == "random" and s["iterations"] == 24
    assert res.decoder.weight.shape == (384, tiny_lift_cfg.feature_dim, 3, 3) and res.decoder.bias is None
    assert len(res.losses["rgb"]) == 24
    # a second call loads, it does not refit
    again = L.lift_scene(tiny_dataset.train[0], vit_small, tiny_lift_cfg, root=artifacts)
    assert torch.equal(again.params["means"], res.params["means"])
    assert not (res.artifact.key_dir / ".resume").exists()  # the checkpoint folder is gone once finished


def test_fitting_improves_over_the_initial_state(lifted) -> None:
    losses = lifted[0].losses
    assert sum(losses["rgb"][-5:]) < sum(losses["rgb"][:5])
    assert sum(losses["feature"][-5:]) < sum(losses["feature"][:5])


def test_feature_loss_does_not_move_geometry(lifted) -> None:
    params = {k: v.clone().requires_grad_(True) for k, v in lifted[0].params.items() if k in PARAM_NAMES}
    K = torch.tensor([[[40.0, 0, 21], [0, 40.0, 14], [0, 0, 1]]])
    scene = load_scene(lifted[0].scene_path)
    viewmat = torch.as_tensor(scene.views[0].world_to_cam, dtype=torch.float32)[None]
    feats, _ = L.render_features(params, viewmat, K, 42, 28)
    lifted[0].decoder(feats).abs().mean().backward()
    assert params["features"].grad is not None and params["features"].grad.abs().sum() > 0
    for k in ("means", "quats", "log_scales", "opacity_logits"):
        assert params[k].grad is None


def test_load_checks_widths(lifted) -> None:
    with pytest.raises(L.LiftError, match="another backbone"):
        L.load_lift(lifted[0].artifact, expect_dim=768)
    with pytest.raises(L.LiftError, match="feature_dim=32"):
        L.load_lift(lifted[0].artifact.key_dir, expect_feature_dim=32)
    with pytest.raises(L.LiftError, match="no finished lift artifact"):
        L.load_lift(lifted[0].artifact.key_dir.parent / "nope")


def test_resumed_lift_equals_an_uninterrupted_one(tiny_dataset, vit_small, tiny_lift_cfg, tmp_path) -> None:
    """Stopped at iteration 9 (inside the densification window, where the strategy draws random numbers) and resumed:
    the same Gaussians, bit for bit, as a fit that never stopped (RNG states are in the checkpoint)."""
    cfg = dataclasses.replace(tiny_lift_cfg, iterations=16, checkpoint_every=100, strategy="gsplat")
    whole = L.lift_scene(tiny_dataset.train[0], vit_small, cfg, root=tmp_path / "a")
    with pytest.raises(TimeoutError, match="resume"):
        L.lift_scene(tiny_dataset.train[0], vit_small, cfg, root=tmp_path / "b", stop_after=9)
    kd = _key_dir(tiny_dataset.train[0], vit_small, cfg, tmp_path / "b")
    assert cache.lookup_dir(kd) is None  # nothing that looks complete
    ck = torch.load(kd / ".resume" / "checkpoint.pt", weights_only=True)  # loads without running code
    assert ck["step"] == 9 and set(ck["optimizers"]) == set(PARAM_NAMES) and "rng" in ck
    resumed = L.lift_scene(tiny_dataset.train[0], vit_small, cfg, root=tmp_path / "b")
    assert resumed.losses["iteration"] == list(range(16))
    assert resumed.losses["rgb"] == whole.losses["rgb"] and resumed.losses["n_gaussians"] == whole.losses["n_gaussians"]
    for k in PARAM_NAMES:
        assert torch.equal(resumed.params[k], whole.params[k]), k
    assert resumed.hash == whole.hash  # the same key in another folder: portable


class _Boom:
    """Unpickling this would create a file: the test's stand-in for a checkpoint that runs code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_resume_checkpoint_is_not_executed(tiny_dataset, vit_small, tiny_lift_cfg, tmp_path) -> None:
    cfg = dataclasses.replace(tiny_lift_cfg, iterations=3)
    marker = tmp_path / "pwned"
    kd = _key_dir(tiny_dataset.train[0], vit_small, cfg, tmp_path)
    (kd / ".resume").mkdir(parents=True)
    torch.save({"format": 5, "payload": _Boom(str(marker))}, kd / ".resume" / "checkpoint.pt")
    with pytest.warns(UserWarning, match="unreadable"):
        res = L.lift_scene(tiny_dataset.train[0], vit_small, cfg, root=tmp_path)
    assert not marker.exists()  # weights_only refused it; the fit restarted from scratch
    assert res.losses["iteration"] == [0, 1, 2]


def test_checkpoint_of_another_version_restarts_with_a_warning(
    tiny_dataset, vit_small, tiny_lift_cfg, tmp_path
) -> None:
    cfg = dataclasses.replace(tiny_lift_cfg, iterations=3)
    kd = _key_dir(tiny_dataset.train[0], vit_small, cfg, tmp_path)
    (kd / ".resume").mkdir(parents=True)
    torch.save({"iteration": 2, "optimizer": {}}, kd / ".resume" / "checkpoint.pt")  # format 1
    with pytest.warns(UserWarning, match="another version"):
        res = L.lift_scene(tiny_dataset.train[0], vit_small, cfg, root=tmp_path)
    assert res.losses["iteration"] == [0, 1, 2]


def test_nan_loss_names_iteration_and_term_and_writes_nothing(
    tiny_dataset, vit_small, tiny_lift_cfg, tmp_path, monkeypatch
) -> None:
    cfg = dataclasses.replace(tiny_lift_cfg, iterations=5)
    monkeypatch.setattr(L, "rgb_loss", lambda img, ref: torch.tensor(float("nan")))
    with pytest.raises(L.LiftError, match=r"iteration 0: the rgb loss is nan"):
        L.lift_scene(tiny_dataset.train[0], vit_small, cfg, root=tmp_path)
    kd = _key_dir(tiny_dataset.train[0], vit_small, cfg, tmp_path)
    assert cache.lookup_dir(kd) is None and not list(kd.glob(".tmp-*")) and not list(kd.glob("v-*"))


def test_views_that_see_no_point_stop_the_lift(tiny_dataset, vit_small, tiny_lift_cfg, tmp_path) -> None:
    """Poses flipped to the OpenGL convention point the cameras away from the points: named, before any fitting."""
    scene_dir = tmp_path / "flipped"
    shutil.copytree(tiny_dataset.train[0], scene_dir)
    meta = json.loads((scene_dir / "transforms.json").read_text())
    for f in meta["frames"]:
        m = torch.tensor(f["transform_matrix"])
        m[:3, 1:3] *= -1  # as if the file were OpenCV
        f["transform_matrix"] = m.tolist()
    (scene_dir / "transforms.json").write_text(json.dumps(meta))
    scene = load_scene(scene_dir)
    prep = L.prepare_scene(scene, vit_small, tiny_lift_cfg)
    pts = torch.tensor([[0.0, 0.0, 0.0]]).repeat(8, 1) + torch.randn(8, 3) * 0.01
    from fit3d_helpers.gaussians import init_gaussians

    far = (
        scene.views[0].cam_to_world[:3, 3] + 100 * scene.views[0].cam_to_world[:3, 2]
    )  # far behind the flipped cameras
    params = init_gaussians(
        torch.as_tensor(far, dtype=torch.float32) + pts, torch.rand(8, 3), feature_dim=4, sh_degree=0
    )
    with pytest.raises(L.LiftError, match=r"see none of the .*initial Gaussians.*convention"):
        L.check_start(scene.name, params, prep)
    bad = dict(params, means=params["means"].clone())
    bad["means"][2, 0] = float("nan")
    with pytest.raises(L.LiftError, match=r"not finite .*means.*: 1"):
        L.check_start(scene.name, bad, prep)


def test_poses_only_capture_starts_from_points_the_cameras_share(tiny_dataset, tmp_path) -> None:
    """No point cloud, no depth (an instant-ngp capture) and nothing to triangulate: random points inside the cameras'
    common view volume (the fallback; triangulation is tested in test_capture.py)."""
    import numpy as np

    from fit3d_helpers.data import project

    scene_dir = tmp_path / "nodepth"
    shutil.copytree(tiny_dataset.train[0], scene_dir)
    meta = json.loads((scene_dir / "transforms.json").read_text())
    for f in meta["frames"]:
        f.pop("depth_file_path", None)
    meta.pop("ply_file_path", None)
    (scene_dir / "transforms.json").write_text(json.dumps(meta))
    scene = load_scene(scene_dir)
    pts, cols = (torch.as_tensor(a) for a in L.points_in_view_volume(scene, 500, 0))
    assert pts.shape == (500, 3) and torch.allclose(cols, torch.full_like(cols, 0.5))
    seen = sum(
        ((z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < v.width) & (uv[:, 1] >= 0) & (uv[:, 1] < v.height)).astype(int)
        for v in scene.views
        for uv, z in [project(pts.numpy(), v.K, v.world_to_cam)]
    )
    assert (seen >= len(scene.views) / 2).all()
    assert np.array_equal(L.points_in_view_volume(scene, 500, 0)[0], pts.numpy())  # seeded


def test_refit_features_keeps_geometry(lifted, vit_small, artifacts) -> None:
    r = L.refit_features(lifted[0], vit_small, 16, iterations=10, root=artifacts)
    assert r.params["features"].shape[1] == 16 and r.decoder.weight.shape[1] == 16
    assert torch.equal(r.params["means"], lifted[0].params["means"])
    assert r.stats["feature_dim"] == 16 and "heldout_feature_cosine" in r.stats


def test_refits_of_one_scene_reuse_its_backbone_features(vit_small, monkeypatch: pytest.MonkeyPatch) -> None:
    """The features memo of the refits: one backbone pass per scene and model state; a changed model recomputes."""
    from fit3d_helpers import lift_inputs

    monkeypatch.setattr(lift_inputs, "_FEATURES_MEMO", type(lift_inputs._FEATURES_MEMO)())
    calls = []
    real = vit_small.features
    monkeypatch.setattr(vit_small, "features", lambda *a, **k: calls.append(1) or real(*a, **k))
    images = torch.rand(2, 3, 28, 42, generator=torch.Generator().manual_seed(0))
    a = L.scene_features(vit_small, images)
    b = L.scene_features(vit_small, images.clone())
    assert len(calls) == 1 and a is b and a.shape[0] == 2
    L.scene_features(vit_small, images.flip(-1))  # other images
    assert len(calls) == 2
    before = vit_small.state_version()
    p = next(vit_small.model.parameters())
    with torch.no_grad():
        p.add_(0.0)  # an in-place write (as an optimiser step) is a new state, even when the values stay
    try:
        assert vit_small.state_version() != before
        L.scene_features(vit_small, images)
        assert len(calls) == 3
    finally:
        with torch.no_grad():
            p.sub_(0.0)


def _inria_ssim(img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
    """The official (Inria 3DGS utils/loss_utils.py) SSIM, restated: one 11x11 Gaussian window, zero padding."""
    x = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    g = (g / g.sum()).float()
    w = (g[:, None] @ g[None, :]).expand(img1.shape[1], 1, 11, 11).contiguous()
    c = img1.shape[1]
    mu1, mu2 = F.conv2d(img1, w, padding=5, groups=c), F.conv2d(img2, w, padding=5, groups=c)
    s11 = F.conv2d(img1 * img1, w, padding=5, groups=c) - mu1**2
    s22 = F.conv2d(img2 * img2, w, padding=5, groups=c) - mu2**2
    s12 = F.conv2d(img1 * img2, w, padding=5, groups=c) - mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))).mean()


def test_ssim_is_the_official_one_and_near_skimage() -> None:
    from skimage.metrics import structural_similarity

    a, b = torch.rand(2, 3, 32, 40), torch.rand(2, 3, 32, 40)
    b = 0.7 * a + 0.3 * b
    assert float(L.ssim(a, b)) == pytest.approx(float(_inria_ssim(a, b)), abs=1e-6)  # separable == the 11x11 window
    ref = structural_similarity(
        a[0].permute(1, 2, 0).numpy(),
        b[0].permute(1, 2, 0).numpy(),
        channel_axis=2,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert abs(float(L.ssim(a[:1], b[:1])) - ref) < 3e-2  # skimage pads by reflection: close, not equal
    assert float(L.rgb_loss(a, a)) == pytest.approx(0.0, abs=1e-5)
    assert L.psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-3)


# ------------------------------------------------------------------------------------------------------------------
# Non-finite fits, bad intrinsics and short fits (issue 17): clear errors before anything is committed
# ------------------------------------------------------------------------------------------------------------------


def test_exploding_learning_rates_stop_the_fit_naming_scene_iteration_and_setting(
    tiny_dataset, vit_small, tiny_lift_cfg, tmp_path
) -> None:
    """``lift.lr_scales=1000`` used to commit a lift of non-finite Gaussians (the renderer culls them, so the loss stays
    finite); ``lift.lr_means=1e38`` overflowed anonymously inside Adam. Both stop now, and nothing is committed."""
    scene = tiny_dataset.train[0]
    cfg = dataclasses.replace(tiny_lift_cfg, iterations=12, lr_scales=1000.0)
    with pytest.raises(L.LiftError, match=r"scene \S+: at iteration 6 the fit is not finite .*Lower .*lift\.lr_scales"):
        L.lift_scene(scene, vit_small, cfg, root=tmp_path)
    assert cache.lookup_dir(_key_dir(scene, vit_small, cfg, tmp_path)) is None
    cfg = dataclasses.replace(tiny_lift_cfg, iterations=4, lr_means=1e38)
    with pytest.raises(L.LiftError, match=r"at iteration 0 the means optimiser step overflows.*Lower lift\.lr_means"):
        L.lift_scene(scene, vit_small, cfg, root=tmp_path)


def test_check_fit_finite_names_the_parameter_setting() -> None:
    from fit3d_helpers.gaussians import init_gaussians

    params = init_gaussians(torch.rand(20, 3), torch.rand(20, 3), feature_dim=4, sh_degree=0)
    decoder = L.make_decoder(4, 8)
    L.check_fit_finite("room", params, decoder, 3)  # finite: no error
    params["features"][5, 1] = float("nan")
    with pytest.raises(L.LiftError, match=r"scene room: at iteration 3 .*features 1 of 20.*Lower lift\.lr_features"):
        L.check_fit_finite("room", params, decoder, 3)
    params["features"][5, 1] = 0.0
    params["log_scales"][0] = 100.0  # finite, but exp() is inf in float32
    with pytest.raises(L.LiftError, match=r"log_scales 1 of 20.*lift\.lr_scales"):
        L.check_fit_finite("room", params, decoder, 3)


def test_absurd_focal_length_is_named_with_the_scene_file(tiny_dataset, vit_small, tiny_lift_cfg, tmp_path) -> None:
    """``fl_x = 1e-9`` (a 180° field of view) failed in the rasterizer with a reshape error; now it stops before any
    work, naming the view, the value and the file to fix."""
    scene_dir = tmp_path / "focal"
    shutil.copytree(tiny_dataset.train[0], scene_dir)
    meta = json.loads((scene_dir / "transforms.json").read_text())
    meta["fl_x"] = 1e-9
    for f in meta["frames"]:
        f.pop("fl_x", None)
    (scene_dir / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(L.LiftError, match=r"fx=1e-09.*180\.0° field of view.*'fl_x'.*focal/transforms\.json"):
        L.lift_scene(scene_dir, vit_small, tiny_lift_cfg, root=tmp_path / "art")
    small = dataclasses.replace(tiny_lift_cfg, train_downscale=8)  # 84×56 -> 10×7 px renders
    with pytest.raises(L.LiftError, match=r"too small to fit .*10×7 px .*lift\.train_downscale=8"):
        L.lift_scene(tiny_dataset.train[0], vit_small, small, root=tmp_path / "art")


def test_gaussians_figure_of_a_short_fit_is_not_empty() -> None:
    """Below ~16 iterations no Gaussian is opaque yet (init 0.1, shown from 0.2): the figure crashed on zero points;
    it now shows the most opaque ones."""
    from fit3d_helpers.course import viz
    from fit3d_helpers.gaussians import activated, init_gaussians

    params = init_gaussians(torch.rand(30, 3), torch.rand(30, 3), feature_dim=4, sh_degree=0)
    act = activated(params)
    fig = viz.gaussians_figure(act["means"], params["features"] + torch.rand(30, 4), act["opacities"])
    assert len(fig.data[0].x) == 30


def test_resumed_refit_equals_an_uninterrupted_one(lifted, vit_small, tmp_path) -> None:
    """The feature refits checkpoint through the same helper as the lift: stopped at 4 of 10 and resumed, the same
    features, decoder and losses, bit for bit."""
    whole = L.refit_features(lifted[0], vit_small, 8, iterations=10, root=tmp_path / "a")
    with pytest.raises(TimeoutError, match="resume"):
        L.refit_features(lifted[0], vit_small, 8, iterations=10, root=tmp_path / "b", stop_after=4)
    resumed = L.refit_features(lifted[0], vit_small, 8, iterations=10, root=tmp_path / "b")
    assert resumed.losses == whole.losses and resumed.losses["iteration"] == list(range(10))
    assert torch.equal(resumed.params["features"], whole.params["features"])
    assert torch.equal(resumed.decoder.weight, whole.decoder.weight)
