"""``train/loop.py``, ``train/progress.py`` and ``train/module.py``: the one Lightning run — early stopping with
the best weights back, the history (epochs from 1), Ctrl-C, the progress output, training without validation,
alignment nets, and the parts of the training loss."""

import io
import math
import os
import signal
import time

import lightning as L
import numpy as np
import pytest
import torch
from rich.console import Console

from polymodal.config.model import AlignSpec, ModelConfig, TrainConfig
from polymodal.nets.multimodal import MultimodalNet, NetOutput
from polymodal.recipes.steps import prepare
from polymodal.registry import Component
from polymodal.train.loop import TrainingInterrupted, train_net
from polymodal.train.progress import EpochProgress, duration
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
    """The net's weights after every validation (keyed by 1-based epoch), a deliberate collapse of the net from
    epoch ``sabotage_from`` (1-based) on, and a Ctrl-C in the middle of epoch ``interrupt_in``."""

    def __init__(self, sabotage_from: int | None = None, interrupt_in: int | None = None):
        self.states, self.epochs_trained, self.sabotage_from = {}, 0, sabotage_from
        self.interrupt_in = interrupt_in

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        epoch = trainer.current_epoch + 1
        if self.sabotage_from is not None and epoch >= self.sabotage_from:
            with torch.no_grad():
                pl_module.net.head[-1].bias.add_(100.0)  # predictions 100 std away: validation loss explodes
        if epoch == self.interrupt_in and batch_idx == 1:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread

    def on_validation_epoch_end(self, trainer, pl_module):
        self.states[trainer.current_epoch + 1] = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs_trained += 1


def test_early_stopping_restores_the_best_weights(tmp_path):
    schema, tr, va = _data(48, regress=True)
    net = MultimodalNet(schema, CFG)
    snaps = Snapshots(sabotage_from=3)
    res = train_net(net, tr, va, CFG, TrainConfig(epochs=20, patience=2, batch_size=16, lr=5e-3), ckpt_dir=tmp_path,
                    callbacks=[snaps], progress=False)
    losses = [h["val_loss"] for h in res["history"]]
    assert res["best_epoch"] in (1, 2) and res["best_epoch"] == int(np.argmin(losses)) + 1  # epochs count from 1
    assert res["best_val_loss"] == pytest.approx(min(losses))
    assert res["epochs_run"] < 20 and len(res["history"]) == res["best_epoch"] + 2  # patience 2, then stop
    assert res["epochs_run"] == len(res["history"]) and res["interrupted"] is False
    assert max(losses) > 100 * min(losses)  # the collapse happened, and was undone:
    best = snaps.states[res["best_epoch"]]
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, best[k], msg=k)
    assert not net.training
    assert (tmp_path / "best.safetensors").exists()


def test_history_keys_and_monitor_for_classification():
    schema, tr, va = _data(48)
    res = train_net(MultimodalNet(schema, CFG), tr, va, CFG, TrainConfig(epochs=2, batch_size=16), progress=False)
    assert set(res) == {"epochs_run", "best_epoch", "best_val_acc", "interrupted", "history", "world_size",
                        "contrastive_gather"}
    assert len(res["history"]) == 2
    for h in res["history"]:
        assert {"val_loss", "val_acc", "epoch", "elapsed_s"} <= set(h)
        assert 0.0 <= h["val_acc"] <= 1.0 and math.isfinite(h["val_loss"])
    assert [h["epoch"] for h in res["history"]] == [1, 2]  # 1-based, as printed
    assert res["best_epoch"] in (1, 2)


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


def test_ctrl_c_returns_the_best_weights_and_leaves_the_interpreter_working(tmp_path):
    """A KeyboardInterrupt in epoch 3 (Lightning's epoch 2): Lightning's own handler would ignore SIGINT and
    sys.exit(1); train_net returns instead, with the best epoch's weights (epoch 1: the net collapses from epoch 2
    on), a warning naming the epochs that ran, ``interrupted`` in the history and Ctrl-C working again."""
    schema, tr, va = _data(48, regress=True)
    net = MultimodalNet(schema, CFG)
    snaps = Snapshots(sabotage_from=2, interrupt_in=3)
    before = signal.getsignal(signal.SIGINT)
    said = r"interrupted after 2 of 20 epoch\(s\).*best weights so far \(epoch 1"
    with pytest.warns(TrainingInterrupted, match=said) as w:
        res = train_net(net, tr, va, CFG, TrainConfig(epochs=20, patience=10, batch_size=16, lr=5e-3),
                        ckpt_dir=tmp_path, callbacks=[snaps], progress=False)
    assert w[0].filename == __file__  # the warning points at the caller, not into polymodal
    assert res["interrupted"] is True and res["epochs_run"] == 2 and res["best_epoch"] == 1
    assert [h["epoch"] for h in res["history"]] == [1, 2]
    for k, v in net.state_dict().items():  # the best epoch's weights, not the collapsed last ones
        torch.testing.assert_close(v, snaps.states[1][k], msg=k)
    assert not net.training
    assert signal.getsignal(signal.SIGINT) is before  # Lightning had set SIG_IGN
    if before is signal.default_int_handler:  # and a real Ctrl-C raises again
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)


class ExitIn(L.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        raise SystemExit(3)


def test_other_exits_are_not_taken_for_ctrl_c():
    schema, tr, va = _data(24)
    with pytest.raises(SystemExit) as e:
        train_net(MultimodalNet(schema, CFG), tr, va, CFG, TrainConfig(epochs=2, batch_size=16), callbacks=[ExitIn()],
                  progress=False)
    assert e.value.code == 3


def test_without_validation_trains_all_epochs_and_keeps_the_last_weights():
    schema, tr, _ = _data(32)
    net = MultimodalNet(schema, CFG)
    snaps = Snapshots()
    res = train_net(net, tr, None, CFG, TrainConfig(epochs=3, patience=0, batch_size=16, val_fraction=0.0),
                    callbacks=[snaps], progress=False)
    assert snaps.epochs_trained == 3 and res["epochs_run"] == 3
    assert res["history"] == [] and res["best_epoch"] is None and res["best_val_acc"] is None
    assert res["interrupted"] is False


# ------------------------------------------------------------------------------------------ progress output
def test_not_a_terminal_one_flushed_line_per_epoch_then_the_early_stop():
    schema, tr, va = _data(48, regress=True)
    buf = io.StringIO()  # not a terminal: a log file, a pipe, CI
    res = train_net(MultimodalNet(schema, CFG), tr, va, CFG,
                    TrainConfig(epochs=20, patience=1, batch_size=16, lr=5e-3),
                    callbacks=[Snapshots(sabotage_from=2), EpochProgress(console=Console(file=buf, width=40))],
                    progress=False)
    k = res["epochs_run"]
    lines = buf.getvalue().splitlines()
    assert 2 <= k < 20 and len(lines) == k + 1, lines
    for i, line in enumerate(lines[:-1], start=1):
        assert line.startswith(f"epoch {i}/20  train_loss=") and "val_loss=" in line, line
        assert " elapsed " in line and " eta " in line and "\x1b" not in line  # plain text, never wrapped
    assert lines[-1] == f"early stop at epoch {k}"


def test_in_a_terminal_the_bar_completes_at_the_early_stop():
    schema, tr, va = _data(48, regress=True)
    buf = io.StringIO()
    bar = EpochProgress(console=Console(file=buf, force_terminal=True, width=160))
    res = train_net(MultimodalNet(schema, CFG), tr, va, CFG,
                    TrainConfig(epochs=20, patience=1, batch_size=16, lr=5e-3),
                    callbacks=[Snapshots(sabotage_from=2), bar], progress=False)
    k, steps = res["epochs_run"], res["epochs_run"] * 3  # 36 training rows in batches of 16
    last = buf.getvalue().split("\r")[-1]
    assert f"early stop at epoch {k}" in last and f"{steps}/{steps}" in last, last  # not "12/60"


def test_duration():
    assert [duration(s) for s in (4.24, 65, 3720)] == ["4.2s", "1m05s", "1h02m"]


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
