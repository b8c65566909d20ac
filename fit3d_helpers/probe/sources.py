"""Where the official protocol's samples come from (our scenes or the official evaluation sets) and how a training
batch is drawn and augmented (seeded per sample, so the batches do not depend on the number of loader workers)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import augment as AUG
from ..probe_data import ProbeData, probe_data
from .settings import OfficialSettings


class SceneSource:
    """Probe samples from our scene folders (the synthetic rooms): every view, with labels and depth.

    Loaded on first use (``load_scene`` reads a whole scene) and kept as ``uint8`` images, labels and float depth;
    these are the small synthetic sets the cached protocol already holds in memory. Depth beyond ``max_depth`` is
    0 (invalid), as :func:`probe_data`. Views keep their poses, for the 3D-awareness check."""

    kind = "scenes"
    has_labels = True
    has_depth = True
    nyu = False  # no NYUCrop

    def __init__(self, scenes: list[Path], max_depth: float = 10.0, min_depth: float = 1e-3) -> None:
        self.scenes = [Path(p) for p in scenes]
        self.max_depth = float(max_depth)
        self.min_depth = float(min_depth)
        self._data: ProbeData | None = None
        self._images: Tensor | None = None

    def _loaded(self) -> ProbeData:
        if self._data is None:
            data = probe_data(self.scenes, self.max_depth)
            self._images = (data.images * 255.0).round().clamp(0, 255).to(torch.uint8)  # [N, H, W, 3]
            self._data = dataclasses.replace(data, images=torch.empty(0))  # drop the float copy
        return self._data

    def __len__(self) -> int:
        return len(self._loaded().scene_of)

    @property
    def classes(self) -> list[str]:
        return list(self._loaded().classes)

    @property
    def views(self) -> list:
        return self._loaded().views

    def load(self, i: int) -> dict[str, Any]:
        d = self._loaded()
        assert self._images is not None
        return {"image": self._images[i].numpy(), "labels": d.labels[i].numpy(), "depth": d.depth[i].numpy()}

    def eval_mask(self, depth: np.ndarray) -> np.ndarray:
        depth = np.asarray(depth)
        return (depth > self.min_depth) & (depth < self.max_depth)

    def key(self) -> dict[str, Any]:
        from .. import cache

        return {"kind": "scenes", "scenes": [cache.scene_id(p) for p in self.scenes], "max_depth": self.max_depth}

    def __repr__(self) -> str:
        return f"SceneSource({[p.name for p in self.scenes]}, max_depth={self.max_depth})"


class EvalSetSource:
    """Probe samples of an official evaluation split (:class:`fit3d_helpers.evaldata.EvalSet`), read one at a time
    from disk. Training depth is the raw ground truth (0 = invalid; the official SigLoss masks ``gt > 0`` only,
    dinov2 losses/sigloss.py:44 (h)); evaluation uses the set's official mask (range + NYU's Eigen crop)."""

    kind = "evalset"

    def __init__(self, evalset: Any) -> None:
        self.set = evalset
        self.has_labels = bool(evalset.has_labels)
        self.has_depth = bool(evalset.has_depth)
        self.min_depth = float(evalset.min_depth)
        self.max_depth = float(evalset.max_depth)
        self.nyu = evalset.train_crop is not None  # only NYU depth has the NYUCrop in its training pipeline

    def __len__(self) -> int:
        return len(self.set)

    @property
    def classes(self) -> list[str]:
        return list(self.set.classes)

    views: list = []

    def load(self, i: int) -> dict[str, Any]:
        s = self.set.load(i)
        if s["labels"] is not None:
            self.set.check_label_ids(s["labels"], self.set.items[i].label_path)
        return s

    def eval_mask(self, depth: np.ndarray) -> np.ndarray:
        return self.set.eval_mask(depth)

    def key(self) -> dict[str, Any]:
        """Portable: the set's name, split file/folder and length, and a digest of its samples' root-relative paths."""
        import hashlib

        root = self.set.root
        rels = []
        for it in self.set.items:
            for p in (it.image_path, it.label_path, it.depth_path):
                if p is None:
                    continue
                try:
                    rels.append(str(Path(p).relative_to(root)) if root is not None else Path(p).name)
                except ValueError:
                    rels.append(Path(p).name)
        digest = hashlib.sha256("\n".join(rels).encode()).hexdigest()[:12]
        return {"kind": "evalset", "name": self.set.name, "split": str(self.set.split), "n": len(self), "items": digest}

    def __repr__(self) -> str:
        return f"EvalSetSource({self.set.name!r}, split={self.set.split!r}, n={len(self)})"


def as_probe_source(obj: Any, max_depth: float = 10.0) -> Any:
    """A probe source from an :class:`~fit3d_helpers.evaldata.EvalSet`, a list of scene folders, or a source."""
    if hasattr(obj, "load") and hasattr(obj, "key") and hasattr(obj, "eval_mask"):
        return obj
    if hasattr(obj, "items") and hasattr(obj, "has_labels"):  # an EvalSet
        return EvalSetSource(obj)
    if isinstance(obj, (list, tuple)):
        return SceneSource(list(obj), max_depth)
    raise TypeError(f"cannot probe {type(obj).__name__}: pass an EvalSet, scene folders or a probe source")


# --- batches -------------------------------------------------------------------------------------------------

_TASK_ID = {"seg": 0, "depth": 1}


def sample_rng(seed: int, task: str, step: int, slot: int) -> np.random.Generator:
    """The augmentation RNG of one sample: seeded by (seed, task, step, slot), so a batch is the same whatever the
    number of loader workers."""
    return np.random.default_rng([int(seed), _TASK_ID[task], int(step), int(slot)])


def augment_sample(
    task: str,
    sample: dict[str, Any],
    rng: np.random.Generator,
    settings: OfficialSettings,
    *,
    nyu: bool = False,
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """One training sample through the official pipeline: ``(image [3, h, w] 0..1, labels [h, w] | depth [h, w])``."""
    if task == "seg":
        return AUG.seg_train_augment(
            sample["image"],
            sample["labels"],
            rng,
            img_scale=settings.seg_img_scale,
            ratio_range=settings.seg_ratio_range,
            crop_size=settings.seg_crop,
            cat_max_ratio=settings.seg_cat_max_ratio,
            flip_prob=settings.seg_flip_prob,
            photometric=settings.seg_photometric,
            device=device,
        )
    return AUG.depth_train_augment(
        sample["image"],
        sample["depth"],
        rng,
        nyu=nyu,
        crop_size=settings.depth_crop,
        rotate_prob=settings.depth_rotate_prob,
        rotate_degree=settings.depth_rotate_degree,
        flip_prob=settings.depth_flip_prob,
        color_prob=settings.depth_color_prob,
        gamma_range=settings.depth_gamma_range,
        brightness_range=settings.depth_brightness_range,
        color_range=settings.depth_color_range,
        device=device,
    )


def collate_official(task: str, items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Stack augmented samples; different sizes are padded at the bottom/right (image: ImageNet mean, i.e. 0 after
    normalisation, as mmcv's collate pads the normalised tensors with 0; labels 255; depth 0 = invalid)."""
    h = max(int(x.shape[-2]) for x, _ in items)
    w = max(int(x.shape[-1]) for x, _ in items)
    imgs, targets = [], []
    for x, y in items:
        if task == "seg":
            x, y = AUG.pad_to(x, y, (h, w))
        elif tuple(x.shape[-2:]) != (h, w):
            x, _ = AUG.pad_to(x, None, (h, w))
            y = F.pad(y, (0, w - y.shape[-1], 0, h - y.shape[-2]))
        imgs.append(x)
        targets.append(y)
    return torch.stack(imgs), torch.stack(targets)


def make_batch(
    task: str,
    source: Any,
    indices: Iterable[int],
    step: int,
    settings: OfficialSettings,
    seed: int,
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """The augmented batch of training ``step``: ``(images [B, 3, h, w] 0..1, labels [B, h, w] | depth [B, h, w])``."""
    items = [
        augment_sample(
            task, source.load(int(i)), sample_rng(seed, task, step, j), settings, nyu=source.nyu, device=device
        )
        for j, i in enumerate(indices)
    ]
    return collate_official(task, items)


class _Jobs(torch.utils.data.Dataset):
    """(sample index, step, slot) jobs for DataLoader workers; each job is augmented on the CPU."""

    def __init__(self, task: str, source: Any, order: list[list[int]], settings: OfficialSettings, seed: int) -> None:
        self.task, self.source, self.settings, self.seed = task, source, settings, seed
        self.jobs = [(i, s, j) for s, idx in enumerate(order) for j, i in enumerate(idx)]

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        i, s, j = self.jobs[k]
        rng = sample_rng(self.seed, self.task, s, j)
        return augment_sample(self.task, self.source.load(i), rng, self.settings, nyu=self.source.nyu)


def _batch_stream(
    task: str, source: Any, order: list[list[int]], settings: OfficialSettings, seed: int, device, num_workers: int
) -> Iterable[tuple[Tensor, Tensor]]:
    if num_workers <= 0:
        for step, idx in enumerate(order):
            yield make_batch(task, source, idx, step, settings, seed, device=device)
        return
    sizes = {len(idx) for idx in order}
    if len(sizes) != 1:
        raise ValueError("batches must have one size")
    loader = torch.utils.data.DataLoader(
        _Jobs(task, source, order, settings, seed),
        batch_size=sizes.pop(),
        shuffle=False,
        num_workers=num_workers,
        collate_fn=functools.partial(collate_official, task),
        persistent_workers=False,
    )
    yield from loader
