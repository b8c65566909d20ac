"""Config hashing, atomic writes, RNG states."""

from __future__ import annotations

import pytest
import torch

from fit3d_helpers import utils


def test_config_hash_is_order_independent_and_sensitive() -> None:
    a = {"lift": {"iterations": 600, "feature_dim": 64}, "scene": "x"}
    b = {"scene": "x", "lift": {"feature_dim": 64, "iterations": 600}}
    assert utils.config_hash(a) == utils.config_hash(b)
    assert utils.config_hash(a) != utils.config_hash({**a, "scene": "y"})


def test_atomic_dir_leaves_nothing_on_failure(tmp_path) -> None:
    final = tmp_path / "stage" / "abc"
    with pytest.raises(RuntimeError):
        with utils.atomic_dir(final) as tmp:
            utils.write_json(tmp / "config.json", {"a": 1})
            raise RuntimeError("interrupted")
    assert not final.exists()
    assert list((tmp_path / "stage").iterdir()) == []
    with utils.atomic_dir(final) as tmp:
        utils.write_json(tmp / "config.json", {"a": 1})
        utils.write_json(tmp / "stats.json", {"b": 2})
    assert utils.read_json(final / "stats.json") == {"b": 2} and utils.read_json(final / "config.json") == {"a": 1}
    with pytest.raises(FileExistsError):
        with utils.atomic_dir(final):
            pass


def test_save_torch_and_seed(tmp_path) -> None:
    utils.save_torch(tmp_path / "t.pt", {"x": torch.arange(3)})
    assert torch.equal(torch.load(tmp_path / "t.pt")["x"], torch.arange(3))
    utils.seed_everything(1)
    a = torch.rand(3)
    utils.seed_everything(1)
    assert torch.equal(a, torch.rand(3))


def test_resolve_device() -> None:
    assert utils.resolve_device("cpu").type == "cpu"
    assert utils.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            utils.resolve_device("cuda")


def test_rng_state_round_trip_and_loads_safely(tmp_path) -> None:
    import random

    utils.seed_everything(3)
    state = utils.rng_state()
    utils.save_torch(tmp_path / "rng.pt", state)
    a, b = torch.rand(4), random.random()
    utils.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert torch.equal(torch.rand(4), a) and random.random() == b
