"""python -m fit3d_helpers.synthetic [root]: generate the default dataset."""

from __future__ import annotations

import os
import sys

from .dataset import generate_dataset

if __name__ == "__main__":
    info = generate_dataset(
        sys.argv[1] if len(sys.argv) > 1 else "data/synthetic", workers=int(os.environ.get("FIT3D_WORKERS", "2"))
    )
    print(
        f"{info.root}: {len(info.train)} train / {len(info.val)} val scenes in {info.seconds:.1f} s"
        f"{' (cached)' if info.cached else ''}"
    )
