"""Shared fixtures: one tiny synthetic scene set and one random-init ViT-S, made once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("FIT3D_NO_PROGRESS", "1")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory):
    """1 training + 1 held-out room, 6 views of 84×56 px (token grid 6×4)."""
    from fit3d_helpers.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("scenes")
    return generate_dataset(root, n_train=1, n_val=1, n_views=6, width=84, height=56, workers=1)


@pytest.fixture(scope="session")
def vit_small():
    from fit3d_helpers.backbone import load_backbone

    return load_backbone("dinov2_small", "random", device="cpu")


@pytest.fixture(scope="session")
def tiny_lift_cfg():
    from fit3d_helpers.lift import LiftConfig

    return LiftConfig(
        iterations=24,
        max_init_points=1500,
        densify_from=8,
        densify_until=20,
        densify_every=6,
        checkpoint_every=8,
        holdout_every=3,
    )


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def lifted(tiny_dataset, vit_small, tiny_lift_cfg, artifacts):
    """Both tiny scenes lifted once (train + held-out), for the fine-tuning tests."""
    from fit3d_helpers.lift import lift_scene

    return [lift_scene(p, vit_small, tiny_lift_cfg, root=artifacts) for p in tiny_dataset.train + tiny_dataset.val]
