"""Shapley / leave-one-out attributions against closed forms on a model whose coalition values are known."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from polymodal.data.dataset import DecodedDataset
from polymodal.evaluate.attribution import coalition_values, modality_attribution, per_class_summary, shapley_from_values
from polymodal.evaluate.subsets import modality_subsets


class AdditiveNet(torch.nn.Module):
    """Logits = sum of per-row logit vectors over the modalities present in the batch."""

    has_task = True

    def __init__(self, parts):
        super().__init__()
        self.parts = parts

    def forward(self, batch):
        logits = sum(self.parts[m][batch.index] * p[:, None].float() for m, p in batch.present.items())
        return SimpleNamespace(logits=logits)


class Additive:
    """A ``Scorable`` (``net`` + ``schema``) whose logits are the sum of per-modality logit vectors over the
    modalities kept: a game with known Shapley values."""

    def __init__(self, n=6, names=("a", "b", "c"), c=3, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.modalities = list(names)
        self.parts = {m: torch.randn(n, c, generator=g) for m in names}
        self.net = AdditiveNet(self.parts)
        self.schema = SimpleNamespace(task="classify", classes=[f"k{i}" for i in range(c)], target_stats=None,
                                      names=list(names))
        self.n = n

    def dataset(self):
        """Every modality present on every row (the inputs themselves are never read)."""
        return DecodedDataset({m: ({"x": np.zeros((self.n, 1), np.float32)}, np.ones(self.n, bool))
                               for m in self.modalities})

    def logits(self, keep=None):
        keep = self.modalities if keep is None else keep
        return sum(self.parts[m] for m in keep)


def test_shapley_matches_the_two_player_closed_form():
    v = {frozenset(): np.array([0.1]), frozenset("a"): np.array([0.5]), frozenset("b"): np.array([0.2]),
         frozenset("ab"): np.array([0.9])}
    phi = shapley_from_values(["a", "b"], v)
    assert phi["a"] == pytest.approx(0.5 * (0.5 - 0.1) + 0.5 * (0.9 - 0.2))
    assert phi["b"] == pytest.approx(0.5 * (0.2 - 0.1) + 0.5 * (0.9 - 0.5))


def test_shapley_is_efficient_symmetric_and_loo_is_a_difference():
    model = Additive()
    ds = model.dataset()
    att = modality_attribution(model, ds)
    total = sum(att["shapley"].values())
    assert np.allclose(total, att["value_all"] - att["value_empty"])  # efficiency
    full = model.logits()
    pred = full.argmax(-1)
    p_full = full.softmax(-1).gather(1, pred[:, None])[:, 0].numpy()
    p_wo_a = model.logits(keep=("b", "c")).softmax(-1).gather(1, pred[:, None])[:, 0].numpy()
    assert np.allclose(att["loo"]["a"], p_full - p_wo_a)
    # a modality that never changes the logits gets exactly zero
    model.parts["c"] = torch.zeros_like(model.parts["c"])
    att = modality_attribution(model, ds)
    assert np.allclose(att["shapley"]["c"], 0) and np.allclose(att["loo"]["c"], 0)


def test_loo_only_mode_and_the_shapley_limit():
    model = Additive(names=tuple("abcdef"))
    ds = model.dataset()
    att = modality_attribution(model, ds)  # 6 > 5 modalities: leave-one-out only
    assert "shapley" not in att and set(att["loo"]) == set("abcdef")
    with pytest.raises(ValueError, match="leave-one-out"):
        modality_attribution(model, ds, shapley=True)


def test_coalition_values_cover_every_subset_and_per_class_summary():
    model = Additive()
    ds = model.dataset()
    values, pred = coalition_values(model, ds)
    assert len(values) == 1 + len(modality_subsets(model.modalities))
    assert np.allclose(values[frozenset()], 1 / 3)
    att = modality_attribution(model, ds)
    summary = per_class_summary(model, att, labels=np.array([0, 0, 1, 1, 2, 2]))
    assert set(summary) == {"shapley", "loo"} and set(summary["shapley"]) == {"k0", "k1", "k2"}
    assert summary["shapley"]["k0"]["a"] == pytest.approx(float(att["shapley"]["a"][:2].mean()))


def test_explain_on_a_trained_model(xor_model):
    from polymodal.evaluate.attribution import explain
    from tests.xor_data import xor_table

    table = xor_table(40, seed=2)
    table.loc[0, ["b1", "b2"]] = np.nan  # modality b absent on row 0 -> it contributes nothing
    out, summary = explain(xor_model, table)
    assert list(out.index) == list(table.index) and summary["method"] == "shapley"
    # (up to float round-off: the batch rows an encoder runs on differ between coalitions)
    assert abs(out.loc[0, "shapley_b"]) < 1e-3 and abs(out.loc[0, "loo_b"]) < 1e-3
    # both modalities matter for this label (each carries one bit)
    assert summary["mean_abs"]["a"] > 0.05 and summary["mean_abs"]["b"] > 0.05
    assert summary["grouped_by"] == "true" and set(summary["per_class"]["shapley"]) <= {"c0", "c1", "c2", "c3"}
