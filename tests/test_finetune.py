"""Stage 2 on tiny lifted scenes: targets, masked L1, flips, LoRA, resume, and the released-checkpoint format."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fit3d_helpers import finetune as FT
from fit3d_helpers.backbone import load_backbone
from fit3d_helpers.lift import LiftError


def test_masked_l1_by_hand() -> None:
    pred = torch.zeros(1, 2, 2, 2)
    tgt = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.9, 0.2]]]])  # positions (0,0) and (1,0) count
    assert float(FT.masked_l1(pred, tgt, mask)) == pytest.approx((1 + 3 + 1 + 1) / 4)


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
    assert isinstance(bb.model.blocks[-1].attn.qkv, FT.LoRALinear) and not isinstance(bb.model.blocks[0].attn.qkv, FT.LoRALinear)
    patch, _ = bb.forward_tokens(x)
    patch.square().mean().backward()
    assert all(p.grad is not None for p in params) and float(params[-1].grad.abs().sum()) > 0  # the adapters are in the graph
    FT.merge_lora(bb.model)
    assert set(bb.model.state_dict()) == set(vit_small.model.state_dict())  # timm format again


def test_targets_are_cached_and_on_the_token_grid(lifted, vit_small, artifacts) -> None:
    t, stats = FT.scene_targets(lifted[0].path, vit_small, root=artifacts)
    assert t.targets.shape == (6, 384, 4, 6) and t.masks.shape == (6, 1, 4, 6)
    assert 0 <= float(t.masks.min()) and float(t.masks.max()) <= 1
    assert stats["grid_hw"] == [4, 6]
    t2, _ = FT.scene_targets(lifted[0].path, vit_small, root=artifacts)
    assert torch.equal(t.targets, t2.targets)


def test_finetune_end_to_end_resume_and_checkpoint_format(lifted, artifacts, tmp_path) -> None:
    cfg = FT.FinetuneConfig(lr=1e-4, checkpoint_every=100)
    bb = load_backbone("dinov2_small", "random", device="cpu")
    with pytest.raises(TimeoutError):
        FT.finetune([lifted[0].path], bb, cfg, val_lifts=[lifted[1].path], root=artifacts, max_steps=1)
    bb = load_backbone("dinov2_small", "random", device="cpu")
    res = FT.finetune([lifted[0].path], bb, cfg, val_lifts=[lifted[1].path], root=artifacts)
    assert res.stats["steps"] == 3 and res.losses["step"] == [1, 2, 3]  # resumed after step 1
    assert res.stats["val_l1_before"] > 0 and res.stats["weights"] == "random"
    tuned = res.load("cpu")  # the saved file loads into the plain timm model, like the released checkpoints
    assert tuned.weights.startswith("file:")
    orig = load_backbone("dinov2_small", "random", device="cpu")
    x = torch.rand(1, 3, 56, 84)
    assert not torch.allclose(tuned.features(x)[0], orig.features(x)[0])
    cached = FT.finetune([lifted[0].path], load_backbone("dinov2_small", "random", device="cpu"), cfg, val_lifts=[lifted[1].path], root=artifacts)
    assert cached.path == res.path


def test_missing_lift_is_named(vit_small, tmp_path) -> None:
    with pytest.raises(LiftError, match="run stage 1"):
        FT.finetune([tmp_path / "lift" / "missing"], vit_small, FT.FinetuneConfig(), root=tmp_path)


def _ddp_worker(rank: int, world: int, port: int, lift_path: str, root: str, queue) -> None:
    import os

    from fit3d_helpers.distributed import cleanup

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        bb = load_backbone("dinov2_small", "random", device="cpu")
        res = FT.finetune([lift_path], bb, FT.FinetuneConfig(lr=1e-4), root=root)
        queue.put((rank, res.stats["world_size"], float(sum(p.double().sum() for p in bb.model.parameters()))))
    except Exception as err:  # report instead of hanging the parent
        queue.put((rank, "error", repr(err)))
    finally:
        cleanup()


def test_finetune_under_ddp_with_gloo(lifted, tmp_path) -> None:
    """Two processes (torchrun's environment, gloo on loopback) end with identical weights; rank 0 writes once."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, str(lifted[0].path), str(tmp_path), queue)) for r in range(2)]
    for p in procs:
        p.start()
    out = sorted(queue.get(timeout=180) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert all(o[1] == 2 for o in out), out
    assert out[0][2] == pytest.approx(out[1][2], rel=1e-9)  # DDP kept the replicas in sync
    assert len(list((tmp_path / "finetune").glob("*/model.pth"))) == 1
