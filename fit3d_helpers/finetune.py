"""Stage 2: fine-tune the 2D backbone on multi-view-consistent features rendered from the lifted Gaussians.

For every view of every training scene we render the scene's low-dim features near the token grid, decode them
with that scene's decoder to the backbone width and resize to the token grid: that is the target. Targets are
rendered once and cached (``artifacts/targets/<hash>/``), so a fine-tuning step costs about one backbone
forward+backward. The loss is the L1 between the model's normed patch tokens and the target, weighted by the
soft anonymisation mask (``finetune.mask="anonymisation"``, official; ``"alpha"`` also drops tokens the Gaussians do
not cover); AdamW lr 1e-5, weight decay 1e-4, batch 2, one epoch, grad-norm clip 0.1, random horizontal
flips (target flipped with the image), as in the official code.

The output ``model.pth`` is a plain timm state dict, the format of the released FiT3D checkpoints, so
``load_backbone(name, weights=<path>)`` reads both.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import cache
from .backbone import Backbone, load_backbone
from .cache import Artifact
from .checkpoint import Checkpointer
from .data import load_scene
from .lift import (
    LiftError,
    LiftResult,
    check_lift_finite,
    decode_to_grid,
    feature_camera,
    geometry_key,
    render_features,
    soft_view_masks,
)
from .profiles import FinetuneConfig, LiftConfig
from .render import resolve_backend
from .utils import DEFAULT_ARTIFACTS, progress, save_torch, seed_everything, write_json

_CHECKPOINT_FORMAT = 3  # 2: + RNG states; 3: the Checkpointer's layout


# ----------------------------------------------------------------------------------------------------------------
# LoRA adapter (small, our own: peft pulls in transformers)
# ----------------------------------------------------------------------------------------------------------------


class LoRALinear(nn.Module):
    """``base(x) + (alpha/r)·B(A(x))`` with B initialised to zero, so training starts from the base model."""

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float | None = None):
        super().__init__()
        self.base = base
        self.rank = rank
        self.scale = (alpha if alpha is not None else rank) / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale

    def merged(self) -> nn.Linear:
        """A plain Linear with the adapter folded in (for a checkpoint in timm's format)."""
        lin = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        lin.weight.data = self.base.weight.data + self.scale * self.lora_b.data @ self.lora_a.data
        if self.base.bias is not None:
            lin.bias.data = self.base.bias.data.clone()
        return lin


def add_lora(model: nn.Module, rank: int = 4, blocks: int = 4) -> list[nn.Parameter]:
    """Freeze ``model``, put LoRA on the qkv projection of its last ``blocks`` blocks; returns the trainable params."""
    for p in model.parameters():
        p.requires_grad_(False)
    trainable: list[nn.Parameter] = []
    for blk in list(model.blocks)[-blocks:]:
        lora = LoRALinear(blk.attn.qkv, rank)
        blk.attn.qkv = lora
        trainable += [lora.lora_a, lora.lora_b]
    return trainable


def merge_lora(model: nn.Module) -> nn.Module:
    for blk in model.blocks:
        if isinstance(blk.attn.qkv, LoRALinear):
            blk.attn.qkv = blk.attn.qkv.merged()
    return model


# ----------------------------------------------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Targets:
    """Cached fine-tuning data for one scene: images and the decoded rendered features on the token grid."""

    images: Tensor  # [V, 3, H, W] 0..1
    targets: Tensor  # [V, D, h, w]
    masks: Tensor  # [V, 1, h, w] loss weights on the token grid (soft anonymisation mask; × alpha coverage for "alpha")
    scene: str


class TargetSource(Protocol):
    """Replaces the rendered training targets (an ablation's control): the same views, masks and schedule, other
    targets. ``key()`` joins the fine-tuning key; the call gets the rendered targets and the backbone before training
    and returns the new targets and the stats to keep."""

    def key(self) -> dict[str, Any]: ...

    def __call__(self, train: list[Targets], backbone: Backbone) -> tuple[list[Targets], dict[str, Any]]: ...


def scene_targets(
    lift: LiftResult,
    backbone: Backbone,
    *,
    mask: str = "anonymisation",
    root: str | Path | None = None,
    backend: str = "auto",
    force: bool = False,
) -> tuple[Targets, dict[str, Any]]:
    """Render (once, then cached) the fine-tuning targets of every view of one lifted scene.

    The official construction when the lift decodes at full size (``lift.feature_factor = 0``): render the low-dim
    features at the lift's render size, decode there, resize bilinearly to the token grid. With a cheaper lift path
    (factor k) the render is area-pooled to k × the grid before decoding, exactly as in stage 1 (:func:`lift.decode`).
    ``mask``: "alpha" weighs a token by rendered alpha > 0.5 (× the anonymisation mask); "anonymisation" by the soft
    anonymisation mask only (official; all ones where a scene has none).
    """
    root = Path(root) if root is not None else DEFAULT_ARTIFACTS
    if lift.scene_path is None:
        raise LiftError(
            f"scene_targets needs the scene the lift {lift.hash} was fitted on: load it with lift_scene(scene, ...)"
        )
    check_lift_finite(lift, "the fine-tuning targets")
    key = {"stage": "targets", "lift": lift.hash, "mask": mask}

    def make(out: Path, resume: Path) -> dict[str, Any]:
        if lift.decoder.weight.shape[0] != backbone.dim:
            raise LiftError(
                f"lift {lift.hash} decodes to {lift.decoder.weight.shape[0]} channels, the backbone is {backbone.dim}-d"
            )
        cfg = LiftConfig(**lift.config["lift"])
        scene = load_scene(lift.scene_path, include_test_frames=bool(lift.config.get("test_frames")))
        images = torch.stack([torch.as_tensor(v.image, dtype=torch.float32).permute(2, 0, 1) for v in scene.views])
        H, W = images.shape[-2:]
        h, w = backbone.grid_size(H, W)
        rh, rw = H // cfg.train_downscale, W // cfg.train_downscale  # the size stage 1 rendered at
        dev = backbone.device  # render where the backbone runs (CUDA: gsplat)
        params = {k: v.to(dev) for k, v in lift.params.items() if k != "sh_degree"}
        decoder = lift.decoder.to(dev)
        viewmats = torch.stack([torch.as_tensor(v.world_to_cam, dtype=torch.float32) for v in scene.views]).to(dev)
        Ks = feature_camera(
            torch.stack([torch.as_tensor(v.K, dtype=torch.float32) for v in scene.views]), (H, W), (rh, rw)
        ).to(dev)
        anon_grid = soft_view_masks(scene, (h, w))  # [V, 1, h, w] soft, as the official loader
        targets, masks = [], []
        # on a CPU the views' compositing weights are kept (the refits of one lift share its geometry, notebook 05)
        geo = geometry_key(params) if resolve_backend(backend, dev) == "torch" else None
        t0 = time.time()
        with torch.no_grad():
            for i in range(len(scene.views)):
                feats, alphas = render_features(
                    params,
                    viewmats[i : i + 1],
                    Ks[i : i + 1],
                    rw,
                    rh,
                    backend=backend,
                    near=cfg.near_plane,
                    max_alpha=cfg.max_alpha,
                    remember=True,
                    geometry=geo,
                )
                targets.append(decode_to_grid(decoder, feats, (h, w), cfg.feature_factor)[0].cpu())
                if mask == "alpha":
                    covered = (F.interpolate(alphas, size=(h, w), mode="area")[0].cpu() > 0.5).float()
                    masks.append(covered * anon_grid[i])
                else:
                    masks.append(anon_grid[i])
        per_view = (time.time() - t0) / len(scene.views)
        masks_t = torch.stack(masks)  # [V, 1, h, w]
        if not bool((masks_t > 0).any()):
            raise LiftError(
                f"scene {scene.name}: every fine-tuning mask is empty (the rendered alpha never exceeds 0.5 on "
                f"the {h}×{w} token grid, or every pixel is anonymised): the lift {lift.hash} covers nothing; "
                "refit it (force=True) and check its held-out PSNR in notebook 02"
            )
        save_torch(
            out / "targets.pt",
            {"images": images, "targets": torch.stack(targets), "masks": masks_t, "scene": scene.name},
        )
        return {
            "stage": "targets",
            "scene": scene.name,
            "views": len(scene.views),
            "render_hw": [rh, rw],
            "grid_hw": [h, w],
            "feature_factor": cfg.feature_factor,
            "mask": mask,
            "render_seconds_per_view": per_view,
            "mask_coverage": float(masks_t.mean()),
        }

    art = cache.build(
        "targets", key, root, make, force=force, what=f"the fine-tuning targets of {lift.stats.get('scene')}"
    )
    t = art.torch("targets.pt")
    return Targets(t["images"], t["targets"], t["masks"], t["scene"]), art.stats


def random_hflip(*tensors: Tensor, generator: torch.Generator, p: float = 0.5) -> tuple[Tensor, ...]:
    """Flip each sample of every tensor [B, C, H, W] left-right with probability p, the *same* samples in all,
    so a target stays aligned with its image."""
    flip = torch.rand(tensors[0].shape[0], generator=generator) < p  # [B]
    return tuple(torch.where(flip.to(t.device)[:, None, None, None], t.flip(-1), t) for t in tensors)


class _Tokens(nn.Module):
    """forward() = timm's forward_features (normed tokens), so DDP hooks the right graph."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.forward_features(x)


def masked_l1(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """The official masked L1: ``sum(|pred − target| · w) / (sum(w) · D)``. pred, target [B, D, h, w]; weight
    [B, 1, h, w] in 0..1 (soft, e.g. an anonymisation mask resized bilinearly, or a binary coverage mask)."""
    w = weight.to(pred.dtype)
    return ((pred - target).abs() * w).sum() / (w.sum() * pred.shape[1]).clamp_min(1e-12)


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------


def make_optimizer(params: list[nn.Parameter], cfg: FinetuneConfig) -> torch.optim.AdamW:
    """AdamW as the official code; the fused kernel (CPU, CUDA; torch >= 2.4) keeps a step near the backbone's cost."""
    try:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # older torch or an unsupported device
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def finetune_key(backbone: Backbone, lifts: list[LiftResult], cfg: FinetuneConfig) -> dict[str, Any]:
    """Portable: the backbone by its identity and the lifts by their artifact hashes."""
    return {
        "stage": "finetune",
        **backbone.identity(),
        "lifts": sorted(lf.hash for lf in lifts),
        "finetune": dataclasses.asdict(cfg),
    }


def epoch_batches(n: int, batch_size: int, world_size: int, rank: int, seed: int, epoch: int) -> list[list[int]]:
    """This process's batches of one epoch: torch's ``DistributedSampler`` (shuffled by seed + epoch, each process a
    disjoint share, the remainder dropped so every process takes the same number of steps), cut into batches.

    One process gets ``randperm(n)`` of that seed, so a single-process run is unchanged by DDP support; with N
    processes an epoch has N times fewer steps and no sample is seen twice.
    """
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    mine = list(sampler)
    return [mine[i : i + batch_size] for i in range(0, len(mine) - batch_size + 1, batch_size)]


@torch.no_grad()
def validation_l1(backbone: Backbone, data: list[Targets], batch_size: int = 4) -> float:
    """Masked L1 between the backbone's tokens and the rendered 3D-consistent targets (held-out scenes)."""
    was = backbone.model.training
    backbone.model.eval()
    total, count = 0.0, 0
    for t in data:
        for i in range(0, t.images.shape[0], batch_size):
            patch, _ = backbone.forward_tokens(t.images[i : i + batch_size])
            total += (
                float(masked_l1(patch.cpu(), t.targets[i : i + batch_size], t.masks[i : i + batch_size]))
                * patch.shape[0]
            )
            count += patch.shape[0]
    backbone.model.train(was)
    return total / max(count, 1)


@dataclass
class FinetuneResult:
    artifact: Artifact | None  # None on the non-main processes of a DDP run (rank 0 writes)
    stats: dict[str, Any]
    losses: dict[str, list[float]]
    seen: list[int] = field(default_factory=list)  # sample indices this process trained on (this call only)

    @property
    def path(self) -> Path:
        if self.artifact is None:
            raise RuntimeError("only the main process of a DDP run writes the fine-tuned model")
        return self.artifact.path

    @property
    def hash(self) -> str:
        return self.artifact.hash if self.artifact is not None else ""

    @property
    def weights_path(self) -> Path:
        return self.path / "model.pth"

    def load(self, device: str = "auto") -> Backbone:
        """The fine-tuned backbone (a timm model with our weights, at the precision it was trained in), named by its
        artifact in later keys."""
        bb = load_backbone(self.stats["backbone"], weights=str(self.weights_path), device=device,
                           precision=self.stats.get("precision", "fp32"))  # fmt: skip
        bb.source_id = f"finetune/{self.hash}"
        return bb


def finetune(
    train_lifts: list[LiftResult],
    backbone: Backbone,
    cfg: FinetuneConfig | None = None,
    *,
    val_lifts: list[LiftResult] = (),
    root: str | Path | None = None,
    backend: str = "auto",
    force: bool = False,
    max_steps: int | None = None,
    targets_from: TargetSource | None = None,
) -> FinetuneResult:
    """Fine-tune ``backbone`` (in place) on the rendered targets of the lifted scenes ``train_lifts``.

    Cached by config hash (backbone identity, lift artifacts, settings). ``val_lifts`` (held-out scenes) give the
    validation L1 before/after. Under ``torchrun`` each process takes a disjoint share of every epoch (a distributed
    sampler) and DDP averages the gradients; rank 0 writes the artifact. ``max_steps`` stops early with a checkpoint
    (TimeoutError): calling again resumes, with the RNG states, to the same result as an uninterrupted run.
    ``targets_from``: train on other targets than the rendered ones (notebook 05's smoothing control); validation
    stays on the held-out scenes' rendered targets.
    """
    from .distributed import init_distributed

    cfg = cfg or FinetuneConfig()
    if cfg.mode == "released":
        raise ValueError(
            "finetune.mode='released' loads FiT3D's checkpoint instead of training: use finetune.released()"
        )
    root = Path(root) if root is not None else DEFAULT_ARTIFACTS
    for lf in [*train_lifts, *val_lifts]:  # before any work: a non-finite lift would train on garbage
        check_lift_finite(lf, "stage 2 (fine-tuning)")
    key = finetune_key(backbone, list(train_lifts), cfg)
    if targets_from is not None:
        key["targets_from"] = targets_from.key()
    dist = init_distributed(device=backbone.device)
    seen: list[int] = []
    box: dict[str, Any] = {}

    def make(out: Path, resume: Path) -> dict[str, Any]:
        stats, losses = _train(
            list(train_lifts),
            list(val_lifts),
            backbone,
            cfg,
            dist,
            out,
            resume,
            root,
            backend,
            max_steps,
            seen,
            shared_resume=cache.key_dir(root, "finetune", key) / ".resume",
            targets_from=targets_from,
        )
        box["losses"] = losses
        return stats

    if dist.is_main:
        art = cache.build("finetune", key, root, make, force=force, what="the fine-tuned model")
        return FinetuneResult(art, art.stats, art.json("losses.json"), seen)
    stats = cache.run_uncommitted(make)
    return FinetuneResult(None, stats, box.get("losses", {}), seen)


def train_step(
    backbone: Backbone,
    runner: nn.Module,
    params: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    targets: Tensor,
    weights: Tensor,
    cfg: FinetuneConfig,
    flip_generator: torch.Generator,
) -> Tensor:
    """One step of stage 2 (what the loop runs, and notebook 03 shows): flip, the model's normed patch tokens, the
    masked L1 against the rendered targets, backward, clip, AdamW. images [B, 3, H, W] 0..1, targets [B, D, h, w],
    weights [B, 1, h, w]; ``runner``: the model's ``forward_features`` (DDP-wrapped under torchrun). Returns the loss.
    """
    if cfg.flip:
        images, targets, weights = random_hflip(images, targets, weights, generator=flip_generator)
    dev = backbone.device
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=backbone.bf16):
        tokens = runner(backbone.preprocess(images.to(dev))).float()  # [B, prefix + h*w, D], after the final norm
    h, w = targets.shape[-2:]
    patch = tokens[:, backbone.model.num_prefix_tokens :].transpose(1, 2).reshape(tokens.shape[0], -1, h, w)
    loss = masked_l1(patch, targets.to(dev), weights.to(dev))
    if torch.isfinite(loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
        optimizer.step()
    return loss.detach()


def tokens_runner(backbone: Backbone) -> nn.Module:
    """The module whose forward is the backbone's ``forward_features`` (what a training step differentiates)."""
    return _Tokens(backbone.model)


def _load_targets(
    train_lifts: list[LiftResult],
    val_lifts: list[LiftResult],
    backbone: Backbone,
    cfg: FinetuneConfig,
    root: Path,
    backend: str,
) -> tuple[list[Targets], list[Targets], list[dict[str, Any]]]:
    """The rendered targets of the training and validation scenes (cached), and the training targets' stats."""
    data = [scene_targets(lf, backbone, mask=cfg.mask, root=root, backend=backend) for lf in train_lifts]
    val = [scene_targets(lf, backbone, mask=cfg.mask, root=root, backend=backend)[0] for lf in val_lifts]
    return [t for t, _ in data], val, [s for _, s in data]


def trainable_params(model: nn.Module, cfg: FinetuneConfig) -> list[nn.Parameter]:
    """What stage 2 trains: every parameter (``finetune.mode="full"``), or LoRA adapters added to ``model`` ("lora")."""
    if cfg.mode == "lora":
        return add_lora(model, cfg.lora_rank, cfg.lora_blocks)
    return [p for p in model.parameters() if p.requires_grad]


def _batch(train: list[Targets], samples: list[tuple[int, int]]) -> tuple[Tensor, Tensor, Tensor]:
    """The (scene, view) ``samples`` stacked: images [B, 3, H, W], targets [B, D, h, w], masks [B, 1, h, w]."""
    return tuple(torch.stack([getattr(train[s], k)[v] for s, v in samples]) for k in ("images", "targets", "masks"))


def _steps_per_epoch(n_samples: int, cfg: FinetuneConfig, dist: Any) -> int:
    """Steps of one epoch on this process (the distributed sampler drops the remainder), or a clear error for none."""
    steps = len(epoch_batches(n_samples, cfg.batch_size, dist.world_size, dist.rank, cfg.seed, 0))
    if steps == 0:
        raise ValueError(
            f"{n_samples} training views cannot fill one batch of {cfg.batch_size} on each of {dist.world_size} "
            "process(es): lower finetune.batch_size or use fewer processes"
        )
    return steps


def _train(
    train_lifts: list[LiftResult],
    val_lifts: list[LiftResult],
    backbone: Backbone,
    cfg: FinetuneConfig,
    dist: Any,
    out: Path,
    resume: Path,
    root: Path,
    backend: str,
    max_steps: int | None,
    seen: list[int],
    *,
    shared_resume: Path,
    targets_from: TargetSource | None = None,
) -> tuple[dict[str, Any], dict[str, list]]:
    """The stage-2 loop (the official fine-tuning engine); writes model.pth and losses.json into ``out`` (main
    process) and returns (stats, losses)."""
    from .distributed import wrap_ddp

    seed_everything(cfg.seed)
    train, val, target_stats = _load_targets(train_lifts, val_lifts, backbone, cfg, root, backend)
    replaced = None
    if targets_from is not None:  # before any step or resume: the backbone is still the original
        train, replaced = targets_from(train, backbone)
    val_before = validation_l1(backbone, val) if val else float("nan")
    model = backbone.model
    params = trainable_params(model, cfg)
    optimizer = make_optimizer(params, cfg)
    runner = wrap_ddp(_Tokens(model), dist)  # DDP needs forward() to be the thing we differentiate
    pairs = [(s, v) for s, t in enumerate(train) for v in range(t.images.shape[0])]  # (scene, view) per sample
    steps_per_epoch = _steps_per_epoch(len(pairs), cfg, dist)
    total_steps = steps_per_epoch * cfg.epochs
    ckpt = Checkpointer((resume if dist.is_main else shared_resume) / "checkpoint.pt", _CHECKPOINT_FORMAT,
                        every=cfg.checkpoint_every, total=total_steps, what="fine-tuning", stop_after=max_steps,
                        writes=dist.is_main)  # fmt: skip
    losses: dict[str, list] = {"step": [], "loss": []}
    ck = ckpt.resume()  # the RNG states are restored by it
    if ck is not None:
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        losses = ck["losses"]
    model.train()
    bar = progress(
        total=total_steps, initial=ckpt.start, desc="fine-tune", **({} if dist.is_main else {"disable": True})
    )
    for step in range(ckpt.start, total_steps):
        epoch, within = divmod(step, steps_per_epoch)
        batch_ids = epoch_batches(len(pairs), cfg.batch_size, dist.world_size, dist.rank, cfg.seed, epoch)[within]
        seen.extend(batch_ids)
        flip_gen = torch.Generator().manual_seed(cfg.seed * 100_003 + step * dist.world_size + dist.rank)
        imgs, tgts, msks = _batch(train, [pairs[j] for j in batch_ids])
        loss = train_step(backbone, runner, params, optimizer, imgs, tgts, msks, cfg, flip_gen)
        if not torch.isfinite(loss):
            raise RuntimeError(
                f"fine-tune step {step}: loss is {float(loss)} (not finite); no artifact written. Lower finetune.lr."
            )
        losses["step"].append(step + 1)
        losses["loss"].append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{losses['loss'][-1]:.4f}")
        ckpt.after_step(
            step + 1, lambda: {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "losses": losses}
        )
    bar.close()
    wall = ckpt.wall_seconds()
    if cfg.mode == "lora":
        merge_lora(model)
    model.eval()
    stats = {
        "stage": "finetune",
        **backbone.describe(),
        "mode": cfg.mode,
        "epochs": cfg.epochs,
        "lr": cfg.lr,
        "steps": total_steps,
        "trainable_params": sum(p.numel() for p in params),
        "train_scenes": [t.scene for t in train],
        "val_scenes": [t.scene for t in val],
        "train_views": len(pairs),
        "val_l1_before": val_before,
        "val_l1_after": validation_l1(backbone, val) if val else float("nan"),
        "final_loss": losses["loss"][-1] if losses["loss"] else None,
        "wall_seconds": round(wall, 1),
        "seconds_per_step": wall / max(total_steps, 1),
        "mask": cfg.mask,
        "feature_factor": target_stats[0]["feature_factor"],
        "target_render_seconds_per_view": sum(s["render_seconds_per_view"] for s in target_stats) / len(target_stats),
        "world_size": dist.world_size,
        "batch_per_process": cfg.batch_size,
        "precision": "bf16" if backbone.bf16 else "fp32",
    }
    if replaced is not None:
        stats["targets_from"] = replaced
    if dist.is_main:
        save_torch(out / "model.pth", {k: v.detach().cpu() for k, v in model.state_dict().items()})
        write_json(out / "losses.json", losses)
    return stats, losses


def released(model: str = "dinov2_small", device: str = "auto", precision: str = "fp32") -> Backbone:
    """Demo-inference mode: skip training and load the released FiT3D checkpoint (needs the internet once)."""
    return load_backbone(model, weights="fit3d", device=device, precision=precision)
