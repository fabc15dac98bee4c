"""A save killed at any point leaves the old run or the new one, never a mix; tampered folders are clear errors.

The crash tests kill ``Model.save`` over an existing run at every write it makes (each file write, the two folder
renames, the removal of the old folder), once in process (from the k-th write on, every write fails, as if the
process had died there; a file being written is left half written) and once in a forked child killed with SIGKILL
at that point. After each, ``pm.load`` must return exactly the old run or exactly the new one (class list,
train config, a weight tensor and predictions). The tampering tests build 15+ damaged folders; each must be a
``PolymodalError`` that names the file, and nothing else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import polymodal as pm
from polymodal.data.schema import Schema
from polymodal.errors import PolymodalError
from polymodal.recipes import runs
from polymodal.recipes.model import Model
from tests.xor_data import GROUPS, xor_table

TABLE = xor_table(12, seed=5)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two runs that differ in everything a mix could show: weights, class order, train config and report."""
    old = pm.fit(xor_table(24), "y", groups=GROUPS, fusion="concat", epochs=1, dim=16, progress=False)
    schema = Schema.from_dict(json.loads(old.schema.to_json()))
    schema.classes = list(reversed(schema.classes))
    net = type(old.net)(schema, old.cfg)
    net.load_state_dict({k: v + 1.0 if v.is_floating_point() else v for k, v in old.net.state_dict().items()})
    new = Model(schema, old.cfg, dataclasses.replace(old.train_cfg, epochs=7), net, {**old.info, "which": "new"})
    base = tmp_path_factory.mktemp("crash")
    old.save(base / "old")
    return old, new, base / "old"


def signature(model) -> tuple:
    name, tensor = next((k, v) for k, v in sorted(model.net.state_dict().items()) if v.is_floating_point())
    proba = model.predict_proba(TABLE).to_numpy()
    return (tuple(model.schema.classes), model.train_cfg.epochs, model.info.get("which", "old"), name,
            tuple(np.round(tensor.flatten()[:8].tolist(), 5)), tuple(np.round(proba.flatten(), 4)))


def classify(folder, old_sig, new_sig) -> str:
    try:
        loaded = pm.load(folder)
    except PolymodalError as e:
        return f"refused: {e}"
    s = signature(loaded)
    return "old" if s == old_sig else "new" if s == new_sig else "MIXED"


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


# ------------------------------------------------------------------------------------------------ tampering
def _reseal(run) -> None:
    m = json.loads((run / "manifest.json").read_text())
    m["sha256"] = {n: hashlib.sha256((run / n).read_bytes()).hexdigest()
                   if (run / n).is_file() and not (run / n).is_symlink() else h for n, h in m["sha256"].items()}
    (run / "manifest.json").write_text(json.dumps(m))


def _edit_json(name, fn):
    def edit(run, other):
        path = run / name
        data = json.loads(path.read_text())
        out = fn(data)
        path.write_text(json.dumps(data if out is None else out))
    return edit


def _write(name, data: bytes):
    return lambda run, other: (run / name).write_bytes(data)


def _truncate(name, keep):
    def edit(run, other):
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: keep(len(data))])
    return edit


def _forged_header(run, other):
    """A header that claims terabytes for one tensor: reading it must never allocate."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 4 * 2**40]}}).encode()
    (run / "weights.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 64)


def _forged_length(run, other):
    data = (run / "weights.safetensors").read_bytes()
    (run / "weights.safetensors").write_bytes(struct.pack("<Q", 2**62) + data[8:])


def _weights(fn):
    def edit(run, other):
        from safetensors.torch import load_file

        state = load_file(str(run / "weights.safetensors"))
        fn(state)
        save_file(state, str(run / "weights.safetensors"))
    return edit


def _first_float(state):
    return next(k for k, v in sorted(state.items()) if v.is_floating_point())


def _swap_classes(data):
    data["classes"] = data["classes"][::-1]


def _other_weights(run, other):
    shutil.copyfile(other / "weights.safetensors", run / "weights.safetensors")


def _dir_instead(name):
    def edit(run, other):
        (run / name).unlink()
        (run / name).mkdir()
    return edit


def _symlink(name):
    def edit(run, other):
        (run / name).unlink()
        (run / name).symlink_to(other / name)
    return edit


def _symlink_dev_zero(run, other):
    (run / "weights.safetensors").unlink()
    (run / "weights.safetensors").symlink_to("/dev/zero")


TAMPER = {
    "truncated config.json": (_truncate("config.json", lambda n: n // 2), "config.json"),
    "garbled config.json": (_write("config.json", b"\xff\xfe{{not json"), "config.json"),
    "config.json without model": (_edit_json("config.json", lambda d: d.pop("model") and None), "config.json"),
    "config.json without train": (_edit_json("config.json", lambda d: d.pop("train") and None), "config.json"),
    "config.json a list": (_write("config.json", b"[1, 2, 3]"), "config.json"),
    "config.json bad dim": (_edit_json("config.json", lambda d: d["model"].__setitem__("dim", "big")), "config.json"),
    "truncated schema.json": (_truncate("schema.json", lambda n: n - 3), "schema.json"),
    "schema.json swapped class order": (_edit_json("schema.json", _swap_classes), "schema.json"),
    "schema.json without modalities": (_edit_json("schema.json", lambda d: {"label": "y"}), "schema.json"),
    "schema.json modalities a string": (_edit_json("schema.json", lambda d: d.__setitem__("modalities", "ab")),
                                        "schema.json"),
    "garbled report.json": (_write("report.json", b"\x00\x01\x02"), "report.json"),
    "empty weights": (_write("weights.safetensors", b""), "weights.safetensors"),
    "truncated weights": (_truncate("weights.safetensors", lambda n: n // 2), "weights.safetensors"),
    "weights cut inside the header": (_truncate("weights.safetensors", lambda n: 20), "weights.safetensors"),
    "forged header, terabyte tensor": (_forged_header, "weights.safetensors"),
    "forged header length 2**62": (_forged_length, "weights.safetensors"),
    "garbage weights": (_write("weights.safetensors", b"\x00garbage" * 10), "weights.safetensors"),
    "wrong tensor shape": (_weights(lambda s: s.__setitem__(_first_float(s), torch.zeros(3, 5))),
                           "weights.safetensors"),
    "extra tensor": (_weights(lambda s: s.__setitem__("extra.weight", torch.zeros(2))), "weights.safetensors"),
    "missing tensor": (_weights(lambda s: s.pop(_first_float(s))), "weights.safetensors"),
    "weights from another run": (_other_weights, "weights.safetensors"),
    "a folder in place of config.json": (_dir_instead("config.json"), "config.json"),
    "a folder in place of weights": (_dir_instead("weights.safetensors"), "weights.safetensors"),
    "symlinked schema.json": (_symlink("schema.json"), "schema.json"),
    "symlinked weights": (_symlink("weights.safetensors"), "weights.safetensors"),
    "weights a link to /dev/zero": (_symlink_dev_zero, "weights.safetensors"),
    "garbled manifest.json": (_write("manifest.json", b"{oops"), "manifest.json"),
    "manifest.json without hashes": (_write("manifest.json", b'{"polymodal_version": "0"}'), "manifest.json"),
}


@pytest.fixture(scope="module")
def other_run(pair, tmp_path_factory):
    """Another run with the same architecture but different weights (and a different class order)."""
    folder = tmp_path_factory.mktemp("other") / "run"
    pair[1].save(folder)
    return folder


RESULTS: dict[str, str] = {}


MODES = ["as-is", "manifest-rewritten", "no-manifest"]


# a manifest that is damaged cannot also be absent: those two combinations are not generated
CASES = [(c, m) for c in TAMPER for m in MODES if not (m == "no-manifest" and TAMPER[c][1] == "manifest.json")]


@pytest.mark.parametrize(("case", "mode"), CASES)
def test_a_tampered_folder_is_a_clear_error(case, mode, pair, other_run, tmp_path):
    """as-is: the sha256 check catches it. manifest-rewritten / no-manifest (a run saved before manifests): the
    sha256 check passes or is skipped, and the checks behind it (JSON, keys, safetensors header, names, shapes,
    plain files) must catch the damage."""
    edit, file = TAMPER[case]
    run = tmp_path / "run"
    shutil.copytree(pair[2], run)
    edit(run, other_run)
    if mode == "manifest-rewritten" and file != "manifest.json":
        _reseal(run)
    if mode == "no-manifest":
        (run / "manifest.json").unlink()
    key = f"{case} [{mode}]"
    try:
        pm.load(run)
    except PolymodalError as e:
        msg = str(e)
        RESULTS[key] = "PolymodalError"
        assert file in msg, msg
        assert "Traceback" not in msg and len(msg.splitlines()) == 1 and len(msg) < 600, msg
        assert e.__cause__ is None and (e.__context__ is None or e.__suppress_context__)
    except BaseException as e:  # noqa: BLE001
        RESULTS[key] = type(e).__name__
        raise AssertionError(f"{key}: {type(e).__name__} instead of a PolymodalError: {e}") from e
    else:
        RESULTS[key] = "loaded"
        if mode != "as-is" and case in {"schema.json swapped class order", "weights from another run"}:
            return  # well-formed files: only the manifest can tell they do not belong together
        raise AssertionError(f"{key}: loaded without an error")


def test_tampering_count():
    assert len(TAMPER) >= 15
    as_is = {k: v for k, v in RESULTS.items() if k.endswith("[as-is]")}
    other = {k: v for k, v in RESULTS.items() if v not in ("PolymodalError", "loaded")}
    print(f"tampered folders: {len(TAMPER)} kinds; {len(RESULTS)} loads over {', '.join(MODES)}: "
          f"{sum(v == 'PolymodalError' for v in RESULTS.values())} PolymodalError, "
          f"{sum(v == 'loaded' for v in RESULTS.values())} loaded (well-formed files without their manifest), "
          f"{len(other)} other exceptions; as-is: {sum(v == 'PolymodalError' for v in as_is.values())} of "
          f"{len(as_is)} refused", file=sys.stderr)
    assert not other and all(v == "PolymodalError" for v in as_is.values())


def test_a_forged_header_is_refused_before_any_allocation(pair, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(pair[2], run)
    _forged_header(run, None)
    _reseal(run)

    def refuse(*a, **k):
        raise AssertionError("safetensors must not be asked to load a forged file")

    monkeypatch.setattr(runs, "load_file", refuse)
    with pytest.raises(PolymodalError, match=r"weights\.safetensors: not a valid safetensors file: tensor 'w' lies "
                                             r"at bytes 0\.\.4398046511104 but the data holds 64 bytes"):
        pm.load(run)


def test_a_legacy_run_without_manifest_still_loads(pair, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pair[2], run)
    (run / "manifest.json").unlink()
    assert signature(pm.load(run)) == signature(pm.load(pair[2]))
    _edit_json("config.json", lambda d: d.pop("model") and None)(run, None)
    with pytest.raises(PolymodalError, match=r"config\.json has no 'model' key"):
        pm.load(run)
