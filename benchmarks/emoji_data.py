"""The bundled emoji set as the retrieval benchmarks read it (``retrieval.py``, ``zero_shot_heldout.py``): one
frame of images, names and categories, the random 80 / 20 split, the frozen towers and the prompt templates."""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import ROOT

EMOJI = ROOT.parent / "shared" / "data" / "emoji" / "emoji_google_64.npz"
TOWERS = {"image": "efficientnet_lite0", "name": "minilm"}
TEMPLATES = ["{}", "an emoji of {}", "{} emoji"]


def emoji_frame() -> pd.DataFrame:
    z = np.load(EMOJI, allow_pickle=False)
    return pd.DataFrame({"image": list(z["images"]), "name": z["name"].tolist(), "category": z["category"].tolist()})


def emoji_split(seed: int = 0, holdout: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A random ``holdout`` share of the emoji held out (their categories are seen in training)."""
    df = emoji_frame()
    perm = np.random.default_rng(seed).permutation(len(df))
    k = int(round(holdout * len(df)))
    return df.iloc[np.sort(perm[k:])].reset_index(drop=True), df.iloc[np.sort(perm[:k])].reset_index(drop=True)
