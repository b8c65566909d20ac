"""Stage 2 from the command line, for ``torchrun`` (PyTorch DDP) on several GPUs or machines.

    torchrun --nproc_per_node 4 -m fit3d_helpers.finetune_cli --profile paper
    python -m fit3d_helpers.finetune_cli --profile smoke --set finetune.epochs=2      # one process

Stage 1's artifacts must exist for the paper profile (notebook 02, or ``--set 02.shard=i/n`` runs on several machines);
the smoke profile fits missing ones. Each process takes a disjoint share of every epoch (a distributed sampler) and
DDP averages the gradients, so the effective batch is ``finetune.batch_size`` × processes; rank 0 writes the artifact.
"""

from __future__ import annotations

import argparse
import sys

from . import pipeline
from .distributed import cleanup, init_distributed
from .profiles import ConfigError, ParameterError, load_profile, parse_overrides


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fit3d_helpers.finetune_cli", description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="smoke", choices=["smoke", "paper"])
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="a profile setting; repeatable"
    )
    args = p.parse_args(argv)
    try:
        prof = load_profile(args.profile, parse_overrides(args.set))
    except (ConfigError, ParameterError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    info = init_distributed()
    split, _ = pipeline.data_stage(prof, args.artifacts)
    backbone = pipeline.backbone_for(prof, str(info.device))
    result = pipeline.finetune_stage(prof, backbone, split, args.artifacts)
    if info.is_main:
        print(
            f"fine-tuned weights: {result.weights_path}  (val L1 {result.stats['val_l1_before']:.4f} -> "
            f"{result.stats['val_l1_after']:.4f}, {result.stats['world_size']} process(es))"
        )
    cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
