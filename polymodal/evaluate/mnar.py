"""Missing-not-at-random (MNAR) missingness: patterns whose missingness depends on the label or on the content.

MultiModN (Swamy et al. 2023) shows that a model trained where a modality's absence *predicts* the label learns to
read the absence itself; when the pattern changes at test time, its accuracy collapses. The generators here make
such patterns reproducibly (exact counts, seeded) so that a train-time pattern and a shifted test-time pattern can
be compared:

* ``depends_on="label"``: rows of ``classes`` lose the modality more often; with ``strength=1`` only they do.
* ``depends_on="content"``: the rows with the highest content score lose it (self-masking MNAR; e.g. the loudest
  clips, the brightest images) -- ``content_score`` gives a per-kind score from the decoded arrays.
* ``depends_on="random"``: missing completely at random (the MCAR reference), whatever ``strength``.

``strength`` mixes the dependent part with MCAR: the missing rows are ``strength * rate * n`` dependent picks plus
``(1 - strength) * rate * n`` uniform picks among the others, so the overall rate is ``rate`` in every case.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import mutual_info_score

from polymodal.errors import PolymodalError

DEPENDS_ON = ("label", "content", "random")


@dataclass(frozen=True)
class MNARPattern:
    modality: str
    rate: float = 0.3
    depends_on: str = "label"
    classes: tuple[int, ...] | None = None  # label mode: encoded classes that lose the modality (default: first half)
    strength: float = 1.0

    def __post_init__(self) -> None:
        if self.depends_on not in DEPENDS_ON:
            raise PolymodalError(f"MNAR depends_on must be one of {DEPENDS_ON}, got {self.depends_on!r}")
        if not 0.0 <= self.rate < 1.0:
            raise PolymodalError(f"MNAR rate must be in [0, 1), got {self.rate}")
        if not 0.0 <= self.strength <= 1.0:
            raise PolymodalError(f"MNAR strength must be in [0, 1], got {self.strength}")

    def shifted(self, n_classes: int | None = None) -> "MNARPattern":
        """The test-time shift: label mode -> the complementary classes lose the modality; content mode -> the
        *lowest* scores do (encoded as a negative strength-free flip via ``classes=(-1,)``)."""
        if self.depends_on == "label":
            if n_classes is None:
                raise PolymodalError("shifting a label-dependent pattern needs the number of classes")
            chosen = set(self.targeted(n_classes))
            return replace(self, classes=tuple(c for c in range(n_classes) if c not in chosen))
        if self.depends_on == "content":
            return replace(self, classes=(-1,))  # marker: invert the score
        return self

    def targeted(self, n_classes: int) -> tuple[int, ...]:
        return self.classes if self.classes is not None else tuple(range(n_classes // 2 or 1))


def _pick(rng: np.random.Generator, candidates: np.ndarray, k: int) -> np.ndarray:
    k = max(0, min(int(k), len(candidates)))
    return rng.choice(candidates, size=k, replace=False) if k else candidates[:0]


def missing_rows(
    pattern: MNARPattern,
    n: int,
    *,
    labels: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    n_classes: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Boolean ``[n]``: True where ``pattern`` hides the modality. ``labels`` are encoded ints (label mode);
    ``scores`` are per-row content scores (content mode)."""
    rng = np.random.default_rng(seed)
    total = int(round(pattern.rate * n))
    dependent = int(round(pattern.strength * total)) if pattern.depends_on != "random" else 0
    idx = np.arange(n)
    if pattern.depends_on == "label":
        if labels is None:
            raise PolymodalError("a label-dependent MNAR pattern needs the labels")
        labels = np.asarray(labels)
        k = n_classes if n_classes is not None else int(labels.max()) + 1
        pool = idx[np.isin(labels, pattern.targeted(k))]
        if dependent > len(pool):
            raise PolymodalError(
                f"MNAR rate {pattern.rate} x strength {pattern.strength} hides {dependent} rows but classes "
                f"{list(pattern.targeted(k))} have only {len(pool)}: lower the rate or target more classes"
            )
        chosen = _pick(rng, pool, dependent)
    elif pattern.depends_on == "content":
        if scores is None:
            raise PolymodalError("a content-dependent MNAR pattern needs content scores (see content_score)")
        s = np.asarray(scores, dtype=np.float64)
        if pattern.classes == (-1,):
            s = -s
        order = np.argsort(-s, kind="stable")  # highest score first
        chosen = order[:dependent]
    else:
        chosen = idx[:0]
    rest = np.setdiff1d(idx, chosen)
    chosen = np.concatenate([chosen, _pick(rng, rest, total - len(chosen))])
    out = np.zeros(n, dtype=bool)
    out[chosen.astype(np.int64)] = True
    return out


def content_score(kind: str, arrays: dict[str, torch.Tensor]) -> np.ndarray:
    """One number per row summarising a modality's content, for content-dependent MNAR:
    image/depth mean pixel value, audio RMS, text length, tabular mean numeric value, time-series std."""
    if kind in ("image", "depth"):
        return arrays["pixels"].float().mean(dim=(1, 2, 3)).numpy()
    if kind == "audio":
        w, length = arrays["wave"].float(), arrays["length"].clamp(min=1)
        return (w.pow(2).sum(1) / length).sqrt().numpy()
    if kind == "text":
        return arrays["length"].float().numpy()
    if kind == "tabular":
        m = arrays["num_mask"].float()
        return ((arrays["num"] * m).sum(1) / m.sum(1).clamp(min=1)).numpy()
    if kind == "timeseries":
        x, length = arrays["series"].float(), arrays["length"]
        real = (torch.arange(x.shape[1])[None, :] < length[:, None]).float()[..., None]
        mean = (x * real).sum(1) / real.sum(1).clamp(min=1)
        var = ((x - mean[:, None]) ** 2 * real).sum(1) / real.sum(1).clamp(min=1)
        return var.sqrt().mean(1).numpy()
    raise PolymodalError(f"no content score for modality kind {kind!r}")


def dependence(missing: np.ndarray, labels: np.ndarray) -> dict[str, object]:
    """How much a missingness pattern says about the label: mutual information (nats) and per-class rates."""
    missing, labels = np.asarray(missing, dtype=bool), np.asarray(labels)
    rates = {int(c): float(missing[labels == c].mean()) for c in np.unique(labels)}
    return {"rate": float(missing.mean()), "mutual_info": float(mutual_info_score(labels, missing)), "per_class": rates}


def hide_in_frame(frame: pd.DataFrame, columns: list[str], missing: np.ndarray) -> pd.DataFrame:
    """A copy of ``frame`` with ``columns`` emptied (None) on the rows where ``missing`` is True: the table a user
    would have if the modality had not been recorded there."""
    missing = np.asarray(missing, dtype=bool)
    if len(missing) != len(frame):
        raise ValueError(f"missing mask has {len(missing)} rows; the table has {len(frame)}")
    out = frame.copy()
    for c in columns:
        col = out[c].astype(object)
        col[missing] = None
        out[c] = col
    return out
