"""``pm.align`` / ``AlignedModel``: a shared embedding space from paired records, end to end on tiny tables."""

import numpy as np
import pytest
import torch

import polymodal as pm
from polymodal.config.model import AlignSpec, ConfigError
from polymodal.errors import PolymodalError, SchemaError
from polymodal.heads.projection import alignment_loss
from polymodal.recipes.aligned import AlignedModel
from polymodal.registry import Component

from .conftest import GROUP, paired_table

FAST = dict(epochs=12, batch_size=64, lr=5e-3, dim=32, embed_dim=16, progress=False, seed=0)


def test_align_learns_retrieval_and_roundtrips(tmp_path):
    train, test = paired_table(320, seed=0), paired_table(60, seed=1)
    model = pm.align(train, groups=GROUP, label="cls", out=tmp_path / "run", **FAST)
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
    model = pm.align(train, groups=GROUP, **{**FAST, "epochs": 1})
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
        pm.align(train[GROUP["a"]], groups={"a": GROUP["a"]}, **FAST)
    with pytest.raises(SchemaError, match="unknown modalities"):
        pm.align(train, groups=GROUP, use=["a", "zz"], **FAST)
    with pytest.raises(ConfigError, match=r"unknown option 'epohcs'\. Did you mean 'epochs'"):
        pm.align(train, groups=GROUP, epohcs=3)
    with pytest.raises(ConfigError, match="leave fusion unset"):
        pm.align(train, groups=GROUP, fusion="late", **FAST)
    with pytest.raises(ConfigError, match="align"):
        pm.fit(train, "cls", groups=GROUP, fusion=None, progress=False)


def test_align_options_reach_the_net_and_the_saved_config(tmp_path):
    """Flat shared-space fields and an objective with options; 9 rows: nothing is held out for validation."""
    siglip = {"name": "siglip", "options": {"init_logit_bias": -5.0, "learnable": False}}
    model = pm.align(paired_table(9), groups=GROUP, label="cls", objective=siglip,
                     embed_dim=8, projection="linear", uniformity_weight=0.1, dim=16, epochs=1, progress=False,
                     out=tmp_path / "run")
    a = model.cfg.align
    assert (a.objective, a.embed_dim, a.projection, a.uniformity_weight) == (
        Component("siglip", {"init_logit_bias": -5.0, "learnable": False}), 8, "linear", 0.1)
    assert model.cfg.fusion is None and model.train_cfg.batch_size == 128  # align's own defaults
    assert model.modalities == ["a", "b"] and model.info["n_train"] == 9 and model.info["n_val"] == 0
    assert isinstance(model.net.align_head.proj["a"], torch.nn.Linear)
    assert float(model.net.align_head.objective.logit_bias) == -5.0  # a buffer: the option reached the objective
    loaded = pm.load(tmp_path / "run")
    assert isinstance(loaded, AlignedModel) and loaded.cfg == model.cfg


def test_prototype_classification(pairs):
    model = pm.align(pairs, groups=GROUP, label="cls", **FAST)
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
    model = pm.fit(train, "cls", fusion="concat", groups=GROUP,
                   align={"objective": {"name": "clip", "options": {}}, "weight": 0.5, "embed_dim": 16},
                   dim=32, epochs=3, progress=False, out=tmp_path / "m")
    assert model.net.align_head is not None and model.net.align_head.weight == 0.5
    assert model.cfg.align == AlignSpec(Component("clip"), embed_dim=16, weight=0.5)
    e = pm.load(tmp_path / "m").embed(train.head(7))
    assert list(e.columns) == ["emb_a", "emb_b", "emb_fused"] and len(e) == 7
    assert model.predict(train.head(3)).shape[0] == 3
    plain = pm.fit(train, "cls", fusion="concat", groups=GROUP, epochs=1, progress=False)
    with pytest.raises(PolymodalError, match="no shared embedding space"):
        plain.embed(train.head(2))


def test_align_loss_enters_the_training_loss():
    from polymodal.config.model import ModelConfig
    from polymodal.data.dataset import make_loader
    from polymodal.nets.multimodal import MultimodalNet
    from polymodal.recipes.steps import prepare
    from polymodal.train.module import training_loss

    cfg = ModelConfig(dim=16, fusion=Component("concat"), align=AlignSpec(Component("siglip"), embed_dim=8, weight=2.0))
    prep = prepare(paired_table(40), "cls", cfg, supervised=True, groups=GROUP, progress=False)
    net = MultimodalNet(prep.schema, cfg)
    batch = next(iter(make_loader(prep.dataset, 16, shuffle=False)))
    net.train()
    out = net(batch)
    loss, parts = training_loss(out, batch, "classify", 1.0)
    assert "align" in parts and parts["align"].requires_grad
    # the objective enters weighted, once
    emb = net.align_head(net.encode(batch))
    torch.testing.assert_close(parts["align"], 2.0 * alignment_loss(net.align_head.objective, emb, batch.present))
    torch.testing.assert_close(loss, parts["task"] + parts["aux"] + parts["align"])
    net.eval()
    assert net(batch).align_loss is None
