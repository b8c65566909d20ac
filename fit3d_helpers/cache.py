"""One way to cache a stage: artifacts on disk, keyed by a hash of the config that made them, replaced atomically.

Every stage of the course (data, lift, feature refit, targets, fine-tune, feature cache, probe, ablation points) goes
through :func:`build`. Layout of one key::

    artifacts/<stage>/<hash>/            the key folder (hash of the key dict; config.json in each version holds it)
        CURRENT                          one line: the name of the complete version
        v-<time>-<id>/                   a complete version: config.json, stats.json (written last) and its files
        .lock                            held by the one process building this key
        .lock.holder                     who holds it (pid, host, since); its mtime is the holder's heartbeat
        .resume/                         resume state (checkpoints) of the run holding the lock
        .tmp-<id>/                       a version being written

Why this shape:

* **Portable keys.** A key holds no absolute path (:func:`check_portable` refuses one), so moving the checkout or
  mounting a shared artifacts disk at another path keeps every hit. Scenes are named by :func:`scene_id`.
* **Safe replacement.** A new version is written under ``.tmp-*``, renamed to ``v-*``, and only then does ``CURRENT``
  (a one-line file, swapped with ``os.replace``) point at it. Whatever instant a process is killed, ``CURRENT`` names
  the old complete version or the new one; nothing is deleted before the switch. Files and folders are fsynced before
  ``CURRENT`` switches. A superseded version stays for a grace period (``FIT3D_CACHE_GRACE`` seconds after its
  successor was committed, default one hour), so a reader that resolved it never sees it vanish, however many
  rebuilds happen while it reads; later writers remove it after that.
* **One writer per key.** A per-key file lock (``filelock``): a second run of the same key waits, then finds the
  artifact made. The holder records itself and heartbeats; a waiter gives up with :class:`LockTimeout` naming the
  holder when it has shown no sign of life for ``FIT3D_LOCK_TIMEOUT`` seconds (default 300: a stopped or hung run).
  ``.resume`` belongs to the lock holder, so two runs never clobber each other's checkpoints, and the
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
    version = next((q for q in path.parents if _VERSION_RE.match(q.name)), None)
    if version is not None and not version.exists():  # superseded and removed: the key itself is fine
        return (
            f"its version {version.name} was replaced by a newer build of this key and removed after the grace "
            f"period (FIT3D_CACHE_GRACE={grace_seconds():g} s); look the artifact up again (rerun the cell or stage)"
        )
    key_dir = (version or path).parent
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
    except (OSError, UnicodeDecodeError) as err:
        raise ArtifactError(
            f"{kd / CURRENT} is unreadable ({err}): rerun the stage with force=True (it rebuilds and rewrites "
            f"CURRENT) or delete {kd}"
        ) from None
    if not _VERSION_RE.match(name):
        held = "is empty" if not name else f"is corrupt (holds {name[:40]!r}, not a version name v-<time>-<id>)"
        raise ArtifactError(
            f"{kd / CURRENT} {held}: rerun the stage with force=True (it rebuilds and rewrites CURRENT) or delete {kd}"
        )
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


class LockTimeout(ArtifactError):
    """Another run holds a key's lock but has shown no sign of life (stopped, hung, or on a machine that died)."""


_HOLDER = ".lock.holder"  # beside .lock: who holds it (pid, host, since) and, by its mtime, when it was last alive


def lock_timeout() -> float:
    """Seconds a waiter tolerates a lock holder with no heartbeat: ``FIT3D_LOCK_TIMEOUT`` (default 300)."""
    raw = os.environ.get("FIT3D_LOCK_TIMEOUT", "300")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"FIT3D_LOCK_TIMEOUT={raw!r} is not a number of seconds (e.g. 300)") from None
    if not value > 0:
        raise ValueError(f"FIT3D_LOCK_TIMEOUT={raw!r} must be a positive number of seconds; e.g. 300")
    return value


def _read_holder(kd: Path) -> tuple[dict[str, Any], float] | None:
    """The lock holder's record and the time of its last heartbeat, or None when there is no readable record."""
    try:
        path = kd / _HOLDER
        return json.loads(path.read_text()), path.stat().st_mtime
    except (OSError, ValueError):
        return None


def _holder_text(info: dict[str, Any] | None) -> str:
    if not info:
        return "a run that left no holder record (pid unknown)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info.get("since", 0))))
    return f"pid {info.get('pid')} on host {info.get('host')!r}, holding it since {since}"


@contextlib.contextmanager
def _heartbeat(kd: Path, interval: float) -> Iterator[None]:
    """Record who holds the lock, and touch the record every ``interval`` s while this process runs: a waiter
    tells a working holder (fresh record) from a stopped or hung one (stale record)."""
    import socket
    import threading

    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "heartbeat_s": interval}
    tmp = kd / f"{_HOLDER}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps(info))
    os.replace(tmp, kd / _HOLDER)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(OSError):
                os.utime(kd / _HOLDER)

    thread = threading.Thread(target=beat, name="fit3d-lock-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(OSError):
            (kd / _HOLDER).unlink()


@contextlib.contextmanager
def key_lock(kd: Path, what: str, timeout: float | None = None) -> Iterator[None]:
    """Hold the per-key lock. Waits (with a note) while another run holds it and is alive; raises LockTimeout when
    the holder's heartbeat is older than ``timeout`` seconds (default :func:`lock_timeout`), naming the holder."""
    from filelock import FileLock, Timeout

    timeout = lock_timeout() if timeout is None else float(timeout)
    kd.mkdir(parents=True, exist_ok=True)
    lock_path = kd / ".lock"
    if lock_path.is_dir():
        raise ArtifactError(
            f"{lock_path} is a folder, but it must be the key's lock file: remove it (rm -r {lock_path}; it holds "
            "nothing of the artifact) and rerun"
        )
    lock = FileLock(str(lock_path))
    waiting_since = time.time()
    noted = False
    while True:
        try:
            lock.acquire(timeout=min(0.5, timeout / 4))
            break
        except Timeout:
            pass
        if not noted:
            print(f"[cache] another run is making {what} ({kd}); waiting for it to finish", flush=True)
            noted = True
        holder = _read_holder(kd)
        info, alive = holder if holder is not None else (None, waiting_since)
        beat = float(info.get("heartbeat_s", 0)) if info else 0.0
        quiet = time.time() - max(alive, waiting_since)  # never less than this waiter's own wait
        if quiet > max(timeout, 3 * beat):
            pid = info.get("pid", "<pid>") if info else "<pid>"
            raise LockTimeout(
                f"{lock_path} is held by {_holder_text(info)}, which has shown no sign of life for at least "
                f"{quiet:.0f} s (FIT3D_LOCK_TIMEOUT={timeout:g}). If that process is stopped, resume it "
                f"(kill -CONT {pid}) or end it (kill {pid}) on its host; if it is gone (its machine died), delete "
                f"{lock_path} and {kd / _HOLDER} and rerun. Never delete the lock of a process that still runs."
            )
    try:
        with _heartbeat(kd, max(0.05, min(30.0, timeout / 5))):
            yield
    finally:
        lock.release()


def grace_seconds() -> float:
    """How long a superseded version stays readable: ``FIT3D_CACHE_GRACE`` seconds (default 3600). A reader that
    resolved ``CURRENT`` less than this before a rebuild (or several) can still read every file of its version."""
    raw = os.environ.get("FIT3D_CACHE_GRACE", "3600")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"FIT3D_CACHE_GRACE={raw!r} is not a number of seconds (e.g. 3600)") from None
    if not value >= 0:
        raise ValueError(f"FIT3D_CACHE_GRACE={raw!r} must be zero or a positive number of seconds")
    return value


def _fsync_path(path: Path) -> None:
    """fsync one file or folder (a folder's entries: names created or renamed in it), where the OS allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # e.g. folders on some filesystems / Windows
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Everything a new version holds reaches the disk before CURRENT can name it."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            _fsync_path(Path(dirpath) / name)
        _fsync_path(Path(dirpath))


def _write_pointer(kd: Path, name: str) -> None:
    tmp = kd / f".{CURRENT}.{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, kd / CURRENT)
    _fsync_path(kd)


def _versions(kd: Path) -> list[Path]:
    return sorted((p for p in kd.iterdir() if _VERSION_RE.match(p.name)), key=lambda p: int(p.name.split("-")[1]))


def _expired(kd: Path, keep: set[str]) -> set[str]:
    """Versions not in ``keep`` whose successor was committed more than the grace period ago. A version's name
    holds its commit time, so the next version's name says when it was superseded: no extra bookkeeping."""
    versions = _versions(kd)
    now_ns, grace_ns = time.time_ns(), grace_seconds() * 1e9
    return {
        v.name
        for v, nxt in zip(versions[:-1], versions[1:])
        if v.name not in keep and now_ns - int(nxt.name.split("-")[1]) > grace_ns
    }


def _clean(kd: Path, keep: set[str]) -> None:
    """Under the lock: remove writers' leftovers (``.tmp-*``) and the superseded versions past their grace period
    (never ``keep``), so a reader that opened a version a moment ago never sees it vanish."""
    expired = _expired(kd, keep)
    for p in kd.iterdir():
        if p.name.startswith((".tmp-", f".{CURRENT}.")) or p.name in expired:
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
    return build_dir(kd, key, make, force=force, what=what or f"{stage}/{kd.name}", stage=stage)


def build_dir(
    kd: str | Path,
    key: Mapping[str, Any],
    make: Callable[[Path, Path], dict[str, Any]],
    *,
    force: bool = False,
    what: str | None = None,
    stage: str | None = None,
) -> Artifact:
    """:func:`build` for a key folder the caller names (the synthetic datasets live in ``<root>/<hash>``)."""
    kd, key = Path(kd), dict(key)
    what = what or str(kd)
    if not force and (found := lookup_dir(kd, stage)) is not None:
        return found
    with key_lock(kd, what):
        if not force and (found := lookup_dir(kd, stage)) is not None:
            return found  # made by the run we waited for
        current = _current_or_none(kd) if force else _current(kd)  # force repairs a corrupt CURRENT
        keep = {current.name} if current is not None else set()
        _clean(kd, keep)
        resume = kd / ".resume"
        if force:
            shutil.rmtree(resume, ignore_errors=True)
        resume.mkdir(exist_ok=True)
        name = _commit(kd, key, make, resume)
        shutil.rmtree(resume, ignore_errors=True)
        _clean(kd, keep | {name})
    return Artifact(stage or kd.parent.name, kd.name, kd / name)


def _current_or_none(kd: Path) -> Path | None:
    """CURRENT's version, or None when CURRENT is missing, gone or corrupt (a forced rebuild replaces it)."""
    try:
        return _current(kd)
    except ArtifactError:
        return None


def _commit(kd: Path, key: dict[str, Any], make: Callable[[Path, Path], dict[str, Any]], resume: Path) -> str:
    """Under the lock: make a version in ``.tmp-*``, sync it to disk, rename it, then switch CURRENT to it."""
    tmp = kd / f".tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        stats = make(tmp, resume)
        write_json(tmp / "config.json", key)
        write_json(tmp / "stats.json", stats)  # last: a version folder with stats.json is complete
        _fsync_tree(tmp)
        name = f"v-{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        os.rename(tmp, kd / name)
        _fsync_path(kd)
        _write_pointer(kd, name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return name


def run_uncommitted(make: Callable[[Path, Path], dict[str, Any]]) -> dict[str, Any]:
    """Run ``make`` in a throwaway folder, without the lock, and keep only its stats (non-main DDP processes)."""
    scratch = Path(tempfile.mkdtemp(prefix="fit3d-uncommitted-"))
    try:
        (scratch / "out").mkdir()
        (scratch / "resume").mkdir()
        return make(scratch / "out", scratch / "resume")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
