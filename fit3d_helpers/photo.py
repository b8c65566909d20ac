"""Notebook 06: a photo of yours through the original backbone and its 3D-aware version (no earlier notebook needed).

Why a module: the notebook shows the comparison; loading a photo (upload, path or the bundled CC0 picture), finding
the 3D-aware weights (released FiT3D checkpoint, else this course's own fine-tuned model, else none) and computing
the two feature maps is code other notebooks and tests reuse.

A photo is read with the scene loader's reader (:func:`fit3d_helpers.readers.read_image`: 8/16-bit colour, grey,
palette; a corrupt file is an error naming it), then turned upright by its EXIF orientation, as a phone's gallery
shows it. Scene images are not turned: their camera intrinsics describe the stored pixels.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from . import cache
from .backbone import Backbone, WeightsError, load_backbone
from .readers import read_image

BUNDLED = "scikit-image's data.coffee() (Rachel Michetti, CC0)"
MIN_SIDE = 14  # one ViT patch
_EXIF_ORIENTATION = 0x0112


def batch_run() -> bool:
    """True when no person is at the notebook, so a file chooser would wait forever.

    The signal: a notebook executed by nbclient (which papermill, nbmake and ``jupyter nbconvert --execute`` all use)
    sends every cell with ``allow_stdin=False`` (nbclient sets ``kc.allow_stdin = False``), and ipykernel records it
    per cell as ``kernel._allow_stdin``; an interactive frontend (Colab, JupyterLab, VS Code) sends ``True``, since
    ``input()`` works there. Also batch: our runner (``FIT3D_BATCH=1``) and code outside a kernel (plain Python).
    """
    if os.environ.get("FIT3D_BATCH") == "1":
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return True
    kernel = getattr(get_ipython(), "kernel", None)
    return kernel is None or not bool(getattr(kernel, "_allow_stdin", False))


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """[H, W, C] turned upright by an EXIF orientation tag (1-8), as ``PIL.ImageOps.exif_transpose`` does."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],  # mirrored left-right
        3: lambda a: a[::-1, ::-1],  # rotated 180°
        4: lambda a: a[::-1],  # mirrored top-bottom
        5: lambda a: a.transpose(1, 0, 2),  # transposed
        6: lambda a: np.rot90(a, -1),  # shot rotated: turn 90° clockwise
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # transversed
        8: lambda a: np.rot90(a, 1),  # turn 90° counter-clockwise
    }
    return np.ascontiguousarray(ops.get(int(orientation), ops[1])(image))


def _exif_orientation(path: Path) -> int:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # no EXIF block, or one PIL cannot parse: the stored pixels are the picture
        return 1


def read_photo(path: str | Path, where: str = "image_path") -> np.ndarray:
    """float32 [H, W, 3] in 0..1, upright: the scene loader's reader (a corrupt or truncated file raises an error
    naming it) plus the EXIF orientation."""
    p = Path(path)
    return orient(read_image(p, where), _exif_orientation(p))


def _check_max_side(max_side: Any) -> int:
    if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side < MIN_SIDE:
        raise ValueError(
            f"max_side={max_side!r}: the photo's longer side must be a whole number of pixels, at least {MIN_SIDE} "
            "(one patch); notebook 06's default is 518 (e.g. --set 06.max_side=518)"
        )
    return int(max_side)


def load_photo(path: str | Path | None = None, *, max_side: int = 518, ask: bool = False) -> tuple[np.ndarray, str]:
    """An RGB photo as float32 [H, W, 3] in 0..1 with its longer side ``max_side`` px, and where it came from.

    ``path`` wins; else, with ``ask`` (Colab) and a person at the notebook (not :func:`batch_run`), a file chooser;
    else the bundled CC0 picture.
    """
    side = _check_max_side(max_side)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(
                f"image_path={str(path)!r} does not exist; pass a photo file, or None for the bundled one"
            )
        img, source = read_photo(p), str(p)
    elif ask and not batch_run():
        from google.colab import files  # type: ignore[import-not-found]

        uploaded = files.upload()
        if uploaded:
            name, data = next(iter(uploaded.items()))
            with tempfile.TemporaryDirectory() as tmp:
                tmp_file = Path(tmp) / Path(name).name
                tmp_file.write_bytes(data)
                img = read_photo(tmp_file, where=f"uploaded photo {name!r}")
            source = f"uploaded {name}"
        else:
            img, source = _bundled(), BUNDLED
    else:
        img, source = _bundled(), BUNDLED
    return _resize(img, side), source


def _resize(img: np.ndarray, max_side: int) -> np.ndarray:
    """Longer side to ``max_side`` (bicubic, antialiased), in float so 16-bit photos keep their precision."""
    h, w = img.shape[:2]
    scale = max_side / max(h, w)
    if scale == 1:
        return img.astype(np.float32, copy=False)
    size = (max(MIN_SIDE, round(h * scale)), max(MIN_SIDE, round(w * scale)))
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]  # [1, 3, H, W]
    y = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    return y[0].permute(1, 2, 0).numpy()


def _bundled() -> np.ndarray:
    from skimage import data

    return data.coffee().astype(np.float32) / 255.0


class Models(NamedTuple):
    """What notebook 06 compares: the original, its 3D-aware version (or None), that row's label, and a note saying
    which 3D-aware weights were used and why the others were not."""

    original: Backbone
    tuned: Backbone | None
    tuned_label: str
    note: str


def models_for(prof: Any, artifacts_dir: str | Path, device: str = "auto") -> Models:
    """FiT3D's released checkpoint when it can be loaded, else the newest loadable fine-tuned model of this course for
    the same backbone and weights (an unloadable one is skipped, and the note says so), else None.

    The original comes from :func:`pipeline.backbone_for`, so the paper profile refuses random weights here too.
    """
    from .pipeline import backbone_for

    precision = prof.backbone.precision
    original = backbone_for(prof, device)
    try:
        released = load_backbone(prof.backbone.name, "fit3d", device=device, precision=precision)
        return Models(original, released, "FiT3D (released checkpoint)", "FiT3D's released checkpoint")
    except WeightsError as err:
        reason = f"FiT3D's released checkpoint: {str(err).rstrip('.')}"  # whole message: it names the path to fill
    ident = original.identity()
    ours = [
        a
        for a in cache.iter_artifacts(artifacts_dir)
        if a.stage == "finetune"
        and a.config.get("backbone") == ident["backbone"]
        and a.config.get("weights") == ident["weights"]
        and (a.path / "model.pth").is_file()
    ]
    skipped: list[str] = []
    for art in sorted(ours, key=lambda a: a.mtime, reverse=True):
        try:
            tuned = load_backbone(prof.backbone.name, str(art.path / "model.pth"), device=device, precision=precision)
        except WeightsError as err:
            bad = art.path / "model.pth"
            skipped.append(f"skipped this course's fine-tuned model {bad}, which cannot be loaded: {err}")
            continue
        tuned.source_id = f"finetune/{art.hash}"
        label = "this course's fine-tuned model" + (" (random weights)" if original.is_random else "")
        note = "; ".join([f"{label}, artifact {art.hash}", reason, *skipped])
        return Models(original, tuned, label, note)
    where = "" if skipped else f"; and no fine-tuned model of this course in {artifacts_dir}"
    return Models(original, None, "", "; ".join([f"none, only the original is shown ({reason}{where})", *skipped]))


def original_label(original: Backbone) -> str:
    return f"{original.name} (original{', random weights' if original.is_random else ''})"


@torch.no_grad()
def features(
    image: np.ndarray, original: Backbone, tuned: Backbone | None, tuned_label: str = "3D-aware"
) -> dict[str, list[torch.Tensor]]:
    """Patch features [D, h, w] of the photo, one row per model (what ``viz.pca_figure`` / ``kmeans_figure`` take).
    ``tuned_label`` names the second row (:class:`Models` gives it: "FiT3D" only for the released checkpoint)."""
    x = torch.as_tensor(np.ascontiguousarray(image)).permute(2, 0, 1)[None]  # [1, 3, H, W]
    rows = {original_label(original): [original.features(x)[0][0]]}
    if tuned is not None:
        rows[tuned_label or "3D-aware"] = [tuned.features(x)[0][0]]
    return rows
