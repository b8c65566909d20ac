"""Scene loading: conventions, both file layouts, downscaling and the error messages for bad input."""

from __future__ import annotations

import json
import math
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fit3d_helpers.data import (
    SceneError,
    View,
    check_resolution,
    load_scene,
    opengl_to_opencv,
    project,
    reprojection_consistency,
    reprojection_stats,
    unproject_depth,
)

W, H = 8, 6
FX, FY, CX, CY = 10.0, 11.0, 4.0, 3.0


def _write_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")  # lossless even under a .JPG name


def _rgb(seed: int, w: int = W, h: int = H) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)  # [H, W, 3]


def _gl_pose(yaw_deg: float = 0.0, t: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """OpenGL camera-to-world: rotation about world y by yaw, then translation."""
    a = math.radians(yaw_deg)
    m = np.eye(4)
    m[:3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
    m[:3, 3] = t
    return m


def _make_transforms(root: Path, n: int = 2, **overrides: object) -> Path:
    """A small valid nerfstudio scene: images, 16-bit mm depth, 8-bit labels, OpenGL poses."""
    frames = []
    for i in range(n):
        _write_png(root / "images" / f"f{i}.png", _rgb(i))
        depth_mm = np.full((H, W), 2000 + 100 * i, np.uint16)
        depth_mm[0, 0] = 0  # an invalid pixel
        _write_png(root / "depth" / f"f{i}.png", depth_mm)
        _write_png(root / "labels" / f"f{i}.png", (np.arange(H * W).reshape(H, W) % 5).astype(np.uint8))
        frames.append(
            {
                "file_path": f"images/f{i}.png",
                "depth_file_path": f"depth/f{i}.png",
                "label_file_path": f"labels/f{i}.png",
                "transform_matrix": _gl_pose(30 * i, (0.1 * i, 0, 0)).tolist(),
            }
        )
    meta = {
        "fl_x": FX,
        "fl_y": FY,
        "cx": CX,
        "cy": CY,
        "w": W,
        "h": H,
        "classes": ["a", "b", "c", "d", "e"],
        "frames": frames,
    }
    meta.update(overrides)
    path = root / "transforms.json"
    path.write_text(json.dumps(meta))
    return path


def _edit(path: Path, fn) -> None:  # type: ignore[no-untyped-def]
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


# ------------------------------------------------------------------------------------------------------------
# Conventions


def test_opengl_pose_projects_point_to_expected_pixel(tmp_path: Path) -> None:
    # camera 0: OpenGL identity at (0, 0, 5) looks down world -z; camera 1 at the origin looks along world +x
    _write_png(tmp_path / "a.png", _rgb(0, 64, 48))
    _write_png(tmp_path / "b.png", _rgb(1, 64, 48))
    rot = np.eye(4)
    rot[:3, :3] = np.stack([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], axis=1)  # columns: cam x = +z, y = +y, z = -x
    meta = {
        "fl_x": 100.0,
        "fl_y": 100.0,
        "cx": 32.0,
        "cy": 24.0,
        "w": 64,
        "h": 48,
        "frames": [
            {"file_path": "a.png", "transform_matrix": _gl_pose(0, (0, 0, 5)).tolist()},
            {"file_path": "b.png", "transform_matrix": rot.tolist()},
        ],
    }
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    scene = load_scene(tmp_path)
    a, b = scene.views
    # point right of and below the optical axis (world y is up in both cameras)
    uv, z = project(np.array([[0.5, -0.25, 0.0]]), a.K, a.world_to_cam)
    np.testing.assert_allclose(uv[0], [32 + 100 * 0.5 / 5, 24 + 100 * 0.25 / 5], atol=1e-9)
    np.testing.assert_allclose(z, [5.0])
    # OpenCV: camera z = viewing direction, y = down
    np.testing.assert_allclose(a.cam_to_world[:3, 2], [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(a.cam_to_world[:3, 1], [0, -1, 0], atol=1e-12)
    uv, z = project(np.array([[4.0, 0.4, 0.5]]), b.K, b.world_to_cam)  # in front (+x), right (+z), up (+y)
    np.testing.assert_allclose(uv[0], [32 + 100 * 0.5 / 4, 24 - 100 * 0.4 / 4], atol=1e-9)
    np.testing.assert_allclose(z, [4.0])
    # behind the camera -> NaN pixel, negative depth
    uv, z = project(np.array([[-1.0, 0.0, 0.0]]), b.K, b.world_to_cam)
    assert np.isnan(uv).all() and z[0] < 0


def test_opengl_to_opencv_is_an_involution() -> None:
    m = _gl_pose(37, (1, 2, 3))
    np.testing.assert_allclose(opengl_to_opencv(opengl_to_opencv(m)), m)
    cv = opengl_to_opencv(m)
    np.testing.assert_allclose(cv[:3, 2], -m[:3, 2])
    np.testing.assert_allclose(cv[:3, 1], -m[:3, 1])
    np.testing.assert_allclose(cv[:3, 3], m[:3, 3])


def test_unproject_then_project_returns_pixel_centres() -> None:
    K = np.array([[50.0, 0, 16], [0, 40, 12], [0, 0, 1]])
    c2w = opengl_to_opencv(_gl_pose(20, (0.3, -0.2, 1.0)))
    depth = np.random.default_rng(0).uniform(1, 3, (24, 32)).astype(np.float32)
    depth[5, 7] = 0  # invalid pixels are skipped
    pts = unproject_depth(depth, K, c2w)
    assert pts.shape == (24 * 32 - 1, 3)
    w2c = np.linalg.inv(c2w)
    uv, z = project(pts, K, w2c)
    rows, cols = np.nonzero(depth > 0)
    np.testing.assert_allclose(uv, np.stack([cols + 0.5, rows + 0.5], 1), atol=1e-6)
    np.testing.assert_allclose(z, depth[rows, cols], rtol=1e-6)


def test_reprojection_consistency_detects_pose_error() -> None:
    # a fronto-parallel wall at z = 3 seen by two cameras 10 cm apart
    K = np.array([[40.0, 0, 16], [0, 40, 12], [0, 0, 1]])
    img = np.zeros((24, 32, 3), np.float32)
    depth = np.full((24, 32), 3.0, np.float32)
    a = View("a", img, K, np.eye(4), depth)
    c2w_b = np.eye(4)
    c2w_b[0, 3] = 0.1
    b = View("b", img, K, c2w_b, depth)
    stats = reprojection_stats(a, b)
    assert stats["consistency"] == 1.0 and 0.8 < stats["overlap"] < 1.0 and stats["occluded"] == 0
    c2w_bad = c2w_b.copy()
    c2w_bad[2, 3] = 0.2  # view b's pose says it is 20 cm closer than its depth says
    assert reprojection_consistency(a, View("b", img, K, c2w_bad, depth)) < 0.05
    # something in front in view b (occluder): excluded, not counted as inconsistent
    occ = depth.copy()
    occ[:, :10] = 1.0
    s2 = reprojection_stats(a, View("b", img, K, c2w_b, occ))
    assert s2["consistency"] == 1.0 and s2["occluded"] > 0.2


# ------------------------------------------------------------------------------------------------------------
# transforms.json


def test_transforms_round_trip(tmp_path: Path) -> None:
    _make_transforms(tmp_path)
    scene = load_scene(tmp_path)
    assert scene.name == tmp_path.name and len(scene.views) == 2 and scene.classes == ["a", "b", "c", "d", "e"]
    v = scene.views[1]
    assert v.name == "f1" and v.image.dtype == np.float32 and v.image.shape == (H, W, 3)
    np.testing.assert_allclose(v.image, _rgb(1) / 255.0, atol=1e-7)
    np.testing.assert_allclose(v.K, [[FX, 0, CX], [0, FY, CY], [0, 0, 1]])
    np.testing.assert_allclose(v.cam_to_world, opengl_to_opencv(_gl_pose(30, (0.1, 0, 0))), atol=1e-12)
    np.testing.assert_allclose(v.world_to_cam @ v.cam_to_world, np.eye(4), atol=1e-12)
    assert v.depth.dtype == np.float32 and v.depth[1, 1] == pytest.approx(2.1) and v.depth[0, 0] == 0
    assert v.labels.dtype == np.int64 and v.labels[1, 2] == (W + 2) % 5
    # the json file itself may be given
    assert len(load_scene(tmp_path / "transforms.json").views) == 2


def test_instant_ngp_style_camera_angle_and_extensionless_paths(tmp_path: Path) -> None:
    _write_png(tmp_path / "train" / "r_0.png", _rgb(0))
    np.save(tmp_path / "d0.npy", np.full((H, W), 1.25, np.float32))  # .npy depth is in metres
    meta = {
        "camera_angle_x": 2 * math.atan(W / (2 * FX)),
        "w": W,
        "h": H,
        "frames": [{"file_path": "./train/r_0", "depth_file_path": "d0.npy", "transform_matrix": np.eye(4).tolist()}],
    }
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    v = load_scene(tmp_path).views[0]
    np.testing.assert_allclose(v.K, [[FX, 0, W / 2], [0, FX, H / 2], [0, 0, 1]])
    assert np.all(v.depth == 1.25)


def test_scannetpp_dslr_layout(tmp_path: Path) -> None:
    """ScanNet++: dslr/nerfstudio/transforms_undistorted.json names files that live in dslr/undistorted_images and
    dslr/undistorted_anon_masks; frames flagged is_bad are skipped; test_frames only on request."""
    dslr = tmp_path / "dslr"
    for i, name in enumerate(["DSC001.JPG", "DSC002.JPG", "DSC003.JPG"]):
        _write_png(dslr / "undistorted_images" / name, _rgb(i))  # PNG bytes under a .JPG name: PIL sniffs content
    _write_png(dslr / "resized_images" / "DSC001.JPG", _rgb(9, 4, 3))  # distorted set: must not be picked
    mask = np.full((H, W), 255, np.uint8)
    mask[0, :] = 0
    _write_png(dslr / "undistorted_anon_masks" / "DSC001.png", mask)
    pose = np.eye(4).tolist()
    meta = {
        "fl_x": FX,
        "fl_y": FY,
        "cx": CX,
        "cy": CY,
        "w": W,
        "h": H,
        "camera_model": "PINHOLE",
        "frames": [
            {"file_path": "DSC001.JPG", "transform_matrix": pose, "mask_path": "DSC001.png"},
            {"file_path": "DSC002.JPG", "transform_matrix": pose, "is_bad": True},
        ],
        "test_frames": [{"file_path": "DSC003.JPG", "transform_matrix": pose}],
    }
    (dslr / "nerfstudio").mkdir()
    (dslr / "nerfstudio" / "transforms_undistorted.json").write_text(json.dumps(meta))
    scene = load_scene(tmp_path)
    assert [v.name for v in scene.views] == ["DSC001"] and scene.meta["skipped_bad_frames"] == 1
    np.testing.assert_allclose(scene.views[0].image, _rgb(0) / 255.0, atol=1e-7)
    assert [v.name for v in load_scene(tmp_path, include_test_frames=True).views] == ["DSC001", "DSC003"]
    (dslr / "undistorted_images" / "DSC001.JPG").unlink()
    with pytest.raises(SceneError, match=r"frame 0 \(DSC001\.JPG\).*not found.*undistorted_images"):
        load_scene(tmp_path)


def test_depth_unit_scale_mask_and_point_cloud(tmp_path: Path) -> None:
    import trimesh

    path = _make_transforms(tmp_path, n=1, depth_unit_scale_factor=0.0005, ply_file_path="pc.ply")
    mask = np.full((H, W), 255, np.uint8)
    mask[2, 3] = 0
    _write_png(tmp_path / "mask.png", mask)
    _edit(path, lambda m: m["frames"][0].update(mask_path="mask.png"))
    pts = np.array([[0, 0, 0], [1, 2, 3], [-1, 0.5, 2]], np.float32)
    cols = np.array([[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255]], np.uint8)
    trimesh.PointCloud(pts, colors=cols).export(tmp_path / "pc.ply")
    scene = load_scene(tmp_path)
    v = scene.views[0]
    assert v.depth[1, 1] == pytest.approx(1.0)  # 2000 * 0.0005
    assert v.depth[2, 3] == 0 and v.labels[2, 3] == 255  # masked pixel: no depth, ignore label
    np.testing.assert_allclose(scene.points, pts)
    np.testing.assert_allclose(scene.point_colors, cols[:, :3] / 255.0)


def test_downscale_scales_K_and_halves_images(tmp_path: Path) -> None:
    _make_transforms(tmp_path, n=1)
    full = load_scene(tmp_path).views[0]
    half = load_scene(tmp_path, downscale=2).views[0]
    assert half.image.shape == (H // 2, W // 2, 3) and half.depth.shape == (H // 2, W // 2)
    assert half.labels.shape == (H // 2, W // 2)
    np.testing.assert_allclose(half.K, [[FX / 2, 0, CX / 2], [0, FY / 2, CY / 2], [0, 0, 1]])
    np.testing.assert_allclose(half.image[1, 2], full.image[2:4, 4:6].mean(axis=(0, 1)), atol=1e-6)  # box filter
    np.testing.assert_array_equal(half.labels, full.labels[1::2, 1::2])  # nearest
    np.testing.assert_array_equal(half.depth, full.depth[1::2, 1::2])
    np.testing.assert_array_equal(half.cam_to_world, full.cam_to_world)
    # a pixel centre maps to the same ray at both scales: unproject the same depth, compare the rays
    K2, K1 = half.K, full.K
    ray_half = np.linalg.inv(K2) @ [1 + 0.5, 1 + 0.5, 1]  # centre of half-res pixel (1, 1)
    ray_full = np.linalg.inv(K1) @ [3.0, 3.0, 1]  # = corner shared by full-res pixels 2 and 3
    np.testing.assert_allclose(ray_half, ray_full)


def test_points_from_depth(tmp_path: Path) -> None:
    _make_transforms(tmp_path, n=2)
    scene = load_scene(tmp_path)
    xyz, rgb = scene.points_from_depth(max_points=40, seed=0)
    assert xyz.shape == (40, 3) and rgb.shape == (40, 3) and xyz.dtype == np.float32
    assert np.all((rgb >= 0) & (rgb <= 1))
    # every point is in front of (and at the depth of) the camera that saw it: 2.0 m or 2.1 m
    dists = [np.abs(project(xyz, v.K, v.world_to_cam)[1][:, None] - np.array([2.0, 2.1])).min(1) for v in scene.views]
    assert np.all(np.minimum(*dists) < 1e-5)
    xyz2, _ = scene.points_from_depth(max_points=40, seed=0)
    np.testing.assert_array_equal(xyz, xyz2)  # deterministic
    all_xyz, _ = scene.points_from_depth(max_points=10_000)
    assert len(all_xyz) == 2 * (H * W - 1)


# ------------------------------------------------------------------------------------------------------------
# COLMAP text model


def _quat_z(deg: float) -> tuple[float, float, float, float]:
    a = math.radians(deg) / 2
    return (math.cos(a), 0.0, 0.0, math.sin(a))


def test_colmap_text_model(tmp_path: Path) -> None:
    model = tmp_path / "sparse" / "0"
    model.mkdir(parents=True)
    (model / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n"
        f"1 PINHOLE {W} {H} {FX} {FY} {CX} {CY}\n"
        f"2 SIMPLE_RADIAL {W} {H} 20.0 4.0 3.0 0.0\n"  # zero distortion: accepted as a pinhole camera
    )
    q1, q2 = _quat_z(90), _quat_z(-30)
    (model / "images.txt").write_text(
        "# Image list with two lines of data per image:\n"
        f"7 {' '.join(map(str, q1))} 1.0 2.0 3.0 1 b.png\n"
        "\n"  # empty POINTS2D line
        f"3 {' '.join(map(str, q2))} -0.5 0.0 0.25 2 a.png\n"
        "1.5 2.5 1 3.0 4.0 -1\n"
    )
    (model / "points3D.txt").write_text(
        "# 3D point list\n1 0.0 0.0 1.0 255 0 0 0.1 7 0\n2 1.0 2.0 3.0 0 128 255 0.2 3 1\n"
    )
    _write_png(tmp_path / "images" / "b.png", _rgb(0))
    _write_png(tmp_path / "images" / "a.png", _rgb(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "distortion ignored" warning any more
        scene = load_scene(tmp_path)
    assert [v.name for v in scene.views] == ["a", "b"]  # sorted by image name
    a, b = scene.views
    Rz90 = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = Rz90, [1, 2, 3]
    np.testing.assert_allclose(b.cam_to_world, np.linalg.inv(w2c), atol=1e-12)
    np.testing.assert_allclose(b.K, [[FX, 0, CX], [0, FY, CY], [0, 0, 1]])
    np.testing.assert_allclose(a.K, [[20, 0, 4], [0, 20, 3], [0, 0, 1]])
    np.testing.assert_allclose(b.image, _rgb(0) / 255.0, atol=1e-7)
    # a world point maps through world_to_cam exactly as COLMAP's x_cam = R x + t
    x = np.array([0.3, -0.2, 4.0])
    _, z = project(x[None], b.K, b.world_to_cam)
    assert z[0] == pytest.approx((Rz90 @ x + [1, 2, 3])[2])
    np.testing.assert_allclose(scene.points, [[0, 0, 1], [1, 2, 3]])
    np.testing.assert_allclose(scene.point_colors, [[1, 0, 0], [0, 128 / 255, 1]])
    xyz, _ = scene.points_from_depth(max_points=1)  # no depth: falls back to the SfM points
    assert xyz.shape == (1, 3)


def test_colmap_errors(tmp_path: Path) -> None:
    (tmp_path / "cameras.txt").write_text(f"1 PINHOLE {W} {H} {FX} {FY} {CX} {CY}\n")
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 0 2 a.png\n\n")
    _write_png(tmp_path / "images" / "a.png", _rgb(0))
    with pytest.raises(SceneError, match=r"images\.txt image 'a\.png'.*camera id 2"):
        load_scene(tmp_path)
    (tmp_path / "cameras.txt").write_text(f"2 WEIRD_MODEL {W} {H} 1 2 3\n")
    with pytest.raises(SceneError, match=r"cameras\.txt line 1.*WEIRD_MODEL.*not supported"):
        load_scene(tmp_path)
    (tmp_path / "cameras.txt").write_text(f"2 PINHOLE {W} {H} {FX} {FY} {CX} {CY}\n")
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 0 2 missing.png\n\n")
    with pytest.raises(SceneError, match=r"'missing\.png'.*not found"):
        load_scene(tmp_path)
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 0 2 a.png\n\n")
    scene = load_scene(tmp_path)  # now valid, but has neither depth nor points
    with pytest.raises(SceneError, match=r"points3D\.txt.*depth"):
        scene.points_from_depth()


# ------------------------------------------------------------------------------------------------------------
# Bad input -> SceneError naming the file / frame


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m, r: (r / "images" / "f1.png").unlink(), r"frame 1 \(images/f1\.png\).*image file.*not found"),
        (lambda m, r: (r / "depth" / "f0.png").unlink(), r"frame 0 .*depth file 'depth/f0\.png'.*not found"),
        (lambda m, r: m.pop("frames"), r"transforms\.json: missing key 'frames'"),
        (lambda m, r: m["frames"][1].pop("transform_matrix"), r"frame 1: missing key 'transform_matrix'"),
        (lambda m, r: m.pop("fl_x"), r"frame 0 .*no focal length"),
        (lambda m, r: m["frames"][0]["transform_matrix"][0].__setitem__(1, 0.5), r"frame 0 .*not a rotation"),
        (
            lambda m, r: m["frames"][1].__setitem__("transform_matrix", np.diag([1, 1, -1, 1.0]).tolist()),
            r"frame 1 .*not a rotation.*det = -1",
        ),
        (lambda m, r: m.__setitem__("w", W + 2), r"frame 0 .*is 8x6 but the intrinsics say w=10"),
        (
            lambda m, r: _write_png(r / "depth" / "f1.png", np.zeros((H, W + 1), np.uint16)),
            r"frame 1 .*depth map .*f1\.png is 9x6 but the image is 8x6",
        ),
        (
            lambda m, r: _write_png(r / "labels" / "f0.png", np.zeros((3, 4), np.uint8)),
            r"frame 0 .*label map .*is 4x3 but the image is 8x6",
        ),
        (lambda m, r: _write_png(r / "labels" / "f0.png", _rgb(0)), r"frame 0 .*label file .*mode 'RGB'"),
    ],
)
def test_bad_transforms_raise_scene_error(tmp_path: Path, edit, match: str) -> None:  # type: ignore[no-untyped-def]
    path = _make_transforms(tmp_path)
    meta = json.loads(path.read_text())
    edit(meta, tmp_path)
    path.write_text(json.dumps(meta))
    with pytest.raises(SceneError, match=match):
        load_scene(tmp_path)


def test_malformed_json_and_missing_scene(tmp_path: Path) -> None:
    path = _make_transforms(tmp_path)
    path.write_text(path.read_text()[:-5])
    with pytest.raises(SceneError, match=r"transforms\.json: malformed JSON"):
        load_scene(tmp_path)
    with pytest.raises(SceneError, match="no scene found"):
        load_scene(tmp_path / "images")
    with pytest.raises(SceneError, match="no such scene"):
        load_scene(tmp_path / "nope")


def test_downscale_must_divide(tmp_path: Path) -> None:
    _make_transforms(tmp_path, n=1)
    with pytest.raises(SceneError, match=r"frame 0 .*downscale=4 does not divide the image size 8x6"):
        load_scene(tmp_path, downscale=4)


def test_distortion_is_warned_once(tmp_path: Path) -> None:
    _make_transforms(tmp_path, n=2, k1=0.1)
    with pytest.warns(UserWarning, match=r"distortion .* 2 frame\(s\) is ignored") as rec:
        load_scene(tmp_path)
    assert len([w for w in rec if "distortion" in str(w.message)]) == 1


def test_scaled_rotation_is_accepted_with_warning(tmp_path: Path) -> None:
    path = _make_transforms(tmp_path, n=1)
    m = _gl_pose(30, (1, 2, 3))
    m[:3, :3] *= 2.0
    _edit(path, lambda meta: meta["frames"][0].__setitem__("transform_matrix", m.tolist()))
    with pytest.warns(UserWarning, match="uniform scale"):
        v = load_scene(tmp_path).views[0]
    np.testing.assert_allclose(v.cam_to_world, opengl_to_opencv(_gl_pose(30, (1, 2, 3))), atol=1e-12)


# ------------------------------------------------------------------------------------------------------------
# Bad numbers: intrinsics, poses, points


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.__setitem__("fl_x", -5.0), r"frame 0 .*'fl_x' \(top level\) is -5\.0 \(not positive\).*pixels"),
        (lambda m: m.__setitem__("fl_x", 0), r"'fl_x' \(top level\) is 0 \(not positive\)"),
        (lambda m: m.__setitem__("fl_x", "abc"), r"'fl_x' \(top level\) is 'abc' \(not a number\)"),
        (lambda m: m.__setitem__("fl_x", [10, 11]), r"'fl_x' \(top level\) is \[10, 11\] \(not a number\)"),
        (lambda m: m.__setitem__("fl_x", True), r"'fl_x' \(top level\) is True \(not a number\)"),
        (lambda m: m.__setitem__("fl_x", None), r"frame 0 .*no focal length \('fl_x' is null\)"),
        (lambda m: m.__setitem__("fl_x", float("nan")), r"'fl_x' \(top level\) is nan \(not finite\)"),
        (lambda m: m.__setitem__("fl_y", float("inf")), r"'fl_y' \(top level\) is inf \(not finite\)"),
        (lambda m: m.__setitem__("cx", float("nan")), r"'cx' \(top level\) is nan \(not finite\).*principal point"),
        (lambda m: m.__setitem__("cy", float("-inf")), r"'cy' \(top level\) is -inf \(not finite\)"),
        (lambda m: m.__setitem__("w", 0), r"'w' \(top level\) is 0 \(not positive\).*width"),
        (lambda m: m.__setitem__("h", -6), r"'h' \(top level\) is -6 \(not positive\).*height"),
        (lambda m: m.__setitem__("w", 8.5), r"'w' \(top level\) is 8\.5 \(not a whole number\)"),
        (lambda m: m.__setitem__("h", "six"), r"'h' \(top level\) is 'six' \(not a number\)"),
        (lambda m: m.__setitem__("k1", "abc"), r"'k1' \(top level\) is 'abc' \(not a number\)"),
        (lambda m: m["frames"][1].__setitem__("fl_x", "abc"), r"frame 1 \(images/f1\.png\): 'fl_x' \(frame\) is 'abc'"),
        (
            lambda m: (m.pop("fl_x"), m.__setitem__("camera_angle_x", 60.0)),
            r"'camera_angle_x' .* is 60\.0 \(not below pi\)",
        ),
        (
            lambda m: m["frames"][1]["transform_matrix"][0].__setitem__(3, float("nan")),
            r"frame 1 \(images/f1\.png\): transform_matrix contains NaN/inf \(row 0, column 3 is nan.*is_bad",
        ),
        (lambda m: m["frames"][0]["transform_matrix"][2].__setitem__(1, None), r"frame 0 .*NaN/inf \(row 2, column 1"),
    ],
)
def test_bad_numbers_in_transforms(tmp_path: Path, edit, match: str) -> None:  # type: ignore[no-untyped-def]
    path = _make_transforms(tmp_path)
    _edit(path, edit)
    with pytest.raises(SceneError, match=match):
        load_scene(tmp_path)


def test_valid_number_spellings_still_load(tmp_path: Path) -> None:
    """Whole floats for w/h, numeric strings, a frame's null falling back to the top level: no change."""
    path = _make_transforms(tmp_path)
    _edit(path, lambda m: (m.update(w=float(W), h=str(H), fl_y=str(FY)), m["frames"][1].update(fl_x=None)))
    v = load_scene(tmp_path).views[1]
    np.testing.assert_allclose(v.K, [[FX, 0, CX], [0, FY, CY], [0, 0, 1]])


def _colmap_scene(root: Path, cameras: str, images: str | None = None, points: str | None = None) -> None:
    """A one-image COLMAP text model in ``root`` (image a.png, W x H)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cameras.txt").write_text(cameras)
    (root / "images.txt").write_text(images if images is not None else "1 1 0 0 0 0 0 0 1 a.png\n\n")
    if points is not None:
        (root / "points3D.txt").write_text(points)
    _write_png(root / "images" / "a.png", _rgb(0))


@pytest.mark.parametrize(
    ("cameras", "images", "match"),
    [
        (
            f"1 PINHOLE {W} {H} -10 11 4 3\n",
            None,
            r"cameras\.txt line 1: camera 1 focal length fx=-10, fy=11 is not positive",
        ),
        (f"1 PINHOLE {W} {H} 0 11 4 3\n", None, r"line 1: camera 1 focal length fx=0"),
        (
            f"1 SIMPLE_PINHOLE {W} {H} nan 4 3\n",
            None,
            r"line 1: camera 1 has non-finite parameters \[nan, 4\.0, 3\.0\]",
        ),
        (f"1 PINHOLE {W} {H} 10 11 inf 3\n", None, r"non-finite parameters \[10\.0, 11\.0, inf, 3\.0\]"),
        (f"1 PINHOLE 0 {H} 10 11 4 3\n", None, r"line 1: image size 0x6 is not positive"),
        (f"1 PINHOLE {W} {H} 10 11 4\n", None, r"line 1: model PINHOLE takes 4 parameters, got 3"),
        (
            f"1 PINHOLE {W} {H} {FX} {FY} {CX} {CY}\n",
            "1 1 0 0 0 nan 0 0 1 a.png\n\n",
            r"images\.txt line 1: translation \[nan, 0\.0, 0\.0\] is not finite",
        ),
        (
            f"1 PINHOLE {W} {H} {FX} {FY} {CX} {CY}\n",
            "# c\n1 1 0 0 0 0 inf 0 1 a.png\n\n",
            r"images\.txt line 2: translation",
        ),
        (
            f"1 PINHOLE {W} {H} {FX} {FY} {CX} {CY}\n",
            "1 inf 0 0 0 0 0 0 1 a.png\n\n",
            r"line 1: quaternion .* not finite",
        ),
    ],
)
def test_bad_numbers_in_colmap_raise_scene_error(tmp_path: Path, cameras: str, images: str | None, match: str) -> None:
    _colmap_scene(tmp_path, cameras, images)
    with pytest.raises(SceneError, match=match):
        load_scene(tmp_path)


def test_colmap_nonfinite_points_are_dropped_with_warning(tmp_path: Path) -> None:
    pts = (
        "1 0 0 1 255 0 0 0.1 1 0\n2 nan 0 1 0 0 0 0.1 1 0\n3 1 2 3 0 255 0 0.1 1 0\n"
        "4 1 inf 3 0 0 0 0.1 1 0\n5 -1 0.5 2 0 0 255 0.1 1 0\n6 1 1 1 nan 0 0 0.1 1 0\n"
    )  # 6: NaN colour
    _colmap_scene(tmp_path, f"1 PINHOLE {W} {H} {FX} {FY} {CX} {CY}\n", points=pts)
    with pytest.warns(UserWarning, match=r"points3D\.txt: dropped 3 of 6 points with non-finite"):
        scene = load_scene(tmp_path)
    np.testing.assert_array_equal(scene.points, [[0, 0, 1], [1, 2, 3], [-1, 0.5, 2]])
    np.testing.assert_array_equal(scene.point_colors, [[1, 0, 0], [0, 1, 0], [0, 0, 1]])  # colours stay aligned


def test_ply_nonfinite_points_are_dropped_with_warning(tmp_path: Path) -> None:
    _make_transforms(tmp_path, n=1, ply_file_path="pc.ply")
    (tmp_path / "pc.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
        "0 0 1 255 0 0\nnan 1 2 0 255 0\n1 2 3 0 0 255\n4 5 6 0 255 0\n"
    )
    with pytest.warns(UserWarning, match=r"pc\.ply: dropped 1 of 4 points"):
        scene = load_scene(tmp_path)
    np.testing.assert_array_equal(scene.points, [[0, 0, 1], [1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(scene.point_colors, [[1, 0, 0], [0, 0, 1], [0, 1, 0]])


# ------------------------------------------------------------------------------------------------------------
# Image formats


def _png16(path: Path, arr: np.ndarray) -> None:
    """Write a 16-bit PNG by hand (Pillow cannot write 48/64-bit colour): grey [H, W], grey+alpha [H, W, 2],
    RGB [H, W, 3] or RGBA [H, W, 4] uint16. Rows cycle through all five PNG filters so the decoder's
    unfiltering (which the 16-bit colour path relies on) is exercised."""
    colour_type = {2: 0, 3: {2: 4, 3: 2, 4: 6}[arr.shape[-1]] if arr.ndim == 3 else 0}[min(arr.ndim, 3)]
    h, w = arr.shape[:2]
    bpp = 2 * (arr.shape[2] if arr.ndim == 3 else 1)
    rows = [arr[r].astype(">u2").tobytes() for r in range(h)]
    out, prev = bytearray(), bytes(len(rows[0]))
    for r, row in enumerate(rows):
        filt = r % 5
        out.append(filt)
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            paeth = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out.append((x - [0, a, b, (a + b) // 2, paeth][filt]) % 256)
        prev = row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(bytes(out)))
        + chunk(b"IEND", b"")
    )


def _one_image_scene(root: Path, write) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Write the image with ``write(path)`` into a one-frame scene and return the loaded view's image."""
    root.mkdir(parents=True, exist_ok=True)
    write(root / "img.png")
    meta = {
        "fl_x": FX,
        "cx": CX,
        "cy": CY,
        "w": W,
        "h": H,
        "frames": [{"file_path": "img.png", "transform_matrix": np.eye(4).tolist()}],
    }
    (root / "transforms.json").write_text(json.dumps(meta))
    return load_scene(root).views[0].image


def test_16bit_colour_png_is_read_exactly(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 65536, (H, W, 3)).astype(np.uint16)
    rgb[0, 0] = [0, 257, 65535]
    rgb[0, 1] = [1, 255, 256]  # differ from 0, 0, 257 only in the low byte
    img = _one_image_scene(tmp_path, lambda p: _png16(p, rgb))
    assert img.dtype == np.float32 and img.shape == (H, W, 3)
    np.testing.assert_allclose(img, rgb / 65535.0, atol=1e-7)  # not white, not 8-bit truncated
    np.testing.assert_allclose(img[0, 1] * 65535, [1, 255, 256], atol=1e-3)
    rgba = np.concatenate([rgb, np.full((H, W, 1), 123, np.uint16)], axis=2)
    img = _one_image_scene(tmp_path / "rgba", lambda p: _png16(p, rgba))
    np.testing.assert_allclose(img, rgb / 65535.0, atol=1e-7)  # alpha dropped


def test_16bit_grey_png_is_scaled_and_repeated(tmp_path: Path) -> None:
    grey = (np.arange(H * W).reshape(H, W) * 1300).astype(np.uint16)  # 0 .. 61100
    grey[0, 0] = 65535
    img = _one_image_scene(tmp_path, lambda p: Image.fromarray(grey).save(p))  # Pillow mode "I;16"
    np.testing.assert_allclose(img, np.repeat(grey[..., None], 3, axis=2) / 65535.0, atol=1e-7)
    assert img[0, 0, 0] == 1.0 and img[0, 1, 0] == pytest.approx(1300 / 65535)
    # hand-written grey (filtered rows) and grey + alpha (Pillow keeps the high byte: 8-bit precision)
    img = _one_image_scene(tmp_path / "g", lambda p: _png16(p, grey))
    np.testing.assert_allclose(img[..., 1], grey / 65535.0, atol=1e-7)
    la = np.stack([grey, np.full_like(grey, 9)], axis=2)
    img = _one_image_scene(tmp_path / "la", lambda p: _png16(p, la))
    np.testing.assert_allclose(img[..., 2], (grey >> 8) / 255.0, atol=1e-7)  # the high byte, scaled to 0..1
    assert img[0, 0, 0] == 1.0


def test_8bit_grey_palette_and_rgba_images(tmp_path: Path) -> None:
    grey = (np.arange(H * W).reshape(H, W) * 5).astype(np.uint8)
    img = _one_image_scene(tmp_path / "l", lambda p: Image.fromarray(grey, mode="L").save(p))
    np.testing.assert_allclose(img, np.repeat(grey[..., None], 3, axis=2) / 255.0, atol=1e-7)
    la = np.stack([grey, np.full_like(grey, 7)], axis=2)
    img = _one_image_scene(tmp_path / "la", lambda p: Image.fromarray(la, mode="LA").save(p))
    np.testing.assert_allclose(img[..., 0], grey / 255.0, atol=1e-7)
    pal = Image.new("P", (W, H))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    idx = (np.arange(H * W).reshape(H, W) % 2).astype(np.uint8)
    pal.putdata(idx.ravel().tolist())
    img = _one_image_scene(tmp_path / "p", lambda p: pal.save(p))
    np.testing.assert_allclose(img[0, 0] * 255, [10, 20, 30], atol=1e-4)
    np.testing.assert_allclose(img[0, 1] * 255, [200, 100, 50], atol=1e-4)
    rgba = np.concatenate([_rgb(3), np.full((H, W, 1), 40, np.uint8)], axis=2)
    img = _one_image_scene(tmp_path / "rgba", lambda p: Image.fromarray(rgba, mode="RGBA").save(p))
    np.testing.assert_allclose(img, _rgb(3) / 255.0, atol=1e-7)


# ------------------------------------------------------------------------------------------------------------
# One image size per scene


def test_mixed_image_sizes_raise_one_error_naming_the_frames(tmp_path: Path) -> None:
    frames = []
    for i in range(5):
        w = W if i != 3 else W + 2  # frame f3 is bigger and has its own (consistent) intrinsics
        _write_png(tmp_path / f"f{i}.png", _rgb(i, w, H))
        frames.append({"file_path": f"f{i}.png", "transform_matrix": np.eye(4).tolist(), "fl_x": FX, "w": w, "h": H})
    (tmp_path / "transforms.json").write_text(json.dumps({"frames": frames}))
    with pytest.raises(SceneError) as exc:
        load_scene(tmp_path, downscale=2)  # the size error comes first, before any downscale check
    msg = str(exc.value)
    assert "2 different sizes" in msg and "8x6: 4 frame(s) (f0.png, f1.png, f2.png, ... (1 more))" in msg
    assert "10x6: 1 frame(s) (f3.png)" in msg and "resize" in msg and "fl_x/fl_y/cx/cy" in msg
    frames[3]["is_bad"] = True  # the odd frame skipped: loads
    (tmp_path / "transforms.json").write_text(json.dumps({"frames": frames}))
    assert len(load_scene(tmp_path).views) == 4


def test_mixed_image_sizes_in_colmap(tmp_path: Path) -> None:
    (tmp_path / "cameras.txt").write_text(f"1 PINHOLE {W} {H} {FX} {FY} {CX} {CY}\n2 PINHOLE 16 12 20 20 8 6\n")
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n\n2 1 0 0 0 0 0 0 2 b.png\n\n")
    _write_png(tmp_path / "images" / "a.png", _rgb(0))
    _write_png(tmp_path / "images" / "b.png", _rgb(1, 16, 12))
    with pytest.raises(
        SceneError,
        match=r"images\.txt: the images have 2 different sizes: "
        r"8x6: 1 frame\(s\) \(a\.png\); 16x12: 1 frame\(s\) \(b\.png\).*cameras\.txt",
    ):
        load_scene(tmp_path)


# ------------------------------------------------------------------------------------------------------------
# COLMAP distortion


@pytest.mark.parametrize(
    ("line", "ok"),
    [
        (f"OPENCV {W} {H} {FX} {FY} {CX} {CY} 0 0 0 0", True),
        (f"FULL_OPENCV {W} {H} {FX} {FY} {CX} {CY} 0 0 0 0 0 0 0 0", True),
        (f"RADIAL {W} {H} {FX} {CX} {CY} 0 0", True),
        (f"OPENCV {W} {H} {FX} {FY} {CX} {CY} 0.1 0 0 0", False),
        (f"OPENCV {W} {H} {FX} {FY} {CX} {CY} 0 0 0 -1e-6", False),
        (f"SIMPLE_RADIAL {W} {H} {FX} {CX} {CY} 0.05", False),
        (f"RADIAL {W} {H} {FX} {CX} {CY} 0 nan", False),
    ],
)
def test_colmap_distortion_zero_is_pinhole_nonzero_is_error(tmp_path: Path, line: str, ok: bool) -> None:
    _colmap_scene(tmp_path, f"1 {line}\n")
    if ok:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            v = load_scene(tmp_path).views[0]
        fy = FY if line.split()[0] != "RADIAL" else FX
        np.testing.assert_allclose(v.K, [[FX, 0, CX], [0, fy, CY], [0, 0, 1]])
        return
    with pytest.raises(SceneError) as exc:
        load_scene(tmp_path)
    msg = str(exc.value)
    assert "cameras.txt line 1: camera 1" in msg and ("distortion" in msg or "non-finite" in msg)
    if "non-finite" not in msg:
        assert f"colmap image_undistorter --image_path {tmp_path / 'images'} --input_path {tmp_path}" in msg
        assert "--output_type COLMAP" in msg and "colmap model_converter" in msg and "--output_type TXT" in msg


@pytest.mark.parametrize(
    "line",
    [
        f"OPENCV_FISHEYE {W} {H} {FX} {FY} {CX} {CY} 0 0 0 0",
        f"SIMPLE_RADIAL_FISHEYE {W} {H} {FX} {CX} {CY} 0",
        f"RADIAL_FISHEYE {W} {H} {FX} {CX} {CY} 0 0",
        f"THIN_PRISM_FISHEYE {W} {H} {FX} {FY} {CX} {CY} 0 0 0 0 0 0 0 0",
        f"FOV {W} {H} {FX} {FY} {CX} {CY} 0",
    ],
)
def test_colmap_fisheye_is_an_error_even_without_distortion(tmp_path: Path, line: str) -> None:
    _colmap_scene(tmp_path / "sparse" / "0", f"1 {line}\n")
    model = line.split()[0]
    with pytest.raises(
        SceneError,
        match=rf"line 1: camera 1 is a fisheye model \({model}\).*image_undistorter.*"
        r"model_converter",
    ):
        load_scene(tmp_path / "sparse" / "0")


# ------------------------------------------------------------------------------------------------------------
# ScanNet++ as it comes: COLMAP points, masks, resolution, test frames


def _scannetpp_c2w(qvec: tuple[float, ...], tvec: tuple[float, float, float]) -> np.ndarray:
    """The ScanNet++ toolkit's transforms.json pose for a COLMAP image (common/utils/nerfstudio.py:
    OpenCV -> OpenGL camera, then instant-ngp's world change: swap x and y, negate z)."""
    w, x, y, z = qvec
    R = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, tvec
    c2w = np.linalg.inv(w2c)
    c2w[0:3, 1:3] *= -1
    c2w = c2w[np.array([1, 0, 2, 3]), :]
    c2w[2, :] *= -1
    return c2w


def _make_scannetpp(root: Path, with_images_txt: bool = True) -> tuple[list, np.ndarray]:
    """<root>/dslr/{nerfstudio/transforms_undistorted.json, undistorted_images, colmap/} with two frames.
    Returns the COLMAP images (name, qvec, tvec) and the finite COLMAP points [3, 3]."""
    dslr = root / "dslr"
    ims = [("DSC001.JPG", _quat_z(20), (0.1, -0.2, 0.5)), ("DSC002.JPG", _quat_z(-35), (0.4, 0.0, 0.3))]
    frames = []
    for i, (name, q, t) in enumerate(ims):
        _write_png(dslr / "undistorted_images" / name, _rgb(i))
        frames.append({"file_path": name, "transform_matrix": _scannetpp_c2w(q, t).tolist()})
    meta = {"fl_x": FX, "fl_y": FY, "cx": CX, "cy": CY, "w": W, "h": H, "camera_model": "PINHOLE", "frames": frames}
    (dslr / "nerfstudio").mkdir(parents=True)
    (dslr / "nerfstudio" / "transforms_undistorted.json").write_text(json.dumps(meta))
    (dslr / "colmap").mkdir()
    (dslr / "colmap" / "cameras.txt").write_text(f"1 OPENCV_FISHEYE 16 12 {FX} {FY} 8 6 0.1 0 0 0\n")
    if with_images_txt:
        (dslr / "colmap" / "images.txt").write_text(
            "".join(
                f"{i + 1} {' '.join(map(str, q))} {' '.join(map(str, t))} 1 {name}\n\n"
                for i, (name, q, t) in enumerate(ims)
            )
        )
    pts = np.array([[0.3, 0.2, 3.0], [-0.5, 0.1, 2.5], [0.2, -0.3, 4.0]])
    (dslr / "colmap" / "points3D.txt").write_text(
        f"1 {' '.join(map(str, pts[0]))} 255 0 0 0.1 1 0\n2 nan 0 1 0 0 0 0.1 1 0\n"
        f"3 {' '.join(map(str, pts[1]))} 0 255 0 0.1 1 0\n4 1 -inf 2 0 0 0 0.1 1 0\n"
        f"5 {' '.join(map(str, pts[2]))} 0 0 255 0.1 1 0\n"
    )
    return ims, pts


def test_scannetpp_colmap_points_are_attached_in_the_json_world(tmp_path: Path) -> None:
    ims, pts = _make_scannetpp(tmp_path)
    with pytest.warns(UserWarning, match=r"colmap/points3D\.txt: dropped 2 of 5 points"):
        scene = load_scene(tmp_path)
    assert scene.points.shape == (3, 3) and scene.points.dtype == np.float32
    np.testing.assert_allclose(scene.point_colors, [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert scene.meta["points_file"].endswith("colmap/points3D.txt")
    # the toolkit's world change (swap x and y, negate z) is undone...
    np.testing.assert_allclose(scene.points, pts[:, [1, 0, 2]] * [1, 1, -1], atol=1e-6)
    # ...so every point lands where COLMAP itself projects it, in every view
    for view, (_, q, t) in zip(scene.views, ims):
        a = 2 * math.atan2(q[3], q[0])  # the quaternions are rotations about z
        R = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
        cam = pts @ R.T + t  # COLMAP: x_cam = R x + t
        uv_colmap = cam[:, :2] / cam[:, 2:] * [FX, FY] + [CX, CY]
        uv, z = project(scene.points, view.K, view.world_to_cam)
        np.testing.assert_allclose(uv, uv_colmap, atol=1e-4)
        np.testing.assert_allclose(z, cam[:, 2], atol=1e-5)


def test_scannetpp_points_need_the_colmap_poses(tmp_path: Path) -> None:
    _make_scannetpp(tmp_path, with_images_txt=False)
    with pytest.warns(UserWarning, match=r"points3D\.txt are not attached: .*images\.txt is missing"):
        scene = load_scene(tmp_path)
    assert scene.points is None
    # a model that does not belong to the json (poses differ by more than one rigid transform): not attached
    tmp2 = tmp_path / "other"
    ims, _ = _make_scannetpp(tmp2)
    name, q, t = ims[1]
    (tmp2 / "dslr" / "colmap" / "images.txt").write_text(
        f"1 {' '.join(map(str, ims[0][1]))} {' '.join(map(str, ims[0][2]))} 1 {ims[0][0]}\n\n"
        f"2 {' '.join(map(str, q))} 9 9 9 1 {name}\n\n"
    )
    with pytest.warns(UserWarning, match=r"not attached: its poses do not differ from the json's by one rigid"):
        assert load_scene(tmp2).points is None


def test_mask_is_kept_on_the_view_and_downscaled_by_area(tmp_path: Path) -> None:
    path = _make_transforms(tmp_path, n=2)
    mask = np.full((H, W), 255, np.uint8)
    mask[0, 0] = 0  # one pixel of the top-left 2x2 block
    mask[2:4, 4:6] = 0  # a whole 2x2 block
    _write_png(tmp_path / "masks" / "m0.png", mask)
    _edit(path, lambda m: m["frames"][0].update(mask_path="m0.png"))  # found in <json dir>/masks
    scene = load_scene(tmp_path)
    v0, v1 = scene.views
    assert v1.mask is None and v0.mask.dtype == np.float32 and v0.mask.shape == (H, W)
    np.testing.assert_array_equal(v0.mask, (mask > 0).astype(np.float32))
    assert v0.depth[2, 4] == 0 and v0.labels[3, 5] == 255  # still applied to depth and labels
    half = load_scene(tmp_path, downscale=2).views[0]
    assert half.mask.shape == (H // 2, W // 2)
    assert half.mask[0, 0] == 0.75 and half.mask[1, 2] == 0.0 and half.mask[2, 3] == 1.0


def test_scannetpp_masks_resolve_from_the_sibling_mask_folders(tmp_path: Path) -> None:
    dslr = tmp_path / "dslr"
    mask = np.full((H, W), 255, np.uint8)
    mask[1, 2] = 0
    _write_png(dslr / "resized_images" / "DSC001.JPG", _rgb(0))
    _write_png(dslr / "resized_anon_masks" / "DSC001.png", mask)
    meta = {
        "fl_x": FX,
        "fl_y": FY,
        "cx": CX,
        "cy": CY,
        "w": W,
        "h": H,
        "frames": [{"file_path": "DSC001.JPG", "mask_path": "DSC001.png", "transform_matrix": np.eye(4).tolist()}],
    }
    (dslr / "nerfstudio").mkdir()
    (dslr / "nerfstudio" / "transforms.json").write_text(json.dumps(meta))
    v = load_scene(dslr / "nerfstudio" / "transforms.json").views[0]
    assert v.mask[1, 2] == 0 and v.mask.sum() == H * W - 1
    # the undistorted json looks in undistorted_anon_masks, never in the (same-sized, distorted) resized masks
    _write_png(dslr / "undistorted_images" / "DSC001.JPG", _rgb(0))
    (dslr / "nerfstudio" / "transforms_undistorted.json").write_text(json.dumps(meta))
    with pytest.raises(SceneError, match=r"mask file 'DSC001\.png' \('mask_path'\) not found.*undistorted_anon_masks"):
        load_scene(tmp_path)
    mask[1, 2], mask[4, 5] = 255, 0
    _write_png(dslr / "undistorted_anon_masks" / "DSC001.png", mask)
    v = load_scene(tmp_path).views[0]
    assert v.mask[1, 2] == 1 and v.mask[4, 5] == 0


def test_check_resolution(tmp_path: Path) -> None:
    _make_transforms(tmp_path, n=3)
    scene = load_scene(tmp_path)
    assert check_resolution(scene, (W, H)) is None
    with pytest.raises(SceneError) as exc:
        check_resolution(scene, (876, 584), where="lift cell")
    msg = str(exc.value)
    assert msg.startswith(f"lift cell: scene {tmp_path.name!r}")
    assert "frame f0 is 8x6; frame f1 is 8x6; frame f2 is 8x6; expected 876x584" in msg
    assert "python -m dslr.downscale" in msg and "python -m dslr.undistort" in msg and "downscale=" in msg
    half = load_scene(tmp_path, downscale=2)
    check_resolution(half, (W // 2, H // 2))
    with pytest.raises(SceneError, match=r"frame f0 is 4x3; .*expected 8x6"):
        check_resolution(half, (W, H))
    with pytest.raises(SceneError, match=r"expected_wh must be \(width, height\)"):
        check_resolution(scene, "876x584")  # type: ignore[arg-type]


def test_test_frames_skip_is_bad_and_names_stay_unique(tmp_path: Path) -> None:
    for i, rel in enumerate(["a/x.png", "b/x.png", "c/y.png", "c/z.png"]):
        _write_png(tmp_path / rel, _rgb(i))
    pose = np.eye(4).tolist()
    meta = {
        "fl_x": FX,
        "w": W,
        "h": H,
        "frames": [
            {"file_path": "a/x.png", "transform_matrix": pose},
            {"file_path": "c/y.png", "transform_matrix": pose},
        ],
        "test_frames": [
            {"file_path": "./b/x.png", "transform_matrix": pose},
            {"file_path": "c/z.png", "transform_matrix": pose, "is_bad": True},
        ],
    }
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    scene = load_scene(tmp_path, include_test_frames=True)
    assert [v.name for v in scene.views] == ["a/x", "y", "b/x"]  # colliding stems named by path; z is bad
    assert scene.meta["skipped_bad_frames"] == 1
    np.testing.assert_allclose(scene.views[2].image, _rgb(1) / 255.0, atol=1e-7)
    assert [v.name for v in load_scene(tmp_path).views] == ["x", "y"]  # no test frames: stems are unique
    meta["frames"].append({"file_path": "c/y.png", "transform_matrix": pose})  # the same file twice in frames
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(SceneError, match=r"frame 1 \(c/y\.png\) and .*frame 2 \(c/y\.png\) name the same file"):
        load_scene(tmp_path)


def test_test_frames_already_in_frames_are_used_once(tmp_path) -> None:
    """The ScanNet++ downscale step appends test_frames to frames: such a file is read once, with a warning."""
    import json

    from PIL import Image

    (tmp_path / "images").mkdir()
    for n in ("a", "b", "c"):
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "images" / f"{n}.png")
    frame = lambda n: {"file_path": f"images/{n}.png", "transform_matrix": np.eye(4).tolist()}
    meta = {
        "fl_x": 8.0,
        "fl_y": 8.0,
        "cx": 4.0,
        "cy": 3.0,
        "w": 8,
        "h": 6,
        "frames": [frame("a"), frame("b"), frame("c")],
        "test_frames": [frame("c")],
    }
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="1 test_frames are already listed"):
        scene = load_scene(tmp_path, include_test_frames=True)
    assert [v.name for v in scene.views] == ["a", "b", "c"]
