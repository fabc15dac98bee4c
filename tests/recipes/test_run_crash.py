"""A save killed at any point leaves the old run or the new one, never a mix.

The tests kill ``Model.save`` over an existing run at every write it makes (each file write, the two folder
renames, the removal of the old folder), once in process (from the k-th write on, every write fails, as if the
process had died there; a file being written is left half written) and once in a forked child killed with SIGKILL
at that point. After each, ``pm.load`` must return exactly the old run or exactly the new one (class list,
train config, a weight tensor and predictions).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

import polymodal as pm
from polymodal.recipes import runs
from tests.recipes.saved_pair import classify, make_pair, signature


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return make_pair(tmp_path_factory)


# ------------------------------------------------------------------------------------------------ crash points
class Killed(BaseException):
    """The process 'died' at this write (a BaseException, so nothing between here and the test catches it)."""


def _instrument(monkeypatch, on_point):
    """Route every write ``save`` makes through ``on_point(kind, args)``, which may kill it there."""
    real_write, real_save, real_replace, real_rmtree = runs._write_bytes, runs.save_file, os.replace, shutil.rmtree

    def write_bytes(path, data):
        on_point("write", path, lambda: real_write(path, data), lambda: real_write(path, data[: len(data) // 2]))

    def save(tensors, path, *a, **k):
        def half():
            real_save(tensors, path, *a, **k)
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
        on_point("write", path, lambda: real_save(tensors, path, *a, **k), half)

    def replace(src, dst):
        on_point("rename", dst, lambda: real_replace(src, dst), None)

    def rmtree(path, *a, **k):
        on_point("rmtree", path, lambda: real_rmtree(path, *a, **k), lambda: real_rmtree(path, *a, **k))

    monkeypatch.setattr(runs, "_write_bytes", write_bytes)
    monkeypatch.setattr(runs, "save_file", save)
    monkeypatch.setattr(runs.os, "replace", replace)
    monkeypatch.setattr(runs.shutil, "rmtree", rmtree)
    return real_replace, real_rmtree


def _count_points(pair, tmp_path, monkeypatch) -> int:
    old, new, folder = pair
    target = tmp_path / "count"
    shutil.copytree(folder, target)
    calls = []
    with monkeypatch.context() as m:
        _instrument(m, lambda kind, path, do, half: (calls.append(kind), do()))
        new.save(target)
    assert calls.count("rename") == 2 and calls.count("rmtree") == 1 and calls.count("write") == 5
    return len(calls)


def _kill_in_process(new, target, k, monkeypatch):
    """Run ``new.save(target)``; the k-th write is cut short (half written) and every later one does nothing."""
    state = {"n": 0, "dead": False}

    def on_point(kind, path, do, half):
        state["n"] += 1
        if state["dead"]:
            raise Killed
        if state["n"] == k:
            state["dead"] = True
            if half is not None and kind == "write":
                half()
            raise Killed
        do()

    with monkeypatch.context() as m:
        _instrument(m, on_point)
        with pytest.raises(Killed):
            new.save(target)


def test_a_save_killed_at_every_write_leaves_the_old_run_or_the_new_one(pair, tmp_path, monkeypatch, record_property):
    old, new, folder = pair
    old_sig, new_sig = signature(pm.load(folder)), signature(new)
    assert old_sig != new_sig and old_sig[0] == tuple(reversed(new_sig[0]))
    n = _count_points(pair, tmp_path, monkeypatch)
    outcomes = {}
    for k in range(1, n + 1):
        target = tmp_path / f"k{k}" / "run"
        shutil.copytree(folder, target)
        _kill_in_process(new, target, k, monkeypatch)
        outcomes[k] = classify(target, old_sig, new_sig)
    mixed = sum(o == "MIXED" for o in outcomes.values())
    print(f"in process: mixed folders loaded = {mixed} of {n} crash points; {outcomes}", file=sys.stderr)
    record_property("crash_points", n)
    assert outcomes == {k: "old" if k < n else "new" for k in range(1, n + 1)}, outcomes
    # killed between the two renames: the run was missing with the complete old one aside; load renamed it back
    parent = tmp_path / f"k{n - 1}"
    assert (parent / "run").is_dir() and not list(parent.glob("run.old-*"))


def test_killed_between_the_renames_the_old_run_is_recovered(pair, tmp_path, monkeypatch):
    old, new, folder = pair
    target = tmp_path / "p" / "run"
    shutil.copytree(folder, target)
    _kill_in_process(new, target, 7, monkeypatch)  # 5 writes, rename aside, then killed at the rename in
    assert not target.exists() and len(list(target.parent.glob("run.old-*"))) == 1
    assert runs.run_type(target) == "model" and target.is_dir()
    assert signature(pm.load(target)) == signature(pm.load(folder))
    new.save(target)  # and a later save over it works
    assert signature(pm.load(target)) == signature(new)


def test_a_fresh_save_killed_at_every_write_leaves_no_run_or_the_new_one(pair, tmp_path, monkeypatch):
    old, new, _ = pair
    new_sig = signature(new)
    for k in range(1, 7):  # 5 writes and the rename in: killed at any of them, there is no run yet
        target = tmp_path / f"f{k}" / "run"
        _kill_in_process(new, target, k, monkeypatch)
        got = classify(target, None, new_sig)
        assert got.startswith("refused: ") and "is not a run folder" in got, (k, got)
    new.save(tmp_path / "whole" / "run")
    assert classify(tmp_path / "whole" / "run", None, new_sig) == "new"


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork (Linux)")
def test_a_save_sigkilled_at_every_write_leaves_the_old_run_or_the_new_one(pair, tmp_path, monkeypatch):
    old, new, folder = pair
    old_sig, new_sig = signature(pm.load(folder)), signature(new)
    n = _count_points(pair, tmp_path, monkeypatch)
    outcomes = {}
    for k in range(1, n + 1):
        target = tmp_path / f"s{k}" / "run"
        shutil.copytree(folder, target)
        pid = os.fork()
        if pid == 0:  # the child: save, and die by SIGKILL at the k-th write
            try:
                count = [0]

                def on_point(kind, path, do, half):
                    count[0] += 1
                    if count[0] == k:
                        if half is not None and kind == "write":
                            half()
                        os.kill(os.getpid(), signal.SIGKILL)
                    do()

                _instrument(monkeypatch, on_point)
                new.save(target)
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (k, status)
        outcomes[k] = classify(target, old_sig, new_sig)
    mixed = sum(o == "MIXED" for o in outcomes.values())
    print(f"SIGKILL: mixed folders loaded = {mixed} of {n} crash points; {outcomes}", file=sys.stderr)
    assert outcomes == {k: "old" if k < n else "new" for k in range(1, n + 1)}, outcomes


def test_a_folder_that_cannot_be_renamed_is_replaced_file_by_file_and_a_mix_is_refused(pair, tmp_path, monkeypatch):
    """The working directory or a mount point cannot be renamed aside: the run files are replaced one by one, and
    a save killed there leaves the old run, the new one, or a folder refused as torn; never a mix that loads."""
    old, new, folder = pair
    old_sig, new_sig = signature(pm.load(folder)), signature(new)
    swappable = runs._swappable
    monkeypatch.setattr(runs, "_swappable", lambda path: False)
    for legacy in (False, True):  # the old run with its manifest, and one saved before manifests
        outcomes = {}
        for k in range(1, 11):  # 5 writes, 5 file renames
            target = tmp_path / f"i{k}{legacy}" / "run"
            shutil.copytree(folder, target)
            if legacy:
                (target / "manifest.json").unlink()
            _kill_in_process(new, target, k, monkeypatch)
            got = classify(target, old_sig, new_sig)
            outcomes[k] = got if got in ("old", "new") else "refused" if "modified or torn" in got else got
        assert outcomes == {k: "old" if k <= 6 else "refused" for k in range(1, 11)}, outcomes
        target = tmp_path / f"whole{legacy}" / "run"
        shutil.copytree(folder, target)
        new.save(target)
        assert classify(target, old_sig, new_sig) == "new" and not list(target.glob(".polymodal-new-*"))
    monkeypatch.setattr(runs, "_swappable", swappable)
    monkeypatch.chdir(target)
    assert swappable(target) is False and swappable(tmp_path) is True  # the working directory is never renamed
    new.save(".")  # saving into the working directory itself works, and leaves it in place
    assert Path.cwd() == target and classify(target, old_sig, new_sig) == "new"


def test_a_saved_run_has_the_usual_folder_permissions(pair, tmp_path):
    (tmp_path / "plain").mkdir()
    pair[1].save(tmp_path / "run")
    assert (tmp_path / "run").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
    os.chmod(tmp_path / "run", 0o750)
    pair[1].save(tmp_path / "run")  # an overwrite keeps the folder's own permissions
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o750


def test_checkpoints_go_along_into_the_new_run(pair, tmp_path):
    old, new, folder = pair
    target = tmp_path / "run"
    shutil.copytree(folder, target)
    (target / "checkpoints").mkdir()
    (target / "checkpoints" / "best.safetensors").write_bytes(b"ckpt")
    new.save(target)
    assert (target / "checkpoints" / "best.safetensors").read_bytes() == b"ckpt"
    assert sorted(p.name for p in target.parent.iterdir()) == ["run"]  # no temporary or aside folder left
    assert signature(pm.load(target)) == signature(new)
