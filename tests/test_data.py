"""Scene loading: conventions, both file layouts, downscaling and the error messages for bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fit3d_helpers.data import (
    SceneError,
    View,
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
        frames.append({"file_path": f"images/f{i}.png", "depth_file_path": f"depth/f{i}.png",
                       "label_file_path": f"labels/f{i}.png",
                       "transform_matrix": _gl_pose(30 * i, (0.1 * i, 0, 0)).tolist()})
    meta = {"fl_x": FX, "fl_y": FY, "cx": CX, "cy": CY, "w": W, "h": H, "classes": ["a", "b", "c", "d", "e"],
            "frames": frames}
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
    meta = {"fl_x": 100.0, "fl_y": 100.0, "cx": 32.0, "cy": 24.0, "w": 64, "h": 48,
            "frames": [{"file_path": "a.png", "transform_matrix": _gl_pose(0, (0, 0, 5)).tolist()},
                       {"file_path": "b.png", "transform_matrix": rot.tolist()}]}
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
    meta = {"camera_angle_x": 2 * math.atan(W / (2 * FX)), "w": W, "h": H,
            "frames": [{"file_path": "./train/r_0", "depth_file_path": "d0.npy",
                        "transform_matrix": np.eye(4).tolist()}]}
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
    meta = {"fl_x": FX, "fl_y": FY, "cx": CX, "cy": CY, "w": W, "h": H, "camera_model": "PINHOLE",
            "frames": [{"file_path": "DSC001.JPG", "transform_matrix": pose, "mask_path": "DSC001.png"},
                       {"file_path": "DSC002.JPG", "transform_matrix": pose, "is_bad": True}],
            "test_frames": [{"file_path": "DSC003.JPG", "transform_matrix": pose}]}
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
        f"2 SIMPLE_RADIAL 16 12 20.0 8.0 6.0 0.0\n"
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
    _write_png(tmp_path / "images" / "a.png", _rgb(1, 16, 12))
    scene = load_scene(tmp_path)
    assert [v.name for v in scene.views] == ["a", "b"]  # sorted by image name
    a, b = scene.views
    Rz90 = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = Rz90, [1, 2, 3]
    np.testing.assert_allclose(b.cam_to_world, np.linalg.inv(w2c), atol=1e-12)
    np.testing.assert_allclose(b.K, [[FX, 0, CX], [0, FY, CY], [0, 0, 1]])
    np.testing.assert_allclose(a.K, [[20, 0, 8], [0, 20, 6], [0, 0, 1]])
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
        (lambda m, r: m["frames"][1].__setitem__("transform_matrix", np.diag([1, 1, -1, 1.0]).tolist()),
         r"frame 1 .*not a rotation.*det = -1"),
        (lambda m, r: m.__setitem__("w", W + 2), r"frame 0 .*is 8x6 but the intrinsics say w=10"),
        (lambda m, r: _write_png(r / "depth" / "f1.png", np.zeros((H, W + 1), np.uint16)),
         r"frame 1 .*depth map .*f1\.png is 9x6 but the image is 8x6"),
        (lambda m, r: _write_png(r / "labels" / "f0.png", np.zeros((3, 4), np.uint8)),
         r"frame 0 .*label map .*is 4x3 but the image is 8x6"),
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
