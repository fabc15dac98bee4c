"""``train/loop.py`` and ``train/module.py``: the one Lightning run — early stopping with the best weights back,
the history, training without validation, alignment nets, and the parts of the training loss."""

import math

import lightning as L
import numpy as np
import pytest
import torch

from polymodal.config.model import AlignSpec, ModelConfig, TrainConfig
from polymodal.nets.multimodal import MultimodalNet, NetOutput
from polymodal.recipes.steps import prepare
from polymodal.registry import Component
from polymodal.train.loop import train_net
from polymodal.train.module import build_optimizer, training_loss, warmup_cosine
from polymodal.types import Batch, FusionOutput
from tests.xor_data import GROUPS, xor_table

CFG = ModelConfig(dim=16, fusion=Component("concat"))


def _data(n, cfg=CFG, regress=False):
    frame = xor_table(n)
    if regress:
        frame = frame.drop(columns="y").assign(t=frame["a1"] + 0.1 * frame["b2"])
    prep = prepare(frame, "t" if regress else "y", cfg, supervised=True, groups=GROUPS,
                   task="regress" if regress else None, progress=False)
    ds = prep.dataset
    cut = int(0.75 * n)
    return prep.schema, ds.subset(np.arange(cut)), ds.subset(np.arange(cut, n))


class Snapshots(L.Callback):
    """The net's weights after every validation, and a deliberate collapse of the net from epoch 2 on."""

    def __init__(self, sabotage_from: int | None = None):
        self.states, self.epochs_trained, self.sabotage_from = {}, 0, sabotage_from

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.sabotage_from is not None and trainer.current_epoch >= self.sabotage_from:
            with torch.no_grad():
                pl_module.net.head[-1].bias.add_(100.0)  # predictions 100 std away: validation loss explodes

    def on_validation_epoch_end(self, trainer, pl_module):
        self.states[trainer.current_epoch] = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs_trained += 1


def test_early_stopping_restores_the_best_weights(tmp_path):
    schema, tr, va = _data(48, regress=True)
    net = MultimodalNet(schema, CFG)
    snaps = Snapshots(sabotage_from=2)
    res = train_net(net, tr, va, CFG, TrainConfig(epochs=20, patience=2, batch_size=16, lr=5e-3), ckpt_dir=tmp_path,
                    callbacks=[snaps], progress=False)
    losses = [h["val_loss"] for h in res["history"]]
    assert res["best_epoch"] in (0, 1) and res["best_epoch"] == int(np.argmin(losses))
    assert res["best_val_loss"] == pytest.approx(min(losses))
    assert res["epochs_run"] < 20 and len(res["history"]) == res["best_epoch"] + 3  # patience 2, then stop
    assert max(losses) > 100 * min(losses)  # the collapse happened, and was undone:
    best = snaps.states[res["best_epoch"]]
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, best[k], msg=k)
    assert not net.training
    assert (tmp_path / "best.safetensors").exists()


def test_history_keys_and_monitor_for_classification():
    schema, tr, va = _data(48)
    res = train_net(MultimodalNet(schema, CFG), tr, va, CFG, TrainConfig(epochs=2, batch_size=16), progress=False)
    assert set(res) == {"epochs_run", "best_epoch", "best_val_acc", "history"}
    assert len(res["history"]) == 2
    for h in res["history"]:
        assert {"val_loss", "val_acc", "epoch", "elapsed_s"} <= set(h)
        assert 0.0 <= h["val_acc"] <= 1.0 and math.isfinite(h["val_loss"])
    assert [h["epoch"] for h in res["history"]] == [0, 1]


class TrainLosses(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.losses.append(float(trainer.callback_metrics["train_loss"]))


def test_history_train_loss_is_that_epochs_own():
    """Each history entry pairs an epoch's validation metrics with the same epoch's training loss."""
    schema, tr, va = _data(48)
    seen = TrainLosses()
    res = train_net(MultimodalNet(schema, CFG), tr, va, CFG, TrainConfig(epochs=3, batch_size=16), callbacks=[seen],
                    progress=False)
    assert len(seen.losses) == 3
    assert [h.get("train_loss") for h in res["history"]] == pytest.approx(seen.losses)


def test_without_validation_trains_all_epochs_and_keeps_the_last_weights():
    schema, tr, _ = _data(32)
    net = MultimodalNet(schema, CFG)
    snaps = Snapshots()
    res = train_net(net, tr, None, CFG, TrainConfig(epochs=3, patience=0, batch_size=16, val_fraction=0.0),
                    callbacks=[snaps], progress=False)
    assert snaps.epochs_trained == 3 and res["epochs_run"] == 3
    assert res["history"] == [] and res["best_epoch"] is None and res["best_val_acc"] is None


def test_an_alignment_net_trains_on_the_validation_objective():
    cfg = ModelConfig(dim=16, fusion=None, align=AlignSpec(Component("clip"), embed_dim=8))
    schema, tr, va = _data(48, cfg)
    net = MultimodalNet(schema, cfg)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = train_net(net, tr, va, cfg, TrainConfig(epochs=2, batch_size=16), progress=False)
    assert "best_val_loss" in res and "best_val_acc" not in res
    assert all("val_loss" in h and "val_acc" not in h for h in res["history"])
    assert res["best_val_loss"] == pytest.approx(min(h["val_loss"] for h in res["history"]))
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())


# ------------------------------------------------------------------------------------------ the training loss
def _batch():
    target = torch.tensor([0, 1, 1])
    present = {"a": torch.tensor([True, False, True]), "b": torch.tensor([True, True, True]),
               "c": torch.tensor([False, False, False])}
    return Batch(inputs={}, present=present, target=target)


def _ce(logits, y):
    """Cross-entropy by hand: log-sum-exp minus the target's logit."""
    return math.log(sum(math.exp(v) for v in logits)) - logits[y]


def test_training_loss_parts_classification():
    batch = _batch()
    out = NetOutput(
        logits=torch.zeros(3, 2),  # CE = log 2 on every row
        aux_logits={"a": torch.tensor([[2.0, 0.0], [9.0, 9.0], [0.0, 1.0]]),
                    "b": torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]]),
                    "c": torch.full((3, 2), 7.0)},  # never present: no term (and no NaN)
        fusion=FusionOutput(pooled=torch.zeros(3, 4), aux_loss=torch.tensor(0.25)),
        present=batch.present,
        align_loss=torch.tensor(0.5),
    )
    loss, parts = training_loss(out, batch, "classify", aux_weight=2.0)
    aux_a = (_ce([2.0, 0.0], 0) + _ce([0.0, 1.0], 1)) / 2  # rows 0 and 2 only: row 1 has no a
    aux_b = (_ce([0.0, 0.0], 0) + _ce([1.0, 0.0], 1) + _ce([0.0, 3.0], 1)) / 3
    expected = {"task": math.log(2), "aux": (aux_a + aux_b) / 2, "align": 0.5, "fusion_aux": 0.25}
    assert set(parts) == set(expected)
    for k, v in expected.items():
        assert float(parts[k]) == pytest.approx(v, rel=1e-5), k
    assert float(loss) == pytest.approx(math.log(2) + 2.0 * expected["aux"] + 0.5 + 0.25, rel=1e-5)


def test_training_loss_parts_regression_and_no_aux():
    batch = _batch()
    batch.target = torch.tensor([1.0, -1.0, 0.5])
    out = NetOutput(logits=torch.tensor([[0.0], [1.0], [0.5]]), aux_logits={"b": torch.tensor([[1.0], [0.0], [0.0]])},
                    fusion=FusionOutput(pooled=torch.zeros(3, 4)), present=batch.present)
    loss, parts = training_loss(out, batch, "regress", aux_weight=1.0)
    assert set(parts) == {"task", "aux"}
    assert float(parts["task"]) == pytest.approx((1.0 + 4.0 + 0.0) / 3)
    assert float(parts["aux"]) == pytest.approx((0.0 + 1.0 + 0.25) / 3)
    loss0, parts0 = training_loss(out, batch, "regress", aux_weight=0.0)
    assert set(parts0) == {"task"} and float(loss0) == pytest.approx(5 / 3)


def test_optimizer_groups_and_schedule():
    schema, _, _ = _data(12)
    net = MultimodalNet(schema, CFG)
    opt, sched = build_optimizer(net, TrainConfig(lr=1e-2, weight_decay=0.1), total_steps=100)
    decay, no_decay = opt.param_groups[0], opt.param_groups[1]
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and any(p.ndim == 1 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in net.parameters() if p.requires_grad)
    f = warmup_cosine(100)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(99) == pytest.approx(0.02, abs=1e-3)
