"""``AlignedModel``: a trained shared embedding space — embed, zero-shot, prototypes, retrieval evaluation.

    emb = pm.align("pairs.parquet", use=["image", "text"], objective="siglip", out="runs/emb")
    emb.embed(df)                                   # emb_<modality> + emb_fused columns
    emb.zero_shot(images, labels=["cat", "dog"])    # through the text tower, with prompt templates
    emb.prototype_classify(support, "label", query) # class means of a few labelled examples (any modality)
    emb.evaluate(test, label="digit")               # R@1/5/10, median rank, class-level, modality gap
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal.data.table import read_table
from polymodal.errors import PolymodalError, SchemaError
from polymodal.evaluate.scoring import FUSED, embeddings
from polymodal.nets.multimodal import MultimodalNet
from polymodal.recipes.embed import modality_of_kind
from polymodal.recipes.estimator import Estimator
from polymodal.recipes.runs import RUN_TYPES

DEFAULT_TEMPLATES = ("{}",)


@RUN_TYPES.register("align")
class AlignedModel(Estimator):
    """Encoders + projections into one shared space, with the schema that says how to read a table."""

    run_type = "align"

    def __repr__(self) -> str:
        a, head = self.cfg.align, self.net.align_head
        locked = f", lock={head.lock!r}" if head.lock is not None else ""
        return (f"AlignedModel(modalities=[{self._describe()}], objective={a.objective.name!r}, "
                f"embed_dim={head.embed_dim}{locked})")

    def text_prototypes(self, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> np.ndarray:
        """One normalised vector per label: the mean over prompt templates of the text tower's embeddings."""
        labels = [str(x) for x in labels]
        if not labels:
            raise PolymodalError("zero-shot needs at least one label")
        for t in templates:
            if "{}" not in t:
                raise PolymodalError(f"prompt template {t!r} has no '{{}}' placeholder for the label")
        text = modality_of_kind(self.schema, "text")
        vecs = np.stack([self.encode(text, [t.format(lab) for lab in labels]) for t in templates], 0).mean(0)
        return vecs / np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)

    def zero_shot(
        self,
        data: Any,
        labels: Sequence[str],
        *,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        modality: str | None = None,
        on_error: str = "raise",
    ) -> pd.DataFrame:
        """Classify rows of ``modality`` (default: the first non-text one the table has) into ``labels``."""
        protos = self.text_prototypes(labels, templates)
        return self._classify(data, [str(x) for x in labels], protos, modality, on_error, exclude_kind="text")

    def prototypes(self, support: Any, label: str, *, modality: str | None = None, on_error: str = "raise"):
        """(classes, [C, E] class means) of the labelled ``support`` rows of ``modality`` (few-shot)."""
        table = read_table(support)
        frame = table.frame
        if label not in frame.columns:
            raise SchemaError(f"label column {label!r} not found in the support table; it has {list(frame.columns)}")
        frame = frame[frame[label].notna()]
        m = modality or self._default_modality(frame, exclude_kind=None)
        _, emb, present, _ = self.embed_arrays(frame, on_error=on_error, names=[m], base_dir=table.base_dir)
        y = frame[label].to_numpy()[present[m]]
        v = emb[m][present[m]]
        if len(v) == 0:
            raise PolymodalError(f"no support row has modality {m!r}")
        classes = sorted(pd.unique(y).tolist(), key=str)
        means = np.stack([v[y == c].mean(0) for c in classes])
        return classes, means / np.clip(np.linalg.norm(means, axis=1, keepdims=True), 1e-12, None)

    def prototype_classify(
        self, support: Any, label: str, data: Any, *, modality: str | None = None, on_error: str = "raise"
    ) -> pd.DataFrame:
        """Nearest class mean (prototype) of a few labelled ``support`` examples, for modalities without text."""
        frame = read_table(support).frame
        m = modality or self._default_modality(frame.drop(columns=[label], errors="ignore"), exclude_kind=None)
        classes, protos = self.prototypes(support, label, modality=m, on_error=on_error)
        return self._classify(data, classes, protos, m, on_error)

    def _default_modality(self, frame: pd.DataFrame, exclude_kind: str | None) -> str:
        for s in self.schema:
            if s.kind != exclude_kind and all(c in frame.columns for c in s.columns):
                return s.name
        raise SchemaError(
            f"the table has no column of a modality to classify (model reads {[(s.name, s.columns) for s in self.schema]}"
            f"{'' if exclude_kind is None else ', excluding ' + exclude_kind}); it has {list(frame.columns)}"
        )

    def _classify(self, data, classes, protos, modality, on_error, exclude_kind=None) -> pd.DataFrame:
        table = read_table(data)
        m = modality or self._default_modality(table.frame, exclude_kind)
        frame, emb, present, report = self.embed_arrays(table, on_error=on_error, names=[m])
        scores = emb[m] @ protos.T
        pred = np.asarray(classes, dtype=object)[scores.argmax(1)]
        scores = np.where(present[m][:, None], scores, np.nan)
        cols = {"prediction": np.where(present[m], pred, None)}
        cols.update({f"score_{c}": scores[:, i] for i, c in enumerate(classes)})
        out = pd.DataFrame(cols, index=frame.index)  # built at once: no column-by-column insertion
        out.attrs["modality"] = m
        out.attrs["decode_report"] = report.to_dict()
        return out

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, data: Any, *, label: str | None = None, on_error: str = "raise", gap_before: bool = True) -> dict:
        """Retrieval between every ordered pair of modalities (R@1/5/10, median rank; class-level with labels)
        and the modality gap after alignment and, with ``gap_before``, of the same net at initialisation."""
        from polymodal.evaluate.retrieval import gap_report, pairwise_report  # lazily: evaluate/ imports torchmetrics

        table = read_table(data)
        frame = table.frame
        label = label if label is not None else (self.schema.label if self.schema.label in frame.columns else None)
        if label is not None and label not in frame.columns:
            raise SchemaError(f"label column {label!r} not found; the table has {list(frame.columns)}")
        frame, emb, present, report = self.embed_arrays(table, on_error=on_error)
        emb.pop(FUSED), present.pop(FUSED)
        labels = None if label is None else frame[label].to_numpy()
        res: dict[str, Any] = {
            "n": len(frame),
            "label": label,
            "retrieval": pairwise_report(emb, present, labels),
            "modality_gap": {"after": gap_report(emb, present)},
        }
        if gap_before:
            torch.manual_seed(self.train_cfg.seed)
            fresh = MultimodalNet(self.schema, self.cfg)
            _, ds, _ = self.decode(table, on_error=on_error, labels="ignore", names=list(emb), progress=False)
            e0, p0 = embeddings(fresh, ds, list(emb))
            e0.pop(FUSED), p0.pop(FUSED)
            res["modality_gap"]["before"] = gap_report(e0, p0)
        res["decode_report"] = report.to_dict()
        return res
