"""Probe inputs read from scenes: images, labels and depth of every view, stacked (the data side of the probes).

Why here and not in :mod:`fit3d_helpers.probe`: readers (:mod:`fit3d_helpers.evaldata`, the probe stage, notebooks)
need this container without importing the probe heads and training loops, so the import graph runs one way:
data -> probe_data -> evaldata -> probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

IGNORE_INDEX = 255  # label value of unlabelled pixels (mmseg's ignore index)


@dataclass
class ProbeData:
    """Images, labels and depth of a list of scenes, stacked (views of all scenes)."""

    images: Tensor  # [N, H, W, 3] float32 0..1
    labels: Tensor  # [N, H, W] int64, 255 ignore
    depth: Tensor  # [N, H, W] metres, 0 invalid
    scene_of: list[int]  # scene index of each view
    views: list  # data.View objects (poses, for the 3D-awareness check)
    classes: list[str]


def probe_data(scenes: list[Path], max_depth: float = 10.0) -> ProbeData:
    """Stack the views of ``scenes``; checks label ids against the class table and masks depth beyond ``max_depth``."""
    from .data import load_scene

    images, labels, depth, scene_of, views, classes = [], [], [], [], [], None
    for si, path in enumerate(scenes):
        scene = load_scene(path)
        classes = classes or scene.classes
        for v in scene.views:
            if v.labels is None or v.depth is None:
                raise ValueError(f"{scene.name}/{v.name}: probing needs labels and depth for every view")
            n_classes = len(scene.classes or [])
            bad = (v.labels != IGNORE_INDEX) & ((v.labels < 0) | (v.labels >= n_classes))
            if bad.any():
                raise ValueError(
                    f"{scene.name}/{v.name}: label ids {sorted(set(v.labels[bad].tolist()))[:5]} are outside the class "
                    f"table (0..{n_classes - 1}, 255 = ignore)"
                )
            images.append(torch.as_tensor(v.image))
            labels.append(torch.as_tensor(v.labels).long())
            d = torch.as_tensor(v.depth).float()
            depth.append(torch.where(torch.isfinite(d) & (d > 0) & (d <= max_depth), d, torch.zeros_like(d)))
            scene_of.append(si)
            views.append(v)
    return ProbeData(torch.stack(images), torch.stack(labels), torch.stack(depth), scene_of, views, list(classes or []))


__all__ = ["IGNORE_INDEX", "ProbeData", "probe_data"]
