"""What FiT3D costs at test time, measured here: the ``inference_cost`` artifact the deck's cost slide reads.

FiT3D's features are ``original ⊕ fine-tuned``: at test time two ViTs run on every image. This stage counts the
parameters and the FLOPs of one backbone forward pass (``torch.utils.flop_counter``: 2 FLOPs per multiply-add) and
times, on this machine's CPU, one backbone and the two-backbone assembly at a few square sizes (batch 1, median of
``runs`` timed runs after one warm-up). Latency does not depend on the weights' values, so the backbones are randomly
initialised and the artifact is not a "random weights" result. The artifact's key names the machine's thread count:
a time is only comparable on the machine that measured it.
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from . import cache

__all__ = ["STAGE", "measure", "measure_inference_cost"]

STAGE = "inference_cost"


def _forward(models: list[torch.nn.Module], x: torch.Tensor) -> None:
    for m in models:
        m.forward_features(x)


def measure(
    model: str = "dinov2_small", sizes: tuple[int, ...] = (224, 448), runs: int = 5, warmup: int = 1
) -> dict[str, Any]:
    """Parameters, FLOPs and CPU latency (ms, medians of ``runs``) of one backbone and of two (FiT3D's assembly)."""
    from torch.utils.flop_counter import FlopCounterMode

    from .backbone import load_backbone

    nets = [load_backbone(model, "random", "cpu", seed=s).model.eval() for s in (0, 1)]
    params = int(sum(p.numel() for p in nets[0].parameters()))
    rows = []
    with torch.inference_mode():
        for size in sizes:
            x = torch.rand(1, 3, size, size)
            counter = FlopCounterMode(display=False)
            with counter:
                _forward(nets[:1], x)
            flops = int(counter.get_total_flops())
            row: dict[str, Any] = {"size": size, "tokens": (size // 14) ** 2, "gflops_one": flops / 1e9}
            for k, key in ((1, "one"), (2, "two")):
                for _ in range(warmup):
                    _forward(nets[:k], x)
                times = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    _forward(nets[:k], x)
                    times.append(1000.0 * (time.perf_counter() - t0))
                row[f"ms_{key}"] = statistics.median(times)
                row[f"ms_{key}_runs"] = [round(t, 2) for t in times]
            row["gflops_two"] = 2 * row["gflops_one"]
            rows.append(row)
    return {
        "backbone": model,
        "params_one": params,
        "params_two": 2 * params,
        "rows": rows,
        "runs": runs,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "weights": "n/a (latency does not depend on the weights' values)",
        "flops_note": "torch.utils.flop_counter, 2 FLOPs per multiply-add, one forward pass, batch 1",
    }


def measure_inference_cost(
    artifacts_dir: str | Path,
    model: str = "dinov2_small",
    sizes: tuple[int, ...] = (224, 448),
    runs: int = 5,
    *,
    force: bool = False,
) -> cache.Artifact:
    """The ``inference_cost`` artifact (measured once per machine thread count and settings; then loaded)."""
    key = {"model": model, "sizes": list(sizes), "runs": runs, "threads": torch.get_num_threads(), "device": "cpu"}

    def make(out: Path, _resume: Path) -> dict[str, Any]:
        return measure(model, tuple(sizes), runs)

    return cache.build(STAGE, key, artifacts_dir, make, force=force, what="inference cost (CPU latency)")
