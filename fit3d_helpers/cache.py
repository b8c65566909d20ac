"""One way to cache a stage: artifacts on disk, keyed by a hash of the config that made them, replaced atomically.

Every stage of the course (data, lift, feature refit, targets, fine-tune, feature cache, probe, ablation points) goes
through :func:`build`. Layout of one key::

    artifacts/<stage>/<hash>/            the key folder (hash of the key dict; config.json in each version holds it)
        CURRENT                          one line: the name of the complete version
        v-<time>-<id>/                   a complete version: config.json, stats.json (written last) and its files
        .lock                            held by the one process building this key
        .resume/                         resume state (checkpoints) of the run holding the lock
        .tmp-<id>/                       a version being written

Why this shape:

* **Portable keys.** A key holds no absolute path (:func:`check_portable` refuses one), so moving the checkout or
  mounting a shared artifacts disk at another path keeps every hit. Scenes are named by :func:`scene_id`.
* **Safe replacement.** A new version is written under ``.tmp-*``, renamed to ``v-*``, and only then does ``CURRENT``
  (a one-line file, swapped with ``os.replace``) point at it. Whatever instant a process is killed, ``CURRENT`` names
  the old complete version or the new one; nothing is deleted before the switch. The previous version is kept, so a
  reader that resolved it a moment ago can finish; older ones are removed by the next writer.
* **One writer per key.** A per-key file lock (``filelock``): a second run of the same key waits, then finds the
  artifact made. ``.resume`` belongs to the lock holder, so two runs never clobber each other's checkpoints, and the
  ``.tmp-*`` folders of writers that died are removed by the next lock holder.
* **Safe loading.** Tensors are read with ``torch.load(weights_only=True)`` (a file cannot run code); a corrupt or
  truncated file raises :class:`ArtifactError` naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .utils import config_hash, write_json

CURRENT = "CURRENT"
_VERSION_RE = re.compile(r"^v-\d+-[0-9a-f]{8}$")
_ABSOLUTE_RE = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")


class ArtifactError(RuntimeError):
    """An artifact that is unreadable or does not fit; the message names the file and the fix."""


class MissingArtifact(ArtifactError):
    """An earlier stage's artifact is not there and the profile says not to compute it (``on_missing="error"``)."""


# ----------------------------------------------------------------------------------------------------------------
# Keys
# ----------------------------------------------------------------------------------------------------------------


def check_portable(key: Any, where: str = "key") -> None:
    """Raise ValueError when ``key`` holds an absolute path anywhere: such a key misses once the folder moves."""
    if isinstance(key, Mapping):
        for k, v in key.items():
            check_portable(v, f"{where}.{k}")
    elif isinstance(key, (list, tuple)):
        for i, v in enumerate(key):
            check_portable(v, f"{where}[{i}]")
    elif isinstance(key, Path) or (isinstance(key, str) and _ABSOLUTE_RE.match(key)):
        raise ValueError(
            f"artifact {where} = {str(key)!r} is a path; keys must be portable (name scenes with cache.scene_id)"
        )


_SCENE_FILES = (
    "transforms.json",
    "images.txt",
    "sparse/0/images.txt",
    "sparse/images.txt",
    "nerfstudio/transforms_undistorted.json",
    "dslr/nerfstudio/transforms_undistorted.json",
)
_NESTING = {"nerfstudio", "dslr", "sparse", "0"}


def scene_id(path: str | Path) -> str:
    """A portable name for a scene: its folder's name plus a hash of its camera file, not where it lies on disk.

    ``path`` is a scene folder or its camera file (``transforms*.json``, ``images.txt``). Two copies of a scene in
    different places get the same id; a scene whose cameras changed gets another.
    """
    p = Path(path)
    cam_file = p if p.is_file() else next((p / n for n in _SCENE_FILES if (p / n).is_file()), None)
    if cam_file is None:
        raise ArtifactError(
            f"{p}: no scene here (no transforms.json, COLMAP images.txt or ScanNet++ "
            "dslr/nerfstudio/transforms_undistorted.json)"
        )
    digest = hashlib.sha256(cam_file.read_bytes()).hexdigest()[:12]
    name = next((q.name for q in cam_file.parents if q.name not in _NESTING), cam_file.parent.name)
    return f"{name}-{digest}"


# ----------------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------------


def _fix(path: Path) -> str:
    key_dir = next((q for q in path.parents if _VERSION_RE.match(q.name)), path.parent).parent
    return f"delete {key_dir} (it will be recomputed) or rerun the stage with force=True"


def load_json(path: str | Path) -> Any:
    """A JSON file of an artifact; a missing, truncated or corrupt one raises ArtifactError with the fix."""
    path = Path(path)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing: {_fix(path)}") from None
    except (OSError, ValueError) as err:
        raise ArtifactError(f"{path} is unreadable ({type(err).__name__}: {err}): {_fix(path)}") from None


def load_torch(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only, so a file cannot run code on load."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing: {_fix(path)}") from None
    except Exception as err:  # truncated zip, pickle of something other than tensors, …
        raise ArtifactError(
            f"{path} cannot be loaded safely ({type(err).__name__}: {str(err)[:200]}): {_fix(path)}"
        ) from None


def load_resume(path: str | Path) -> Any | None:
    """A resume checkpoint, or None (with a warning) when it is unreadable: the stage then starts from scratch."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        warnings.warn(
            f"resume checkpoint {path} is unreadable ({type(err).__name__}); starting this stage from scratch",
            stacklevel=2,
        )
        return None


@dataclass
class Artifact:
    """A complete artifact: ``path`` is its version folder (config.json, stats.json and the stage's files)."""

    stage: str
    hash: str
    path: Path
    _stats: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def key_dir(self) -> Path:
        return self.path.parent

    @property
    def stats(self) -> dict[str, Any]:
        if self._stats is None:
            self._stats = load_json(self.path / "stats.json")
        return self._stats

    @property
    def config(self) -> dict[str, Any]:
        return load_json(self.path / "config.json")

    @property
    def mtime(self) -> float:
        return (self.path / "stats.json").stat().st_mtime

    def json(self, name: str) -> Any:
        return load_json(self.path / name)

    def torch(self, name: str, map_location: str | torch.device = "cpu") -> Any:
        return load_torch(self.path / name, map_location)


def key_dir(root: str | Path, stage: str, key: Mapping[str, Any]) -> Path:
    """Where the artifact of ``stage`` made by ``key`` lives (it may not exist yet)."""
    return Path(root) / stage / config_hash(key)


def _current(kd: Path) -> Path | None:
    """The complete version CURRENT names, or None (no CURRENT, or it names a version that is gone)."""
    try:
        name = (kd / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ArtifactError(f"{kd / CURRENT} is unreadable ({err}): delete {kd} or rerun with force=True") from None
    if not _VERSION_RE.match(name):
        raise ArtifactError(f"{kd / CURRENT} is corrupt (holds {name[:40]!r}): delete {kd} or rerun with force=True")
    v = kd / name
    return v if (v / "config.json").is_file() and (v / "stats.json").is_file() else None


def lookup_dir(kd: str | Path, stage: str | None = None) -> Artifact | None:
    """The complete artifact in key folder ``kd``, or None. Retries briefly when a writer is switching versions."""
    kd = Path(kd)
    for _ in range(5):
        v = _current(kd)
        if v is not None:
            return Artifact(stage or kd.parent.name, kd.name, v)
        if not (kd / CURRENT).exists():
            return None
        time.sleep(0.05)
    return None


def lookup(stage: str, key: Mapping[str, Any], root: str | Path) -> Artifact | None:
    """The complete artifact of ``stage`` made by ``key`` under ``root``, or None."""
    return lookup_dir(key_dir(root, stage, key), stage)


def iter_artifacts(root: str | Path) -> Iterator[Artifact]:
    """Every complete artifact under ``root`` (``<stage>/<hash>/CURRENT``), for the report."""
    root = Path(root)
    if not root.is_dir():
        return
    for pointer in sorted(root.glob(f"*/*/{CURRENT}")):
        kd = pointer.parent
        if kd.parent.name.startswith("."):
            continue
        try:
            art = lookup_dir(kd)
        except ArtifactError:
            continue
        if art is not None:
            yield art


# ----------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def key_lock(kd: Path, what: str) -> Iterator[None]:
    """Hold the per-key lock (waits, with a note, while another run holds it)."""
    from filelock import FileLock, Timeout

    kd.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(kd / ".lock"))
    try:
        lock.acquire(timeout=0.5)
    except Timeout:
        print(f"[cache] another run is making {what} ({kd}); waiting for it to finish", flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _write_pointer(kd: Path, name: str) -> None:
    tmp = kd / f".{CURRENT}.{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, kd / CURRENT)


def _versions(kd: Path) -> list[Path]:
    return sorted((p for p in kd.iterdir() if _VERSION_RE.match(p.name)), key=lambda p: int(p.name.split("-")[1]))


def _clean(kd: Path, keep: set[str]) -> None:
    """Under the lock: remove writers' leftovers (``.tmp-*``) and every version but ``keep``."""
    for p in kd.iterdir():
        if p.name.startswith((".tmp-", f".{CURRENT}.")) or (_VERSION_RE.match(p.name) and p.name not in keep):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


def build(
    stage: str,
    key: Mapping[str, Any],
    root: str | Path,
    make: Callable[[Path, Path], dict[str, Any]],
    *,
    force: bool = False,
    what: str | None = None,
) -> Artifact:
    """The complete artifact of ``stage`` for ``key``: found, or made by ``make(out_dir, resume_dir) -> stats``.

    ``make`` writes its files into ``out_dir`` and returns the stats (this function writes ``config.json`` = the key
    and ``stats.json`` last). ``resume_dir`` survives an interrupted run (checkpoints go there) and is removed after
    a successful commit. ``force`` rebuilds even when the artifact exists (and drops any resume state).
    """
    key = dict(key)
    check_portable(key)
    kd = key_dir(root, stage, key)
    what = what or f"{stage}/{kd.name}"
    if not force and (found := lookup(stage, key, root)) is not None:
        return found
    with key_lock(kd, what):
        if not force and (found := lookup(stage, key, root)) is not None:
            return found  # made by the run we waited for
        current = _current(kd)
        _clean(kd, keep={current.name} if current is not None else set())
        resume = kd / ".resume"
        if force:
            shutil.rmtree(resume, ignore_errors=True)
        resume.mkdir(exist_ok=True)
        tmp = kd / f".tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            stats = make(tmp, resume)
            write_json(tmp / "config.json", key)
            write_json(tmp / "stats.json", stats)  # last: a version folder with stats.json is complete
            name = f"v-{time.time_ns()}-{uuid.uuid4().hex[:8]}"
            os.rename(tmp, kd / name)
            _write_pointer(kd, name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(resume, ignore_errors=True)
        _clean(kd, keep={name} | ({current.name} if current is not None else set()))
    return Artifact(stage, kd.name, kd / name)


def run_uncommitted(make: Callable[[Path, Path], dict[str, Any]]) -> dict[str, Any]:
    """Run ``make`` in a throwaway folder, without the lock, and keep only its stats (non-main DDP processes)."""
    scratch = Path(tempfile.mkdtemp(prefix="fit3d-uncommitted-"))
    try:
        (scratch / "out").mkdir()
        (scratch / "resume").mkdir()
        return make(scratch / "out", scratch / "resume")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
