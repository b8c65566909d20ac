"""Helpers for users who outgrow one GPU: shard work across processes, or train with DDP under torchrun.

Two ways to scale out, both optional (the course runs in one process by default):

* **Independent shards** (lifting scenes is embarrassingly parallel): give each process/machine a
  ``shard="i/n"`` spec and let :func:`shard` pick its scenes, e.g. ``--set 02.shard='0/2'`` on one machine
  and ``'1/2'`` on another. Artifacts land in the shared ``artifacts/`` folder by config hash.
* **Data-parallel fine-tuning** under ``torchrun --nproc_per_node=N script.py``: :func:`init_distributed`
  reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, picks NCCL on CUDA and gloo on CPU, and :func:`wrap_ddp`
  wraps the model so that gradients are averaged across processes. Without torchrun everything is a
  no-op single process, so the same code runs in a notebook.

Each process of a DDP fine-tuning run takes a disjoint share of every epoch (``finetune.epoch_batches``, torch's
``DistributedSampler``). A notebook kernel is a single process: launch distributed training with torchrun.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "cleanup", "init_distributed", "parse_shard", "shard", "wrap_ddp"]

T = TypeVar("T")
_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
SHARD_FORMAT = "'i/n' with 0 <= i < n, e.g. '0/2' and '1/2' for two shards"


def parse_shard(spec: str) -> tuple[int, int]:
    """``"1/4"`` → ``(1, 4)``; anything else raises ValueError naming the format."""
    m = _SHARD_RE.match(spec) if isinstance(spec, str) else None
    if not m:
        raise ValueError(f"bad shard spec {spec!r}: expected {SHARD_FORMAT}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"bad shard spec {spec!r}: expected {SHARD_FORMAT}")
    return i, n


def shard(items: Sequence[T], spec: str | None) -> list[T]:
    """The items of shard ``spec`` = ``"i/n"`` (0-based), round-robin: ``items[i::n]``.

    ``None`` or ``""`` means everything. The n shards are disjoint and together cover every item once, in
    their original order within each shard.
    """
    items = list(items)
    if spec is None or (isinstance(spec, str) and spec.strip() == ""):
        return items
    i, n = parse_shard(spec)
    return items[i::n]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands. ``initialized``: this process group is live (``torch.distributed``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    is_main: bool = True
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    initialized: bool = False

    @property
    def distributed(self) -> bool:
        return self.initialized and self.world_size > 1


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    try:
        return int(v) if v not in (None, "") else None
    except ValueError:
        return None


def init_distributed(
    backend: str = "auto",
    device: str | torch.device = "auto",
    timeout_s: float = 1800.0,
) -> DistInfo:
    """Join the torchrun process group if launched by torchrun, else return a single-process DistInfo.

    backend: ``"auto"`` = NCCL when CUDA is used, gloo otherwise; or ``"nccl"``/``"gloo"``.
    device: ``"auto"`` = ``cuda:LOCAL_RANK`` when CUDA is available (and made current), else CPU.
    Needs ``RANK``, ``WORLD_SIZE`` (and ``MASTER_ADDR``/``MASTER_PORT``, which torchrun sets); calling it
    again after a successful init returns the same information without re-initialising.
    """
    rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    use_cuda = (device == "auto" and torch.cuda.is_available()) or (
        device != "auto" and torch.device(device).type == "cuda"
    )
    if rank is None or world is None:
        if device == "auto":
            dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            dev = torch.device(device)
        return DistInfo(device=dev)
    local = local if local is not None else rank
    if use_cuda:
        dev = (
            torch.device("cuda", local)
            if device == "auto" or torch.device(device).index is None
            else torch.device(device)
        )
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu") if device == "auto" else torch.device(device)
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this torch build")
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {
            "backend": backend,
            "rank": rank,
            "world_size": world,
            "timeout": _dt.timedelta(seconds=timeout_s),
        }
        if backend == "nccl":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    return DistInfo(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local,
        is_main=dist.get_rank() == 0,
        device=dev,
        backend=dist.get_backend(),
        initialized=True,
    )


def wrap_ddp(model: torch.nn.Module, info: DistInfo, **ddp_kwargs: Any) -> torch.nn.Module:
    """Move ``model`` to ``info.device`` and wrap it in DistributedDataParallel when there are ≥ 2 processes.

    Gradients are then averaged across processes in ``backward()`` (all-reduce mean), so N processes each
    on B samples match one process on the N·B samples (with a loss that averages over the batch).
    """
    model = model.to(info.device)
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if info.device.type == "cuda":
        ddp_kwargs.setdefault("device_ids", [info.device.index])
        ddp_kwargs.setdefault("output_device", info.device.index)
    return DistributedDataParallel(model, **ddp_kwargs)


def cleanup() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
