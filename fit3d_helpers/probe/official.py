"""The official probe protocol: every step augments a batch (:mod:`fit3d_helpers.probe.sources`), runs the frozen
backbones on it and trains one head per variant; testing uses mmseg's sliding window (segmentation) or flip
averaging at native size (depth). Sizes and citations: :class:`fit3d_helpers.probe.settings.OfficialSettings`.

Why one loop for both tasks: the task object (:mod:`fit3d_helpers.probe.task`) carries the head, loss, optimiser
and metric; only the test-time prediction differs by task (:data:`_TEST`)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from .. import augment as AUG
from ..utils import resolve_device, seed_everything
from .cached import _batches, _example_indices, _progress
from .heads import ProbeModel, resize_bilinear
from .settings import OfficialSettings
from .sources import _batch_stream
from .task import DepthTask, ProbeResult, ProbeTask, SegTask, sigloss_warmup


@torch.no_grad()
def frozen_tokens(backbone: Any, images: Tensor, *, norm: bool = True) -> tuple[Tensor, Tensor]:
    """``backbone.forward_tokens(images, norm=norm, fit="pad")`` in eval mode without gradients, as float32: the
    official ``CenterPadding`` to a multiple of the patch size (misc.py:15-33, 47-50, 87-91) and the frozen backbone
    (misc.py:38-39, 62-63, 71-72). Nothing is cached: every call runs the backbone."""
    model = getattr(backbone, "model", None)
    was_training = bool(model.training) if model is not None else False
    if model is not None:
        model.eval()
    try:
        patch, cls = backbone.forward_tokens(images, norm=norm, fit="pad")
    finally:
        if model is not None and was_training:
            model.train()
    return patch.float(), cls.float()


def _needs(variants: Iterable[str]) -> tuple[bool, bool]:
    vs = set(variants)
    return bool(vs - {"finetuned"}), bool(vs & {"finetuned", "concat", "add", "linear"})


def batch_features(
    original: Any, finetuned: Any, images: Tensor, variants: Iterable[str], *, norm: bool = True
) -> dict[str, Tensor | None]:
    """Frozen tokens of ``images`` from the models the variants need: ``{"po", "co", "pf", "cf"}`` (patch / CLS of
    the original and fine-tuned models; None where not needed)."""
    need_o, need_f = _needs(variants)
    po = co = pf = cf = None
    if need_o:
        po, co = frozen_tokens(original, images, norm=norm)
    if need_f:
        pf, cf = frozen_tokens(finetuned, images, norm=norm)
    return {"po": po, "co": co, "pf": pf, "cf": cf}


def _variant_inputs(variant: str, f: dict[str, Tensor | None]) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(first features, second features or None, CLS) of a variant: ``dup`` = original ⊕ original; the CLS is the
    fine-tuned model's for ``finetuned``, else the original's (FiT3D: ``prefix_tokens = vit_outputs[1]``,
    linear_evaluate_fit3d.py:88 (v))."""
    if variant == "original":
        return f["po"], None, f["co"]
    if variant == "finetuned":
        return f["pf"], None, f["cf"]
    if variant == "dup":
        return f["po"], f["po"], f["co"]
    return f["po"], f["pf"], f["co"]


def _variant_mode(variant: str) -> str:
    return {"original": "original", "finetuned": "original", "dup": "concat"}.get(variant, variant)


# --- test-time inference -------------------------------------------------------------------------------------


def slide_inference(
    img: Tensor,
    dense_fn: Any,
    crop_size: tuple[int, int] = (512, 512),
    stride: tuple[int, int] = (341, 341),
) -> list[Tensor]:
    """mmseg ``EncoderDecoder.slide_inference`` (FiT3D's mmsegmentation encoder_decoder.py): windows of
    ``crop_size`` every ``stride``, ``h_grids = max(H - h_crop + h_stride - 1, 0) // h_stride + 1``; a window that
    would leave the image is moved back inside (``y1 = max(min(y1 + h_crop, H) - h_crop, 0)``), so an image smaller
    than the window is decoded whole, without padding (as mmseg: "the small patch will be used to decode without
    padding"); outputs are summed into place and divided by the per-pixel window count.

    ``dense_fn(crop [B, 3, h, w]) -> Tensor | list[Tensor]`` gives ``[B, C, h, w]`` outputs at the crop's size
    (mmseg ``encode_decode``). Returns a list (one accumulator per output of ``dense_fn``) of ``[B, C, H, W]``.
    """
    h_stride, w_stride = stride
    h_crop, w_crop = crop_size
    b, _, h_img, w_img = img.shape
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    preds: list[Tensor] | None = None
    count = img.new_zeros((b, 1, h_img, w_img))
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * h_stride, w_idx * w_stride
            y2, x2 = min(y1 + h_crop, h_img), min(x1 + w_crop, w_img)
            y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
            out = dense_fn(img[:, :, y1:y2, x1:x2])
            outs = list(out) if isinstance(out, (list, tuple)) else [out]
            if preds is None:
                preds = [img.new_zeros((b, o.shape[1], h_img, w_img)) for o in outs]
            for acc, o in zip(preds, outs):
                acc[:, :, y1:y2, x1:x2] += o
            count[:, :, y1:y2, x1:x2] += 1
    assert preds is not None and bool((count > 0).all())
    return [p / count for p in preds]


def flip_average(img: Tensor, dense_fn: Any) -> list[Tensor]:
    """dinov2 depther ``aug_test`` with ``MultiScaleFlipAug(flip=True)``: the prediction of the image and of its
    horizontal mirror, the latter flipped back (``inference``: ``output.flip(dims=(3,))``), averaged.
    ``dense_fn(img) -> Tensor | list[Tensor]`` of ``[B, C, H, W]``."""
    a = dense_fn(img)
    b = dense_fn(img.flip(-1))
    a = list(a) if isinstance(a, (list, tuple)) else [a]
    b = list(b) if isinstance(b, (list, tuple)) else [b]
    return [(x + y.flip(-1)) / 2 for x, y in zip(a, b)]


# --- training and evaluation ---------------------------------------------------------------------------------


def _stack_or_list(xs: list[Tensor]) -> Tensor | list[Tensor]:
    return torch.stack(xs) if xs and all(x.shape == xs[0].shape for x in xs) else list(xs)


def official_task(
    task: str,
    train_src: Any,
    val_src: Any,
    steps: int,
    settings: OfficialSettings,
    *,
    num_classes: int | None = None,
    grad_loss_weight: float = 0.0,
    final_norm: bool = False,
) -> ProbeTask:
    """The task object with the official settings: segmentation with mmseg's CE over all pixels (sem :111); depth
    with the set's range, per-GPU SigLoss chunks of ``settings.depth_samples_per_gpu`` (depth :100), OneCycle beta1
    (depth :209) and best-by-AbsRel checkpoint selection (depth :212-221)."""
    if task == "seg":
        n = int(num_classes if num_classes is not None else len(train_src.classes))
        return SegTask(num_classes=n, avg_non_ignore=False)
    if task == "depth":
        return DepthTask(
            min_depth=float(val_src.min_depth),
            max_depth=float(val_src.max_depth),
            grad_weight=grad_loss_weight,
            sigloss_warmup_steps=sigloss_warmup(steps),
            chunk=max(1, int(settings.depth_samples_per_gpu)),
            momentum=tuple(settings.momentum),
            final_norm=bool(final_norm),
            best_metric="absrel",
        )
    raise ValueError(f"task must be 'seg' or 'depth', got {task!r}")


def _seg_test(
    task: ProbeTask, heads: dict[str, ProbeModel], sample: dict[str, Any], ctx: dict[str, Any]
) -> tuple[list[Tensor], Tensor, Tensor | None]:
    """mmseg's test: Resize keep-ratio to ``seg_test_scale``, sliding window, logits to the label size, argmax."""
    settings, variants = ctx["settings"], list(heads)
    labels = torch.as_tensor(sample["labels"]).long()  # [H, W]
    ori_hw = tuple(sample["image"].shape[:2])
    img = AUG.seg_test_resize(sample["image"], settings.seg_test_scale, device=ctx["device"])[None]  # [1, 3, h, w]

    def dense(crop: Tensor) -> list[Tensor]:
        f = batch_features(ctx["original"], ctx["finetuned"], crop, variants, norm=task.final_norm)
        hw = tuple(crop.shape[-2:])
        return [resize_bilinear(heads[v](*_variant_inputs(v, f)[:2]), hw) for v in variants]

    accs = slide_inference(img, dense, settings.seg_crop, settings.seg_stride)
    return [resize_bilinear(acc, ori_hw).argmax(1)[0].cpu() for acc in accs], labels, None


def _depth_test(
    task: ProbeTask, heads: dict[str, ProbeModel], sample: dict[str, Any], ctx: dict[str, Any]
) -> tuple[list[Tensor], Tensor, Tensor | None]:
    """The DINOv2 depther's test: native size, head output clamped then resized, averaged with the flipped image."""
    settings, variants = ctx["settings"], list(heads)
    gt = torch.as_tensor(sample["depth"]).float()  # [H, W]
    mask = torch.as_tensor(ctx["val_src"].eval_mask(sample["depth"]))  # [H, W] bool
    ori_hw = tuple(sample["image"].shape[:2])
    img = AUG.to_float_chw(AUG.as_uint8_image(sample["image"], ctx["device"]))[None]  # [1, 3, H, W]

    def dense(x: Tensor, out_hw: tuple[int, int] = ori_hw) -> list[Tensor]:
        f = batch_features(ctx["original"], ctx["finetuned"], x, variants, norm=task.final_norm)
        outs = []
        for v in variants:
            d = heads[v](*_variant_inputs(v, f))  # [1, 1, 4h, 4w]
            outs.append(resize_bilinear(d.clamp(task.min_depth, task.max_depth), out_hw))
        return outs

    preds = flip_average(img, dense) if settings.depth_test_flip else dense(img)
    return [p[0, 0].cpu() for p in preds], gt, mask


_TEST: dict[str, Callable[..., tuple[list[Tensor], Tensor, Tensor | None]]] = {"seg": _seg_test, "depth": _depth_test}


@torch.no_grad()
def _evaluate(
    task: ProbeTask, heads: dict[str, ProbeModel], ctx: dict[str, Any], ex_idx: Tensor
) -> tuple[dict[str, dict[str, float]], dict[str, Any], int]:
    """Every variant's metrics over the validation split (one image at a time), the examples, and the number of
    invalid ground-truth pixels (0 for segmentation)."""
    for m in heads.values():
        m.eval()
    val_src, variants = ctx["val_src"], list(heads)
    ex_set = set(ex_idx.tolist())
    ex: dict[str, Any] = {"pred": {v: [] for v in variants}, "target": [], "image": []}
    states = {v: task.metric_state() for v in variants}
    for i in range(len(val_src)):
        s = val_src.load(i)
        preds, target, mask = _TEST[task.name](task, heads, s, ctx)
        for v, p in zip(variants, preds):
            task.update(states[v], p[None], target[None], None if mask is None else mask[None])
            if i in ex_set:
                ex["pred"][v].append(p)
        if i in ex_set:
            ex["image"].append(torch.as_tensor(AUG.as_uint8_image(s["image"])).float() / 255.0)
            ex["target"].append(target)
    first = states[variants[0]]
    n_invalid = int(first["n_invalid"]) if isinstance(first, dict) else 0
    for m in heads.values():
        m.train()
    return {v: task.summary(states[v]) for v in variants}, ex, n_invalid


def _best(evals: list[tuple[int, dict[str, dict[str, float]]]], metric: str, v: str) -> dict[str, float] | None:
    """The evaluation with the lowest ``metric`` for variant ``v`` (the official ``save_best``, ``rule="less"``)."""
    rows = [(s, m[v]) for s, m in evals if math.isfinite(m[v].get(metric, float("nan")))]
    if not rows:
        return None
    step, row = min(rows, key=lambda r: r[1][metric])
    return {"step": step, **row}


def _eval_every(task: ProbeTask, steps: int, settings: OfficialSettings) -> int:
    """Steps between periodic evaluations (0: none): the official 6,400 of 38,400 iterations, scaled."""
    if task.best_metric is None or settings.depth_eval_interval <= 0:
        return 0
    return max(1, int(round(settings.depth_eval_interval * steps)))


def _train(
    task: ProbeTask,
    heads: dict[str, ProbeModel],
    stream: Iterable[tuple[Tensor, Tensor]],
    steps: int,
    lr: float,
    ctx: dict[str, Any],
    evaluate_at: Callable[[int], None],
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Every step: the batch through the frozen backbones once, then one optimiser step per variant's head.
    ``evaluate_at(step)`` runs after each step (periodic evaluation). Returns the losses and the time split."""
    variants = list(heads)
    optim = {v: task.optimizer(heads[v], lr, steps) for v in variants}
    losses: dict[str, list[float]] = {v: [] for v in variants}
    t = {"data": 0.0, "backbone": 0.0, "heads": 0.0}
    tick = time.perf_counter()
    bar = _progress(stream, ctx["show_progress"], total=steps, desc=f"{task.name} (official)")
    for step, (images, target) in enumerate(bar):
        images, target = images.to(ctx["device"]), target.to(ctx["device"])
        t["data"] += time.perf_counter() - tick
        tick = time.perf_counter()
        feats = batch_features(ctx["original"], ctx["finetuned"], images, variants, norm=task.final_norm)
        t["backbone"] += time.perf_counter() - tick
        tick = time.perf_counter()
        for v in variants:
            opt, sched = optim[v]
            a, b, c = _variant_inputs(v, feats)
            task.before_step(opt, step, steps)
            loss = task.train_loss(heads[v], a, b, c, target, step)
            losses[v].append(task.apply_step(heads[v], opt, sched, loss))
        t["heads"] += time.perf_counter() - tick
        evaluate_at(step)
        tick = time.perf_counter()
    return losses, t


def train_probes_official(
    task: str,
    train_src: Any,
    val_src: Any,
    original: Any,
    finetuned: Any,
    variants: Iterable[str],
    *,
    steps: int,
    lr: float,
    batch_size: int,
    settings: OfficialSettings | None = None,
    grad_loss_weight: float = 0.0,
    final_norm: bool = False,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    num_workers: int = 0,
    n_examples: int = 4,
    show_progress: bool = True,
) -> dict[str, ProbeResult]:
    """Train one head per variant under the official protocol and evaluate them the official way.

    Every step draws ``batch_size`` samples (reshuffled each pass), augments them with the official pipeline
    (:mod:`fit3d_helpers.augment`), runs the frozen backbones on the augmented images (:func:`batch_features`,
    ``fit="pad"``; segmentation after the final LayerNorm; depth with ``norm=final_norm``) and gives every variant's
    head one optimiser step on that batch. The variants share the augmented batches and the backbone forwards (one
    forward per model per step instead of one per variant): each head still sees the official sample distribution.

    * seg: ``SegHead`` (BN + 1x1 conv), AdamW lr, wd 1e-4, betas (0.9, 0.999) (sem :73), poly power 1 with linear
      warm-up 1500/40000 from 1e-6 (sem :82-88), no clip (sem :77); CE over all pixels (mmseg
      ``avg_non_ignore=False``). Test: ``Resize`` keep-ratio to (2048, 512), :func:`slide_inference` 512/341
      (sem :113), logits bilinear to the label size (``rescale``), argmax, mIoU over the split. Batch: the caller's
      ``batch_size``; the profiles follow FiT3D's evaluation script (2 per GPU x 4 GPUs = 8), not the README's 8 GPUs
      (16): the script is what the released numbers were run with, and the batch is a fixed part of the recipe.
    * depth: ``DepthHead`` (+ CLS), AdamW lr, wd 0.01 (depth :187-199), grad clip 35 (:210), cosine with warm-up
      12800/38400 from 1e-3 to 1e-8 (:201-208), **OneCycle beta1** (:209, mmcv defaults, :func:`onecycle_momentum`),
      SigLoss (warm-up 100 of 38,400 steps scaled) + ``grad_loss_weight`` x :func:`gradient_loss`, per GPU chunk of
      ``settings.depth_samples_per_gpu`` images then averaged (DDP). Test: native size, CenterPadding, head output
      clamped to (min, max) then bilinear to the image size (dinov2 ``encode_decode``), averaged with the flipped
      prediction (:func:`flip_average`), per-image metrics over ``val_src.eval_mask`` (range + NYU Eigen crop),
      averaged over images. ``metrics`` are the last iteration's (our headline); every
      ``settings.depth_eval_interval`` of the run the split is also evaluated and ``ProbeResult.best`` keeps the
      lowest-AbsRel evaluation with its step (the official ``save_best="abs_rel"``, depth :212-221).
    """
    settings = settings or OfficialSettings()
    variants = list(variants)
    t0 = time.perf_counter()
    device = resolve_device(device)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    spec = official_task(
        task, train_src, val_src, steps, settings, num_classes=num_classes, grad_loss_weight=grad_loss_weight,
        final_norm=final_norm,
    )  # fmt: skip
    dim = int(original.dim)
    heads = {v: spec.build(_variant_mode(v), dim, dim).to(device).train() for v in variants}
    if len(train_src) == 0:
        raise ValueError(f"{train_src!r} has no samples")
    n_train = len(train_src)
    order = [idx.tolist() for idx in _batches(n_train, min(batch_size, n_train), steps, gen)]
    stream = _batch_stream(task, train_src, order, settings, seed, device if num_workers <= 0 else None, num_workers)
    ctx = dict(original=original, finetuned=finetuned, device=device, settings=settings, val_src=val_src)
    ctx["show_progress"] = show_progress
    ex_idx = _example_indices(len(val_src), n_examples)
    every, evals = _eval_every(spec, steps, settings), []

    def evaluate_at(step: int) -> None:
        if every and (step + 1) % every == 0 and step + 1 < steps:
            evals.append((step + 1, _evaluate(spec, heads, ctx, ex_idx)[0]))

    losses, t_parts = _train(spec, heads, stream, steps, lr, ctx, evaluate_at)
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics, ex, n_invalid = _evaluate(spec, heads, ctx, ex_idx)
    evals.append((steps, metrics))
    t_eval = time.perf_counter() - t1
    config = dict(
        spec.config(),
        protocol="official",
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        warmup_steps=spec.schedule.warmup_steps(steps),
        settings=dataclasses.asdict(settings),
        seconds_train=round(t_train, 2),
        seconds_eval=round(t_eval, 2),
        **{f"seconds_{k}": round(x, 2) for k, x in t_parts.items()},
    )
    config.update(invalid_pixels_val=n_invalid, eval_every=every)
    examples = {"index": ex_idx, "target": _stack_or_list(ex["target"]), "image": _stack_or_list(ex["image"])}
    results = {}
    for v in variants:
        heads[v].eval().cpu()
        results[v] = ProbeResult(
            metrics=metrics[v],
            losses=losses[v],
            head_state={k: x.detach().cpu().clone() for k, x in heads[v].state_dict().items()},
            model=heads[v],
            examples={**examples, "pred": _stack_or_list(ex["pred"][v])},
            config={**config, "assembly": _variant_mode(v), "variant": v},
            best=_best(evals, spec.best_metric, v) if spec.best_metric else None,
        )
        results[v].seconds = time.perf_counter() - t0
    return results
