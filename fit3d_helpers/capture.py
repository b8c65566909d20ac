"""Your own capture -> a scene the course can lift: photos or a phone video -> COLMAP structure from motion.

FiT3D's stage 1 needs posed views and, to start well, a sparse point cloud. A student's desk filmed with a phone has
neither. COLMAP's own Python bindings (``pycolmap``, CPU wheels on PyPI, the ``capture`` extra) recover both:

1. :func:`frames_from_video` keeps the sharpest frame of each of ``n_frames`` equal windows of a video (variance of
   the Laplacian, the usual blur score), or :func:`prepare_images` takes a folder of photos; both honour EXIF
   orientation and shrink to ``max_side`` (SIFT on a 480-px image is enough for a desk and 10x faster than 4k).
2. :func:`run_sfm`: SIFT features, matching (sequential for a video, whose frames are in order; exhaustive for up to
   :data:`EXHAUSTIVE_MAX` photos), incremental mapping; the largest model is kept.
3. :func:`capture` undistorts to a pinhole camera and writes a COLMAP text model (``sparse/0``) beside ``images/``,
   the layout :func:`fit3d_helpers.data.load_scene` reads, plus ``capture.json`` (what registered, reprojection
   error, points, seconds).

A capture that already has poses but no points (instant-ngp / nerfstudio ``transforms.json``) gets points from
:func:`triangulate_known_poses`: features matched across its views and triangulated with the poses held fixed, instead
of random points in the view volume (which start far worse: see ``docs/capture.md``).

Everything fails with a :class:`CaptureError` that names the images and the likely cause. To practise (and to test):
:func:`synthetic_capture` renders a room whose photos SfM can register, and :func:`pose_errors` compares recovered
poses with true ones after the best similarity.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .data import Scene, SceneError
from .utils import atomic_dir, progress, write_json

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".3gp")
EXHAUSTIVE_MAX = 100  # photos matched all-pairs up to this many (about 5k pairs); more are matched in sequence
MIN_IMAGES = 8  # fewer views cannot cover a scene for a lift with held-out views
INSTALL_HINT = "pip install 'fit3d-course[capture]' (or: pip install pycolmap imageio-ffmpeg)"


class CaptureError(SceneError):
    """A capture that cannot become a scene; the message names the images and what to change."""


@dataclass
class CaptureReport:
    """What :func:`capture` wrote to ``capture.json``."""

    source: str
    images_given: int
    images_registered: int
    unregistered: list[str]
    points: int
    mean_reprojection_error_px: float
    models_found: int
    matching: str
    image_size: list[int]  # [width, height] after undistortion
    seconds: dict[str, float] = field(default_factory=dict)


def _pycolmap() -> Any:
    try:
        import pycolmap
    except ImportError as e:  # the rest of the course works without it
        raise CaptureError(
            f"structure from motion needs pycolmap, which is not installed ({e}). Fix: {INSTALL_HINT}."
        ) from None
    pycolmap.logging.minloglevel = 2  # errors only: COLMAP's INFO lines run to thousands per capture
    return pycolmap


# ----------------------------------------------------------------------------------------------------------------
# Images in


def sharpness(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a grey image ``[H, W]``: low for a blurred frame."""
    g = gray.astype(np.float32)
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap.var())


def _fit(im: Image.Image, max_side: int) -> Image.Image:
    """Shrink (never enlarge) so the longer side is ``max_side``."""
    s = max_side / max(im.size)
    if s >= 1:
        return im
    return im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.LANCZOS)


def _check_max_side(max_side: int) -> None:
    if not isinstance(max_side, int) or max_side < 64:
        raise CaptureError(f"max_side must be an integer >= 64 (pixels), got {max_side!r}; 480 suits a laptop.")


def camera_label(im: Image.Image) -> str | None:
    """ "Make Model, f=4.2 mm" from a photo's EXIF (None without EXIF): two labels in one capture are two cameras
    or two zooms, which one SfM camera cannot fit."""
    exif = im.getexif()
    make, model = (str(exif.get(t, "")).strip("\x00 ") for t in (0x010F, 0x0110))  # Make, Model
    focal = exif.get_ifd(0x8769).get(0x920A)  # Exif IFD: FocalLength (a rational)
    parts = [" ".join(x for x in (make, model) if x)]
    if focal is not None:
        try:
            parts.append(f"f={float(focal):.3g} mm")
        except (TypeError, ValueError, ZeroDivisionError):
            pass
    label = ", ".join(p for p in parts if p)
    return label or None


def _listing(groups: dict[Any, list[str]]) -> str:
    return "; ".join(f"{k}: {', '.join(n[:4])}{' ...' if len(n) > 4 else ''}" for k, n in groups.items())


def prepare_images(src: str | Path, out_dir: str | Path, *, max_side: int = 480) -> list[Path]:
    """Copy a folder of photos to ``out_dir`` as PNGs: EXIF orientation applied, RGB, longer side ``max_side``.

    All photos must come out the same size (one camera, one zoom, one orientation): SfM here fits one camera.
    """
    _check_max_side(max_side)
    src, out_dir = Path(src), Path(out_dir)
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTS) if src.is_dir() else []
    if not src.is_dir():
        raise CaptureError(f"{src}: no such folder of photos.")
    if len(files) < MIN_IMAGES:
        raise CaptureError(
            f"{src}: {len(files)} photo(s) found ({', '.join(IMAGE_EXTS)}); at least {MIN_IMAGES} are needed. "
            "Fix: take 30-60 photos walking around the object or along the room, each overlapping the last by "
            "about two thirds."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, list[str]] = {}  # "WxH" after orientation -> photo names
    cameras: dict[str, list[str]] = {}  # EXIF camera label -> photo names (photos without EXIF are not counted)
    written = []
    for p in progress(files, desc="photos", leave=False):
        try:
            with Image.open(p) as raw:
                label = camera_label(raw)
                im = _fit(ImageOps.exif_transpose(raw).convert("RGB"), max_side)
        except Exception as e:
            raise CaptureError(
                f"{p}: not a readable image ({type(e).__name__}: {e}). Fix: remove or re-export it."
            ) from None
        sizes.setdefault(f"{im.width}x{im.height}", []).append(p.name)
        if label is not None:
            cameras.setdefault(label, []).append(p.name)
        dst = out_dir / f"{p.stem}.png"
        if dst.exists():
            raise CaptureError(
                f"{src}: two photos are named {p.stem}.*; SfM names images by their stem. Fix: rename one."
            )
        im.save(dst, compress_level=1)  # a temporary copy: fast to write beats small
        written.append(dst)
    if len(sizes) > 1:
        raise CaptureError(
            f"{src}: the photos have {len(sizes)} sizes after orientation ({_listing(sizes)}). SfM here fits one "
            "camera. Fix: use photos of one camera at one zoom, all landscape or all portrait."
        )
    if len(cameras) > 1:
        raise CaptureError(
            f"{src}: the photos come from {len(cameras)} cameras or zoom settings by their EXIF ({_listing(cameras)})."
            " SfM here fits one camera. Fix: keep the photos of one camera at one zoom (a phone's 1x lens)."
        )
    return written


def _ffmpeg() -> Any:
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise CaptureError(f"reading a video needs imageio-ffmpeg ({e}). Fix: {INSTALL_HINT}.") from None
    return imageio_ffmpeg


def _unreadable_video(video: Path, e: BaseException) -> CaptureError:
    why = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
    return CaptureError(
        f"{video}: could not read the video ({why}). Fix: check the file plays; convert it to H.264 MP4 (any "
        "phone's default), or extract photos and pass their folder."
    )


def frames_from_video(video: str | Path, out_dir: str | Path, *, n_frames: int = 50, max_side: int = 480) -> list[Path]:
    """Keep the sharpest frame of each of ``n_frames`` equal windows of ``video`` (decoded once, streamed).

    Why windows: frames spread evenly over the walk keep the overlap SfM needs, and within a window the sharpest
    frame (variance of the Laplacian) dodges the motion blur of a hand-held phone. Frames are written as
    ``frame_0000.png`` ... in time order (sequential matching relies on it). Rotation metadata is applied by ffmpeg.
    """
    _check_max_side(max_side)
    video, out_dir = Path(video), Path(out_dir)
    if n_frames < MIN_IMAGES:
        raise CaptureError(f"n_frames must be >= {MIN_IMAGES}, got {n_frames}.")
    if not video.is_file():
        raise CaptureError(f"{video}: no such video file.")
    ffmpeg = _ffmpeg()
    try:
        total, _secs = ffmpeg.count_frames_and_secs(str(video))
        reader = ffmpeg.read_frames(str(video), pix_fmt="rgb24")
        meta = next(reader)  # the first item is the stream's metadata
        w, h = (int(x) for x in meta["size"])
    except Exception as e:  # ffmpeg's RuntimeError / OSError / StopIteration on a file that is not a video
        raise _unreadable_video(video, e) from None
    if total < MIN_IMAGES:
        reader.close()
        raise CaptureError(f"{video}: {total} frame(s); at least {MIN_IMAGES} are needed. Fix: film a longer walk.")
    n = min(n_frames, total)
    best: list[tuple[float, Image.Image | None]] = [(-1.0, None)] * n  # per window: (sharpness, frame)
    i = 0
    try:
        for i, buf in enumerate(progress(reader, total=total, desc="video frames", leave=False)):
            frame = np.frombuffer(buf, np.uint8).reshape(h, w, 3)  # [H, W, 3]
            im = _fit(Image.fromarray(frame), max_side)
            k = min(i * n // total, n - 1)  # the frame's window (the count is exact for most files, not all)
            score = sharpness(np.asarray(im.convert("L")))
            if score > best[k][0]:
                best[k] = (score, im)
    except Exception as e:
        raise CaptureError(
            f"{video}: the video stopped being readable at frame {i} ({type(e).__name__}: {e})."
        ) from None
    finally:
        reader.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for k, (_, im) in enumerate(best):
        if im is not None:
            dst = out_dir / f"frame_{k:04d}.png"
            im.save(dst)
            written.append(dst)
    if len(written) < MIN_IMAGES:
        raise CaptureError(f"{video}: only {len(written)} frame(s) could be decoded; at least {MIN_IMAGES} are needed.")
    return written


# ----------------------------------------------------------------------------------------------------------------
# Structure from motion


# SIFT for ~480-px images. COLMAP's default peak threshold (0.0067) is tuned for multi-megapixel photos; at 448x336
# it finds ~480 points in a synthetic room and the orbit comes out bent (3.4 degrees worst rotation error); 0.001
# finds 1.7k points, 0.44 px reprojection error, 0.7 degrees (docs/capture.md). The feature cap keeps exhaustive
# matching of a textured 50-photo capture inside the laptop budget.
SIFT_PEAK_THRESHOLD = 0.001
SIFT_MAX_FEATURES = 4096


def _extract_and_match(pycolmap: Any, db: Path, image_dir: Path, matching: str, *, single_camera: bool) -> None:
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.AUTO
    options = pycolmap.FeatureExtractionOptions()
    options.sift.peak_threshold = SIFT_PEAK_THRESHOLD
    options.sift.max_num_features = SIFT_MAX_FEATURES
    pycolmap.extract_features(db, image_dir, camera_mode=mode, extraction_options=options, device=pycolmap.Device.cpu)
    if matching == "exhaustive":
        pycolmap.match_exhaustive(db, device=pycolmap.Device.cpu)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = 10
        pycolmap.match_sequential(db, pairing_options=pairing, device=pycolmap.Device.cpu)


MATCHING = ("auto", "exhaustive", "sequential")
FEW_FEATURES = 300  # fewer SIFT keypoints than this in a 480-px image: blur, a flat colour or no texture


def _feature_counts(pycolmap: Any, db_path: Path) -> dict[str, int]:
    """SIFT keypoints per image name, read back from the database (to say why an image was left out)."""
    with pycolmap.Database.open(db_path) as db:
        return {im.name: int(db.num_keypoints_for_image(im.image_id)) for im in db.read_all_images()}


def _why_left_out(names: list[str], features: dict[str, int], limit: int = 20) -> str:
    """``a.png (41 features), b.png`` ...: images with few features are blurred or untextured; the others did not
    overlap enough with the rest (or show another place)."""
    items = [f"{n} ({features[n]} features)" if features.get(n, 0) < FEW_FEATURES else n for n in names[:limit]]
    return ", ".join(items) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def run_sfm(image_dir: str | Path, work_dir: str | Path, *, matching: str = "exhaustive") -> tuple[Any, int]:
    """SIFT, matching and incremental mapping over ``image_dir``; returns (the largest model, how many models).

    ``matching``: ``"exhaustive"`` (every pair; photos) or ``"sequential"`` (each frame with its 10 neighbours; video).
    The database stays in ``work_dir`` (``database.db``) for diagnosis.
    """
    pycolmap = _pycolmap()
    image_dir, work_dir = Path(image_dir), Path(work_dir)
    if matching not in ("exhaustive", "sequential"):
        raise CaptureError(f"matching must be 'exhaustive' or 'sequential', got {matching!r}.")
    work_dir.mkdir(parents=True, exist_ok=True)
    db = work_dir / "database.db"
    db.unlink(missing_ok=True)
    _extract_and_match(pycolmap, db, image_dir, matching, single_camera=True)
    models = pycolmap.incremental_mapping(db, image_dir, work_dir / "sparse")
    if not models:
        names = sorted(p.name for p in image_dir.iterdir())
        raise CaptureError(
            f"{image_dir}: structure from motion found no model in {len(names)} images "
            f"({_why_left_out(names, _feature_counts(pycolmap, db))}). Likely causes: blur, surfaces without texture "
            "(plain walls, glossy tables), or too little overlap between consecutive shots. Fix: retake slowly "
            "with steady light, keep textured things in view, overlap each shot by about two thirds."
        )
    largest = max(models.values(), key=lambda r: r.num_reg_images())
    return largest, len(models)


def _undistort_to(pycolmap: Any, rec: Any, image_dir: Path, work_dir: Path, scene_tmp: Path) -> Any:
    """Undistort the model's images to a pinhole camera; write ``images/`` and the text model ``sparse/0``."""
    model_dir = work_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    rec.write(model_dir)
    und = work_dir / "undistorted"
    pycolmap.undistort_images(und, model_dir, image_dir)
    out = pycolmap.Reconstruction(und / "sparse")
    (scene_tmp / "sparse" / "0").mkdir(parents=True)
    out.write_text(scene_tmp / "sparse" / "0")
    shutil.move(str(und / "images"), str(scene_tmp / "images"))
    return out


def capture(
    source: str | Path,
    scene_dir: str | Path,
    *,
    max_side: int = 480,
    n_frames: int = 50,
    matching: str = "auto",
    min_registered: float = 0.8,
    overwrite: bool = False,
) -> CaptureReport:
    """Photos folder or video -> ``scene_dir`` with ``images/``, ``sparse/0/*.txt`` (PINHOLE) and ``capture.json``.

    ``matching="auto"``: sequential for a video, exhaustive for up to :data:`EXHAUSTIVE_MAX` photos, else sequential
    (photos in name order, as a phone numbers them). Fewer than ``min_registered`` of the images in the model is an
    error that lists the ones left out. The scene folder appears only when complete.
    """
    pycolmap = _pycolmap()
    source, scene_dir = Path(source), Path(scene_dir)
    if matching not in MATCHING:
        raise CaptureError(f"matching must be one of {', '.join(MATCHING)}, got {matching!r}.")
    if not 0 < min_registered <= 1:
        raise CaptureError(f"min_registered must be in (0, 1] (a share of the images), got {min_registered!r}.")
    if not source.exists():
        raise CaptureError(f"{source}: no such photo folder or video file.")
    if scene_dir.exists() and not overwrite:
        raise CaptureError(f"{scene_dir} already exists. Fix: pass overwrite=True (--overwrite) or another folder.")
    is_video = source.is_file()
    if is_video and source.suffix.lower() not in VIDEO_EXTS:
        raise CaptureError(f"{source}: not a folder of photos or a video ({', '.join(VIDEO_EXTS)}).")
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="fit3d-capture-") as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.perf_counter()
        if is_video:
            files = frames_from_video(source, tmp / "input", n_frames=n_frames, max_side=max_side)
        else:
            files = prepare_images(source, tmp / "input", max_side=max_side)
        seconds["images"] = time.perf_counter() - t0
        if matching == "auto":
            matching = "sequential" if is_video or len(files) > EXHAUSTIVE_MAX else "exhaustive"
        t0 = time.perf_counter()
        rec, n_models = run_sfm(tmp / "input", tmp / "sfm", matching=matching)
        seconds["sfm"] = time.perf_counter() - t0
        given = sorted(p.name for p in files)
        registered = {im.name for im in rec.images.values() if im.has_pose}
        missing = [n for n in given if n not in registered]
        if len(registered) < max(MIN_IMAGES, math.ceil(min_registered * len(given))):
            features = _feature_counts(pycolmap, tmp / "sfm" / "database.db")
            raise CaptureError(
                f"{source}: only {len(registered)} of {len(given)} images were placed by structure from motion "
                f"({n_models} separate model(s); at least {max(MIN_IMAGES, math.ceil(min_registered * len(given)))}"
                f" needed); left out: {_why_left_out(missing, features)}. Likely causes: few features (under "
                f"{FEW_FEATURES}) mean blur, a flat colour or no texture; the others overlap too little with the "
                "rest. Fix: retake or remove those images, or lower min_registered (--min-registered) to keep the "
                "largest model."
            )
        t0 = time.perf_counter()
        with atomic_dir(scene_dir, overwrite=overwrite) as out:
            und = _undistort_to(pycolmap, rec, tmp / "input", tmp / "sfm", out)
            cam = next(iter(und.cameras.values()))
            seconds["undistort"] = time.perf_counter() - t0
            report = CaptureReport(
                source=source.name,
                images_given=len(given),
                images_registered=len(registered),
                unregistered=missing,
                points=und.num_points3D(),
                mean_reprojection_error_px=round(float(und.compute_mean_reprojection_error()), 4),
                models_found=n_models,
                matching=matching,
                image_size=[int(cam.width), int(cam.height)],
                seconds={k: round(v, 2) for k, v in seconds.items()},
            )
            write_json(out / "capture.json", asdict(report))
    return report


def read_report(scene_dir: str | Path) -> CaptureReport:
    """The ``capture.json`` that :func:`capture` wrote."""
    return CaptureReport(**json.loads((Path(scene_dir) / "capture.json").read_text()))


# ----------------------------------------------------------------------------------------------------------------
# Poses but no points


@dataclass
class Triangulation:
    """Points of a posed capture: ``xyz [P, 3]``, ``rgb [P, 3]`` in 0..1 (float32, the scene's world frame), and how
    well they agree with the given poses (a mean reprojection error above ~1 px means poses or intrinsics are off)."""

    xyz: np.ndarray
    rgb: np.ndarray
    mean_reprojection_error_px: float
    views: int  # views given
    views_with_points: int  # views that observe at least one triangulated point
    seconds: float


def triangulate_known_poses(scene: Scene, work_dir: str | Path | None = None) -> Triangulation:
    """Points for a posed capture without a point cloud: SIFT matches triangulated with the poses held fixed.

    Why: random points where the cameras look start a lift far worse than points on the surfaces (docs/capture.md).
    Every view keeps its own intrinsics ``K`` (pinhole) and pose; only the points are estimated (COLMAP's point
    triangulator: no pose or intrinsics refinement).
    """
    pycolmap = _pycolmap()
    t0 = time.perf_counter()
    own = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="fit3d-triangulate-")) if own else Path(work_dir)
    try:
        image_dir = work / "images"
        image_dir.mkdir(parents=True, exist_ok=True)
        names = []
        for i, v in enumerate(scene.views):
            name = f"{i:05d}_{v.name}.png"
            rgb8 = np.clip(np.asarray(v.image, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)  # [H, W, 3]
            Image.fromarray(rgb8).save(image_dir / name, compress_level=1)
            names.append(name)
        db_path = work / "database.db"
        db_path.unlink(missing_ok=True)
        matching = "exhaustive" if len(names) <= EXHAUSTIVE_MAX else "sequential"
        _extract_and_match(pycolmap, db_path, image_dir, matching, single_camera=False)
        rec = _posed_reconstruction(pycolmap, scene, names, db_path)
        out = pycolmap.triangulate_points(rec, db_path, image_dir, work / "triangulated")
        pts = list(out.points3D.values())
        xyz = np.array([p.xyz for p in pts], dtype=np.float32).reshape(-1, 3)
        rgb = np.array([p.color for p in pts], dtype=np.float32).reshape(-1, 3) / 255.0
        err = float(out.compute_mean_reprojection_error()) if pts else float("nan")
        seen = sum(1 for im in out.images.values() if im.has_pose and im.num_points3D > 0)
        return Triangulation(xyz, rgb, round(err, 4), len(names), seen, round(time.perf_counter() - t0, 2))
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def _posed_reconstruction(pycolmap: Any, scene: Scene, names: list[str], db_path: Path) -> Any:
    """A model holding the database's images with the scene's own cameras (PINHOLE) and poses, and no points."""
    rec = pycolmap.Reconstruction()
    by_name = {n: v for n, v in zip(names, scene.views)}
    with pycolmap.Database.open(db_path) as db:
        for im in db.read_all_images():
            v = by_name[im.name]
            h, w = v.image.shape[:2]
            K = v.K
            cam = pycolmap.Camera(
                model="PINHOLE", width=w, height=h, params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]], camera_id=im.camera_id
            )
            db.update_camera(cam)  # matching was verified with a guessed focal length; triangulation uses the true one
            if not rec.exists_camera(cam.camera_id):
                rec.add_camera_with_trivial_rig(cam)
            w2c = np.linalg.inv(v.cam_to_world)  # [4, 4] OpenCV world -> camera, COLMAP's convention too
            pose = pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[:3, :3]), w2c[:3, 3])
            rec.add_image_with_trivial_frame(
                pycolmap.Image(name=im.name, camera_id=im.camera_id, image_id=im.image_id), pose
            )
    return rec


# ----------------------------------------------------------------------------------------------------------------
# Checking recovered poses against known ones (synthetic captures, tests, the notebook)


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The similarity ``dst ≈ s · R @ src + t`` minimising squared error (Umeyama 1991). src, dst [N, 3], N >= 3.

    Returns ``(s, R [3, 3], t [3])``. SfM recovers a scene up to such a similarity, so poses are compared after it.
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d  # [N, 3]
    cov = xd.T @ xs / len(src)  # [3, 3]
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    s = float(np.trace(np.diag(D) @ S) / xs.var(0).sum())
    return s, R, mu_d - s * R @ mu_s


def pose_errors(est_c2w: np.ndarray, true_c2w: np.ndarray, ahead: float = 1.0) -> dict[str, Any]:
    """Per-view rotation (degrees) and camera-centre errors of estimated poses against true ones, both ``[V, 4, 4]``
    OpenCV camera-to-world, after the best similarity. ``ahead``: metres in the true frame.

    Why not align the centres alone: a nearly planar orbit leaves the tilt about the orbit's line ill-determined, and
    that shows up as a rotation error in every view. Points ``ahead`` metres along each optical axis pin it down (on
    the estimated side at ``ahead`` divided by the centres-only scale, so both sets describe the same points).
    Returns ``rotation_deg [V]``, ``centre_error [V]`` (true units), ``scale`` and the alignment ``R``, ``t``.
    """
    c_est, c_true = est_c2w[:, :3, 3], true_c2w[:, :3, 3]  # [V, 3]
    s0, _, _ = umeyama(c_est, c_true)
    src = np.concatenate([c_est, c_est + (ahead / s0) * est_c2w[:, :3, 2]])  # [2V, 3]
    dst = np.concatenate([c_true, c_true + ahead * true_c2w[:, :3, 2]])
    s, R, t = umeyama(src, dst)
    aligned = np.einsum("ij,vjk->vik", R, est_c2w[:, :3, :3])  # [V, 3, 3] estimated rotations in the true frame
    rel = np.einsum("vji,vjk->vik", true_c2w[:, :3, :3], aligned)  # R_true^T R_est
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    centres = s * c_est @ R.T + t  # [V, 3]
    return {
        "rotation_deg": np.degrees(np.arccos(cos)),
        "centre_error": np.linalg.norm(centres - c_true, axis=1),
        "scale": s,
        "R": R,
        "t": t,
    }


# ----------------------------------------------------------------------------------------------------------------
# A capture to practise on: a synthetic room rendered for SfM (notebook 07, the tests, benchmarks/bench_capture.py)


def synthetic_capture(
    root: str | Path = "data/capture",
    *,
    seed: int = 0,
    n_views: int = 24,
    width: int = 448,
    height: int = 336,
    orbit_step_deg: float = 6.0,
) -> Path:
    """A generated room whose ``images/`` stand in for your photos (cached: generated once under ``root``).

    Why these settings: SIFT needs texture and overlap. The course's 224x168 rooms 15 degrees apart register only
    9-17 of 24 views (plain walls); at 448x336 with 6 degrees between views every view registers. The room's own
    ``transforms.json`` (true poses, depth) is kept beside the photos to check what SfM recovers.
    """
    from .synthetic import generate_scene

    out = Path(root) / f"room_s{seed}_{n_views}v_{width}x{height}_{orbit_step_deg:g}deg"
    if not (out / "transforms.json").is_file():
        generate_scene(out, seed=seed, n_views=n_views, width=width, height=height, orbit_step_deg=orbit_step_deg,
                       overwrite=out.exists(), show_progress=False)  # fmt: skip
    return out


def poses_only(scene_dir: str | Path, out_dir: str | Path) -> Path:
    """A copy of a ``transforms.json`` scene without depth, labels or points: the instant-ngp / nerfstudio capture
    that has poses and nothing else (its lift starts from :func:`triangulate_known_poses`). Returns ``out_dir``."""
    scene_dir, out_dir = Path(scene_dir), Path(out_dir)
    meta = json.loads((scene_dir / "transforms.json").read_text())
    meta.pop("ply_file_path", None)
    with atomic_dir(out_dir, overwrite=True) as tmp:
        for f in meta["frames"]:
            for k in ("depth_file_path", "label_file_path", "mask_path"):
                f.pop(k, None)
            dst = tmp / f["file_path"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(scene_dir / f["file_path"], dst)
        write_json(tmp / "transforms.json", meta)
    return out_dir
