"""Two saved runs that differ in everything a mix of them could show, and a signature to tell them apart (shared by
``test_run_crash.py`` and ``test_run_tampering.py``)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

import polymodal as pm
from polymodal.data.schema import Schema
from polymodal.errors import PolymodalError
from polymodal.recipes.model import Model
from tests.xor_data import GROUPS, xor_table

TABLE = xor_table(12, seed=5)


def make_pair(tmp_path_factory):
    """(old, new, folder of old saved): they differ in weights, class order, train config and report."""
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
