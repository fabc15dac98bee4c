"""``Estimator``: what every trained recipe is — a schema (how to read a table), configs, a net, a report."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

import pandas as pd

from polymodal import __version__
from polymodal.catalog.runs import record_run
from polymodal.config.io import build, dump, flatten_sections
from polymodal.config.model import ConfigError, ModelConfig, TrainConfig
from polymodal.data.chunks import decode_chunks
from polymodal.data.decode import Decoded, decode
from polymodal.data.kinds.base import DecodeReport
from polymodal.data.shards import open_source
from polymodal.data.schema import Schema
from polymodal.errors import PolymodalError, SchemaError
from polymodal.evaluate.scoring import embeddings
from polymodal.nets.multimodal import MultimodalNet
from polymodal.recipes.embed import embedding_frame, present_names, values_frame
from polymodal.recipes.runs import load_weights, read_run, write_run


class Estimator:
    """Base of ``Model`` and ``AlignedModel``: save / load in one run-folder format, embeddings, decoding."""

    run_type: ClassVar[str] = ""

    def __init__(self, schema: Schema, cfg: ModelConfig, train_cfg: TrainConfig, net: MultimodalNet,
                 info: dict | None = None) -> None:
        self.schema, self.cfg, self.train_cfg, self.net = schema, cfg, train_cfg, net
        self.info: dict[str, Any] = info or {}
        self.net.eval()

    @property
    def modalities(self) -> list[str]:
        return self.schema.names

    def _describe(self) -> str:
        return ", ".join(f"{s.name}:{s.kind}" for s in self.schema)

    # ------------------------------------------------------------------ data
    def decode(self, data: Any, *, on_error: str = "raise", labels: str = "auto", names=None, progress: bool = True,
               base_dir=None) -> Decoded:
        """The table decoded with this run's fitted schema (``data.decode.decode``)."""
        return decode(self.schema, data, on_error=on_error, labels=labels, names=names, progress=progress,
                      base_dir=base_dir)

    def decode_chunks(self, data: Any, *, on_error: str = "raise", labels: str = "auto", names=None, base_dir=None,
                      report=None):
        """The table decoded chunk by chunk with this run's schema (``data.chunks.decode_chunks``; also a folder of
        Parquet shards): what ``predict``, ``evaluate`` and ``embed`` iterate, so their memory is one chunk's."""
        return decode_chunks(self.schema, data, on_error=on_error, labels=labels, names=names, base_dir=base_dir,
                             report=report)

    # ------------------------------------------------------------------ shared space
    def embed_arrays(self, data: Any, *, on_error: str = "raise", names=None, base_dir=None, progress: bool = False):
        """(frame, {modality|fused: [N, E]}, {modality|fused: present[N]}, decode report) for the modalities whose
        columns the table has (a text-only table embeds with an image+text model); decoded in chunks."""
        source = open_source(data)
        names = present_names(self.schema, pd.DataFrame(columns=source.columns), names)
        report, frames, parts = DecodeReport(), [], []
        for frame, ds, _ in self.decode_chunks(source, on_error=on_error, labels="ignore", names=names,
                                               base_dir=base_dir, report=report):
            frames.append(frame)
            parts.append(embeddings(self.net, ds, names))
        emb = {k: np.concatenate([e[k] for e, _ in parts]) for k in parts[0][0]}
        present = {k: np.concatenate([p[k] for _, p in parts]) for k in parts[0][1]}
        return (frames[0] if len(frames) == 1 else pd.concat(frames)), emb, present, report

    def embed(self, data: Any, *, on_error: str = "raise") -> pd.DataFrame:
        """``emb_<modality>`` (shared space, L2-normalised; None where absent) and ``emb_fused`` per row, indexed
        like the input; needs a shared space (``align`` runs, or ``fit(..., align="clip")``). Modalities whose
        columns the table lacks are skipped."""
        frame, emb, present, report = self.embed_arrays(data, on_error=on_error)
        out = embedding_frame(emb, present, frame.index)
        out.attrs["decode_report"] = report.to_dict()
        return out

    def encode(self, modality: str, values: Sequence[Any]) -> np.ndarray:
        """Embed raw values of one modality: texts, image paths / bytes / arrays, audio paths, ... -> ``[n, E]``."""
        _, ds, _ = self.decode(values_frame(self.schema, modality, values), labels="ignore", names=[modality],
                               progress=False)
        missing = np.flatnonzero(~ds.present[modality].numpy())
        if len(missing):
            raise SchemaError(f"value #{int(missing[0])} for modality {modality!r} is empty: {values[int(missing[0])]!r}")
        emb, _ = embeddings(self.net, ds, [modality])
        return emb[modality]

    # ------------------------------------------------------------------ zero-shot

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the run folder atomically (``recipes/runs.py: write_run``): a save that is killed leaves the old run
        or the new one at ``path``, never a mix."""
        cfg = dump(self.cfg, self.train_cfg, run_type=self.run_type, polymodal_version=__version__)
        saved = write_run(path, cfg, self.schema, self.net, self.info)
        if self.info.get("cohort"):  # trained on a catalogue cohort: register the run there (catalog/runs.py)
            record_run(self.info["cohort"], saved)
        return saved

    @classmethod
    def from_run(cls, path: str | Path, cfg: dict[str, Any], schema: Schema, info: dict[str, Any]) -> "Estimator":
        kind = cfg.get("run_type", "model")
        if kind != cls.run_type:
            raise PolymodalError(f"{path} holds a {kind!r} run, not a {cls.run_type!r} run; load it with pm.load")
        saved_by = f"saved by polymodal {cfg.get('polymodal_version', '?')}; this is {__version__}"
        try:
            model_cfg, train_cfg = build(flatten_sections(cfg))
        except ConfigError as e:
            raise PolymodalError(f"{path}/config.json: {e} ({saved_by})") from None
        except Exception as e:  # noqa: BLE001  (a hand-edited config of any shape)
            raise PolymodalError(f"{path}/config.json is not a valid run config ({type(e).__name__}: {e}; "
                                 f"{saved_by})".splitlines()[0]) from None
        try:
            net = MultimodalNet(schema, model_cfg)
        except PolymodalError as e:
            raise PolymodalError(f"{path}: cannot build the net from config.json and schema.json: {e}") from None
        except Exception as e:  # noqa: BLE001  (fitted options in schema.json that no encoder accepts)
            raise PolymodalError(f"{path}: cannot build the net from config.json and schema.json ({type(e).__name__}: "
                                 f"{e}; {saved_by})".splitlines()[0]) from None
        net = load_weights(path, net)
        return cls(schema, model_cfg, train_cfg, net, info)

    @classmethod
    def load(cls, path: str | Path) -> "Estimator":
        return cls.from_run(path, *read_run(path))
