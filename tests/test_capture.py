"""Your own capture (fit3d_helpers.capture): photos or a video -> structure from motion -> a scene that lifts.

One generated room (448x336, 24 views 6 degrees apart: the texture and overlap SIFT needs) is shared by every test;
its photos go through SfM with the poses removed, and what comes back is checked against the true poses. The lifts
use the ``capture`` profile at a quarter of the image size (112x84 renders) and 12k Gaussians at most, to keep CI
short; docs/capture.md has the full-profile numbers (benchmarks/bench_capture.py).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

pytest.importorskip("pycolmap", reason="the capture extra is not installed: pip install 'fit3d-course[capture]'")

from fit3d_helpers import capture
from fit3d_helpers.capture import CaptureError
from fit3d_helpers.data import load_scene

# the capture profile's lift (600 iterations, densifying every 50) at a quarter of the image size and with a smaller
# Gaussian budget, to keep CI short; the same for every lift compared here (full-profile numbers: docs/capture.md)
TEST_LIFT = {"lift.train_downscale": 4, "lift.max_gaussians": 12_000}


@pytest.fixture(scope="session")
def room() -> Path:
    """Generated once (~20 s) and cached under data/capture/, where notebook 07 finds it too (deterministic)."""
    return capture.synthetic_capture(Path(__file__).resolve().parents[1] / "data" / "capture")


@pytest.fixture(scope="session")
def sfm(room: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, capture.CaptureReport]:
    """The room's photos alone (no poses, no depth) through structure from motion."""
    out = tmp_path_factory.mktemp("sfm") / "scene"
    return out, capture.capture(room / "images", out)


@pytest.fixture(scope="session")
def lift_cfg():
    from fit3d_helpers.profiles import load_profile

    return load_profile("capture", TEST_LIFT).lift


def _photos(room: Path, dst: Path, n: int) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted((room / "images").glob("*.png"))[:n]:
        shutil.copy2(p, dst / p.name)
    return dst


# ----------------------------------------------------------------------------------------------------------------
# Structure from motion


def test_sfm_registers_every_view_and_recovers_the_true_poses(room: Path, sfm: tuple) -> None:
    out, report = sfm
    assert report.images_registered == report.images_given == 24 and report.unregistered == []
    assert report.points >= 200 and report.mean_reprojection_error_px < 1.0
    assert capture.read_report(out) == report
    est, true = load_scene(out), load_scene(room)
    assert [v.name for v in est.views] == [v.name for v in true.views]
    err = capture.pose_errors(
        np.stack([v.cam_to_world for v in est.views]), np.stack([v.cam_to_world for v in true.views])
    )
    meta = json.loads((room / "transforms.json").read_text())
    room_diagonal = float(np.linalg.norm(meta["synthetic"]["room_size_m"]))  # the scene's extent, metres
    assert room_diagonal > 3
    print(f"\nmax rotation error {err['rotation_deg'].max():.2f} deg, centre {err['centre_error'].max() * 100:.1f} cm")
    assert err["rotation_deg"].max() < 1.0
    assert err["centre_error"].max() < 0.01 * room_diagonal
    # the control: a pose set that is off fails the same check
    bad = np.stack([v.cam_to_world for v in est.views])
    bad[::5, :3, 3] += 0.3 * np.abs(bad[:, :3, 3]).max()
    assert (
        capture.pose_errors(bad, np.stack([v.cam_to_world for v in true.views]))["centre_error"].max()
        > 0.01 * room_diagonal
    )


def test_triangulated_points_reproject_and_lie_on_the_surfaces(room: Path, tmp_path: Path) -> None:
    """Known poses, no depth: SIFT points triangulated with the poses held fixed lie where the true depth says."""
    scene = load_scene(capture.poses_only(room, tmp_path / "posed"))
    assert all(v.depth is None for v in scene.views) and scene.points is None
    tri = capture.triangulate_known_poses(scene)
    assert len(tri.xyz) >= 300 and tri.views_with_points == tri.views == 24
    assert tri.mean_reprojection_error_px < 1.0
    truth = load_scene(room).views[0]  # planar depth of view 0 against the points it sees
    cam = tri.xyz @ truth.world_to_cam[:3, :3].T + truth.world_to_cam[:3, 3]  # [P, 3]
    uv = cam @ truth.K.T
    u, v = (uv[:, 0] / cam[:, 2]).astype(int), (uv[:, 1] / cam[:, 2]).astype(int)
    ok = (cam[:, 2] > 0.1) & (u >= 0) & (u < truth.width) & (v >= 0) & (v < truth.height)
    depth = truth.depth[v[ok], u[ok]]
    seen = depth > 0
    assert seen.sum() >= 50
    # occluded points would be farther than the surface; the median one lies on it (within 2 % of its depth)
    assert np.median(np.abs(cam[ok][seen, 2] - depth[seen]) / depth[seen]) < 0.02


# ----------------------------------------------------------------------------------------------------------------
# Bad captures: each names the images and the fix


def test_too_few_images_mixed_sizes_and_mixed_cameras_are_refused(room: Path, tmp_path: Path) -> None:
    few = _photos(room, tmp_path / "few", 5)
    with pytest.raises(CaptureError, match=r"5 photo\(s\) found.*at least 8"):
        capture.capture(few, tmp_path / "out")
    mixed = _photos(room, tmp_path / "mixed", 10)
    with Image.open(mixed / "frame_00003.png") as im:
        im.resize((400, 300)).save(mixed / "frame_00003.png")
    with pytest.raises(CaptureError, match=r"2 sizes.*400x300: frame_00003.png"):
        capture.capture(mixed, tmp_path / "out")
    cams = tmp_path / "cams"
    cams.mkdir()
    for i, p in enumerate(sorted((room / "images").glob("*.png"))[:10]):
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "Phone", "Model A" if i < 7 else "Model B"
        with Image.open(p) as im:
            im.convert("RGB").save(cams / f"{p.stem}.jpg", exif=exif)
    with pytest.raises(CaptureError, match=r"2 cameras.*Phone Model B: frame_00007.jpg"):
        capture.capture(cams, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_unreadable_video_and_bad_arguments(tmp_path: Path) -> None:
    pytest.importorskip("imageio_ffmpeg")
    fake = tmp_path / "walk.mp4"
    fake.write_text("not a video")
    with pytest.raises(CaptureError, match=r"walk.mp4: could not read the video.*H.264"):
        capture.capture(fake, tmp_path / "out")
    with pytest.raises(CaptureError, match="matching must be one of"):
        capture.capture(fake, tmp_path / "out", matching="vocab")
    from fit3d_helpers.__main__ import main

    assert main(["capture", str(fake), str(tmp_path / "out")]) == 2  # the CLI: exit 2 with the message


def test_unregistrable_images_are_listed_with_their_feature_counts(room: Path, tmp_path: Path) -> None:
    """Ten photos, three replaced by noise or a flat colour: SfM places 7 < 8 and the error lists the three."""
    photos = _photos(room, tmp_path / "photos", 10)
    w, h = Image.open(photos / "frame_00000.png").size
    rng = np.random.default_rng(0)
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(photos / "frame_00002.png")
    Image.fromarray(np.full((h, w, 3), (40, 90, 200), np.uint8)).save(photos / "frame_00005.png")
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(photos / "frame_00008.png")
    with pytest.raises(CaptureError) as e:
        capture.capture(photos, tmp_path / "out")
    msg = str(e.value)
    assert "only 7 of 10 images" in msg, msg
    left_out = msg.split("left out: ")[1].split(". Likely")[0]
    assert "frame_00002.png (0 features)" in left_out and "frame_00005.png (0 features)" in left_out
    assert "frame_00008.png" in left_out and "frame_00001" not in left_out


def test_video_keeps_the_sharpest_frame_of_each_window(room: Path, tmp_path: Path) -> None:
    """A 24-frame video where two of every three frames are blurred: each kept frame is the sharp one."""
    ffmpeg = pytest.importorskip("imageio_ffmpeg")
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((room / "images").glob("*.png"))]
    h, w = frames[0].shape[:2]
    video = tmp_path / "walk.mp4"
    writer = ffmpeg.write_frames(str(video), (w, h), fps=8, quality=8, macro_block_size=16)
    writer.send(None)
    for i, f in enumerate(frames):
        im = Image.fromarray(f)
        writer.send(np.ascontiguousarray(im if i % 3 == 1 else im.filter(ImageFilter.GaussianBlur(3))))
    writer.close()
    out = capture.frames_from_video(video, tmp_path / "frames", n_frames=8, max_side=320)
    assert [p.name for p in out] == [f"frame_{k:04d}.png" for k in range(8)]
    kept = [np.asarray(Image.open(p).convert("L")) for p in out]
    assert max(kept[0].shape) == 320
    for k, im in enumerate(kept):  # window k holds frames 3k..3k+2; the sharp one is 3k+1
        sharp = np.asarray(Image.fromarray(frames[3 * k + 1]).resize(im.shape[::-1]).convert("L"), np.float32)
        assert np.abs(im.astype(np.float32) - sharp).mean() < 6, k


def test_without_pycolmap_a_poses_only_scene_starts_from_random_points_with_a_warning(
    room: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fit3d_helpers.lift import scene_points

    scene = load_scene(capture.poses_only(room, tmp_path / "posed"))
    monkeypatch.setitem(sys.modules, "pycolmap", None)  # `import pycolmap` now fails, as where it is not installed
    with pytest.warns(UserWarning, match=r"poses but no points.*needs pycolmap.*random points"):
        pts, _ = scene_points(scene, 2000, 0)
    assert pts.shape == (2000, 3)


def test_lift_imports_without_pycolmap() -> None:
    code = "import sys, fit3d_helpers.lift, fit3d_helpers.data; sys.exit('pycolmap' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ----------------------------------------------------------------------------------------------------------------
# Lifts at the capture profile


def _lift(scene: Path, cfg, vit_small, root: Path) -> dict:
    from fit3d_helpers.lift import lift_scene

    return lift_scene(scene, vit_small, cfg, root=root).stats


def test_poses_only_capture_lifts_from_triangulated_points(room: Path, lift_cfg, vit_small, tmp_path: Path) -> None:
    posed = capture.poses_only(room, tmp_path / "posed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the random-points fallback warns: it must not be taken here
        stats = _lift(posed, lift_cfg, vit_small, tmp_path / "artifacts")
    print(f"\nposes-only: {stats['heldout_psnr']:.2f} dB held-out, {stats['n_init_points']} -> {stats['n_gaussians']}")
    assert stats["heldout_psnr"] >= 28.0 and stats["n_init_points"] >= 300


def test_sfm_scene_lifts_within_2_db_of_the_true_poses_and_depth(
    room: Path, sfm: tuple, lift_cfg, vit_small, tmp_path: Path
) -> None:
    truth = _lift(room, lift_cfg, vit_small, tmp_path / "artifacts")
    ours = _lift(sfm[0], lift_cfg, vit_small, tmp_path / "artifacts")
    print(f"\ntrue poses + depth {truth['heldout_psnr']:.2f} dB, SfM {ours['heldout_psnr']:.2f} dB held-out")
    assert truth["heldout_views"] == ours["heldout_views"] == 3
    assert ours["heldout_psnr"] >= truth["heldout_psnr"] - 2.0
    assert dataclasses.asdict(lift_cfg)["iterations"] == 600  # the capture profile, not smoke
