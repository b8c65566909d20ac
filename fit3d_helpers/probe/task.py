"""The probe task object: what differs between segmentation and depth, in one place.

Why: both protocols (cached features, official) train "a head on frozen features" the same way; the differences are
the head, its loss, its optimiser settings, how targets are prepared and scored. :class:`SegTask` and
:class:`DepthTask` hold exactly those, so the training loops have no seg/depth branches and a head is built in one
place (:meth:`ProbeTask.build`).

Official values (ywyue/FiT3D ``evaluation/configs/*_linear_config.py``): segmentation AdamW wd 1e-4, poly (power 1)
with a linear warm-up of 1,500 of 40,000 iterations from 1e-6, no clip, CE with ignore 255; depth AdamW wd 0.01,
clip 35, cosine with a linear warm-up of 12,800 of 38,400 iterations from 1e-3 to 1e-8, SigLoss (+ GradientLoss).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .heads import DepthHead, FeatureAssembly, ProbeModel, SegHead
from .losses import depth_loss, seg_loss
from .metrics import confusion_matrix, depth_metrics, mean_over_images, metrics_from_confusion

# Official schedule constants (FiT3D / DINOv2 linear-probe configs).
SEG_WARMUP_FRAC = 1500 / 40000
SEG_WARMUP_RATIO = 1e-6
DEPTH_WARMUP_FRAC = 12800 / 38400
DEPTH_WARMUP_RATIO = 1e-3
DEPTH_MIN_LR_RATIO = 1e-8
SIGLOSS_WARMUP_ITERS_OFFICIAL = 100  # of 38,400 iterations
IGNORE_INDEX_SEG = 255


def sigloss_warmup(steps: int) -> int:
    """SigLoss's warm-up steps: the official 100 of 38,400 iterations, scaled to a run of ``steps``."""
    return int(round(SIGLOSS_WARMUP_ITERS_OFFICIAL * steps / 38400))


def _lr_factor(step: int, total: int, warmup: int, warmup_ratio: float, policy: str, min_ratio: float = 0.0) -> float:
    """mmcv-style LR multiplier: poly (power 1) or cosine, with a linear warm-up from ``warmup_ratio``."""
    t = min(step, total) / max(total, 1)
    if policy == "poly":
        base = (1.0 - t) * (1.0 - min_ratio) + min_ratio
    elif policy == "cosine":
        base = min_ratio + 0.5 * (1.0 - min_ratio) * (1.0 + math.cos(math.pi * t))
    else:
        raise ValueError(policy)
    if step < warmup:
        k = (1.0 - step / warmup) * (1.0 - warmup_ratio)
        return base * (1.0 - k)
    return base


# OneCycle momentum, mmcv OneCycleMomentumUpdaterHook.__init__ defaults (the depth configs give only
# ``momentum_config = dict(policy="OneCycle")``, depth :209): base_momentum=0.85, max_momentum=0.95, pct_start=0.3,
# anneal_strategy="cos", three_phase=False; on AdamW it drives beta1 (``use_beta1 = 'betas' in optim.defaults``).
ONECYCLE_BASE_MOMENTUM = 0.85
ONECYCLE_MAX_MOMENTUM = 0.95
ONECYCLE_PCT_START = 0.3


def onecycle_momentum(
    step: int,
    total: int,
    base: float = ONECYCLE_BASE_MOMENTUM,
    peak: float = ONECYCLE_MAX_MOMENTUM,
    pct_start: float = ONECYCLE_PCT_START,
) -> float:
    """Adam beta1 at iteration ``step`` of ``total`` under mmcv's ``OneCycleMomentumUpdaterHook`` (two phases).

    ``before_run`` sets beta1 to ``max_momentum`` and the phases ``end_iter = pct_start * max_iters - 1`` (max ->
    base) and ``max_iters - 1`` (base -> max); ``get_momentum`` anneals with ``annealing_cos(start, end, pct)
    = end + (start - end) / 2 * (cos(pi * pct) + 1)``, ``pct`` measured from the previous phase's end. So beta1 is
    0.95 at step 0, 0.85 at step ``0.3 * total - 1`` and back to 0.95 at ``total - 1``. Note the official lr
    peaks at the end of its 12,800-iteration warm-up (1/3 of 38,400), the momentum trough at 11,519 (30 %): mmcv's
    default ``pct_start``, not matched to the lr schedule. (mmcv divides by zero when a phase has zero length; here
    such a phase returns its end value.)
    """
    end1 = float(pct_start * total) - 1
    phases = ((end1, peak, base), (total - 1, base, peak))
    start = 0.0
    for i, (end, m0, m1) in enumerate(phases):
        if step <= end or i == len(phases) - 1:
            pct = (step - start) / (end - start) if end != start else 1.0
            return m1 + 0.5 * (m0 - m1) * (math.cos(math.pi * pct) + 1)
        start = end
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Schedule:
    """An mmcv learning-rate schedule as fractions of the run, so a short run keeps the official shape."""

    policy: str  # "poly" | "cosine"
    warmup_frac: float
    warmup_ratio: float
    min_ratio: float = 0.0

    def warmup_steps(self, steps: int) -> int:
        return int(round(self.warmup_frac * steps))

    def factor(self, steps: int) -> Callable[[int], float]:
        warmup = self.warmup_steps(steps)
        return lambda s: _lr_factor(s, steps, warmup, self.warmup_ratio, self.policy, self.min_ratio)


SEG_SCHEDULE = Schedule("poly", SEG_WARMUP_FRAC, SEG_WARMUP_RATIO)
DEPTH_SCHEDULE = Schedule("cosine", DEPTH_WARMUP_FRAC, DEPTH_WARMUP_RATIO, DEPTH_MIN_LR_RATIO)


@dataclass
class ProbeResult:
    """What one probe run gives back.

    metrics: validation metrics at the end of training (seg: miou, macc, aacc; depth: rmse, absrel, delta1,
    n_valid). losses: training loss per step. head_state: ``state_dict`` of ``model`` (keys ``assembly.*``,
    ``head.*``). model: the trained ``ProbeModel`` on CPU in eval mode. examples: ``index [k]``, ``pred [k, H, W]``,
    ``target [k, H, W]`` for a few validation images (for plots). config: the settings used. seconds: wall time.
    best: the official depth protocol's checkpoint selection (lowest AbsRel over the periodic evaluations, with its
    ``step``), or None where no periodic evaluation ran.
    """

    metrics: dict[str, float]
    losses: list[float]
    head_state: dict[str, Tensor]
    model: nn.Module
    examples: dict[str, Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    best: dict[str, float] | None = None


@dataclass
class ProbeTask:
    """What a probe task fixes: head, loss, optimiser settings, target handling and metric. Subclasses fill it in."""

    name: str = ""  # "seg" | "depth": artifact keys, curves and stats use it
    weight_decay: float = 0.0
    schedule: Schedule = SEG_SCHEDULE
    grad_clip: float | None = None
    final_norm: bool = True  # features after the backbone's final LayerNorm
    best_metric: str | None = None  # select a checkpoint by this metric (lower is better); None = the last only

    def head(self, in_dim: int, cls_dim: int) -> nn.Module:
        raise NotImplementedError

    def build(self, mode: str, dim: int, cls_dim: int = 0) -> ProbeModel:
        """The assembly of ``mode`` over ``dim``-channel features plus this task's head (the one place heads are
        built; the assembly first, so the RNG draws are the same as the heads' historical construction)."""
        asm = FeatureAssembly(mode, dim)
        return ProbeModel(asm, self.head(asm.out_dim, cls_dim))

    def optimizer(
        self, model: nn.Module, lr: float, steps: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """AdamW (betas 0.9 / 0.999, the task's weight decay) and the task's schedule over ``steps``."""
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=self.weight_decay, betas=(0.9, 0.999))
        factor = self.schedule.factor(steps)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: factor(s))

    def before_step(self, opt: torch.optim.Optimizer, step: int, steps: int) -> None:
        """Per-step optimiser changes other than the lr schedule (the official depth probe's OneCycle beta1)."""

    def apply_step(self, model: nn.Module, opt: torch.optim.Optimizer, sched: Any, loss: Tensor) -> float:
        """Backward, clip (if the task clips), optimiser and schedule step; returns the loss value."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
        opt.step()
        sched.step()
        return float(loss.detach())

    # --- targets, loss, prediction, metric ----------------------------------------------------------------
    def train_target(self, target: Tensor, downscale: int = 1) -> Tensor:
        raise NotImplementedError

    def val_target(self, target: Tensor) -> Tensor:
        raise NotImplementedError

    def train_loss(
        self, model: ProbeModel, a: Tensor, b: Tensor | None, cls: Tensor | None, y: Tensor, step: int
    ) -> Tensor:
        raise NotImplementedError

    def predict(
        self, model: ProbeModel, a: Tensor, b: Tensor | None, cls: Tensor | None, out_hw: tuple[int, int]
    ) -> Tensor:
        """The evaluated maps ``[B, H, W]``: class ids, or depth clamped to the head's range."""
        raise NotImplementedError

    def eval_mask(self, target: Tensor) -> Tensor | None:
        return None

    def metric_state(self) -> Any:
        raise NotImplementedError

    def update(self, state: Any, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        raise NotImplementedError

    def summary(self, state: Any) -> dict[str, float]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The task's settings for ``ProbeResult.config``."""
        return {"task": self.name, "weight_decay": self.weight_decay, "schedule": self.schedule.policy}


def _subsample(maps: Tensor, k: int) -> Tensor:
    """Every k-th pixel of [N, H, W] maps from the middle of each k×k cell (nearest: no value is invented)."""
    return maps[..., k // 2 :: k, k // 2 :: k].contiguous()


@dataclass
class SegTask(ProbeTask):
    """Linear segmentation: ``SegHead`` (BN + 1x1 conv), CE with ``ignore_index``, mIoU / mAcc / aAcc.

    ``avg_non_ignore=True`` averages the CE over labelled pixels (cached protocol); False divides by all pixels,
    as mmseg 0.x's default that the official configs use."""

    num_classes: int = 0
    ignore_index: int = IGNORE_INDEX_SEG
    avg_non_ignore: bool = True
    name: str = "seg"
    weight_decay: float = 1e-4
    schedule: Schedule = SEG_SCHEDULE

    def __post_init__(self) -> None:
        if self.num_classes <= 0:
            raise ValueError("segmentation needs a class table (num_classes > 0)")

    def head(self, in_dim: int, cls_dim: int) -> nn.Module:
        return SegHead(in_dim, self.num_classes)

    def train_target(self, target: Tensor, downscale: int = 1) -> Tensor:
        labels = torch.as_tensor(target).long()  # [N, H, W]
        return _subsample(labels, downscale) if downscale > 1 else labels

    def val_target(self, target: Tensor) -> Tensor:
        return torch.as_tensor(target).long()

    def train_loss(
        self, model: ProbeModel, a: Tensor, b: Tensor | None, cls: Tensor | None, y: Tensor, step: int
    ) -> Tensor:
        logits = model(a, b)  # [B, C, h, w]: the loss resizes them to the labels
        return seg_loss(logits, y, self.ignore_index, avg_non_ignore=self.avg_non_ignore)

    def predict(
        self, model: ProbeModel, a: Tensor, b: Tensor | None, cls: Tensor | None, out_hw: tuple[int, int]
    ) -> Tensor:
        return model(a, b, out_hw=out_hw).argmax(1)  # [B, H, W]

    def metric_state(self) -> Tensor:
        return torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)

    def update(self, state: Tensor, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        state += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def summary(self, state: Tensor) -> dict[str, float]:
        return metrics_from_confusion(state)

    def config(self) -> dict[str, Any]:
        loss = (
            "CE mean / labelled pixels" if self.avg_non_ignore else "CE sum / all pixels (mmseg avg_non_ignore=False)"
        )
        return {**super().config(), "num_classes": self.num_classes, "loss": loss}


@dataclass
class DepthTask(ProbeTask):
    """Linear depth: ``DepthHead`` (bins over ``[min_depth, max_depth]``), SigLoss + ``grad_weight`` x GradientLoss,
    per-image RMSE / AbsRel / δ1 over ``min_depth < gt < max_depth``.

    ``chunk``: the loss is computed per chunk of this many images and averaged (official: per GPU, 2 images);
    None = one loss over the batch. ``momentum``: OneCycle (base, peak, pct_start) on AdamW's beta1 (official)."""

    min_depth: float = 1e-3
    max_depth: float = 10.0
    n_bins: int = 256
    norm_strategy: str = "linear"
    grad_weight: float = 0.5
    sigloss_warmup_steps: int = 0
    chunk: int | None = None
    momentum: tuple[float, float, float] | None = None
    name: str = "depth"
    weight_decay: float = 0.01
    schedule: Schedule = DEPTH_SCHEDULE
    grad_clip: float | None = 35.0
    final_norm: bool = False

    def head(self, in_dim: int, cls_dim: int) -> nn.Module:
        return DepthHead(
            in_dim,
            cls_dim,
            n_bins=self.n_bins,
            min_depth=self.min_depth,
            max_depth=self.max_depth,
            norm_strategy=self.norm_strategy,
        )

    def before_step(self, opt: torch.optim.Optimizer, step: int, steps: int) -> None:
        if self.momentum is None:
            return
        mom = onecycle_momentum(step, steps, *self.momentum)
        for g in opt.param_groups:
            g["betas"] = (mom, g["betas"][1])

    def train_target(self, target: Tensor, downscale: int = 1) -> Tensor:
        depth = torch.nan_to_num(torch.as_tensor(target).float(), nan=0.0, posinf=0.0, neginf=0.0)  # [N, H, W]
        return _subsample(depth, downscale) if downscale > 1 else depth

    def val_target(self, target: Tensor) -> Tensor:
        return torch.as_tensor(target).float()

    def train_loss(
        self, model: ProbeModel, a: Tensor, b: Tensor | None, cls: Tensor | None, y: Tensor, step: int
    ) -> Tensor:
        pred = model(a, b, cls, out_hw=tuple(y.shape[-2:]))[:, 0]  # [B, H, W]
        warm = step < self.sigloss_warmup_steps
        if self.chunk is None:
            return depth_loss(pred, y, grad_weight=self.grad_weight, warm_up=warm)
        k = self.chunk
        parts = [
            depth_loss(pred[s : s + k], y[s : s + k], grad_weight=self.grad_weight, warm_up=warm)
            for s in range(0, pred.shape[0], k)
        ]
        return torch.stack(parts).mean()

    def predict(
        self, model: ProbeModel, a: Tensor, b: Tensor | None, cls: Tensor | None, out_hw: tuple[int, int]
    ) -> Tensor:
        return model(a, b, cls, out_hw=out_hw)[:, 0].clamp(self.min_depth, self.max_depth)  # [B, H, W]

    def eval_mask(self, target: Tensor) -> Tensor:
        return (target > self.min_depth) & (target < self.max_depth)

    def metric_state(self) -> dict[str, Any]:
        return {"rows": [], "n_invalid": 0}

    def update(self, state: dict[str, Any], pred: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Per-image metrics (the official toolbox's ``pre_eval``) of ``pred``/``target`` ``[B, H, W]``."""
        for i in range(pred.shape[0]):
            state["rows"].append(depth_metrics(pred[i], target[i], None if mask is None else mask[i]))
        state["n_invalid"] += int((target <= 0).sum())

    def summary(self, state: dict[str, Any]) -> dict[str, float]:
        return mean_over_images(state["rows"])

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "min_depth": self.min_depth,
            "max_depth": self.max_depth,
            "n_bins": self.n_bins,
            "grad_loss_weight": self.grad_weight,
            "grad_clip": self.grad_clip,
            "sigloss_warmup_steps": self.sigloss_warmup_steps,
            "norm_strategy": self.norm_strategy,
            "final_norm": self.final_norm,
            "momentum": "OneCycle" if self.momentum is not None else "constant",
        }


def with_schedule(task: ProbeTask, warmup_frac: float) -> ProbeTask:
    """``task`` with another warm-up fraction (the trainers' ``warmup_frac`` argument)."""
    return dataclasses.replace(task, schedule=dataclasses.replace(task.schedule, warmup_frac=warmup_frac))
