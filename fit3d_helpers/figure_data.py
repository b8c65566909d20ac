"""The data of the presenter's figures, computed once as a cached stage (``figures``, run by notebook 04).

:func:`figure_data` stores what the drawings need, all from the first validation scene (``split.val[0]``: a scene
fine-tuning never sees):

* three **views held out twice**: views stage 1 did not fit (the lift's hold-out split, ``lift.holdout_every``) of a
  scene stage 2 never trained on, picked far apart in viewpoint (farthest-point sampling on the cameras). Where stage 1
  holds nothing out (``holdout_every = 0``, the official recipe) the views are only held out of fine-tuning, and
  ``stats["heldout"]`` says so. Per view: the image, the original backbone's features, the rendered 3D-consistent
  features (the fine-tuning targets of the lifted scene), the fine-tuned model's features (and FiT3D's released
  model's, when it loads).
* one **covisible pair**, drawn from the same list of pairs the probe's 3D-awareness check pools for this scene
  (``covisible_pairs(..., max_pairs=12)``, :func:`fit3d_helpers.probe.stage._awareness`): its ground-truth
  correspondences, a sample of them, and where each one's cosine nearest neighbour lands under the original and the
  fine-tuned features (the same rule as the check: A's feature sampled at the point, B's token centres as candidates).
  ``pair_features`` keeps the pair's three feature variants (float16) for the click-a-pixel viewer.

Drawing them is :mod:`fit3d_helpers.course.figures`' job; the viewer is :mod:`fit3d_helpers.course.viewer`'s.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import cache

#: the pairs the 3D-awareness check pools per scene (``probe.stage._awareness``); the figure's pair is one of them
AWARENESS_MAX_PAIRS = 12
#: the check's threshold, in image pixels
MATCH_PX = 14.0


def _spread(n_total: int, n: int) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, n_total - 1, min(n, n_total))})


def spread_views(c2w: Tensor | np.ndarray, candidates: list[int], n: int) -> list[int]:
    """``n`` of ``candidates`` far apart in viewpoint, on (camera centre, viewing direction) each scaled to unit
    spread: the subset with the largest smallest pairwise distance (few candidates), else farthest-point sampling
    from the first candidate. Returns them sorted."""
    c2w = torch.as_tensor(np.asarray(c2w), dtype=torch.float64)
    if len(candidates) <= n:
        return sorted(candidates)
    pos = c2w[candidates, :3, 3]
    fwd = c2w[candidates, :3, 2]
    pos = (pos - pos.mean(0)) / pos.std(0).norm().clamp_min(1e-9)
    emb = torch.cat([pos, fwd / fwd.std(0).norm().clamp_min(1e-9)], dim=1)
    pd = torch.cdist(emb, emb)
    if math.comb(len(candidates), n) <= 20000:
        best = max(
            itertools.combinations(range(len(candidates)), n),
            key=lambda c: min(float(pd[i, j]) for i, j in itertools.combinations(c, 2)),
        )
        return sorted(candidates[i] for i in best)
    chosen = [0]
    dist = pd[0].clone()
    while len(chosen) < n:
        nxt = int(dist.argmax())
        chosen.append(nxt)
        dist = torch.minimum(dist, (emb - emb[nxt]).norm(dim=1))
    return sorted(candidates[i] for i in chosen)


def pick_views(c2w: np.ndarray, holdout_every: int, n: int = 3) -> tuple[list[int], str]:
    """Figure 1's views of a validation scene (``c2w [V, 4, 4]`` in stage 1's view order): ``n`` of the views stage 1
    held out (:func:`fit3d_helpers.profiles.holdout_split`), spread in viewpoint, and ``"stage 1 and fine-tuning"``;
    where stage 1 held out fewer than ``n`` (``holdout_every = 0``: the official recipe), ``n`` spread views of all and
    ``"fine-tuning"`` (the scene is a validation scene: fine-tuning never sees it)."""
    from .profiles import holdout_split

    _, held = holdout_split(len(c2w), holdout_every)
    if len(held) >= n:
        return spread_views(c2w, held, n), "stage 1 and fine-tuning"
    return spread_views(c2w, list(range(len(c2w))), n), "fine-tuning"


@torch.no_grad()
def nearest_matches(feat_a: Tensor, feat_b: Tensor, uv_a: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """For points ``uv_a [M, 2]`` of view A: the centre of B's token most similar (cosine) to A's feature there (the
    rule of :func:`fit3d_helpers.awareness.correspondence_scores` with ``b_upsample = 1``)."""
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
    """Compute (once, cached) the data of the presenter's figures on the first held-out scene (see the module)."""
    from . import pipeline
    from .data import load_scene
    from .finetune import scene_targets

    scene_path = split.val[0]
    key = {
        "stage": "figures",
        "version": 2,  # 2: views held out of stage 1, the awareness check's pair, the viewer's pair features
        "original": original.identity(),
        "finetuned": tuned.identity(),
        "scene": cache.scene_id(scene_path),
        "holdout_every": prof.lift.holdout_every,
        "n_views": n_views,
        "n_matches": n_matches,
        "seed": prof.seed,
        "mask": prof.finetune.mask,
    }

    def make(out: Path, resume: Path) -> dict[str, Any]:
        (lift,) = pipeline.lifts_for(prof, original, [scene_path], root, needed_by="the report's figures")
        targets, _ = scene_targets(lift, original, mask=prof.finetune.mask, root=root)
        # the views as stage 1 indexed them (ScanNet++: frames, then test_frames), so the split and targets line up
        with_test = bool(lift.config.get("test_frames"))
        lifted = load_scene(scene_path, include_test_frames=with_test)
        every = int(lift.config.get("lift", {}).get("holdout_every", prof.lift.holdout_every))
        ids, heldout = pick_views(np.stack([v.cam_to_world for v in lifted.views]), every, n_views)
        images = targets.images[ids].permute(0, 2, 3, 1).contiguous()  # [n, H, W, 3], the views the targets render
        x = images.permute(0, 3, 1, 2)
        f_orig, _ = original.features(x)
        f_ft, _ = tuned.features(x)
        rendered = targets.targets[ids]  # [n, D, h, w] the 3D-consistent features stage 2 trains towards
        data: dict[str, Any] = {
            "images": images,
            "original": f_orig,
            "rendered": rendered,
            "finetuned": f_ft,
            "view_ids": torch.tensor(ids),
            "heldout": heldout,
            "scene": lifted.name,
        }
        released = "not loaded"
        if tuned.identity()["weights"] != "fit3d":
            released = _released_features(original, x, data)
        # one covisible pair of the 3D-awareness check (the probe's views: frames only, as probe_data reads them)
        frames = load_scene(scene_path) if with_test else lifted  # read the scene once when it is the same list
        data.update(_awareness_pair(frames, original, tuned, targets, grid=tuple(f_orig.shape[-2:]),
                                    n_matches=n_matches, seed=prof.seed))  # fmt: skip
        torch.save(data, out / "figures.pt")
        return {
            "stage": "figures",
            **{k: v for k, v in original.describe().items() if k in ("backbone", "weights")},
            "finetuned": tuned.identity()["weights"],
            "scene": data["scene"],
            "views": ids,
            "heldout": heldout,
            "released": released,
            "pair": data["pair_ids"].tolist() if "pair_ids" in data else None,
            "pair_correct": data.get("pair_correct"),
            "pair_n": data.get("pair_n"),
        }

    return cache.build("figures", key, root, make, force=force, what="the report's figures")


def _released_features(original: Any, x: Tensor, data: dict[str, Any]) -> str:
    """FiT3D's released model's features of the figure views, into ``data["released"]``; says whether it loaded."""
    from .backbone import WeightsError, load_backbone

    try:
        fit3d = load_backbone(original.name, "fit3d", device=original.device,
                              precision="bf16" if original.bf16 else "fp32")  # fmt: skip
    except WeightsError as err:
        return f"not available ({str(err).split(':')[0]})"
    data["released"] = fit3d.features(x)[0]
    return "loaded"


def _awareness_pair(
    scene: Any, original: Any, tuned: Any, targets: Any, *, grid: tuple[int, int], n_matches: int, seed: int
) -> dict[str, Any]:
    """One covisible pair of the 3D-awareness check: its images, ``n_matches`` drawn correspondences under both
    models, the whole pair's counts under the check's rule, and the features the viewer needs ({} if no pair)."""
    from .awareness import correspondences, covisible_pairs

    pairs = covisible_pairs(scene.views, grid, max_pairs=AWARENESS_MAX_PAIRS)
    if not pairs:
        return {}
    a, b, overlap = pairs[len(pairs) // 2]
    va, vb = scene.views[a], scene.views[b]
    uv_a, uv_b = correspondences(va.depth, va.K, va.cam_to_world, vb.depth, vb.K, vb.cam_to_world, grid)
    pair_x = torch.stack([torch.as_tensor(va.image), torch.as_tensor(vb.image)]).permute(0, 3, 1, 2)
    hw = (va.height, va.width)
    fo, ff = original.features(pair_x)[0], tuned.features(pair_x)[0]
    all_o, all_f = nearest_matches(fo[0], fo[1], uv_a, hw), nearest_matches(ff[0], ff[1], uv_a, hw)
    pick = torch.randperm(uv_a.shape[0], generator=torch.Generator().manual_seed(seed))[:n_matches]
    pick = pick.sort().values
    return dict(
        pair_images=pair_x.permute(0, 2, 3, 1),
        pair_ids=torch.tensor([a, b]),
        pair_overlap=float(overlap),
        uv_a=uv_a[pick],
        uv_true=uv_b[pick],
        uv_original=all_o[pick],
        uv_finetuned=all_f[pick],
        # the whole pair under the check's rule: how many of all its correspondences land within MATCH_PX
        pair_n=int(uv_a.shape[0]),
        pair_correct={
            "original": int(((all_o - uv_b).norm(dim=1) <= MATCH_PX).sum()),
            "finetuned": int(((all_f - uv_b).norm(dim=1) <= MATCH_PX).sum()),
        },
        pair_features={
            "original": fo.half(),
            "finetuned": ff.half(),
            "rendered": targets.targets[[a, b]].half(),  # frames come first in the lift's order
        },
    )
