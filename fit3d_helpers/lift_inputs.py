"""What a stage-1 fit starts from: one scene's tensors at training resolution, the backbone's target features (computed
once per scene and backbone state), the loss masks, and the initial points (COLMAP / PLY points, unprojected depth,
points triangulated from known poses, or random points in the cameras' common view volume).

Split from :mod:`fit3d_helpers.lift`, which re-exports every name here.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .backbone import Backbone
from .data import Scene, project
from .profiles import LiftConfig, holdout_split
from .utils import tensor_digest


class LiftError(RuntimeError):
    """Stage-1 failure with the iteration / scene / file named."""


@dataclass
class PreparedScene:
    """Tensors of one scene at training resolution, plus the backbone targets (computed once)."""

    images: Tensor  # [V, 3, H, W] training-resolution RGB
    viewmats: Tensor  # [V, 4, 4] world-to-camera (OpenCV)
    Ks: Tensor  # [V, 3, 3] at training resolution
    targets: Tensor  # [V, D, h, w] backbone patch features on the token grid
    masks: Tensor  # [V, 1, H, W] bool at training resolution: True = use the pixel (anonymisation masks: False)
    train_ids: list[int]
    holdout_ids: list[int]
    extent: float  # scene radius (3DGS's cameras_extent)


def feature_masks(prep: PreparedScene, factor: int) -> tuple[tuple[int, int], Tensor]:
    """Where the feature loss compares (``factor`` × the token grid, or the render size for 0) and the views' masks
    there: ``((fh, fw), masks [V, 1, fh, fw] bool)``."""
    H, W = prep.images.shape[-2:]
    h, w = prep.targets.shape[-2:]
    fh, fw = (h * factor, w * factor) if factor else (H, W)
    if (fh, fw) == (H, W):
        return (fh, fw), prep.masks
    return (fh, fw), F.interpolate(prep.masks.float(), size=(fh, fw), mode="area") > 0.5


def scene_points(scene: Scene, max_points: int, seed: int) -> tuple[Tensor, Tensor]:
    """COLMAP points if the scene has them, else depth unprojected and subsampled."""
    if scene.points is not None and len(scene.points) >= 4:
        pts, cols = (
            scene.points,
            scene.point_colors if scene.point_colors is not None else np.full_like(scene.points, 0.5),
        )
        if len(pts) > max_points:
            idx = np.random.default_rng(seed).choice(len(pts), max_points, replace=False)
            pts, cols = pts[idx], cols[idx]
    elif any(v.depth is not None for v in scene.views):
        pts, cols = scene.points_from_depth(max_points=max_points, seed=seed)
    else:  # poses only (an instant-ngp / nerfstudio capture): points triangulated with the poses fixed
        pts, cols = _poses_only_points(scene, max_points, seed)
    return torch.as_tensor(pts, dtype=torch.float32), torch.as_tensor(cols, dtype=torch.float32)


def _poses_only_points(scene: Scene, max_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """SIFT matches triangulated with the known poses (pycolmap, :func:`fit3d_helpers.capture.triangulate_known_poses`);
    without pycolmap, or with too few matches, random points where the cameras look, with a warning."""
    from .capture import CaptureError, triangulate_known_poses

    why = ""
    try:
        tri = triangulate_known_poses(scene)
        pts, cols = tri.xyz, tri.rgb
        if len(pts) >= 100:
            if len(pts) > max_points:
                idx = np.random.default_rng(seed).choice(len(pts), max_points, replace=False)
                pts, cols = pts[idx], cols[idx]
            return pts, cols
        why = f"only {len(pts)} points could be triangulated"
    except CaptureError as e:
        why = str(e).rstrip(".")
    warnings.warn(
        f"{scene.name}: the scene has poses but no points or depth, and {why}; starting from random points where "
        "the cameras look, which fits far worse (docs/capture.md). Fix: add a point cloud, or install pycolmap.",
        stacklevel=3,
    )
    return points_in_view_volume(scene, min(max_points, 20_000), seed)


def points_in_view_volume(scene: Scene, n: int, seed: int, min_share: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random points seen by at least ``min_share`` of the cameras, grey: the start of a poses-only capture.

    3DGS starts synthetic scenes from random points in a cube; a real capture has no known cube, so we sample
    where the cameras look: a random pixel of a random camera, at a random depth between 0.2 and 2 times the distance
    from the cameras to the point closest to all their optical axes, kept when it lies inside the image of at least
    ``min_share`` of the cameras. Returns ``(xyz [n, 3], rgb [n, 3])`` float32.
    """
    rng = np.random.default_rng(seed)
    c2w = np.stack([v.cam_to_world for v in scene.views])  # [V, 4, 4]
    centres, axes = c2w[:, :3, 3], c2w[:, :3, 2]  # [V, 3] camera centres and optical axes (OpenCV z forward)
    # least-squares point closest to every optical axis: sum_i (I - a a^T)(x - c_i) = 0
    proj = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]  # [V, 3, 3]
    A, b = proj.sum(0), np.einsum("vij,vj->i", proj, centres)
    focus = np.linalg.lstsq(A, b, rcond=None)[0]
    dist = float(np.median(np.linalg.norm(centres - focus, axis=1)))
    if not np.isfinite(dist) or dist <= 0:
        dist = float(np.linalg.norm(centres - centres.mean(0), axis=1).mean()) or 1.0
    keep: list[np.ndarray] = []
    K_inv_views = np.linalg.inv(np.stack([v.K for v in scene.views]))  # [V, 3, 3]
    for _ in range(50):
        m = 4 * n
        cam = rng.integers(0, len(scene.views), m)
        uv = rng.random((m, 2)) * np.array([[scene.views[0].width, scene.views[0].height]])
        K_inv = K_inv_views[cam]  # [m, 3, 3]
        rays = np.einsum("mij,mj->mi", K_inv, np.concatenate([uv, np.ones((m, 1))], 1))  # camera frame, z = 1
        z = rng.uniform(0.2, 2.0, m) * dist
        pts = np.einsum("mij,mj->mi", c2w[cam, :3, :3], rays * z[:, None]) + c2w[cam, :3, 3]
        seen = np.zeros(m)
        for v in scene.views:
            uvv, zz = project(pts, v.K, v.world_to_cam)
            with np.errstate(invalid="ignore"):
                seen += (zz > 0) & (uvv[:, 0] >= 0) & (uvv[:, 0] < v.width) & (uvv[:, 1] >= 0) & (uvv[:, 1] < v.height)
        keep.append(pts[seen >= min_share * len(scene.views)])
        if sum(len(k) for k in keep) >= n:
            break
    xyz = np.concatenate(keep)[:n]
    if len(xyz) < 4:
        raise LiftError(
            f"scene {scene.name}: no point is seen by {min_share:.0%} of the cameras; the poses do not look at a "
            "common volume (check the camera convention: transforms.json is OpenGL)"
        )
    return xyz.astype(np.float32), np.full_like(xyz, 0.5, dtype=np.float32)


# The backbone's features of a few scenes' views, kept in this process: notebook 05 refits every lift six times and
# each refit needs the same targets. Keyed by the model's state (Backbone.state_version) and the images' content.
_FEATURES_MEMO: OrderedDict[tuple, Tensor] = OrderedDict()
_FEATURES_MEMO_SCENES = 8


def scene_features(backbone: Backbone, images: Tensor) -> Tensor:
    """``backbone.features`` of ``images [V, 3, H, W]`` -> ``[V, D, h, w]``, remembered for the next call."""
    key = (backbone.state_version(), tensor_digest(images))
    if key in _FEATURES_MEMO:
        _FEATURES_MEMO.move_to_end(key)
        return _FEATURES_MEMO[key]
    feats, _ = backbone.features(images, batch_size=4)
    _FEATURES_MEMO[key] = feats
    while len(_FEATURES_MEMO) > _FEATURES_MEMO_SCENES:
        _FEATURES_MEMO.popitem(last=False)
    return feats


def prepare_scene(scene: Scene, backbone: Backbone, cfg: LiftConfig, *, remember: bool = False) -> PreparedScene:
    """Resize images to the training resolution and compute the backbone's target features once (``remember``: keep
    them in this process for the next call, as the feature refits of one scene do)."""
    images_full = torch.stack(
        [torch.as_tensor(v.image, dtype=torch.float32).permute(2, 0, 1) for v in scene.views]
    )  # [V, 3, H, W]
    H, W = images_full.shape[-2:]
    th, tw = H // cfg.train_downscale, W // cfg.train_downscale
    images = F.interpolate(images_full, size=(th, tw), mode="area") if cfg.train_downscale > 1 else images_full
    Ks = torch.stack([torch.as_tensor(v.K, dtype=torch.float32) for v in scene.views]).clone()
    Ks[:, 0] *= tw / W
    Ks[:, 1] *= th / H
    viewmats = torch.stack([torch.as_tensor(v.world_to_cam, dtype=torch.float32) for v in scene.views])
    if remember:
        targets = scene_features(backbone, images_full)  # [V, D, h, w]
    else:
        targets, _ = backbone.features(images_full, batch_size=4)  # [V, D, h, w]
    masks = view_masks(scene, (th, tw))  # [V, 1, th, tw]
    train, holdout = holdout_split(len(scene.views), cfg.holdout_every)
    centres = torch.stack([torch.as_tensor(v.cam_to_world[:3, 3], dtype=torch.float32) for v in scene.views])
    extent = float((centres - centres.mean(0)).norm(dim=-1).max()) * 1.1
    dev = backbone.device  # the fit runs where the backbone runs ("auto": CUDA when present)
    return PreparedScene(
        images.to(dev), viewmats.to(dev), Ks.to(dev), targets.to(dev), masks.to(dev), train, holdout, max(extent, 1e-2)
    )


def soft_view_masks(scene: Scene, size_hw: tuple[int, int]) -> Tensor:
    """[V, 1, H, W] float: the views' validity masks (ScanNet++ anonymisation; 1 = use) resized bilinearly to
    ``size_hw``, as the official loader does for the fine-tuning loss. Views without a mask: all ones."""
    out = []
    for v in scene.views:
        m = getattr(v, "mask", None)
        if m is None:
            out.append(torch.ones(1, *size_hw))
        else:
            t = torch.as_tensor(np.asarray(m, dtype=np.float32))[None, None]  # [1, 1, H, W]
            out.append(F.interpolate(t, size=size_hw, mode="bilinear", align_corners=False)[0])
    return torch.stack(out)


def view_masks(scene: Scene, size_hw: tuple[int, int]) -> Tensor:
    """[V, 1, H, W] bool: :func:`soft_view_masks` where non-zero (as the official reader: resize, then any non-zero
    value counts as valid). Views without a mask: all True."""
    return soft_view_masks(scene, size_hw) > 0


def feature_camera(K: Tensor, image_hw: tuple[int, int], out_hw: tuple[int, int]) -> Tensor:
    """Intrinsics [.., 3, 3] rescaled from an image of size image_hw to a render of size out_hw."""
    K = K.clone()
    K[..., 0, :] *= out_hw[1] / image_hw[1]
    K[..., 1, :] *= out_hw[0] / image_hw[0]
    return K
