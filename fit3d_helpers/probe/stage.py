"""The probe stage (notebook 04): linear probes of every variant on both tasks and the 3D-awareness check, cached as
one artifact. :func:`run_probes` picks the protocol (``cfg.protocol``): cached features (smoke) or official."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import cache
from ..probe_data import ProbeData, probe_data
from ..utils import write_json
from .cached import train_depth_probe, train_seg_probe
from .heads import Feats
from .official import train_probes_official
from .settings import OfficialSettings
from .sources import SceneSource, as_probe_source


def cached_features(backbone: Any, scenes: list[Path], images: Tensor, root: str | Path) -> dict[str, Tensor]:
    """Frozen features of ``images``, computed once per (model identity, scenes) with one forward for both kinds the
    probes read: after the final LayerNorm (``"patch" [N, D, h, w]``, ``"cls" [N, D]``; segmentation) and before it
    (``"patch_pre"``, ``"cls_pre"``; the official depth probe)."""

    key = {"stage": "features", "model": backbone.identity(), "scenes": [cache.scene_id(p) for p in scenes]}

    def make(out: Path, resume: Path) -> dict[str, Any]:
        t0 = time.time()
        patch, cls, patch_pre, cls_pre = backbone.features_pre_and_post_norm(images.permute(0, 3, 1, 2), batch_size=8)
        torch.save({"patch": patch, "cls": cls, "patch_pre": patch_pre, "cls_pre": cls_pre}, out / "features.pt")
        return {
            "stage": "features",
            "n": int(patch.shape[0]),
            "seconds": round(time.time() - t0, 1),
            **backbone.describe(),
        }

    return cache.build("features", key, root, make, what="frozen features").torch("features.pt")


def _awareness(val: ProbeData, orig_val: Tensor, ft_val: Tensor, seed: int) -> dict[str, dict[str, float]]:
    """The 3D-correspondence check on the held-out views: covisible pairs within each scene, matched with the
    original, fine-tuned and concatenated features (``*_val [N, D, h, w]``)."""
    from .. import awareness as A

    grid = tuple(orig_val.shape[-2:])
    pairs = []
    for si in sorted(set(val.scene_of)):
        ids = [i for i, s in enumerate(val.scene_of) if s == si]
        pairs += [
            (ids[a], ids[b], ov) for a, b, ov in A.covisible_pairs([val.views[i] for i in ids], grid, max_pairs=12)
        ]
    feats = {"original": orig_val, "finetuned": ft_val, "concat": torch.cat([orig_val, ft_val], 1)}
    return A.awareness_table(val.views, pairs, feats, seed=seed)


def probe_settings_key(cfg: Any) -> dict[str, Any]:
    """The probe settings that change results (a ``ProbeConfig`` as a dict without where the data lie and how many
    loader workers run: moving ``eval_data`` or adding workers keeps the artifact)."""

    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("eval_root", "num_workers")}


def _variant_features(variant: str, orig: Tensor, ft: Tensor) -> tuple[Feats, str | None]:
    """What the probe trainers take for a variant: one tensor, or a pair + assembly. ``dup`` is the paper's control
    (arXiv 2407.20229v1, Table 13): the original features concatenated with themselves, as wide as FiT3D's."""
    if variant == "original":
        return orig, None
    if variant == "finetuned":
        return ft, None
    if variant == "dup":
        return (orig, orig), "concat"
    return (orig, ft), variant


def run_probes(
    cfg: Any,
    train_scenes: list[Path],
    val_scenes: list[Path],
    original: Any,
    finetuned: Any,
    root: str | Path,
    *,
    max_depth: float,
    device: str = "auto",
    seed: int = 0,
    force: bool = False,
    tag: dict[str, Any] | None = None,
    profile_name: str = "",
    seg_sets: tuple[Any, Any] | None = None,
    depth_sets: tuple[Any, Any] | None = None,
    official: OfficialSettings | None = None,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Linear probes (seg, depth) and the 3D-awareness check for each of ``cfg.variants`` (a ``ProbeConfig``).

    Heads train on ``train_scenes`` and are evaluated on ``val_scenes`` (never fine-tuned on). Cached by the
    identities of both models, the scenes and the settings; ``tag`` (e.g. ``{"headline": True}``) only labels the
    stats for the report, so equal runs are shared. Returns the stats plus ``path`` (the artifact folder).

    ``cfg.protocol == "cached"``: heads on features computed once from the un-augmented scene images (unchanged).
    ``cfg.protocol == "official"``: the official evaluation (:func:`train_probes_official`): augmented batches through
    the frozen backbones at every step, sliding-window / flip-averaged testing. Only there: ``seg_sets`` /
    ``depth_sets`` = ``(train, val)`` pairs of :class:`fit3d_helpers.evaldata.EvalSet` (or any probe source)
    replace the scenes for that task (e.g. ``(nyuv2_seg(root, "train"), nyuv2_seg(root, "val"))``); ``official``
    overrides the official sizes (tests use :meth:`OfficialSettings.scaled`); ``num_workers`` loads and augments
    batches in DataLoader workers (0: in the main process, on the training device; the results do not depend on it
    beyond float rounding, each sample's augmentation being seeded by (seed, task, step, slot)).
    """
    common = dict(max_depth=max_depth, device=device, seed=seed, force=force, tag=tag, profile_name=profile_name)
    if cfg.protocol == "official":
        sets = dict(seg_sets=seg_sets, depth_sets=depth_sets, settings=official or OfficialSettings())
        return _run_probes_official(
            cfg, train_scenes, val_scenes, original, finetuned, root, **common, **sets, num_workers=num_workers
        )
    if seg_sets is not None or depth_sets is not None or official is not None:
        raise ValueError(
            "seg_sets / depth_sets / official apply to probe.protocol='official' only; the cached protocol probes the "
            "scenes' un-augmented images. Set probe.protocol='official' to probe the evaluation sets."
        )
    return _run_probes_cached(cfg, train_scenes, val_scenes, original, finetuned, root, **common)


def _split_features(
    cfg: Any, splits: tuple[tuple[list[Path], ProbeData], ...], original: Any, finetuned: Any, root: str | Path
) -> dict[str, tuple[Tensor, Tensor]]:
    """The cached (train, val) features each probe reads: ``seg_o``/``seg_f`` patch tokens after the final LayerNorm;
    ``dep_o``/``dep_f`` and ``cls_o``/``cls_f`` before it unless ``cfg.depth_final_norm`` (the official depth probe)."""
    orig_tv = [cached_features(original, scenes, data.images, root) for scenes, data in splits]
    ft_tv = [cached_features(finetuned, scenes, data.images, root) for scenes, data in splits]
    pre = "" if cfg.depth_final_norm else "_pre"

    def pair(fs: list[dict[str, Tensor]], name: str) -> tuple[Tensor, Tensor]:
        return fs[0][name], fs[1][name]

    return {
        "seg_o": pair(orig_tv, "patch"),
        "seg_f": pair(ft_tv, "patch"),
        "dep_o": pair(orig_tv, "patch" + pre),
        "dep_f": pair(ft_tv, "patch" + pre),
        "cls_o": pair(orig_tv, "cls" + pre),
        "cls_f": pair(ft_tv, "cls" + pre),
    }


def _probe_variant_cached(
    cfg: Any, variant: str, train: ProbeData, val: ProbeData, f: dict[str, tuple[Tensor, Tensor]], **kw: Any
) -> tuple[Any, Any]:
    """The segmentation and depth probes of one variant on cached features (``kw``: max_depth, device, seed)."""
    common = dict(device=kw["device"], seed=kw["seed"], loss_downscale=cfg.loss_downscale)
    tr, asm = _variant_features(variant, f["seg_o"][0], f["seg_f"][0])
    va, _ = _variant_features(variant, f["seg_o"][1], f["seg_f"][1])
    seg = train_seg_probe(
        tr, train.labels, va, val.labels, len(train.classes), steps=cfg.seg_steps, lr=cfg.lr_seg,
        batch_size=cfg.seg_batch_size, assembly=asm, **common,
    )  # fmt: skip
    # the CLS token: the fine-tuned model's for "finetuned", else the original's (as FiT3D's assembled heads)
    cls_tr, cls_va = f["cls_f"] if variant == "finetuned" else f["cls_o"]
    tr, _ = _variant_features(variant, f["dep_o"][0], f["dep_f"][0])
    va, _ = _variant_features(variant, f["dep_o"][1], f["dep_f"][1])
    dep = train_depth_probe(
        tr, cls_tr, train.depth, va, cls_va, val.depth, steps=cfg.depth_steps, lr=cfg.lr_depth,
        batch_size=cfg.depth_batch_size, grad_loss_weight=cfg.depth_grad_weight, max_depth=kw["max_depth"],
        assembly=asm, **common,
    )  # fmt: skip
    return seg, dep


def _run_probes_cached(
    cfg: Any,
    train_scenes: list[Path],
    val_scenes: list[Path],
    original: Any,
    finetuned: Any,
    root: str | Path,
    *,
    max_depth: float,
    device: str,
    seed: int,
    force: bool,
    tag: dict[str, Any] | None,
    profile_name: str,
) -> dict[str, Any]:
    """``run_probes`` under ``protocol == "cached"`` (see there)."""
    key = {
        "stage": "probe",
        "original": original.identity(),
        "finetuned": finetuned.identity(),
        "train": [cache.scene_id(p) for p in train_scenes],
        "val": [cache.scene_id(p) for p in val_scenes],
        "probe": probe_settings_key(cfg),
        "max_depth": max_depth,
        "seed": seed,
    }

    def make(out: Path, resume: Path) -> dict[str, Any]:
        t0 = time.time()
        train, val = probe_data(train_scenes, max_depth), probe_data(val_scenes, max_depth)
        f = _split_features(cfg, ((train_scenes, train), (val_scenes, val)), original, finetuned, root)
        results: dict[str, dict[str, dict[str, float]]] = {"seg": {}, "depth": {}}
        examples: dict[str, dict[str, Tensor]] = {}
        curves: dict[str, list[float]] = {}
        for variant in cfg.variants:
            rs = _probe_variant_cached(cfg, variant, train, val, f, max_depth=max_depth, device=device, seed=seed)
            for task, r in zip(("seg", "depth"), rs):
                results[task][variant] = dict(r.metrics)
                examples[f"{task}/{variant}"], curves[f"{task}/{variant}"] = r.examples, r.losses
        aware = _awareness(val, f["seg_o"][1], f["seg_f"][1], seed) if cfg.awareness else {}
        idx = next(iter(examples.values()))["index"]
        ex = {"examples": examples, "index": idx, "images": val.images[idx], "depth": val.depth[idx]}
        torch.save({**ex, "labels": val.labels[idx]}, out / "examples.pt")
        write_json(out / "curves.json", curves)
        return {
            "stage": "probe",
            "profile": profile_name,
            **(tag or {}),
            **{k: v for k, v in original.describe().items() if k in ("backbone", "weights")},
            "finetuned": finetuned.identity()["weights"],
            "train_views": int(train.images.shape[0]),
            "val_views": int(val.images.shape[0]),
            "depth_pixels_masked_val": int((val.depth == 0).sum()),
            "classes": train.classes,
            "results": results,
            "awareness": aware,
            "wall_seconds": round(time.time() - t0, 1),
        }

    art = cache.build("probe", key, root, make, force=force, what="the probes")
    return {**art.stats, "path": str(art.path)}


def _official_sources(
    train_scenes: list[Path],
    val_scenes: list[Path],
    max_depth: float,
    seg_sets: tuple[Any, Any] | None,
    depth_sets: tuple[Any, Any] | None,
) -> dict[str, tuple[Any, Any]]:
    """(train, val) probe sources per task: the evaluation sets given, else the scenes; each checked for its task."""

    def pair(sets: tuple[Any, Any] | None) -> tuple[Any, Any]:
        if sets is None:
            return SceneSource(train_scenes, max_depth), SceneSource(val_scenes, max_depth)
        if len(sets) != 2:
            raise ValueError("pass the sets as a (train, val) pair")
        return as_probe_source(sets[0], max_depth), as_probe_source(sets[1], max_depth)

    out = {"seg": pair(seg_sets), "depth": pair(depth_sets)}
    for task, need, what in (("seg", "has_labels", "segmentation"), ("depth", "has_depth", "depth")):
        for src in out[task]:
            if not getattr(src, need):
                raise ValueError(f"{src!r} cannot be used for {what}")
    return out


def _official_examples(seg: dict[str, Any], dep: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """``examples.pt`` content and the loss curves of the official results (``{variant: ProbeResult}`` per task)."""
    examples: dict[str, dict[str, Any]] = {}
    curves: dict[str, list[float]] = {}
    for task, res in (("seg", seg), ("depth", dep)):
        for v, r in res.items():
            examples[f"{task}/{v}"] = {k: r.examples[k] for k in ("index", "pred", "target")}
            curves[f"{task}/{v}"] = r.losses
    s0, d0 = next(iter(seg.values())), next(iter(dep.values()))
    saved = {
        "examples": examples,
        "index": s0.examples["index"],
        "images": s0.examples["image"],  # the segmentation val images
        "labels": s0.examples["target"],
        "depth": d0.examples["target"],
        "depth_images": d0.examples["image"],  # the depth val images (other samples when the sets differ)
        "depth_index": d0.examples["index"],
    }
    return saved, curves


def _depth_checkpoints(dep: dict[str, Any], steps: int) -> dict[str, Any]:
    """Both depth checkpoints, labelled: ``last`` (our headline, = ``results["depth"]``) and ``best_absrel`` (the
    official ``save_best="abs_rel"`` selection over evaluations every ``eval_every`` steps), each with its step."""
    d0 = next(iter(dep.values()))
    return {
        "headline": "last",
        "eval_every": int(d0.config.get("eval_every", 0)),
        "last": {v: {"step": steps, **r.metrics} for v, r in dep.items()},
        "best_absrel": {v: r.best for v, r in dep.items()},
    }


def _run_probes_official(
    cfg: Any,
    train_scenes: list[Path],
    val_scenes: list[Path],
    original: Any,
    finetuned: Any,
    root: str | Path,
    *,
    max_depth: float,
    device: str,
    seed: int,
    force: bool,
    tag: dict[str, Any] | None,
    profile_name: str,
    seg_sets: tuple[Any, Any] | None,
    depth_sets: tuple[Any, Any] | None,
    settings: OfficialSettings,
    num_workers: int,
) -> dict[str, Any]:
    """``run_probes`` under ``protocol == "official"`` (see there)."""
    src = _official_sources(train_scenes, val_scenes, max_depth, seg_sets, depth_sets)
    (seg_tr, seg_va), (dep_tr, dep_va) = src["seg"], src["depth"]
    use_scenes = seg_sets is None or depth_sets is None
    run_awareness = bool(cfg.awareness) and use_scenes and len(val_scenes) > 0
    key: dict[str, Any] = {
        "stage": "probe",
        "original": original.identity(),
        "finetuned": finetuned.identity(),
        "probe": probe_settings_key(cfg),
        "seed": seed,
        "official": dataclasses.asdict(settings),
        "seg_sets": [seg_tr.key(), seg_va.key()],
        "depth_sets": [dep_tr.key(), dep_va.key()],
    }
    if run_awareness:
        key["awareness_scenes"] = [cache.scene_id(p) for p in val_scenes]
        key["max_depth"] = max_depth

    def make(out: Path, resume: Path) -> dict[str, Any]:
        t0 = time.time()
        common = dict(device=device, seed=seed, num_workers=num_workers, settings=settings)
        seg = train_probes_official(
            "seg", seg_tr, seg_va, original, finetuned, cfg.variants, steps=cfg.seg_steps, lr=cfg.lr_seg,
            batch_size=cfg.seg_batch_size, **common,
        )  # fmt: skip
        dep = train_probes_official(
            "depth", dep_tr, dep_va, original, finetuned, cfg.variants, steps=cfg.depth_steps, lr=cfg.lr_depth,
            batch_size=cfg.depth_batch_size, grad_loss_weight=cfg.depth_grad_weight, final_norm=cfg.depth_final_norm,
            **common,
        )  # fmt: skip
        aware: dict[str, dict[str, float]] = {}
        if run_awareness:
            val = probe_data(val_scenes, max_depth)
            orig_val = cached_features(original, val_scenes, val.images, root)["patch"]
            ft_val = cached_features(finetuned, val_scenes, val.images, root)["patch"]
            aware = _awareness(val, orig_val, ft_val, seed)
        saved, curves = _official_examples(seg, dep)
        torch.save(saved, out / "examples.pt")
        write_json(out / "curves.json", curves)
        s0, d0 = next(iter(seg.values())), next(iter(dep.values()))
        timing = {
            task: {k: r.config[k] for k in r.config if k.startswith("seconds_")}
            for task, r in (("seg", s0), ("depth", d0))
        }
        return {
            "stage": "probe",
            "protocol": "official",
            "profile": profile_name,
            **(tag or {}),
            **{k: v for k, v in original.describe().items() if k in ("backbone", "weights")},
            "finetuned": finetuned.identity()["weights"],
            "sets": {"seg": [seg_tr.key(), seg_va.key()], "depth": [dep_tr.key(), dep_va.key()]},
            "train_views": len(seg_tr),
            "val_views": len(seg_va),
            "depth_train_views": len(dep_tr),
            "depth_val_views": len(dep_va),
            "depth_pixels_masked_val": int(d0.config["invalid_pixels_val"]),  # GT == 0 in the depth val split
            "classes": seg_tr.classes,
            "results": {
                "seg": {v: dict(r.metrics) for v, r in seg.items()},
                "depth": {v: dict(r.metrics) for v, r in dep.items()},
            },
            "depth_checkpoints": _depth_checkpoints(dep, cfg.depth_steps),
            "awareness": aware,
            "timing": timing,
            "official": dataclasses.asdict(settings),
            "wall_seconds": round(time.time() - t0, 1),
        }

    art = cache.build("probe", key, root, make, force=force, what="the probes (official protocol)")
    return {**art.stats, "path": str(art.path)}
