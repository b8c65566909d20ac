"""Stage 2: fine-tune the 2D backbone on multi-view-consistent features rendered from the lifted Gaussians.

For every view of every training scene we render the scene's low-dim features near the token grid, decode them
with that scene's decoder to the backbone width and resize to the token grid: that is the target. Targets are
rendered once and cached (``artifacts/targets/<hash>/``), so a fine-tuning step costs about one backbone
forward+backward. The loss is the L1 between the model's normed patch tokens and the target, masked by the
rendered alpha; AdamW lr 1e-5, weight decay 1e-4, batch 2, one epoch, grad-norm clip 0.1, random horizontal
flips (target flipped with the image), as in the official code.

The output ``model.pth`` is a plain timm state dict, the format of the released FiT3D checkpoints, so
``load_backbone(name, weights=<path>)`` reads both.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .backbone import Backbone, load_backbone
from .data import load_scene
from .lift import LiftError, feature_camera, load_lift, render_features
from .utils import DEFAULT_ARTIFACTS, artifact_complete, atomic_dir, config_hash, progress, read_json, save_torch, seed_everything, write_json


@dataclass
class FinetuneConfig:
    """Stage-2 settings; defaults are the official ones (DESIGN.md §4 "Fine-tune")."""

    epochs: int = 1
    lr: float = 1e-5
    weight_decay: float = 1e-4
    batch_size: int = 2
    grad_clip: float = 0.1
    flip: bool = True
    mode: str = "full"  # "full": all backbone parameters; "lora": rank-r adapters on the qkv of the last blocks
    lora_rank: int = 4
    lora_blocks: int = 4
    target_factor: int = 1  # targets rendered at token grid × factor, then resized to the grid (ablation 1/2/4)
    checkpoint_every: int = 50
    seed: int = 0


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
    """Freeze ``model`` and put LoRA on the qkv projection of its last ``blocks`` blocks; returns the trainable params."""
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
    masks: Tensor  # [V, 1, h, w] rendered alpha on the token grid
    scene: str


def scene_targets(lift_path: str | Path, backbone: Backbone, *, target_factor: int = 1, root: str | Path | None = None,
                  backend: str = "auto") -> tuple[Targets, dict[str, float]]:
    """Render (once, then cached) the fine-tuning targets of every view of one lifted scene (a lift artifact)."""
    root = Path(root) if root is not None else DEFAULT_ARTIFACTS
    ldir = Path(lift_path)
    key = {"stage": "targets", "lift": f"{ldir.parent.name}/{ldir.name}", "target_factor": target_factor}
    tdir = root / "targets" / config_hash(key)
    if artifact_complete(tdir):
        t = torch.load(tdir / "targets.pt", map_location="cpu", weights_only=True)
        return Targets(t["images"], t["targets"], t["masks"], t["scene"]), read_json(tdir / "stats.json")
    lift = load_lift(ldir, expect_dim=backbone.dim)
    scene = load_scene(lift.config["scene"])
    images = torch.stack([torch.as_tensor(v.image, dtype=torch.float32).permute(2, 0, 1) for v in scene.views])
    H, W = images.shape[-2:]
    h, w = backbone.grid_size(H, W)
    fh, fw = h * target_factor, w * target_factor
    dev = backbone.device  # render where the backbone runs (CUDA: gsplat)
    params = {k: v.to(dev) for k, v in lift.params.items()}
    decoder = lift.decoder.to(dev)
    viewmats = torch.stack([torch.as_tensor(v.world_to_cam, dtype=torch.float32) for v in scene.views]).to(dev)
    Ks_full = torch.stack([torch.as_tensor(v.K, dtype=torch.float32) for v in scene.views]).to(dev)
    Ks = feature_camera(Ks_full, (H, W), (fh, fw))
    targets, masks = [], []
    t0 = time.time()
    with torch.no_grad():
        for i in range(len(scene.views)):
            feats, alphas = render_features(params, viewmats[i : i + 1], Ks[i : i + 1], fw, fh, backend=backend)
            targets.append(F.interpolate(decoder(feats), size=(h, w), mode="bilinear", align_corners=False)[0].cpu())
            masks.append(F.interpolate(alphas, size=(h, w), mode="area")[0].cpu())
    per_view = (time.time() - t0) / len(scene.views)
    with torch.no_grad():  # what the official full-size rendering would cost, measured on one view
        t1 = time.time()
        feats, _ = render_features(params, viewmats[:1], Ks_full[:1], W, H, backend=backend)
        decoder(feats)
        full = time.time() - t1
    stats = {"stage": "targets", "scene": scene.name, "views": len(scene.views), "target_hw": [fh, fw], "grid_hw": [h, w],
             "render_seconds_per_view": per_view, "full_size_render_seconds_per_view": full}
    out = Targets(images, torch.stack(targets), torch.stack(masks), scene.name)
    with atomic_dir(tdir, overwrite=True) as tmp:
        save_torch(tmp / "targets.pt", {"images": out.images, "targets": out.targets, "masks": out.masks, "scene": out.scene})
        write_json(tmp / "config.json", key)
        write_json(tmp / "stats.json", stats)
    return out, stats


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


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean |pred − target| over masked token positions. pred, target [B, D, h, w], mask [B, 1, h, w] in 0..1."""
    m = (mask > 0.5).to(pred.dtype)
    return ((pred - target).abs() * m).sum() / (m.sum() * pred.shape[1]).clamp_min(1.0)


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------


def make_optimizer(params: list[nn.Parameter], cfg: FinetuneConfig) -> torch.optim.AdamW:
    """AdamW as the official code; the fused kernel (CPU and CUDA in torch >= 2.4) keeps the step near the backbone's cost."""
    try:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # older torch or an unsupported device
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def finetune_key(backbone: Backbone, lift_dirs: list[Path], cfg: FinetuneConfig) -> dict[str, Any]:
    return {"stage": "finetune", "backbone": backbone.name, "weights": backbone.weights,
            "lifts": sorted(f"{Path(p).parent.name}/{Path(p).name}" for p in lift_dirs), "finetune": dataclasses.asdict(cfg)}


@torch.no_grad()
def validation_l1(backbone: Backbone, data: list[Targets], batch_size: int = 4) -> float:
    """Masked L1 between the backbone's tokens and the rendered 3D-consistent targets (held-out scenes)."""
    was = backbone.model.training
    backbone.model.eval()
    total, count = 0.0, 0
    for t in data:
        for i in range(0, t.images.shape[0], batch_size):
            patch, _ = backbone.forward_tokens(t.images[i : i + batch_size])
            total += float(masked_l1(patch.cpu(), t.targets[i : i + batch_size], t.masks[i : i + batch_size])) * patch.shape[0]
            count += patch.shape[0]
    backbone.model.train(was)
    return total / max(count, 1)


@dataclass
class FinetuneResult:
    path: Path
    stats: dict[str, Any]
    losses: dict[str, list[float]]

    @property
    def weights_path(self) -> Path:
        return self.path / "model.pth"

    def load(self, device: str = "auto") -> Backbone:
        """The fine-tuned backbone (a timm model with our weights)."""
        return load_backbone(self.stats["backbone"], weights=str(self.weights_path), device=device)


def finetune(
    train_lifts: list[str | Path],
    backbone: Backbone,
    cfg: FinetuneConfig | None = None,
    *,
    val_lifts: list[str | Path] = (),
    root: str | Path | None = None,
    backend: str = "auto",
    force: bool = False,
    max_steps: int | None = None,
) -> FinetuneResult:
    """Fine-tune ``backbone`` (in place) on the rendered targets of the lift artifacts ``train_lifts``.

    Cached by config hash (backbone, weights, lift artifacts, settings). ``val_lifts`` (held-out scenes) give the
    validation L1 before/after. Under ``torchrun`` each process takes its share of every batch and gradients are
    averaged (DDP). ``max_steps`` stops early with a checkpoint, to test resuming.
    """
    from .distributed import init_distributed, wrap_ddp

    cfg = cfg or FinetuneConfig()
    root = Path(root) if root is not None else DEFAULT_ARTIFACTS
    for p in list(train_lifts) + list(val_lifts):
        if not artifact_complete(p):
            raise LiftError(f"no lift artifact at {p}: run stage 1 (notebook 02, fit3d_helpers.lift.lift_scene) for that scene first.")
    key = finetune_key(backbone, [Path(p) for p in train_lifts], cfg)
    out = root / "finetune" / config_hash(key)
    if artifact_complete(out) and not force:
        return FinetuneResult(out, read_json(out / "stats.json"), read_json(out / "losses.json"))
    dist = init_distributed(device=backbone.device)
    seed_everything(cfg.seed)
    data = [scene_targets(p, backbone, target_factor=cfg.target_factor, root=root, backend=backend) for p in train_lifts]
    target_stats = [s for _, s in data]
    train = [t for t, _ in data]
    val = [scene_targets(p, backbone, target_factor=cfg.target_factor, root=root, backend=backend)[0] for p in val_lifts]
    val_before = validation_l1(backbone, val) if val else float("nan")

    model = backbone.model
    params = add_lora(model, cfg.lora_rank, cfg.lora_blocks) if cfg.mode == "lora" else [p for p in model.parameters() if p.requires_grad]
    if cfg.mode not in ("full", "lora"):
        raise ValueError(f"mode must be 'full' or 'lora', got {cfg.mode!r}")
    n_trainable = sum(p.numel() for p in params)
    optimizer = make_optimizer(params, cfg)
    runner = wrap_ddp(_Tokens(model), dist)  # DDP needs forward() to be the thing we differentiate

    # (scene, view) pairs, shuffled per epoch with one generator; each rank takes every world_size-th batch
    pairs = [(s, v) for s, t in enumerate(train) for v in range(t.images.shape[0])]
    steps_per_epoch = len(pairs) // cfg.batch_size
    total_steps = steps_per_epoch * cfg.epochs
    partial = out.parent / f".partial-{out.name}"
    ckpt_path = partial / "checkpoint.pt"
    step, losses, elapsed = 0, {"step": [], "loss": []}, 0.0
    if ckpt_path.is_file() and not force:
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        step, losses, elapsed = ck["step"], ck["losses"], ck["elapsed"]
    model.train()
    t0 = time.time()
    bar = progress(total=total_steps, initial=step, desc="fine-tune", disable=not dist.is_main)
    while step < total_steps:
        epoch, within = divmod(step, steps_per_epoch)
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
        batch = [pairs[j] for j in order[within * cfg.batch_size : (within + 1) * cfg.batch_size]]
        flip_gen = torch.Generator().manual_seed(cfg.seed * 100_003 + step)
        if dist.world_size > 1:
            batch = batch[dist.rank :: dist.world_size] or batch[:1]
        imgs = torch.stack([train[s].images[v] for s, v in batch])  # [B, 3, H, W]
        tgts = torch.stack([train[s].targets[v] for s, v in batch])  # [B, D, h, w]
        msks = torch.stack([train[s].masks[v] for s, v in batch])  # [B, 1, h, w]
        if cfg.flip:
            imgs, tgts, msks = random_hflip(imgs, tgts, msks, generator=flip_gen)
        dev = backbone.device
        x = backbone.preprocess(imgs.to(dev))
        tokens = runner(x)  # [B, prefix + h*w, D], normed
        h, w = tgts.shape[-2:]
        patch = tokens[:, model.num_prefix_tokens :].transpose(1, 2).reshape(tokens.shape[0], -1, h, w)
        loss = masked_l1(patch, tgts.to(dev), msks.to(dev))
        if not torch.isfinite(loss):
            raise RuntimeError(f"fine-tune step {step}: loss is {float(loss)} (not finite); no artifact written. Lower lr.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
        optimizer.step()
        step += 1
        losses["step"].append(step)
        losses["loss"].append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{losses['loss'][-1]:.4f}")
        stop = max_steps is not None and step >= max_steps and step < total_steps
        if dist.is_main and (step % cfg.checkpoint_every == 0 or stop):
            save_torch(ckpt_path, {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "losses": losses,
                                   "elapsed": elapsed + time.time() - t0})
        if stop:
            raise TimeoutError(f"fine-tuning stopped at step {step} (max_steps); call again to resume from {ckpt_path}")
    bar.close()
    wall = elapsed + time.time() - t0
    if cfg.mode == "lora":
        merge_lora(model)
    model.eval()
    val_after = validation_l1(backbone, val) if val else float("nan")
    stats = {"stage": "finetune", **backbone.describe(), "mode": cfg.mode, "epochs": cfg.epochs, "lr": cfg.lr, "steps": total_steps,
             "trainable_params": n_trainable, "train_scenes": [t.scene for t in train], "val_scenes": [t.scene for t in val],
             "train_views": len(pairs), "val_l1_before": val_before, "val_l1_after": val_after, "final_loss": losses["loss"][-1] if losses["loss"] else None,
             "wall_seconds": round(wall, 1), "seconds_per_step": wall / max(total_steps, 1), "target_factor": cfg.target_factor,
             "target_render_seconds_per_view": sum(s["render_seconds_per_view"] for s in target_stats) / len(target_stats),
             "full_size_render_seconds_per_view": sum(s["full_size_render_seconds_per_view"] for s in target_stats) / len(target_stats),
             "world_size": dist.world_size}
    if dist.is_main:
        with atomic_dir(out, overwrite=True) as tmp:
            save_torch(tmp / "model.pth", {k: v.detach().cpu() for k, v in model.state_dict().items()})
            write_json(tmp / "config.json", key)
            write_json(tmp / "losses.json", losses)
            write_json(tmp / "stats.json", stats)
        shutil.rmtree(partial, ignore_errors=True)
    return FinetuneResult(out, stats, losses)


def released(model: str = "dinov2_small", device: str = "auto") -> Backbone:
    """Demo-inference mode: skip training and load the released FiT3D checkpoint (needs the internet once)."""
    return load_backbone(model, weights="fit3d", device=device)
