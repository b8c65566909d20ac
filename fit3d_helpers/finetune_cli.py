"""Stage 2 from the command line, for ``torchrun`` (PyTorch DDP) on several GPUs or machines.

    torchrun --nproc_per_node 4 -m fit3d_helpers.finetune_cli --profile paper
    python -m fit3d_helpers.finetune_cli --profile smoke --artifacts artifacts     # one process

Stage 1's artifacts must exist (notebook 02, or ``--set 02.shard`` runs on several machines). Each process takes
its share of every batch and DDP averages the gradients; rank 0 writes ``artifacts/finetune/<hash>/``.
"""

from __future__ import annotations

import argparse

from . import pipeline
from .distributed import cleanup, init_distributed
from .profiles import get_profile


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m fit3d_helpers.finetune_cli", description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="smoke", choices=["smoke", "paper"])
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--weights", default=None, help="backbone weights (default: the profile's, 'auto')")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--mode", choices=["full", "lora"], default=None)
    args = p.parse_args(argv)
    info = init_distributed()
    prof = get_profile(args.profile, weights=args.weights, ft_epochs=args.epochs, ft_mode=args.mode)
    split, _ = pipeline.data_stage(prof, args.artifacts)
    backbone = pipeline.backbone_for(prof, str(info.device))
    result = pipeline.finetune_stage(prof, backbone, split, args.artifacts)
    if info.is_main:
        print(f"fine-tuned weights: {result.weights_path}  (val L1 {result.stats['val_l1_before']:.4f} -> {result.stats['val_l1_after']:.4f}, "
              f"{result.stats['world_size']} process(es))")
    cleanup()


if __name__ == "__main__":
    main()
