"""The one stage cache: portable keys, atomic replacement, one writer per key, safe and explicit loading."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

from fit3d_helpers import cache
from fit3d_helpers.utils import write_json


def _writer(token: str, sleep: float = 0.0):
    def make(out: Path, resume: Path) -> dict:
        (out / "a.txt").write_text(token)
        time.sleep(sleep)
        torch.save({"token": token, "x": torch.arange(3)}, out / "payload.pt")
        return {"token": token}

    return make


def test_build_then_lookup_and_layout(tmp_path) -> None:
    key = {"stage": "s", "n": 1}
    art = cache.build("s", key, tmp_path, _writer("one"))
    assert art.stats == {"token": "one"} and art.config == key and art.torch("payload.pt")["token"] == "one"
    kd = art.key_dir
    assert kd == cache.key_dir(tmp_path, "s", key) and (kd / cache.CURRENT).read_text().strip() == art.path.name
    assert sorted(p.name for p in kd.iterdir() if not p.name.startswith(".")) == [cache.CURRENT, art.path.name]
    calls = []
    again = cache.build("s", key, tmp_path, lambda out, resume: calls.append(1) or {})
    assert calls == [] and again.path == art.path  # found, not rebuilt
    assert cache.lookup("s", {"stage": "s", "n": 2}, tmp_path) is None
    assert [a.hash for a in cache.iter_artifacts(tmp_path)] == [art.hash]


def test_force_replaces_without_a_gap_and_keeps_the_previous_version(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FIT3D_CACHE_GRACE", "0")  # no grace period: superseded versions go at the next build
    key = {"k": 1}
    first = cache.build("s", key, tmp_path, _writer("one"))
    second = cache.build("s", key, tmp_path, _writer("two"), force=True)
    third = cache.build("s", key, tmp_path, _writer("three"), force=True)
    assert cache.lookup("s", key, tmp_path).stats["token"] == "three"
    assert not first.path.exists() and second.path.exists() and third.path.exists()  # current + previous kept


def test_a_failing_make_leaves_the_old_artifact_and_no_leftovers(tmp_path) -> None:
    key = {"k": 1}
    old = cache.build("s", key, tmp_path, _writer("old"))

    def boom(out: Path, resume: Path) -> dict:
        (out / "half.txt").write_text("x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.build("s", key, tmp_path, boom, force=True)
    assert cache.lookup("s", key, tmp_path).path == old.path
    assert not list(old.key_dir.glob(".tmp-*"))


def test_keys_must_be_portable(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"key.scene = '/data/x' is a path"):
        cache.build("s", {"scene": "/data/x"}, tmp_path, _writer("t"))
    with pytest.raises(ValueError, match=r"key.lifts\[0\]"):
        cache.build("s", {"lifts": [str(tmp_path)]}, tmp_path, _writer("t"))
    cache.check_portable({"scene": "room_00-abc123", "lr": 1e-4, "root": "data/synthetic"})  # relative text is fine


def test_scene_id_ignores_where_the_scene_lies(tmp_path, tiny_dataset) -> None:
    scene = Path(tiny_dataset.train[0])
    copy = tmp_path / "elsewhere" / scene.name
    shutil.copytree(scene, copy)
    assert cache.scene_id(scene) == cache.scene_id(copy) == cache.scene_id(copy / "transforms.json")
    assert cache.scene_id(scene).startswith(scene.name + "-")
    meta = json.loads((copy / "transforms.json").read_text())
    meta["frames"] = meta["frames"][:-1]
    (copy / "transforms.json").write_text(json.dumps(meta))
    assert cache.scene_id(copy) != cache.scene_id(scene)  # other cameras, other scene


def test_moved_artifacts_folder_still_hits(tmp_path) -> None:
    key = {"scene": "room-0123", "lift": {"iterations": 3}}
    art = cache.build("lift", key, tmp_path / "a", _writer("x"))
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    moved = cache.lookup("lift", key, tmp_path / "b")
    assert moved is not None and moved.hash == art.hash and moved.stats["token"] == "x"


def test_corrupt_files_name_the_file_and_the_fix(tmp_path) -> None:
    art = cache.build("s", {"k": 1}, tmp_path, _writer("t"))
    (art.path / "stats.json").write_text('{"token": ')  # truncated
    fresh = cache.lookup("s", {"k": 1}, tmp_path)
    with pytest.raises(
        cache.ArtifactError, match=r"stats.json is unreadable .*delete .* or rerun the stage with force=True"
    ):
        _ = fresh.stats
    (art.path / "payload.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(cache.ArtifactError, match=r"payload.pt cannot be loaded safely"):
        art.torch("payload.pt")
    (art.key_dir / cache.CURRENT).write_text("../../etc\n")
    with pytest.raises(cache.ArtifactError, match=r"CURRENT is corrupt"):
        cache.lookup("s", {"k": 1}, tmp_path)


class _Boom:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_an_artifact_that_would_run_code_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    art = cache.build(
        "s", {"k": 1}, tmp_path, lambda out, resume: torch.save({"x": _Boom(str(marker))}, out / "evil.pt") or {}
    )
    with pytest.raises(cache.ArtifactError, match="cannot be loaded safely"):
        art.torch("evil.pt")
    assert not marker.exists()
    (tmp_path / "ck.pt").write_bytes((art.path / "evil.pt").read_bytes())
    with pytest.warns(UserWarning, match="unreadable"):
        assert cache.load_resume(tmp_path / "ck.pt") is None
    assert not marker.exists()


def test_resume_dir_survives_a_failure_and_is_removed_on_success(tmp_path) -> None:
    key = {"k": 1}
    seen = []

    def interrupted(out: Path, resume: Path) -> dict:
        (resume / "checkpoint.txt").write_text("step 3")
        raise TimeoutError("stopped")

    with pytest.raises(TimeoutError):
        cache.build("s", key, tmp_path, interrupted)

    def resumed(out: Path, resume: Path) -> dict:
        seen.append((resume / "checkpoint.txt").read_text())
        return {}

    art = cache.build("s", key, tmp_path, resumed)
    assert seen == ["step 3"] and not (art.key_dir / ".resume").exists()


# ---------------------------------------------------------------------------------------------- concurrency


def _build_forever(root: str, seed: int) -> None:
    rng = random.Random(seed)
    while True:
        token = f"{os.getpid()}-{rng.random()}"
        cache.build("s", {"k": 1}, root, _writer(token, sleep=rng.random() * 0.02), force=True)


def _read_forever(root: str, report: str) -> None:
    reads = problems = retries = 0
    deadline = time.time() + 60
    while time.time() < deadline:
        art = cache.lookup("s", {"k": 1}, root)
        if art is None:
            problems += 1  # the key was empty
        else:
            try:
                token = (art.path / "a.txt").read_text()
                stats = json.loads((art.path / "stats.json").read_text())
                payload = torch.load(art.path / "payload.pt", weights_only=True)
                if not (token == stats["token"] == payload["token"]):
                    problems += 1  # a complete-looking artifact mixing two writers
                reads += 1
            except FileNotFoundError:
                if art.path.exists():
                    problems += 1  # a complete-looking version with a file missing
                else:
                    retries += 1  # superseded twice while we read: look it up again
        write_json(report, {"reads": reads, "problems": problems, "retries": retries})  # atomic: we get killed


def test_kill_9_stress_two_writers_and_a_reader(tmp_path, monkeypatch) -> None:
    """Writers killed with SIGKILL at random instants never leave the key empty or a partial artifact that looks
    complete; the next writer cleans up what the dead ones left."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    root = str(tmp_path)
    cache.build("s", {"k": 1}, root, _writer("initial"))
    report = tmp_path / "reader.json"
    reader = ctx.Process(target=_read_forever, args=(root, str(report)), daemon=True)
    reader.start()
    writers = [ctx.Process(target=_build_forever, args=(root, i), daemon=True) for i in range(2)]
    for w in writers:
        w.start()
    rng = random.Random(0)
    kills = 0
    t_end = time.time() + 4.0
    while time.time() < t_end or kills < 10:  # at least 10 kills, however busy the machine is
        time.sleep(rng.uniform(0.05, 0.3))
        i = rng.randrange(2)
        os.kill(writers[i].pid, signal.SIGKILL)
        writers[i].join()
        kills += 1
        writers[i] = ctx.Process(target=_build_forever, args=(root, 100 + kills), daemon=True)
        writers[i].start()
    for w in writers:
        os.kill(w.pid, signal.SIGKILL)
        w.join()
    time.sleep(0.2)
    reader.kill()
    reader.join()
    stats = json.loads(report.read_text())
    assert stats["problems"] == 0, stats
    assert stats["reads"] > 20 and kills >= 10, (stats, kills)
    kd = cache.key_dir(root, "s", {"k": 1})
    art = cache.lookup("s", {"k": 1}, root)
    assert art is not None and art.torch("payload.pt")["token"] == art.stats["token"]
    monkeypatch.setenv("FIT3D_CACHE_GRACE", "0")  # superseded versions past their grace period are removed
    cache.build("s", {"k": 1}, root, _writer("after"), force=True)  # the lock of a killed writer is free again
    assert not list(kd.glob(".tmp-*")) and len(list(kd.glob("v-*"))) <= 2  # leftovers of the dead cleaned up


def test_second_run_of_a_key_waits_and_reuses(tmp_path) -> None:
    """Two processes ask for the same missing key: one builds, the other waits for the lock and finds it."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    root = str(tmp_path)
    marker = tmp_path / "builds"

    def slow(out: Path, resume: Path) -> dict:
        with open(marker, "a") as f:
            f.write("x")
        time.sleep(1.0)
        return {"by": os.getpid()}

    procs = [ctx.Process(target=lambda: cache.build("s", {"k": 2}, root, slow)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=30)
    assert marker.read_text() == "x"  # built once
    assert cache.lookup("s", {"k": 2}, root) is not None


# ---- readers never lose their version; a stopped lock holder times out; broken pointers and locks are named


def _rebuild_forever(root: str, stop: str) -> None:
    i = 0
    while not os.path.exists(stop):
        cache.build("s", {"k": 3}, root, _writer(f"w{i}"), force=True)
        i += 1


def test_a_reader_never_loses_its_version_while_the_key_is_rebuilt(tmp_path) -> None:
    """A reader resolves CURRENT, then reads slowly while the key is rebuilt many times: superseded versions stay
    for the grace period, so every file it opened the version for is still there."""
    import multiprocessing as mp

    root, stop = str(tmp_path), tmp_path / "stop"
    cache.build("s", {"k": 3}, root, _writer("first"))
    writer = mp.get_context("fork").Process(target=_rebuild_forever, args=(root, str(stop)), daemon=True)
    writer.start()
    reads, lost, tokens = 0, [], set()
    t_end = time.time() + 2.5
    try:
        while time.time() < t_end:
            art = cache.lookup("s", {"k": 3}, root)
            time.sleep(0.15)  # the writer commits several versions meanwhile
            try:
                token = (art.path / "a.txt").read_text()
                assert art.torch("payload.pt")["token"] == token == art.stats["token"]
                tokens.add(token)
                reads += 1
            except (FileNotFoundError, cache.ArtifactError) as err:
                lost.append(repr(err)[:200])
    finally:
        stop.write_text("")
        writer.join(timeout=30)
    assert lost == [] and reads > 5 and len(tokens) > 3, (lost, reads, len(tokens))


def test_a_vanished_version_says_look_it_up_again_not_delete_the_key(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FIT3D_CACHE_GRACE", "0")
    old = cache.build("s", {"k": 1}, tmp_path, _writer("one"))
    for token in ("two", "three"):
        cache.build("s", {"k": 1}, tmp_path, _writer(token), force=True)
    assert not old.path.exists()
    with pytest.raises(cache.ArtifactError, match=r"replaced by a newer build .* look the artifact up again") as e:
        old.torch("payload.pt")
    assert "delete" not in str(e.value)


@pytest.mark.parametrize("content", ["", "\n", "garbage\n", "\x00\x00"])
def test_an_empty_or_corrupt_current_is_named_and_force_repairs_it(tmp_path, content) -> None:
    cache.build("s", {"k": 1}, tmp_path, _writer("one"))
    pointer = cache.key_dir(tmp_path, "s", {"k": 1}) / cache.CURRENT
    pointer.write_text(content)
    with pytest.raises(cache.ArtifactError, match=rf"{pointer}.* is (empty|corrupt).*force=True"):
        cache.build("s", {"k": 1}, tmp_path, _writer("two"))
    art = cache.build("s", {"k": 1}, tmp_path, _writer("two"), force=True)  # the suggested fix works
    assert cache.lookup("s", {"k": 1}, tmp_path).stats["token"] == "two" == art.stats["token"]


def test_a_lock_that_is_a_folder_is_named(tmp_path) -> None:
    kd = cache.key_dir(tmp_path, "s", {"k": 1})
    (kd / ".lock").mkdir(parents=True)
    with pytest.raises(cache.ArtifactError, match=r"\.lock is a folder.*remove it"):
        cache.build("s", {"k": 1}, tmp_path, _writer("one"))


def _hold_lock(kd: str, ready: str, seconds: float) -> None:
    with cache.key_lock(Path(kd), "test", timeout=1.0):
        Path(ready).write_text("")
        time.sleep(seconds)


def _wait_for(ready: Path, proc) -> None:
    deadline = time.time() + 20
    while not ready.exists():
        assert proc.is_alive() and time.time() < deadline, "the lock holder did not start"
        time.sleep(0.02)


def test_a_stopped_lock_holder_times_out_naming_it_but_a_working_one_is_waited_for(tmp_path) -> None:
    import multiprocessing as mp
    import socket

    ctx = mp.get_context("fork")
    kd, ready = tmp_path / "key", tmp_path / "ready"
    holder = ctx.Process(target=_hold_lock, args=(str(kd), str(ready), 600), daemon=True)
    holder.start()
    try:
        _wait_for(ready, holder)
        os.kill(holder.pid, signal.SIGSTOP)
        t0 = time.time()
        with pytest.raises(cache.LockTimeout) as e, cache.key_lock(kd, "test", timeout=1.0):
            pass
        assert time.time() - t0 < 10
        msg = str(e.value)
        assert f"pid {holder.pid} on host {socket.gethostname()!r}, holding it since 20" in msg, msg
        assert f"kill -CONT {holder.pid}" in msg and "FIT3D_LOCK_TIMEOUT" in msg
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
    ready.unlink()
    working = ctx.Process(target=_hold_lock, args=(str(kd), str(ready), 2.5), daemon=True)  # alive: heartbeats
    working.start()
    _wait_for(ready, working)
    t0 = time.time()
    with cache.key_lock(kd, "test", timeout=1.0):  # waits past the timeout: the holder is alive (heartbeats)
        waited = time.time() - t0
    working.join()
    assert working.exitcode == 0 and waited > 1.5, waited
