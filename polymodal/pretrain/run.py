"""``PretrainedModel``: a pre-trained run (type ``pretrain``) — save / load, reconstruction losses, ``generate``.

The run folder is ``fit``'s (``recipes/runs.py``): ``config.json`` holds ``run_type: "pretrain"``, the ``model`` /
``train`` sections and a ``pretrain`` section (``PretrainSpec``: masking options, decoder token counts, target
statistics); the weights are ``PretrainNet``'s, whose ``encoders.*`` / ``fusion.*`` names are ``fit``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal import __version__
from polymodal.config.io import build, dump, flatten_sections
from polymodal.config.model import ConfigError, ModelConfig, TrainConfig
from polymodal.data.decode import decode
from polymodal.data.schema import Schema
from polymodal.data.table import read_table
from polymodal.errors import PolymodalError, unknown_message
from polymodal.pretrain.net import PretrainNet, PretrainSpec
from polymodal.recipes.runs import load_weights, read_run, write_run


class PretrainedModel:
    """A pre-trained net with its schema, configs and ``PretrainSpec``; ``PretrainedModel.load(path)`` reads one.

    Not in ``RUN_TYPES`` (``pm.load``): the loader sits below this layer, and ``pm.load`` names ``pretrain`` as a
    run type it does not load (``tests/recipes/test_runs.py``); registering it is the lead's call."""

    run_type = "pretrain"

    def __init__(self, schema: Schema, cfg: ModelConfig, train_cfg: TrainConfig, spec: PretrainSpec,
                 net: PretrainNet, info: dict[str, Any] | None = None) -> None:
        self.schema, self.cfg, self.train_cfg, self.spec, self.net = schema, cfg, train_cfg, spec, net
        self.info = info or {}
        self.net.eval()

    def __repr__(self) -> str:
        mods = ", ".join(f"{s.name}:{s.kind}" for s in self.schema)
        return f"PretrainedModel(modalities=[{mods}], masking={self.spec.masking!r}, mask_ratio={self.spec.mask_ratio})"

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        cfg = dump(self.cfg, self.train_cfg, run_type=self.run_type, polymodal_version=__version__)
        cfg["pretrain"] = self.spec.to_dict()
        return write_run(path, cfg, self.schema, self.net, self.info)

    @classmethod
    def from_run(cls, path: str | Path, cfg: dict[str, Any], schema: Schema, info: dict[str, Any]):
        kind = cfg.get("run_type", "model")
        if kind != cls.run_type:
            raise PolymodalError(f"{path} holds a {kind!r} run, not a pre-trained one (polymodal pretrain --out)")
        try:
            model_cfg, train_cfg = build(flatten_sections({"model": cfg["model"], "train": cfg["train"]}))
            spec = PretrainSpec.from_dict(dict(cfg.get("pretrain") or {}))
            net = PretrainNet(schema, model_cfg, spec)
        except (ConfigError, ValueError, TypeError) as e:
            raise PolymodalError(f"{path}/config.json: cannot build the pre-trained net: {e}".splitlines()[0]) from None
        return cls(schema, model_cfg, train_cfg, spec, load_weights(path, net), info)

    @classmethod
    def load(cls, path: str | Path) -> "PretrainedModel":
        return cls.from_run(path, *read_run(path))

    # ------------------------------------------------------------------ use
    def decode(self, data: Any, *, on_error: str = "raise", progress: bool = False):
        """The table decoded with the run's schema; a modality whose columns the table lacks is absent everywhere."""
        table = read_table(data)
        frame = table.frame.copy()
        for s in self.schema:
            for col in s.columns:
                if col not in frame.columns:
                    frame[col] = None
        return decode(self.schema, frame, on_error=on_error, labels="ignore", progress=progress,
                      base_dir=table.base_dir)

    def _check_target(self, target: str) -> None:
        if target not in self.schema.names:
            raise PolymodalError(unknown_message("target modality", target, self.schema.names))

    @torch.no_grad()
    def predict_modality(self, data: Any, target: str, *, batch_size: int = 64, on_error: str = "raise"):
        """(frame, predictions ``[N, tokens, out_dim]``, its target's true values or None per row): every token of
        ``target`` predicted from the other modalities alone (``target`` is hidden, whether the row has it or not)."""
        self._check_target(target)
        frame, ds, _ = self.decode(data, on_error=on_error)
        self.net.eval()
        preds, trues = [], []
        for start in range(0, len(ds), batch_size):
            batch = ds[list(range(start, min(start + batch_size, len(ds))))]
            out = self.net(batch, self.net.all_visible(batch, target), decode=[target])
            preds.append(out.preds[target])
            trues.append(torch.where(batch.present[target].view(-1, *[1] * (out.targets[target].dim() - 1)),
                                     out.targets[target], torch.zeros_like(out.targets[target])))
        present = ds.present[target][torch.as_tensor(ds.rows)].numpy()
        return frame, torch.cat(preds), torch.cat(trues), present

    @torch.no_grad()
    def losses(self, data: Any, *, batch_size: int = 64, seed: int = 0, on_error: str = "raise") -> dict[str, float]:
        """The mean reconstruction loss per modality on a table, under the run's masking (seeded draws)."""
        _, ds, _ = self.decode(data, on_error=on_error)
        self.net.eval()
        sums: dict[str, list[float]] = {}
        for i, start in enumerate(range(0, len(ds), batch_size)):
            batch = ds[list(range(start, min(start + batch_size, len(ds))))]
            out = self.net(batch, rng=np.random.default_rng([seed, i]))
            for m, v in out.losses.items():
                sums.setdefault(m, []).append(float(v))
        return {m: float(np.mean(v)) for m, v in sums.items()}

    def generate(self, data: Any, target: str, out: str | Path, *, on_error: str = "raise") -> pd.DataFrame:
        """Predict ``target`` for every row from its other modalities and write one file per row into ``out``:
        PNG for images and depth maps, WAV for audio (inverse mel, Griffin-Lim), ``.npy`` otherwise. Returns the
        frame of written paths (column ``path``), indexed like the input."""
        from polymodal.pretrain.generate import write_predictions

        frame, preds, _, _ = self.predict_modality(data, target, on_error=on_error)
        spec = self.schema.modalities[target]
        paths = write_predictions(self.net.targets[target], spec.kind, preds, Path(out), target)
        return pd.DataFrame({"path": [str(p) for p in paths]}, index=frame.index)
