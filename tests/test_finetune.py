"""Stage 2 on tiny lifted scenes: targets, masked L1, flips, LoRA, resume, and the released-checkpoint format."""

from __future__ import annotations

import pytest
import torch

from fit3d_helpers import finetune as FT
from fit3d_helpers.backbone import load_backbone
from fit3d_helpers.lift import LiftError


def test_masked_l1_by_hand() -> None:
    pred = torch.zeros(1, 2, 2, 2)
    tgt = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]]])
    weight = torch.tensor([[[[1.0, 0.0], [0.9, 0.2]]]])  # soft, as the official resized anonymisation mask
    # official: sum(|d| w) / (sum(w) * channels) = ((1 + 2.7 + 0.8) + (1 + 0.9 + 0.2)) / (2.1 * 2)
    assert float(FT.masked_l1(pred, tgt, weight)) == pytest.approx(6.6 / 4.2)


def test_hflip_keeps_image_and_target_aligned() -> None:
    img = torch.arange(2 * 3 * 2 * 4.0).reshape(2, 3, 2, 4)
    tgt = img[:, :1] * 10
    g = torch.Generator().manual_seed(0)
    fi, ft = FT.random_hflip(img, tgt, generator=g, p=0.5)
    assert torch.equal(fi[:, :1] * 10, ft)
    fi, ft = FT.random_hflip(img, tgt, generator=g, p=1.0)
    assert torch.equal(fi, img.flip(-1)) and torch.equal(ft, tgt.flip(-1))


def test_lora_starts_at_base_and_merges_exactly() -> None:
    base = torch.nn.Linear(8, 24)
    lora = FT.LoRALinear(base, rank=4)
    x = torch.randn(5, 8)
    assert torch.allclose(lora(x), base(x))  # B = 0 at init
    torch.nn.init.normal_(lora.lora_b)
    assert torch.allclose(lora.merged()(x), lora(x), atol=1e-5)


def test_add_lora_freezes_all_but_adapters(vit_small) -> None:
    bb = load_backbone("dinov2_small", "random", device="cpu")
    params = FT.add_lora(bb.model, rank=4, blocks=4)
    trainable = [p for p in bb.model.parameters() if p.requires_grad]
    assert len(params) == 8 and sum(p.numel() for p in trainable) == 4 * 4 * (384 + 3 * 384)
    x = torch.rand(1, 3, 56, 56)
    assert torch.allclose(bb.features(x)[0], vit_small.features(x)[0], atol=1e-5)
    assert isinstance(bb.model.blocks[-1].attn.qkv, FT.LoRALinear) and not isinstance(
        bb.model.blocks[0].attn.qkv, FT.LoRALinear
    )
    patch, _ = bb.forward_tokens(x)
    patch.square().mean().backward()
    assert (
        all(p.grad is not None for p in params) and float(params[-1].grad.abs().sum()) > 0
    )  # the adapters are in the graph
    FT.merge_lora(bb.model)
    assert set(bb.model.state_dict()) == set(vit_small.model.state_dict())  # timm format again


def test_targets_are_cached_and_on_the_token_grid(lifted, vit_small, artifacts) -> None:
    t, stats = FT.scene_targets(lifted[0], vit_small, root=artifacts)
    assert t.targets.shape == (6, 384, 4, 6) and t.masks.shape == (6, 1, 4, 6)
    assert 0 <= float(t.masks.min()) and float(t.masks.max()) <= 1
    assert stats["grid_hw"] == [4, 6] and 0 < stats["mask_coverage"] <= 1
    t2, _ = FT.scene_targets(lifted[0], vit_small, root=artifacts)
    assert torch.equal(t.targets, t2.targets)


def test_targets_with_empty_masks_name_the_scene(lifted, vit_small, tmp_path) -> None:
    import dataclasses as dc

    transparent = dc.replace(
        lifted[0],
        params={**lifted[0].params, "opacity_logits": torch.full_like(lifted[0].params["opacity_logits"], -30.0)},
    )
    with pytest.raises(LiftError, match=r"scene .*every fine-tuning mask is empty"):
        FT.scene_targets(transparent, vit_small, mask="alpha", root=tmp_path)  # nothing rendered anywhere


def test_finetune_end_to_end_resume_and_checkpoint_format(lifted, artifacts, tmp_path) -> None:
    cfg = FT.FinetuneConfig(lr=1e-4, checkpoint_every=100)
    bb = load_backbone("dinov2_small", "random", device="cpu")
    whole = FT.finetune(
        [lifted[0]],
        load_backbone("dinov2_small", "random", device="cpu"),
        cfg,
        val_lifts=[lifted[1]],
        root=tmp_path / "uninterrupted",
    )
    with pytest.raises(TimeoutError):
        FT.finetune([lifted[0]], bb, cfg, val_lifts=[lifted[1]], root=artifacts, max_steps=1)
    bb = load_backbone("dinov2_small", "random", device="cpu")
    res = FT.finetune([lifted[0]], bb, cfg, val_lifts=[lifted[1]], root=artifacts)
    assert res.stats["steps"] == 3 and res.losses["step"] == [1, 2, 3]  # resumed after step 1
    assert res.losses["loss"] == whole.losses["loss"]  # ... to the same run as an uninterrupted one
    assert res.stats["val_l1_before"] > 0 and res.stats["weights"] == "random"
    tuned = res.load("cpu")  # the saved file loads into the plain timm model, like the released checkpoints
    assert tuned.identity() == {"backbone": "dinov2_small", "weights": f"finetune/{res.hash}"}
    orig = load_backbone("dinov2_small", "random", device="cpu")
    x = torch.rand(1, 3, 56, 84)
    assert not torch.allclose(tuned.features(x)[0], orig.features(x)[0])
    assert torch.equal(tuned.features(x)[0], whole.load("cpu").features(x)[0])
    cached = FT.finetune(
        [lifted[0]], load_backbone("dinov2_small", "random", device="cpu"), cfg, val_lifts=[lifted[1]], root=artifacts
    )
    assert cached.path == res.path


def _ddp_worker(rank: int, world: int, port: int, lifts: list, root: str, queue) -> None:
    import os

    from fit3d_helpers.distributed import cleanup

    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    try:
        bb = load_backbone("dinov2_small", "random", device="cpu")
        res = FT.finetune(lifts, bb, FT.FinetuneConfig(lr=1e-4, batch_size=2), root=root)
        queue.put(
            (
                rank,
                res.stats["world_size"],
                res.stats["steps"],
                res.seen,
                float(sum(p.double().sum() for p in bb.model.parameters())),
            )
        )
    except Exception as err:  # report instead of hanging the parent
        queue.put((rank, "error", repr(err), [], 0.0))
    finally:
        cleanup()


def test_epoch_batches_split_the_data_between_processes() -> None:
    one = FT.epoch_batches(12, 2, 1, 0, seed=0, epoch=0)
    assert sorted(sum(one, [])) == list(range(12)) and len(one) == 6
    assert (
        sum(one, []) == torch.randperm(12, generator=torch.Generator().manual_seed(0)).tolist()
    )  # one process: unchanged
    four = [FT.epoch_batches(12, 2, 4, r, seed=0, epoch=0) for r in range(4)]
    flat = [i for rank in four for batch in rank for i in batch]
    assert all(len(rank) == 1 for rank in four) and len(flat) == len(set(flat)) == 8  # 12 // 4 = 3 each, one batch of 2
    assert FT.epoch_batches(12, 2, 4, 0, seed=0, epoch=1) != four[0]  # reshuffled per epoch


def test_finetune_under_ddp_with_gloo_4_processes(lifted, tmp_path) -> None:
    """Four processes (torchrun's environment, gloo on loopback), batch 2: each takes a disjoint share of the epoch (no
    sample twice, 6x fewer steps than one process on these 12 views), the replicas stay in sync, rank 0 writes once."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 4, port, lifted, str(tmp_path), queue)) for r in range(4)]
    for p in procs:
        p.start()
    out = sorted((queue.get(timeout=300) for _ in procs), key=lambda o: o[0])
    for p in procs:
        p.join(timeout=60)
    assert all(o[1] == 4 for o in out), out
    assert all(o[2] == 1 for o in out)  # 12 views // 4 processes // batch 2 = 1 step (one process: 6)
    seen = [i for o in out for i in o[3]]
    assert len(seen) == 8 and len(set(seen)) == 8  # every process trained on its own samples
    assert all(o[4] == pytest.approx(out[0][4], rel=1e-9) for o in out)  # DDP kept the replicas in sync
    from fit3d_helpers import cache

    assert len([a for a in cache.iter_artifacts(tmp_path) if a.stage == "finetune"]) == 1


def test_stage2_refuses_a_lift_with_nonfinite_gaussians(lifted, vit_small, tmp_path) -> None:
    """A lift artifact with non-finite Gaussians (written before the lift checked its parameters) used to be
    fine-tuned on: stage 2 now refuses it before any work, naming the artifact and how to redo it."""
    import dataclasses
    import re

    means = lifted[0].params["means"].clone()
    means[::2] = float("inf")
    bad = dataclasses.replace(lifted[0], params={**lifted[0].params, "means": means})
    where = re.escape(str(bad.path))
    with pytest.raises(
        LiftError, match=rf"stage 2 .*cannot use the lift artifact {where} .*lift\.lr_means.*force=True"
    ):
        FT.finetune([bad], vit_small, FT.FinetuneConfig(), val_lifts=[lifted[1]], root=tmp_path)
    with pytest.raises(LiftError, match="targets cannot use the lift artifact"):
        FT.scene_targets(bad, vit_small, root=tmp_path)
    assert not list(tmp_path.rglob("model.pth")) and not list(tmp_path.rglob("targets.pt"))
