"""`basicmotions`: smart-watch motion recordings as two time-series modalities (accelerometer, gyroscope).

BasicMotions (UEA multivariate time-series archive; the copy shipped in the sktime 1.2.0 wheel, BSD-3-Clause):
four students wore a smart watch while standing, walking, running and playing badminton, five recordings each;
every recording is 10 s of a 3-axis accelerometer and a 3-axis gyroscope sampled at 10 Hz (100 steps). The
official split is 40 train / 40 test recordings. The package ships the two original ``.ts`` files unchanged
(``_data/basicmotions/``, with LICENSE.md).

``load_basicmotions(split)`` -> DataFrame with ``accel`` and ``gyro`` (float32 arrays ``[100, 3]``, one per
cell: the time-series kind) and ``activity`` (the class name).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = ("train", "test")
CHANNELS = {"accel": (0, 1, 2), "gyro": (3, 4, 5)}


def _data_dir() -> Path:
    return Path(str(resources.files("polymodal.datasets") / "_data" / "basicmotions"))


def parse_ts(text: str) -> tuple[np.ndarray, list[str]]:
    """The sktime ``.ts`` format (equal-length, multivariate, labelled): ``[N, dims, T]`` float32 and labels.

    Header lines start with ``#`` (comments) or ``@`` (metadata); after ``@data`` each line holds the dimensions
    separated by ``:``, each a comma-separated series, and the class label last.
    """
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip().lower() == "@data") + 1
    except StopIteration:
        raise ValueError("not a .ts file: no '@data' line") from None
    series, labels = [], []
    for n, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        *dims, label = line.strip().split(":")
        try:
            series.append([np.array(d.split(","), dtype=np.float32) for d in dims])
        except ValueError as e:
            raise ValueError(f".ts line {n}: {e}") from None
        labels.append(label.strip())
    return np.asarray(series, dtype=np.float32), labels


@lru_cache(maxsize=2)
def _split_arrays(split: str) -> tuple[np.ndarray, tuple[str, ...]]:
    text = (_data_dir() / f"BasicMotions_{split.upper()}.ts").read_text()
    x, y = parse_ts(text)
    return x, tuple(y)


def load_basicmotions(split: str = "train") -> pd.DataFrame:
    """One split (``train`` / ``test``, 40 recordings each) as a DataFrame: ``accel``, ``gyro``, ``activity``."""
    if split not in SPLITS:
        raise ValueError(f"basicmotions has splits {SPLITS}, not {split!r}")
    x, y = _split_arrays(split)
    data = {name: [x[i, list(ch)].T.copy() for i in range(len(x))] for name, ch in CHANNELS.items()}
    data["activity"] = list(y)
    return pd.DataFrame(data)


def export_basicmotions(out_dir: str | Path, splits=SPLITS, limit: int | None = None) -> dict[str, Path]:
    """Write each split as ``<split>.parquet`` (``accel``/``gyro`` as JSON lists of ``[t][channel]``) plus
    LICENSE.md; returns the written tables."""
    import json
    import shutil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in splits:
        frame = load_basicmotions(split)
        if limit is not None:
            frame = frame.iloc[:limit]
        for c in CHANNELS:
            frame[c] = [json.dumps(np.round(a, 6).tolist()) for a in frame[c]]
        written[split] = out / f"{split}.parquet"
        frame.to_parquet(written[split], index=False)
    shutil.copy(_data_dir() / "LICENSE.md", out / "LICENSE.md")
    return written
