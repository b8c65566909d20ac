"""Fine-tuning step cost vs the bare backbone: (fine-tune step time) / (backbone forward+backward), same batch.

The target is <= 1.1: with targets rendered once and cached, a step should cost little more than the backbone
itself. The step is the loop's own ``finetune.train_step``. Run:
.venv/bin/python benchmarks/bench_finetune.py [--batch 2] [--repeats 10] [--precision fp32|bf16|auto]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fit3d_helpers.backbone import load_backbone
from fit3d_helpers.finetune import FinetuneConfig, make_optimizer, tokens_runner, train_step


def median_time(fn, repeats: int) -> float:
    """Median wall time (s) of ``repeats`` calls after one warm-up call (shared with gpu_check.py)."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--height", type=int, default=168)
    p.add_argument("--width", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = FinetuneConfig()
    bb = load_backbone("dinov2_small", "random", device="cpu", precision=args.precision)
    model = bb.model.train()
    imgs = torch.rand(args.batch, 3, args.height, args.width)
    h, w = bb.grid_size(args.height, args.width)
    targets = torch.randn(args.batch, bb.dim, h, w)
    masks = (torch.rand(args.batch, 1, h, w) > 0.1).float()
    opt = make_optimizer(list(model.parameters()), cfg)
    gen = torch.Generator().manual_seed(0)

    runner = tokens_runner(bb)
    params = list(model.parameters())

    def bare() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bb.bf16):
            out = model.forward_features(bb.preprocess(imgs))
        out.float().mean().backward()

    def step() -> None:  # what finetune() runs per step, with cached targets
        train_step(bb, runner, params, opt, imgs, targets, masks, cfg, gen)

    t_bare, t_step = median_time(bare, args.repeats), median_time(step, args.repeats)
    print(f"batch {args.batch} at {args.width}x{args.height}, {args.threads} threads, {'bf16' if bb.bf16 else 'fp32'}, "
          f"median of {args.repeats}")  # fmt: skip
    print(f"bare backbone forward+backward: {t_bare * 1000:.0f} ms")
    print(f"fine-tuning step (flip + forward + masked L1 + backward + clip + AdamW): {t_step * 1000:.0f} ms")
    print(f"ratio: {t_step / t_bare:.2f}  (target <= 1.1)")


if __name__ == "__main__":
    main()
