"""Tampered run folders are clear errors: 15+ damaged folders, each a ``PolymodalError`` that names the file, and
nothing else (no allocation from a forged header, no raw traceback)."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import sys

import pytest
import torch
from safetensors.torch import save_file

import polymodal as pm
from polymodal.errors import PolymodalError
from polymodal.recipes import runs
from tests.recipes.saved_pair import make_pair, signature


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return make_pair(tmp_path_factory)


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
