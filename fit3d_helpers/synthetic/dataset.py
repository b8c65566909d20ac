"""Scenes and datasets on disk: one room in the transforms.json layout, and cached train/val sets of rooms."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import cache
from ..data import opengl_to_opencv
from ..utils import atomic_dir, config_hash, progress, write_json
from .constants import _TIMING_KEYS, CLASSES, GENERATOR_VERSION, ROOM_KINDS
from .render import render_scene


@dataclass
class DatasetInfo:
    """Where a generated dataset lives; ``train`` / ``val`` are scene folders for ``load_scene``."""

    root: Path
    train: list[Path]
    val: list[Path]
    classes: list[str]
    seconds: float  # wall time the generation took (as recorded when it was made)
    params: dict[str, Any] = field(default_factory=dict)
    cached: bool = False  # True when this call found the dataset on disk and generated nothing


def generate_scene(
    out_dir: str | Path,
    *,
    seed: int,
    n_views: int = 24,
    width: int = 224,
    height: int = 168,
    overwrite: bool = False,
    show_progress: bool = True,
    **options: Any,
) -> Path:
    """Generate one room and write it to ``out_dir`` in the transforms.json layout; returns ``out_dir``.

    Written atomically: the folder appears under its name only once every file is in it. ``options`` go to
    :func:`render_scene` (``hfov_deg``, ``supersample``, ``max_edge``, ``light_samples``, ``indirect_rays``,
    ``bounces``, ``orbit_step_deg``, ``room_kind``).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass overwrite=True to replace it")
    r = render_scene(
        seed=seed,
        n_views=n_views,
        width=width,
        height=height,
        show_progress=show_progress,
        desc=f"render {out_dir.name}",
        **options,
    )
    frames = []
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for sub in ("images", "depth", "labels"):
            (tmp / sub).mkdir()
        for i in range(n_views):
            name = f"frame_{i:05d}"
            Image.fromarray(r.images[i]).save(tmp / "images" / f"{name}.png", compress_level=1)
            depth_mm = np.clip(np.round(r.depths[i] * 1000.0), 0, 65535).astype(np.uint16)
            Image.fromarray(depth_mm).save(tmp / "depth" / f"{name}.png", compress_level=1)
            Image.fromarray(r.labels[i]).save(tmp / "labels" / f"{name}.png", compress_level=1)
            frames.append(
                {
                    "file_path": f"images/{name}.png",
                    "depth_file_path": f"depth/{name}.png",
                    "label_file_path": f"labels/{name}.png",
                    "transform_matrix": opengl_to_opencv(r.cam_to_world[i]).tolist(),  # stored in OpenGL convention
                }
            )
        meta = {
            "camera_model": "OPENCV",
            "fl_x": r.K[0, 0],
            "fl_y": r.K[1, 1],
            "cx": r.K[0, 2],
            "cy": r.K[1, 2],
            "w": width,
            "h": height,
            "k1": 0.0,
            "k2": 0.0,
            "p1": 0.0,
            "p2": 0.0,
            "depth_unit_scale_factor": 0.001,
            "classes": CLASSES,
            "frames": frames,
            "synthetic": {k: v for k, v in r.meta.items() if k not in _TIMING_KEYS},
        }
        # wall times differ from run to run: they stay out of the camera file, whose hash names the scene in every
        # artifact key (cache.scene_id), so a scene generated again, on any machine, is found by its artifacts
        write_json(tmp / "timing.json", {k: r.meta[k] for k in _TIMING_KEYS})
        write_json(tmp / "transforms.json", meta)
    return out_dir


def _scene_seed(seed: int, split: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, split, index]).generate_state(1)[0])


def _generate_one(kwargs: dict[str, Any]) -> str:
    """Worker entry point (module level so spawned processes can import it)."""
    return str(generate_scene(**kwargs))


def _mp_context() -> BaseContext:
    """fork on Linux: no re-import of torch per worker and no ``if __name__ == "__main__"`` needed in scripts
    (workers only use NumPy and Embree, never torch or CUDA); spawn elsewhere."""
    if sys.platform.startswith("linux") and "fork" in get_all_start_methods():
        return get_context("fork")
    return get_context("spawn")


def _scene_complete(path: Path) -> bool:
    return (path / "transforms.json").is_file()


def data_root(root: str | Path) -> Path:
    """Where a dataset root lies: a relative ``root`` goes under ``FIT3D_DATA_HOME`` when it is set. In Colab,
    ``setup_notebook(drive_folder=...)`` sets it to the Drive folder, so the scenes outlive the runtime like the
    artifacts (scene ids do not depend on the folder, so every artifact still hits)."""
    root = Path(root)
    home = os.environ.get("FIT3D_DATA_HOME")
    return Path(home) / root if home and not root.is_absolute() else root


def generate_dataset(
    root: str | Path = "data/synthetic",
    *,
    n_train: int = 4,
    n_val: int = 2,
    n_views: int = 24,
    width: int = 224,
    height: int = 168,
    seed: int = 0,
    workers: int = 2,
    force: bool = False,
    scene_options: Mapping[str, Any] | None = None,
) -> DatasetInfo:
    """Generate (or find cached) train/val rooms under ``root/<config-hash>/``.

    The folder is named by the hash of every setting that changes the output, so a second call with the same
    settings finds the dataset and renders nothing. It is kept like a stage artifact (:func:`cache.build_dir`): a
    new dataset is written beside the old one and ``CURRENT`` switches atomically, under the key's lock, so a
    process loading the scenes never sees them half-removed (``force=True`` included) and two runs of the same
    settings never collide (the second waits and reuses). An interrupted run resumes with the scenes it finished.
    Scene i of each split is a dining room for even i and a bedroom for odd i (both splits get beds and tables).
    ``scene_options`` are passed to :func:`generate_scene` (e.g. ``{"max_edge": 0.2}``); ``workers`` processes
    render scenes in parallel (it does not change the output).
    """
    t0 = time.perf_counter()
    opts = dict(scene_options or {})
    params = {
        "n_train": n_train,
        "n_val": n_val,
        "n_views": n_views,
        "width": width,
        "height": height,
        "seed": seed,
        "scene_options": opts,
        "version": GENERATOR_VERSION,
    }
    kd = data_root(root) / config_hash(params)
    names = {"train": [f"train_{i:03d}" for i in range(n_train)], "val": [f"val_{i:03d}" for i in range(n_val)]}
    made: list[bool] = []

    def make(out: Path, resume: Path) -> dict[str, Any]:
        made.append(True)
        _render_scenes(kd, resume, names, params, workers)
        for name in names["train"] + names["val"]:
            os.rename(resume / name, out / name)
        index = {**names, "classes": CLASSES, "params": params, "seconds": round(time.perf_counter() - t0, 3)}
        write_json(out / "dataset.json", index)
        return index

    found = None if force else cache.lookup_dir(kd, "synthetic")
    if found is not None and not all(_scene_complete(found.path / n) for n in names["train"] + names["val"]):
        force = True  # a damaged dataset (a scene deleted by hand): make a new version beside it
    what = f"the synthetic dataset {kd}"
    art = cache.build_dir(kd, params, make, force=force, what=what, stage="synthetic")
    index = art.stats
    return DatasetInfo(
        art.path,
        [art.path / n for n in index["train"]],
        [art.path / n for n in index["val"]],
        list(index["classes"]),
        float(index["seconds"]),
        params,
        not made,
    )


def _render_scenes(kd: Path, resume: Path, names: dict[str, list[str]], params: dict[str, Any], workers: int) -> None:
    """Under the dataset's lock: render into ``resume`` every scene that is not complete there yet (an interrupted
    run's scenes are kept; scenes of the layout before versions, ``<root>/<hash>/train_000``, are taken over)."""
    for name in names["train"] + names["val"]:
        if _scene_complete(kd / name) and not (resume / name).exists():
            os.rename(kd / name, resume / name)  # the old layout's complete scene: same generator, same files
    for stale in [*kd.glob(".*.tmp-*"), *resume.glob(".*.tmp-*"), kd / "dataset.json"]:
        if stale.is_dir():  # leftovers of an interrupted run
            shutil.rmtree(stale, ignore_errors=True)
        elif stale.is_file():
            stale.unlink()
    jobs = []
    for split_id, split in enumerate(("train", "val")):
        for i, name in enumerate(names[split]):
            if not _scene_complete(resume / name):
                shutil.rmtree(resume / name, ignore_errors=True)
                jobs.append(
                    {
                        "out_dir": str(resume / name),
                        "seed": _scene_seed(params["seed"], split_id, i),
                        "n_views": params["n_views"],
                        "width": params["width"],
                        "height": params["height"],
                        "room_kind": ROOM_KINDS[i % len(ROOM_KINDS)],
                        **params["scene_options"],
                    }
                )
    bar = progress(total=len(jobs), desc="synthetic scenes", unit="scene")
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            _generate_one({**job, "show_progress": True})
            bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=_mp_context()) as ex:
            futures = [ex.submit(_generate_one, {**job, "show_progress": False}) for job in jobs]
            for fut in as_completed(futures):
                fut.result()
                bar.update(1)
    bar.close()
