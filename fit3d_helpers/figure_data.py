"""The data of the presenter's figures, computed once as a cached stage (``figures``, run by notebook 04).

:func:`figure_data` stores what the drawings need for a few held-out views: the images, the original backbone's
features, the rendered 3D-consistent features (the fine-tuning targets of the lifted held-out scene), the fine-tuned
model's features (and FiT3D's released model's, when it loads), and the nearest-neighbour matches of one covisible view
pair under the original and the fine-tuned features. Drawing them is :mod:`fit3d_helpers.course.figures`' job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import cache


def _spread(n_total: int, n: int) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, n_total - 1, min(n, n_total))})


@torch.no_grad()
def nearest_matches(feat_a: Tensor, feat_b: Tensor, uv_a: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """For points ``uv_a [M, 2]`` of view A: the centre of B's token most similar (cosine) to A's feature there."""
    from .awareness import sample_features, token_centres

    fa = F.normalize(sample_features(feat_a.float(), uv_a.float(), image_hw), dim=1)  # [M, D]
    fb = F.normalize(feat_b.float().reshape(feat_b.shape[0], -1).T, dim=1)  # [P, D]
    centres = token_centres(tuple(feat_b.shape[-2:]), image_hw).float()  # [P, 2]
    return centres[(fa @ fb.T).argmax(dim=1)]  # [M, 2]


def figure_data(
    prof: Any,
    split: Any,
    original: Any,
    tuned: Any,
    root: str | Path,
    *,
    n_views: int = 3,
    n_matches: int = 40,
    force: bool = False,
) -> cache.Artifact:
    """Compute (once, cached) the data of the presenter's figures on the first held-out scene."""
    from . import pipeline
    from .awareness import correspondences, covisible_pairs
    from .backbone import WeightsError, load_backbone
    from .data import load_scene
    from .finetune import scene_targets

    scene_path = split.val[0]
    key = {
        "stage": "figures",
        "original": original.identity(),
        "finetuned": tuned.identity(),
        "scene": cache.scene_id(scene_path),
        "n_views": n_views,
        "n_matches": n_matches,
        "seed": prof.seed,
        "mask": prof.finetune.mask,
    }

    def make(out: Path, resume: Path) -> dict[str, Any]:
        scene = load_scene(scene_path)
        ids = _spread(len(scene.views), n_views)
        images = torch.stack([torch.as_tensor(scene.views[i].image) for i in ids])  # [n, H, W, 3]
        x = images.permute(0, 3, 1, 2)
        f_orig, _ = original.features(x)
        f_ft, _ = tuned.features(x)
        (lift,) = pipeline.lifts_for(prof, original, [scene_path], root, needed_by="the report's figures")
        targets, _ = scene_targets(lift, original, mask=prof.finetune.mask, root=root)
        rendered = targets.targets[ids]  # [n, D, h, w] the 3D-consistent features stage 2 trains towards
        data: dict[str, Any] = {
            "images": images,
            "original": f_orig,
            "rendered": rendered,
            "finetuned": f_ft,
            "view_ids": torch.tensor(ids),
        }
        released = "not loaded"
        if tuned.identity()["weights"] != "fit3d":
            try:
                fit3d = load_backbone(original.name, "fit3d", device=original.device,
                                      precision="bf16" if original.bf16 else "fp32")  # fmt: skip
                data["released"] = fit3d.features(x)[0]
                released = "loaded"
            except WeightsError as err:
                released = f"not available ({str(err).split(':')[0]})"
        # one covisible pair, matched by nearest neighbour under each feature variant
        grid = tuple(f_orig.shape[-2:])
        pairs = covisible_pairs(scene.views, grid, max_pairs=6)
        if pairs:
            a, b, _ = pairs[len(pairs) // 2]
            va, vb = scene.views[a], scene.views[b]
            uv_a, uv_b = correspondences(va.depth, va.K, va.cam_to_world, vb.depth, vb.K, vb.cam_to_world, grid)
            pick = torch.randperm(uv_a.shape[0], generator=torch.Generator().manual_seed(prof.seed))[:n_matches]
            uv_a, uv_b = uv_a[pick], uv_b[pick]
            pair_x = torch.stack([torch.as_tensor(va.image), torch.as_tensor(vb.image)]).permute(0, 3, 1, 2)
            hw = (va.height, va.width)
            fo, ff = original.features(pair_x)[0], tuned.features(pair_x)[0]
            data.update(
                pair_images=pair_x.permute(0, 2, 3, 1),
                pair_ids=torch.tensor([a, b]),
                uv_a=uv_a,
                uv_true=uv_b,
                uv_original=nearest_matches(fo[0], fo[1], uv_a, hw),
                uv_finetuned=nearest_matches(ff[0], ff[1], uv_a, hw),
            )
        torch.save(data, out / "figures.pt")
        return {
            "stage": "figures",
            **{k: v for k, v in original.describe().items() if k in ("backbone", "weights")},
            "finetuned": tuned.identity()["weights"],
            "scene": scene.name,
            "views": ids,
            "released": released,
            "pair": data["pair_ids"].tolist() if "pair_ids" in data else None,
        }

    return cache.build("figures", key, root, make, force=force, what="the report's figures")
