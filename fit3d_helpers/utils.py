"""Small shared plumbing: seeding, RNG states, device choice, config hashing and atomic file writes.

Stage artifacts are written through :mod:`fit3d_helpers.cache`; ``atomic_dir`` here serves the synthetic data
generator, whose scene folders must look like a real dataset's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

# One place that says where artifacts live; notebooks and the CLI pass it explicitly when they want another.
DEFAULT_ARTIFACTS = Path(os.environ.get("FIT3D_ARTIFACTS", "artifacts"))

RANDOM_WEIGHTS_BANNER = (
    "RANDOM WEIGHTS: the backbone was randomly initialised because pretrained weights could not be loaded "
    "(offline). Every number below is a pipeline check, NOT a reproduction of the paper. Real weights: run once with "
    "internet: `bash scripts/course.sh` (the weights are then cached and later runs use them offline)."
)
# The banner's HTML class: the report finds its own banner by it (pages, notebook outputs, the slides).
BANNER_CLASS = "fit3d-banner"


def banner_html(text: str = RANDOM_WEIGHTS_BANNER) -> str:
    """The red banner as HTML with inline style, so that a notebook output, a report page and the slides show the
    same one. It lives here, below the method and the presentation, so both can use it without importing upward."""
    import html

    return (
        f'<div class="{BANNER_CLASS}" role="alert" style="background:#b00020;color:#fff;padding:14px 20px;'
        "font:600 16px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;border-bottom:4px solid #6d0014;"
        f'margin:0 0 8px 0">&#9888; {html.escape(text)}</div>'
    )


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (the one seeding helper of the course); returns a CPU generator too."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The torch (CPU, CUDA) and Python RNG states, for a checkpoint that resumes exactly (loads with weights_only)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was asked for but CUDA is not available; use device='auto' or 'cpu'.")
    return dev


def _jsonable(obj: Any) -> Any:
    """Turn configs (dicts, lists, Paths, numpy scalars, tuples) into plain JSON values."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    return obj


def config_hash(config: Mapping[str, Any], length: int = 12) -> str:
    """Stable short hash of a config: same settings, same folder, whatever the key order."""
    text = json.dumps(_jsonable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def tensor_digest(*tensors: torch.Tensor) -> str:
    """A content digest of tensors (shape, dtype and bytes), for in-process memos: equal digests, equal tensors."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        a = t.detach().to("cpu").contiguous()
        h.update(f"{tuple(a.shape)}{a.dtype}".encode())
        h.update(a.view(torch.uint8).numpy().tobytes() if a.numel() else b"")
    return h.hexdigest()


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_jsonable(obj), f, indent=2)
        os.chmod(tmp, 0o644)  # mkstemp makes files owner-only; reports are shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


def save_torch(path: str | Path, obj: Any) -> None:
    """``torch.save`` atomically, for checkpoints that must survive an interrupted run."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(final: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it is renamed to ``final``.

    On an exception the temporary folder is deleted, so a half-written artifact never appears under its
    real name.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            if not overwrite:
                raise FileExistsError(f"{final} already exists; pass force=True to recompute it")
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def progress(iterable: Any = None, **kwargs: Any) -> Any:
    """tqdm that prints plain lines in batch runs (papermill, CI) and a bar in Jupyter/terminals."""
    from tqdm.auto import tqdm

    kwargs.setdefault("mininterval", 2.0)
    kwargs.setdefault("disable", os.environ.get("FIT3D_NO_PROGRESS") == "1")
    return tqdm(iterable, **kwargs)
