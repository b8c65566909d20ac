"""The one checkpoint helper of the training loops: save every N steps, resume exactly, stop early."""

from __future__ import annotations

import random

import pytest
import torch

from fit3d_helpers.checkpoint import Checkpointer


def _loop(ckpt: Checkpointer, gen: torch.Generator, total: int) -> list[float]:
    """A stand-in training loop: each step draws from the global RNG, Python's and the loop's own generator."""
    ck = ckpt.resume()
    draws: list[float] = list(ck["draws"]) if ck is not None else []
    for step in range(ckpt.start, total):
        draws.append(float(torch.rand(1)) + random.random() + float(torch.rand(1, generator=gen)))
        ckpt.after_step(step + 1, lambda: {"draws": list(draws)})
    return draws


def _make(path, total: int = 10, **kw) -> tuple[Checkpointer, torch.Generator]:
    torch.manual_seed(0)
    random.seed(0)
    gen = torch.Generator().manual_seed(1)
    return Checkpointer(path, 1, every=3, total=total, what="the test loop", generators={"g": gen}, **kw), gen


def test_stop_and_resume_equal_an_uninterrupted_run(tmp_path) -> None:
    whole = _loop(*_make(tmp_path / "a.pt"), 10)
    ckpt, gen = _make(tmp_path / "b.pt", stop_after=5)
    with pytest.raises(TimeoutError, match=r"the test loop stopped at step 5 of 10; call again to resume from .*b\.pt"):
        _loop(ckpt, gen, 10)
    saved = torch.load(tmp_path / "b.pt", weights_only=True)  # plain tensors and containers: loads without code
    assert saved["step"] == 5 and saved["format"] == 1 and set(saved["rng"]) == {"global", "g"}
    torch.manual_seed(123)  # another process: its RNGs are elsewhere until the checkpoint restores them
    random.seed(123)
    ckpt, gen = _make(tmp_path / "b.pt")
    torch.manual_seed(99)
    resumed = _loop(ckpt, gen, 10)
    assert ckpt.start == 5 and resumed == whole


def test_saves_every_n_steps_and_only_where_it_writes(tmp_path) -> None:
    ckpt, gen = _make(tmp_path / "c.pt", total=7)
    _loop(ckpt, gen, 7)
    assert torch.load(tmp_path / "c.pt", weights_only=True)["step"] == 6  # every 3 steps: 3, 6
    ckpt, gen = _make(tmp_path / "d.pt", stop_after=2, writes=False)  # a DDP process other than the main one
    with pytest.raises(TimeoutError):
        _loop(ckpt, gen, 10)
    assert not (tmp_path / "d.pt").exists()


def test_checkpoint_of_another_format_restarts_with_a_warning(tmp_path) -> None:
    torch.save({"format": 0, "step": 4}, tmp_path / "old.pt")
    ckpt, _ = _make(tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="another version of the course; starting the test loop from scratch"):
        assert ckpt.resume() is None
    assert ckpt.start == 0
