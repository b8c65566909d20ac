"""Sharding, and DDP (gloo, 2 processes on loopback) matching single-process full-batch training."""

from __future__ import annotations

import os
import socket
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from fit3d_helpers import distributed as D

STEPS, N, DIN, DOUT, LR = 5, 8, 6, 3, 0.1


# ---------------------------------------------------------------------------------------------- shard


def test_shard_round_robin_covers_everything_once():
    items = list(range(11))
    a, b = D.shard(items, "0/2"), D.shard(items, "1/2")
    assert a == [0, 2, 4, 6, 8, 10] and b == [1, 3, 5, 7, 9]
    assert sorted(a + b) == items
    three = [D.shard(items, f"{i}/3") for i in range(3)]
    assert sorted(sum(three, [])) == items and all(three)
    assert D.shard(items, None) == items and D.shard(items, "") == items
    assert D.shard(items, " 0 / 1 ") == items
    assert D.shard([], "1/2") == []


@pytest.mark.parametrize("spec", ["2/2", "-1/2", "1", "a/b", "1/0", "1/2/3", "0.5/2"])
def test_shard_bad_spec(spec):
    with pytest.raises(ValueError, match="i/n"):
        D.shard([1, 2, 3], spec)


def test_single_process_is_noop(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    info = D.init_distributed()
    assert (info.rank, info.world_size, info.is_main, info.initialized, info.distributed) == (0, 1, True, False, False)
    model = torch.nn.Linear(2, 2)
    assert D.wrap_ddp(model, info) is model.to(info.device)
    D.cleanup()


# ---------------------------------------------------------------------------------------------- DDP


def _data() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, DIN, generator=g)
    y = torch.randn(N, DOUT, generator=g)
    init = torch.nn.Linear(DIN, DOUT)
    with torch.no_grad():
        init.weight.copy_(torch.randn(DOUT, DIN, generator=g))
        init.bias.copy_(torch.randn(DOUT, generator=g))
    return x, y, {k: v.clone() for k, v in init.state_dict().items()}


def _train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()  # mean over the (local) batch
        opt.step()


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "GLOO_SOCKET_IFNAME": "lo",
        }
    )
    torch.set_num_threads(1)
    info = D.init_distributed(backend="gloo", device="cpu", timeout_s=60)
    try:
        assert info.initialized and info.distributed and info.backend == "gloo"
        assert (info.rank, info.world_size, info.is_main) == (rank, world, rank == 0)
        x, y, init = _data()
        idx = D.shard(list(range(N)), f"{info.rank}/{info.world_size}")
        model = torch.nn.Linear(DIN, DOUT)
        model.load_state_dict(init)
        ddp = D.wrap_ddp(model, info)
        assert ddp is not model  # wrapped
        _train(ddp, x[idx], y[idx])
        torch.save(
            {"state": {k: v.clone() for k, v in ddp.module.state_dict().items()}},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        D.cleanup()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_workers(world: int, out_dir: str, timeout_s: float = 120.0) -> None:
    """torch.multiprocessing with ``fork`` on Linux: the children inherit the imported torch (and the
    ``torch._dynamo`` that DDP pulls in), ≈ 4 s instead of ≈ 20 s with ``spawn`` on 2 cores; ``spawn``
    elsewhere. Fails instead of hanging when a worker does not finish."""
    if sys.platform.startswith("linux"):
        import torch.nn.parallel  # noqa: F401  (DDP's heavy imports, once, before forking)

        method = "fork"
    else:
        method = "spawn"
    ctx = mp.start_processes(
        _worker, args=(world, _free_port(), out_dir), nprocs=world, join=False, start_method=method
    )
    deadline = time.monotonic() + timeout_s
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            pytest.fail(f"DDP workers did not finish in {timeout_s:.0f} s")


def test_ddp_gloo_two_processes_matches_full_batch(tmp_path):
    world = 2
    _run_workers(world, str(tmp_path))
    x, y, init = _data()
    ref = torch.nn.Linear(DIN, DOUT)
    ref.load_state_dict(init)
    _train(ref, x, y)  # one process, the full batch
    outs = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    for o in outs:
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(o["state"][k], v, rtol=1e-5, atol=1e-6)
    # and training actually moved the weights
    assert not torch.allclose(ref.weight, init["weight"])
