"""Run folders: one on-disk format for every recipe, with the run type read once.

A run folder holds ``config.json`` (``run_type``, the polymodal version, the ``model`` and ``train`` configs),
``schema.json`` (columns, kinds, fitted preprocessing), ``weights.safetensors`` (the net's state dict; frozen
pretrained backbones leave their weights out, see ``encoders/pretrained/base.py``), ``report.json`` (training
history and decode report; optional when reading) and ``manifest.json`` (the sha256 of each of those files and the
polymodal version that wrote them). Loading reads JSON and safetensors only: nothing is unpickled and no code from
the folder runs. ``RUN_TYPES`` maps ``run_type`` to the estimator class that loads it.

Writing is atomic at the folder level. ``write_run`` writes the whole run into a temporary sibling folder
(``<name>.new-*``), then swaps it in with ``os.replace``: when the target exists it is first renamed aside to
``<name>.old-<ns>``, the new folder is renamed in, and the aside folder is deleted. At every instant the target
path is the complete old run, the complete new run, or (killed between the two renames) missing while the
complete old run sits in ``<name>.old-<ns>``; ``read_run`` then renames that one back (the newest, if several)
and loads it. Entries of the old folder that are not run files (``checkpoints/``) are carried into the new one
(hard links, else copies) before the swap. A killed save can leave a ``<name>.new-*`` folder behind; it is never
read and may be deleted. A folder that cannot be renamed (the working directory, a mount point) has its run files
replaced one by one instead, ordered against its manifest so that a save killed there leaves the old run, the new
run or a folder that ``read_run`` refuses as torn, never a mix that loads.

Reading checks that the files belong together: each file's sha256 must match ``manifest.json`` (a mismatch names
the file and says the folder was modified or torn), and every run file must be a plain file (not a link, not a
folder). The safetensors header is validated against the file size before any tensor is read, so a forged header
never allocates. A folder without ``manifest.json`` was written before manifests existed: it loads unchecked.
Every problem with a run folder is a ``PolymodalError`` that names the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from polymodal import __version__
from polymodal.data.schema import Schema
from polymodal.errors import PolymodalError
from polymodal.recipes.weights_file import check_safetensors
from polymodal.registry import Registry

NEEDED = ("config.json", "schema.json", "weights.safetensors")
MANIFEST = "manifest.json"
RUN_FILES = (*NEEDED, "report.json", MANIFEST)
RUN_TYPES: Registry[Any] = Registry("run type")

# safetensors dtypes and their sizes in bytes
def check_out(path: str | Path | None) -> None:
    """Refuse an output path that cannot hold a run folder, before any decoding or training."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise PolymodalError(f"cannot write a run to {str(p)!r}: it is a file; pass a folder path to --out / out=")
    parent = next((a for a in (p, *p.parents) if a.exists()), None)
    if parent is not None and not os.access(parent, os.W_OK):
        raise PolymodalError(f"cannot write a run under {str(parent)!r}: the folder is not writable")


# ------------------------------------------------------------------------------------------------ writing
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _carry(old: Path, new: Path) -> None:
    """Entries of the old run folder that are not run files (``checkpoints/``) go along into the new one."""
    for entry in old.iterdir():
        if entry.name in RUN_FILES or (new / entry.name).exists():
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry), new / entry.name)
        elif entry.is_dir():
            shutil.copytree(entry, new / entry.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(new / entry.name))


def _swap(new: Path, target: Path) -> None:
    """Put the complete folder ``new`` at ``target``; ``target`` is the old run or the new one at every instant."""
    if not os.path.lexists(target):
        os.replace(new, target)
        _fsync_dir(target.parent)
        return
    aside = target.with_name(f"{target.name}.old-{time.time_ns()}")
    os.replace(target, aside)  # killed after this: read_run renames the aside folder back
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(aside, target)
        raise
    _fsync_dir(target.parent)
    shutil.rmtree(aside, ignore_errors=True)


def _swappable(path: Path) -> bool:
    """Whether the folder ``path`` can be renamed aside: not the working directory, not a mount point."""
    if not path.is_dir():
        return True
    return not (os.path.ismount(path) or path.resolve() == Path.cwd().resolve())


def _replace_files(tmp: Path, target: Path) -> None:
    """The fallback of a folder that cannot be renamed: replace its run files one by one. The old manifest stays
    until the last step (or, without one, the new manifest comes first), so every mix of old and new files is
    refused by ``read_run``: the folder reads as the old run, the new run, or a refused torn one, never a mix."""
    names = [*NEEDED, "report.json"]
    order = [*names, MANIFEST] if os.path.lexists(target / MANIFEST) else [MANIFEST, *names]
    for name in order:
        os.replace(tmp / name, target / name)
    _fsync_dir(target)
    shutil.rmtree(tmp, ignore_errors=True)


def write_run(path: str | Path, config: dict[str, Any], schema: Schema, net: nn.Module, info: dict[str, Any]) -> Path:
    """Write a run folder atomically: into a temporary sibling, then swapped in (see the module docstring)."""
    path = given = Path(path)
    if path.is_symlink() and path.is_dir():
        path = path.resolve()
    if path.exists() and not path.is_dir():
        raise PolymodalError(f"cannot write a run to {str(path)!r}: it is a file; pass a folder path to --out")
    path = Path(os.path.abspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    in_place = not _swappable(path)
    # os.mkdir, not mkdtemp: the run folder gets the usual permissions (umask), not mkdtemp's 0o700
    prefix = ".polymodal-new-" if in_place else f"{path.name}.new-"
    tmp = (path if in_place else path.parent) / (prefix + secrets.token_hex(6))
    tmp.mkdir()
    if path.is_dir() and not in_place:
        shutil.copymode(path, tmp)
    swapping = False
    try:
        texts = {"config.json": json.dumps(config, indent=2), "schema.json": schema.to_json(),
                 "report.json": json.dumps(info, indent=2, default=str)}
        for name in ("config.json", "schema.json"):
            _write_bytes(tmp / name, texts[name].encode())
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp / "weights.safetensors"))
        with open(tmp / "weights.safetensors", "rb+") as f:
            os.fsync(f.fileno())
        _write_bytes(tmp / "report.json", texts["report.json"].encode())
        files = {name: _file_sha256(tmp / name) for name in (*NEEDED, "report.json")}
        manifest = {"polymodal_version": __version__, "sha256": files}
        _write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=2).encode())
        _fsync_dir(tmp)
        if in_place:
            _replace_files(tmp, path)
            return given
        if path.is_dir():
            _carry(path, tmp)
        swapping = True
        _swap(tmp, path)
    except BaseException:
        if not (swapping and not tmp.exists()):
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return given


# ------------------------------------------------------------------------------------------------ reading
def _recover(path: Path) -> None:
    """A save killed between its two renames left no folder at ``path`` and the complete old run aside."""
    if os.path.lexists(path):
        return
    try:
        asides = [p for p in path.parent.glob(f"{path.name}.old-*") if p.is_dir() and not p.is_symlink()]
    except OSError:
        return
    asides = [p for p in asides if p.name[len(path.name) + 5:].isdigit()]
    if not asides:
        return
    newest = max(asides, key=lambda p: int(p.name[len(path.name) + 5:]))
    try:
        os.replace(newest, path)
    except OSError as e:
        raise PolymodalError(f"{str(path)!r} is missing: a save was interrupted while replacing it, and the complete "
                             f"previous run is in {str(newest)!r}, which could not be renamed back ({e.strerror}); "
                             "rename it to the run's name") from None


def _plain_file(path: Path, name: str) -> int:
    """The size of the run file ``name``; a link, a folder or anything but a plain file is refused."""
    f = path / name
    try:
        st = os.lstat(f)
    except FileNotFoundError:
        raise PolymodalError(f"{path} is not a saved polymodal run: missing ['{name}'] "
                             f"(expected {list(NEEDED)})") from None
    except OSError as e:
        raise PolymodalError(f"cannot read {f}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise PolymodalError(f"{f} is a symbolic link: a run folder holds plain files (copy the file in, or load "
                             "the run it belongs to)")
    if stat.S_ISDIR(st.st_mode):
        raise PolymodalError(f"{f} is a folder, not a file: the run folder was modified")
    if not stat.S_ISREG(st.st_mode):
        raise PolymodalError(f"{f} is not a plain file: the run folder was modified")
    return st.st_size


def _read(path: Path, name: str) -> bytes:
    try:
        return (path / name).read_bytes()
    except OSError as e:
        raise PolymodalError(f"cannot read {path / name}: {e.strerror}") from None


def _json(path: Path, name: str, data: bytes) -> Any:
    what = "unreadable manifest" if name == MANIFEST else "unreadable config, schema or report"
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise PolymodalError(f"{path / name} is not valid JSON (not UTF-8 text): {what}; the run folder was "
                             "modified or is damaged") from None
    except ValueError as e:
        raise PolymodalError(f"{path / name} is not valid JSON ({e}): {what}; the run folder was modified or is "
                             "damaged") from None


def read_manifest(path: str | Path) -> dict[str, str] | None:
    """``{file: sha256}`` from a run folder's ``manifest.json``; ``None`` for a run written before manifests."""
    path = Path(path)
    if not os.path.lexists(path / MANIFEST):
        return None
    _plain_file(path, MANIFEST)
    m = _json(path, MANIFEST, _read(path, MANIFEST))
    files = m.get("sha256") if isinstance(m, dict) else None
    if (not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
            or not set(NEEDED) <= set(files) or not set(files) <= set(RUN_FILES) - {MANIFEST}):
        raise PolymodalError(f"{path / MANIFEST} is not a polymodal run manifest (it needs 'sha256': {{file: hash}} "
                             f"for {', '.join(NEEDED)}): the run folder was modified")
    return files


def _torn(path: Path, name: str, what: str) -> PolymodalError:
    return PolymodalError(f"{path / name} {what}: the run folder {str(path)!r} was modified or torn (its files do "
                          "not belong to the same saved run); save the run again (a file edited on purpose: delete "
                          f"{MANIFEST} to load the folder unchecked)")


def _check(path: Path, name: str, data: bytes | None, manifest: dict[str, str] | None) -> None:
    if manifest is None:
        return
    if name not in manifest:
        raise _torn(path, name, f"is not listed in {MANIFEST}")
    digest = _sha256(data) if data is not None else _file_sha256(path / name)
    if digest != manifest[name]:
        raise _torn(path, name, f"does not match its sha256 in {MANIFEST}")


def read_run(path: str | Path) -> tuple[dict[str, Any], Schema, dict[str, Any]]:
    """``(config, schema, info)`` of a saved run; raises a clear error when files are missing, unreadable, or do not
    belong together (``manifest.json``). Recovers a run whose save was killed between its two renames."""
    path = Path(path)
    _recover(path)
    if not path.is_dir():
        raise PolymodalError(f"{str(path)!r} is not a run folder (written by `polymodal fit --out` / `align --out`)")
    absent = [n for n in NEEDED if not os.path.lexists(path / n)]
    if absent:
        raise PolymodalError(f"{path} is not a saved polymodal run: missing {absent} (expected {list(NEEDED)})")
    manifest = read_manifest(path)
    raw: dict[str, bytes] = {}
    for name in ("config.json", "schema.json", "report.json"):
        if name == "report.json" and not os.path.lexists(path / name):
            if manifest is not None and name in manifest:
                raise _torn(path, name, f"is missing but listed in {MANIFEST}")
            continue
        _plain_file(path, name)
        raw[name] = _read(path, name)
        _check(path, name, raw[name], manifest)
    _plain_file(path, "weights.safetensors")
    _check(path, "weights.safetensors", None, manifest)
    cfg = _json(path, "config.json", raw["config.json"])
    if not isinstance(cfg, dict):
        raise PolymodalError(f"{path}/config.json holds a {type(cfg).__name__}, not an object with model / train "
                             "sections: not a polymodal run")
    lacking = [k for k in ("model", "train") if k not in cfg]
    if lacking:
        raise PolymodalError(f"{path}/config.json has no {' or '.join(repr(k) for k in lacking)} key (a run's config "
                             "needs model / train sections): not a polymodal run")
    if not isinstance(cfg["model"], dict) or not isinstance(cfg["train"], dict):
        raise PolymodalError(f"{path}/config.json: 'model' and 'train' must be objects (model / train sections)")
    sd = _json(path, "schema.json", raw["schema.json"])
    try:
        schema = Schema.from_dict(sd)
    except PolymodalError as e:
        raise PolymodalError(f"{path}/schema.json: {e}") from None
    except Exception as e:  # noqa: BLE001  (any shape of hand-edited JSON)
        raise PolymodalError(f"{path}/schema.json is not a polymodal schema: unreadable config, schema or report "
                             f"({type(e).__name__}: {e})".splitlines()[0]) from None
    info = _json(path, "report.json", raw["report.json"]) if "report.json" in raw else {}
    if not isinstance(info, dict):
        raise PolymodalError(f"{path}/report.json holds a {type(info).__name__}, not an object: unreadable report")
    return cfg, schema, info


def run_type(path: str | Path) -> str:
    """The ``run_type`` of a run folder (``"model"`` when the config does not say)."""
    cfg, _, _ = read_run(path)
    return str(cfg.get("run_type", "model"))


def load_weights(path: str | Path, net: nn.Module) -> nn.Module:
    """Load ``weights.safetensors`` into ``net``: the header is checked first (``check_safetensors``), then the
    file against ``manifest.json``, then the tensor names and shapes against the net's, each with a clear error."""
    path = Path(path)
    file = path / "weights.safetensors"
    _plain_file(path, file.name)
    header = check_safetensors(file)
    _check(path, file.name, None, read_manifest(path))
    expected = {k: list(v.shape) for k, v in net.state_dict().items()}
    missing = [k for k in expected if k not in header]
    extra = [k for k in header if k not in expected]

    def few(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")

    if missing or extra:
        parts = ([f"missing {len(missing)} tensor(s) the net needs: {few(missing)}"] if missing else []) + \
                ([f"{len(extra)} unexpected tensor(s): {few(extra)}"] if extra else [])
        raise PolymodalError(f"cannot load {file}: it does not fit the net built from config.json and schema.json: "
                             f"{'; '.join(parts)}")
    wrong = [f"{k} is {header[k][1]} in the file, {expected[k]} in the net"
             for k in expected if header[k][1] != expected[k]]
    if wrong:
        raise PolymodalError(f"cannot load {file}: tensor shapes do not fit the net built from config.json and "
                             f"schema.json: {few(wrong)}")
    try:
        net.load_state_dict(load_file(str(file)))
    except (SafetensorError, RuntimeError, OSError, ValueError, TypeError) as e:
        raise PolymodalError(f"cannot load {file}: {e}".splitlines()[0]) from None
    return net
