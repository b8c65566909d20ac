"""Notebook 06: a photo of yours through the original backbone and its 3D-aware version (no earlier notebook needed).

Why a module: the notebook shows the comparison; loading a photo (upload, path or the bundled CC0 picture), finding
the 3D-aware weights (released FiT3D checkpoint, else this course's own fine-tuned model, else none) and computing
the two feature maps is code other notebooks and tests reuse.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import cache
from .backbone import Backbone, WeightsError, load_backbone

BUNDLED = "scikit-image's data.coffee() (Rachel Michetti, CC0)"


def load_photo(path: str | Path | None = None, *, max_side: int = 518, ask: bool = False) -> tuple[np.ndarray, str]:
    """An RGB photo as float32 [H, W, 3] in 0..1 with its longer side ``max_side`` px, and where it came from.

    ``path`` wins; else, with ``ask`` (Colab, not a batch run), a file chooser; else the bundled CC0 picture.
    """
    source: str
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(
                f"image_path={str(path)!r} does not exist; pass a photo file, or None for the bundled one"
            )
        img, source = Image.open(p), str(p)
    elif ask and os.environ.get("FIT3D_BATCH") != "1":
        from google.colab import files  # type: ignore[import-not-found]

        uploaded = files.upload()
        if uploaded:
            import io

            name, data = next(iter(uploaded.items()))
            img, source = Image.open(io.BytesIO(data)), f"uploaded {name}"
        else:
            img, source = _bundled(), BUNDLED
    else:
        img, source = _bundled(), BUNDLED
    img = img.convert("RGB")
    scale = max_side / max(img.size)
    if scale != 1:
        img = img.resize((max(14, round(img.width * scale)), max(14, round(img.height * scale))), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 255.0, source


def _bundled() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.coffee())


def models_for(prof: Any, artifacts_dir: str | Path, device: str = "auto") -> tuple[Backbone, Backbone | None, str]:
    """(original, 3D-aware or None, a line saying which 3D-aware weights): FiT3D's released checkpoint when it can be
    loaded, else the newest fine-tuned model of this course for the same backbone and weights, else None."""
    precision = prof.backbone.precision
    original = load_backbone(prof.backbone.name, prof.backbone.weights, device=device, precision=precision)
    try:
        released = load_backbone(prof.backbone.name, "fit3d", device=device, precision=precision)
        return original, released, "FiT3D's released checkpoint"
    except WeightsError as err:
        reason = str(err).split(":")[0]
    ours = [
        a
        for a in cache.iter_artifacts(artifacts_dir)
        if a.stage == "finetune"
        and a.config.get("backbone") == original.identity()["backbone"]
        and a.config.get("weights") == original.identity()["weights"]
        and (a.path / "model.pth").is_file()
    ]
    if ours:
        newest = max(ours, key=lambda a: a.mtime)
        tuned = load_backbone(prof.backbone.name, str(newest.path / "model.pth"), device=device, precision=precision)
        tuned.source_id = f"finetune/{newest.hash}"
        return original, tuned, f"this course's fine-tuned model (artifact {newest.hash}; {reason})"
    return original, None, f"none ({reason}; and no fine-tuned model of this course in {artifacts_dir})"


@torch.no_grad()
def features(image: np.ndarray, original: Backbone, tuned: Backbone | None) -> dict[str, list[torch.Tensor]]:
    """Patch features [D, h, w] of the photo, one row per model (what ``viz.pca_figure`` / ``kmeans_figure`` take)."""
    x = torch.as_tensor(image).permute(2, 0, 1)[None]  # [1, 3, H, W]
    rows = {f"{original.name} (original)": [original.features(x)[0][0]]}
    if tuned is not None:
        rows["3D-aware (FiT3D)"] = [tuned.features(x)[0][0]]
    return rows
