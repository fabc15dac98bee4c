import numpy as np
import pandas as pd
import pytest
import torch

import polymodal as pm
from polymodal.config import AlignConfig
from polymodal.heads.projection import AlignHead
from polymodal.recipes.align import AlignedModel
from polymodal.heads.projection import alignment_loss, build_objective, fuse
from polymodal.config.model import ConfigError
from polymodal.errors import PolymodalError, SchemaError
from polymodal.objectives import PairwiseLoss
from polymodal.types import Tokens

from .conftest import GROUP, paired_table

FAST = dict(epochs=12, batch_size=64, lr=5e-3, dim=32, embed_dim=16, progress=False, seed=0)


def _tokens(x: torch.Tensor, present: torch.Tensor) -> Tokens:
    return Tokens(x[:, None, :], torch.ones(x.shape[0], 1, dtype=torch.bool), present)


def test_head_vectors_are_normalised_and_zero_when_absent():
    head = AlignHead(["a", "b"], 8, 4)
    present = torch.tensor([True, False, True])
    emb = head({"a": _tokens(torch.randn(3, 8), present), "b": _tokens(torch.randn(3, 8), torch.ones(3, dtype=torch.bool))})
    assert emb["a"].shape == (3, 4)
    assert torch.allclose(emb["a"][[0, 2]].norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.all(emb["a"][1] == 0)
    f = fuse(emb, {"a": present, "b": torch.ones(3, dtype=torch.bool)})
    assert torch.allclose(f[1], emb["b"][1], atol=1e-6)  # only b present: fused = b


def test_loss_uses_only_rows_where_both_are_present():
    head = AlignHead(["a", "b"], 8, 4, objective="clip")
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    present = {"a": torch.tensor([1, 1, 1, 0, 1, 1], dtype=torch.bool), "b": torch.tensor([1, 1, 1, 1, 0, 1], dtype=torch.bool)}
    rows = present["a"] & present["b"]
    got = alignment_loss(head.objective, {"a": a, "b": b}, present)
    want = head.objective(a[rows], b[rows])
    assert torch.allclose(got, want)
    # changing an absent row changes nothing
    a2 = a.clone()
    a2[3] = 100.0
    assert torch.allclose(alignment_loss(head.objective, {"a": a2, "b": b}, present), got)
    # fewer than 2 complete rows: a zero that still has a graph
    none = {"a": torch.tensor([1, 0, 0, 0, 0, 0], dtype=torch.bool), "b": present["b"]}
    z = alignment_loss(head.objective, {"a": a.requires_grad_(), "b": b}, none)
    assert float(z.detach()) == 0.0 and z.requires_grad


def test_pair_objective_over_three_modalities_becomes_pairwise():
    assert isinstance(build_objective("clip", 3), PairwiseLoss)
    assert not isinstance(build_objective("clip", 2), PairwiseLoss)
    assert type(build_objective("symile", 3)).__name__ == "SymileLoss"
    with pytest.raises(ConfigError, match="unknown alignment objective"):
        AlignConfig(objective="nope").validate()


def test_align_learns_retrieval_and_roundtrips(tmp_path):
    train, test = paired_table(320, seed=0), paired_table(60, seed=1)
    model = pm.align(train, group=GROUP, label="cls", out=tmp_path / "run", **FAST)
    assert isinstance(model, AlignedModel) and model.modalities == ["a", "b"]
    res = model.evaluate(test)
    r = res["retrieval"]
    assert set(r) == {"a->b", "b->a"}
    # 60 candidates: chance R@1 = 1/60; a linear relation must be found
    assert r["a->b"]["instance"]["R@1"] > 0.4, r
    assert r["b->a"]["instance"]["R@5"] > 0.7, r
    assert "class" in r["a->b"] and res["label"] == "cls"
    assert res["modality_gap"]["after"]["a|b"] < res["modality_gap"]["before"]["a|b"]
    loaded = pm.load(tmp_path / "run")
    assert isinstance(loaded, AlignedModel)
    e1, e2 = model.embed(test), loaded.embed(test)
    assert list(e1.columns) == ["emb_a", "emb_b", "emb_fused"]
    np.testing.assert_allclose(np.stack(e1.emb_a), np.stack(e2.emb_a), atol=1e-6)


def test_embed_skips_absent_columns_and_marks_missing_values(tmp_path):
    train = paired_table(80)
    model = pm.align(train, group=GROUP, **{**FAST, "epochs": 1})
    only_a = train[GROUP["a"]].head(5)
    e = model.embed(only_a)
    assert list(e.columns) == ["emb_a", "emb_fused"]
    np.testing.assert_allclose(np.stack(e.emb_a), np.stack(e.emb_fused), atol=1e-6)
    holes = train.head(4).copy()
    holes.loc[holes.index[1], GROUP["b"]] = np.nan
    e = model.embed(holes)
    assert e.emb_b.iloc[1] is None and e.emb_a.iloc[1] is not None


def test_align_errors_are_clear():
    train = paired_table(40)
    with pytest.raises(SchemaError, match="at least 2 modalities"):
        pm.align(train[GROUP["a"]], group={"a": GROUP["a"]}, **FAST)
    with pytest.raises(SchemaError, match="unknown modalities"):
        pm.align(train, group=GROUP, modalities=["a", "zz"], **FAST)
    with pytest.raises(ConfigError, match="unknown option"):
        pm.align(train, group=GROUP, epohcs=3)


def test_prototype_classification(pairs):
    model = pm.align(pairs, group=GROUP, label="cls", **FAST)
    support, query = pairs.iloc[:120], paired_table(80, seed=3)
    pred = model.prototype_classify(support, "cls", query.drop(columns=["cls"]), modality="a")
    assert pred.attrs["modality"] == "a"
    acc = float((pred.prediction.astype(int).to_numpy() == query.cls.to_numpy()).mean())
    assert acc > 0.5, acc  # 4 classes: chance 0.25


def test_zero_shot_through_the_text_tower(captions):
    model = pm.align(captions, label="label", kinds={"caption": "text"}, **{**FAST, "epochs": 15})
    test = captions.sample(60, random_state=1)
    pred = model.zero_shot(test[[c for c in test.columns if c.startswith("x")]], ["red", "green", "blue", "gray"],
                           templates=["{}"])
    acc = float((pred.prediction == test.label.to_numpy()).mean())
    assert acc > 0.8, acc
    assert [c for c in pred.columns if c.startswith("score_")] == ["score_red", "score_green", "score_blue", "score_gray"]
    with pytest.raises(PolymodalError, match="placeholder"):
        model.zero_shot(test, ["red"], templates=["no slot"])


def test_fit_with_alignment_objective_classifies_and_embeds(tmp_path):
    train = paired_table(200)
    model = pm.fit(train, "cls", fusion="concat", modalities=GROUP, align="clip", align_weight=0.5, embed_dim=16,
                   dim=32, epochs=3, progress=False, out=tmp_path / "m")
    assert model.net.align_head is not None
    e = pm.load(tmp_path / "m").embed(train.head(7))
    assert list(e.columns) == ["emb_a", "emb_b", "emb_fused"] and len(e) == 7
    assert model.predict(train.head(3)).shape[0] == 3
    plain = pm.fit(train, "cls", fusion="concat", modalities=GROUP, epochs=1, progress=False)
    with pytest.raises(PolymodalError, match="no shared embedding space"):
        plain.embed(train.head(2))


def test_align_loss_enters_the_training_loss():
    from polymodal.nets.multimodal import MultimodalNet
    from polymodal.recipes.fit import prepare
    from polymodal.config.model import ModelConfig
    from polymodal.data.dataset import make_loader
    from polymodal.train.module import training_loss

    schema, ds, _ = prepare(paired_table(40), "cls", modalities=GROUP, progress=False)
    net = MultimodalNet(schema, ModelConfig(dim=16, fusion="concat", align="siglip", align_weight=2.0, embed_dim=8))
    batch = next(iter(make_loader(ds, 16, shuffle=False)))
    net.train()
    out = net(batch)
    loss, parts = training_loss(out, batch, "classify", 1.0)
    assert "align" in parts and parts["align"].requires_grad
    net.eval()
    assert net(batch).align_loss is None
