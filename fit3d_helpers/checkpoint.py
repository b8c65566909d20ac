"""One checkpoint helper for every training loop: save every N steps, resume exactly, stop early on request.

The official training scripts (``train_feat_gaussian.py``, the fine-tuning engine) call ``torch.save`` every few
thousand iterations. The loops of this course (the lift :func:`lift._fit`, the feature refits
:func:`lift.refit_features`, the fine-tuning :func:`finetune._train`) do the same through :class:`Checkpointer`, which
adds what a laptop course needs:

- the file is replaced atomically (a run killed while saving keeps the previous checkpoint);
- the RNG states (torch, Python, CUDA and the loop's own generators) are saved with the model and optimiser states,
  so a resumed run ends bit for bit where an uninterrupted one would;
- it loads with ``weights_only=True`` (a checkpoint cannot run code); an unreadable one, or one of another format
  (an older course version), is ignored with a warning and the run starts from scratch;
- a stop request (``stop_after`` steps or ``max_seconds``) saves and raises :class:`TimeoutError`: call again to resume.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .cache import load_resume
from .utils import rng_state, save_torch, set_rng_state


class Checkpointer:
    """Checkpoint / resume / stop-early for one loop of ``total`` steps, in the file ``path``.

    Usage (a loop counts the steps it has *finished*)::

        ckpt = Checkpointer(resume / "checkpoint.pt", FORMAT, every=cfg.checkpoint_every, total=n, what="...")
        state = ckpt.resume()          # None, or the dict saved last; the RNG states are restored already
        for step in range(ckpt.start, n):
            ...                        # one training step
            ckpt.after_step(step + 1, lambda: {"model": ..., "optimizer": ...})
    """

    def __init__(
        self,
        path: str | Path,
        fmt: int,
        *,
        every: int,
        total: int,
        what: str,
        stop_after: int | None = None,
        max_seconds: float | None = None,
        generators: dict[str, torch.Generator] | None = None,
        writes: bool = True,
    ) -> None:
        self.path = Path(path)
        self.fmt = fmt  # bump it when the saved layout changes: older files are then ignored with a warning
        self.every = every
        self.total = total
        self.what = what  # "the lift of room-0123", for messages
        self.stop_after = stop_after
        self.max_seconds = max_seconds
        self.generators = dict(generators or {})  # the loop's own generators (e.g. which view comes next)
        self.writes = writes  # False on the non-main processes of a DDP run: they read the main process's file
        self.start = 0  # steps finished before this call (from the checkpoint)
        self.elapsed = 0.0  # seconds spent before this call
        self._t0 = time.time()

    def resume(self) -> dict[str, Any] | None:
        """The last saved state, with the RNG states restored, or None (nothing saved, unreadable, other format)."""
        ck = load_resume(self.path)
        if ck is not None and (not isinstance(ck, dict) or ck.get("format") != self.fmt):
            warnings.warn(
                f"{self.path} was written by another version of the course; starting {self.what} from scratch",
                stacklevel=2,
            )
            ck = None
        if ck is not None:
            set_rng_state(ck["rng"]["global"])
            for name, gen in self.generators.items():
                gen.set_state(ck["rng"][name])
            self.start, self.elapsed = int(ck["step"]), float(ck["elapsed"])
        self._t0 = time.time()
        return ck

    def wall_seconds(self) -> float:
        """Seconds of training so far, across resumes."""
        return self.elapsed + time.time() - self._t0

    def stop_requested(self, step: int) -> bool:
        return (self.stop_after is not None and step >= self.stop_after) or (
            self.max_seconds is not None and time.time() - self._t0 > self.max_seconds
        )

    def after_step(self, step: int, state: Callable[[], dict[str, Any]]) -> None:
        """Call after ``step`` finished steps: save every ``every`` steps and on a stop request (``state()`` builds the
        loop's dict, only when saving); a stop before ``total`` then raises TimeoutError."""
        stop = self.stop_requested(step)
        if self.writes and (step % self.every == 0 or stop):
            rng = {"global": rng_state(), **{name: gen.get_state() for name, gen in self.generators.items()}}
            save_torch(
                self.path,
                {"format": self.fmt, "step": step, "elapsed": self.wall_seconds(), "rng": rng, **state()},
            )
        if stop and step < self.total:
            raise TimeoutError(
                f"{self.what} stopped at step {step} of {self.total}; call again to resume from {self.path}"
            )
