"""The cached-feature protocol: heads trained on features computed once from un-augmented images (the smoke profile).

Why: a CPU cannot run the backbone at every step; with the features cached, a probe step costs only the head.
One loop (:func:`train_probe`) serves both tasks; :func:`train_seg_probe` / :func:`train_depth_probe` keep the
task-specific signatures."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from ..utils import progress, resolve_device, seed_everything
from .heads import Feats, ProbeModel
from .task import (
    DEPTH_WARMUP_FRAC,
    SEG_WARMUP_FRAC,
    DepthTask,
    ProbeResult,
    ProbeTask,
    SegTask,
    sigloss_warmup,
    with_schedule,
)


def _progress(it: Iterable[Any], show: bool, **kwargs: Any) -> Iterable[Any]:
    """utils.progress, or the bare iterable when the caller asked for silence."""
    return progress(it, **kwargs) if show else it


def _split_feats(feats: Feats, assembly: str | None) -> tuple[Tensor, Tensor | None, str]:
    """Normalise the ``feats`` argument to ``(orig, ft or None, mode)``."""
    if isinstance(feats, (tuple, list)):
        orig, ft = feats
        if orig.shape != ft.shape:
            raise ValueError(f"original {tuple(orig.shape)} and fine-tuned {tuple(ft.shape)} features differ")
        return orig, ft, assembly or "concat"
    if assembly not in (None, "original"):
        raise ValueError(f"assembly={assembly!r} needs features as an (original, fine-tuned) pair")
    return feats, None, "original"


def _batches(n: int, batch_size: int, steps: int, gen: torch.Generator) -> Any:
    """Indices for ``steps`` mini-batches, reshuffling after each pass (no replacement within a pass)."""
    perm = torch.randperm(n, generator=gen)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm = torch.randperm(n, generator=gen)
            pos = 0
        yield perm[pos : pos + batch_size]
        pos += batch_size


def _example_indices(n: int, k: int) -> Tensor:
    return torch.unique(torch.linspace(0, n - 1, min(k, n)).round().long())


def _rows(x: Tensor | None, s: int, n: int, device: torch.device | None = None) -> Tensor | None:
    """``x[s:s+n]`` on ``device`` (None stays None)."""
    if x is None:
        return None
    return x[s : s + n] if device is None else x[s : s + n].to(device)


@torch.no_grad()
def _predict(
    task: ProbeTask,
    model: ProbeModel,
    feats: Feats,
    cls: Tensor | None,
    out_hw: tuple[int, int],
    batch_size: int,
    device: str | torch.device,
) -> Tensor:
    """The task's evaluated maps ``[N, H, W]`` (CPU) of a trained probe, ``batch_size`` images at a time."""
    device = resolve_device(device)
    orig, ft, _ = _split_feats(feats, model.assembly.mode if isinstance(feats, (tuple, list)) else None)
    model.eval().to(device)
    out = []
    for s in range(0, orig.shape[0], batch_size):
        o, f, c = (_rows(x, s, batch_size, device) for x in (orig, ft, cls))
        out.append(task.predict(model, o, f, c, out_hw).cpu())
    return torch.cat(out)


def predict_seg(
    model: ProbeModel,
    feats: Feats,
    out_hw: tuple[int, int],
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Label maps ``[N, H, W]`` (int64, CPU) from a trained segmentation probe."""
    task = SegTask(num_classes=int(model.head.conv_seg.out_channels))
    return _predict(task, model, feats, None, out_hw, batch_size, device)


def predict_depth(
    model: ProbeModel,
    feats: Feats,
    cls: Tensor | None,
    out_hw: tuple[int, int],
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Depth maps ``[N, H, W]`` in metres (float32, CPU) from a trained depth probe (clamped to its bin range)."""
    task = DepthTask(min_depth=model.head.min_depth, max_depth=model.head.max_depth)
    return _predict(task, model, feats, cls, out_hw, batch_size, device)


def _evaluate(
    task: ProbeTask,
    model: ProbeModel,
    feats: Feats,
    cls: Tensor | None,
    target: Tensor,
    *,
    n_examples: int,
    batch_size: int,
    device: torch.device,
) -> tuple[dict[str, float], dict[str, Tensor]]:
    """Validation metrics and a few examples, ``batch_size`` images at a time (whole-image prediction)."""
    orig, ft, _ = _split_feats(feats, model.assembly.mode if isinstance(feats, (tuple, list)) else None)
    out_hw = tuple(target.shape[-2:])
    state = task.metric_state()
    ex_idx = _example_indices(orig.shape[0], n_examples)
    ex_pred = []
    for s in range(0, orig.shape[0], batch_size):
        part = (orig[s : s + batch_size], ft[s : s + batch_size]) if ft is not None else orig[s : s + batch_size]
        pred = _predict(task, model, part, _rows(cls, s, batch_size), out_hw, batch_size, device)  # [b, H, W]
        y = target[s : s + batch_size]
        task.update(state, pred, y, task.eval_mask(y))
        ex_pred += [pred[i - s] for i in ex_idx.tolist() if s <= i < s + batch_size]
    return task.summary(state), {"index": ex_idx, "pred": torch.stack(ex_pred), "target": target[ex_idx]}


def train_probe(
    task: ProbeTask,
    train_feats: Feats,
    train_cls: Tensor | None,
    train_target: Tensor,
    val_feats: Feats,
    val_cls: Tensor | None,
    val_target: Tensor,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    device: str | torch.device = "cpu",
    seed: int = 0,
    assembly: str | None = None,
    n_examples: int = 4,
    eval_batch_size: int = 8,
    show_progress: bool = True,
    loss_downscale: int = 1,
) -> ProbeResult:
    """Train ``task``'s head (and linear fusion weights, if any) on cached features; evaluate on val.

    ``loss_downscale`` k > 1 computes the training loss on targets subsampled by k (nearest; evaluation stays at full
    resolution): k² fewer pixels per step, the smoke profile's CPU budget."""
    t0 = time.perf_counter()
    device = resolve_device(device)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    orig, ft, mode = _split_feats(train_feats, assembly)
    _split_feats(val_feats, assembly)  # same checks on the validation features
    y_train = task.train_target(train_target, loss_downscale)  # [N, H', W']
    y_val = task.val_target(val_target)  # [M, H, W]
    cls_dim = 0 if train_cls is None else int(train_cls.shape[1])
    model = task.build(mode, orig.shape[1], cls_dim).to(device)
    opt, sched = task.optimizer(model, lr, steps)

    losses: list[float] = []
    model.train()
    n = orig.shape[0]
    bar = _progress(
        _batches(n, min(batch_size, n), steps, gen), show_progress, total=steps, desc=f"{task.name} probe ({mode})"
    )
    for step, idx in enumerate(bar):
        o = orig[idx].to(device)  # [B, D, h, w]
        f = ft[idx].to(device) if ft is not None else None
        c = train_cls[idx].to(device) if train_cls is not None else None
        task.before_step(opt, step, steps)
        loss = task.train_loss(model, o, f, c, y_train[idx].to(device), step)
        losses.append(task.apply_step(model, opt, sched, loss))

    model.eval()
    metrics, examples = _evaluate(
        task, model, val_feats, val_cls, y_val, n_examples=n_examples, batch_size=eval_batch_size, device=device
    )
    model.cpu()
    config = dict(
        task.config(),
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        assembly=mode,
        warmup_steps=task.schedule.warmup_steps(steps),
        cls_dim=cls_dim,
    )
    return ProbeResult(
        metrics=metrics,
        losses=losses,
        head_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        model=model,
        examples=examples,
        config=config,
        seconds=time.perf_counter() - t0,
    )


def train_seg_probe(
    train_feats: Feats,
    train_labels: Tensor,
    val_feats: Feats,
    val_labels: Tensor,
    num_classes: int,
    *,
    steps: int = 300,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    seed: int = 0,
    assembly: str | None = None,
    ignore_index: int = 255,
    warmup_frac: float = SEG_WARMUP_FRAC,
    n_examples: int = 4,
    eval_batch_size: int = 8,
    show_progress: bool = True,
    loss_downscale: int = 1,
) -> ProbeResult:
    """Train ``SegHead`` (and linear fusion weights, if any) on cached features; evaluate on val.

    Features ``[N, D, h, w]`` or an ``(original, fine-tuned)`` pair with ``assembly`` in
    original/finetuned/concat/add/linear (default concat for pairs). Labels ``[N, H, W]`` int64 with
    ``ignore_index``. Official settings: AdamW(lr 1e-3, wd 1e-4), poly schedule with linear warm-up.
    """
    task = with_schedule(
        SegTask(num_classes=num_classes, ignore_index=ignore_index, weight_decay=weight_decay), warmup_frac
    )
    kw = dict(steps=steps, lr=lr, batch_size=batch_size, device=device, seed=seed, assembly=assembly)
    kw.update(n_examples=n_examples, eval_batch_size=eval_batch_size, show_progress=show_progress)
    return train_probe(
        task, train_feats, None, train_labels, val_feats, None, val_labels, **kw, loss_downscale=loss_downscale
    )


def train_depth_probe(
    train_feats: Feats,
    train_cls: Tensor | None,
    train_depth: Tensor,
    val_feats: Feats,
    val_cls: Tensor | None,
    val_depth: Tensor,
    *,
    steps: int = 300,
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    batch_size: int = 8,
    min_depth: float = 1e-3,
    max_depth: float = 10.0,
    n_bins: int = 256,
    grad_loss_weight: float = 0.5,
    grad_clip: float | None = 35.0,
    warmup_frac: float = DEPTH_WARMUP_FRAC,
    sigloss_warmup_steps: int | None = None,
    norm_strategy: str = "linear",
    device: str | torch.device = "cpu",
    seed: int = 0,
    assembly: str | None = None,
    n_examples: int = 4,
    eval_batch_size: int = 8,
    show_progress: bool = True,
    loss_downscale: int = 1,
) -> ProbeResult:
    """Train ``DepthHead`` (and linear fusion weights, if any) on cached features; evaluate on val.

    ``*_cls [N, Dc]`` is the CLS token (FiT3D: the original model's), or None for a head without it.
    ``*_depth [N, H, W]`` metres, 0 (or non-finite) = invalid. Official settings: AdamW(lr 1e-4, wd 0.01),
    grad clip 35, cosine schedule with linear warm-up over a third of the run, SigLoss + 0.5 GradientLoss;
    ``sigloss_warmup_steps`` defaults to the official 100 of 38,400 iterations scaled to ``steps``.
    Validation: pixels with ``min_depth < gt < max_depth``, prediction clamped to that range, metrics per
    image then averaged (as the official toolbox). ``loss_downscale``: nearest subsampling (no depth is invented).
    """
    task = DepthTask(
        min_depth=min_depth,
        max_depth=max_depth,
        n_bins=n_bins,
        norm_strategy=norm_strategy,
        grad_weight=grad_loss_weight,
        sigloss_warmup_steps=sigloss_warmup(steps) if sigloss_warmup_steps is None else sigloss_warmup_steps,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
    )
    kw = dict(steps=steps, lr=lr, batch_size=batch_size, device=device, seed=seed, assembly=assembly)
    kw.update(n_examples=n_examples, eval_batch_size=eval_batch_size, show_progress=show_progress)
    return train_probe(
        with_schedule(task, warmup_frac), train_feats, train_cls, train_depth, val_feats, val_cls, val_depth,
        **kw, loss_downscale=loss_downscale,
    )  # fmt: skip
