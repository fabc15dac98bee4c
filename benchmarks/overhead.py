"""Framework overhead: polymodal's Lightning ``fit`` step throughput vs a hand-written PyTorch loop.

Same net (transformer fusion on av-digits), same batches, same loss (task + unimodal auxiliary losses, modality
dropout), same optimiser and schedule. The first epoch of each is warm-up; the rest are timed. Runs alternate
(A B A B ..., 5 times) and the best repetition of each is kept, so machine noise hits both alike.

Output: {"polymodal_steps_per_s", "torch_loop_steps_per_s", "ratio"}.
"""

from __future__ import annotations

import time

from _common import emit, setup

import lightning as L
import torch

from polymodal.config.model import ModelConfig, TrainConfig
from polymodal.data.dataset import make_loader
from polymodal.datasets import load_av_digits
from polymodal.nets.multimodal import MultimodalNet
from polymodal.recipes.steps import prepare
from polymodal.train import train_net
from polymodal.train.module import build_optimizer, training_loss

EPOCHS, N_ROWS, REPS = 4, 1280, 5


class EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.t0 = None
        self.steps = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch >= 1:
            self.steps += 1

    def on_train_end(self, trainer, pl_module) -> None:
        self.elapsed = time.perf_counter() - self.t0


def run_polymodal(schema, ds, mcfg, tcfg) -> float:
    timer = EpochTimer()
    net = MultimodalNet(schema, mcfg)
    train_net(net, ds, None, mcfg, tcfg, callbacks=[timer])
    return timer.steps / timer.elapsed


def run_torch(schema, ds, mcfg, tcfg) -> float:
    torch.manual_seed(tcfg.seed)
    net = MultimodalNet(schema, mcfg)
    loader = make_loader(ds, tcfg.batch_size, shuffle=True, seed=tcfg.seed)
    opt, sched = build_optimizer(net, tcfg, EPOCHS * len(loader))
    net.train()
    steps, t0 = 0, None
    for epoch in range(EPOCHS):
        if epoch == 1:
            t0 = time.perf_counter()
        for batch in loader:
            out = net(batch, modality_dropout=mcfg.modality_dropout)
            loss, _ = training_loss(out, batch, schema.task, mcfg.aux_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if epoch >= 1:
                steps += 1
    return steps / (time.perf_counter() - t0)


def main() -> None:
    setup()
    train = load_av_digits("train", limit=N_ROWS)
    mcfg = ModelConfig()  # transformer fusion
    prep = prepare(train, "digit", mcfg, supervised=True, progress=False)
    schema, ds = prep.schema, prep.dataset
    tcfg = TrainConfig(epochs=EPOCHS, val_fraction=0.0)  # progress bar on, as a user gets it
    pm, pt = [], []
    for _ in range(REPS):
        pm.append(run_polymodal(schema, ds, mcfg, tcfg))
        pt.append(run_torch(schema, ds, mcfg, tcfg))
    emit("overhead", {
        "polymodal_steps_per_s": round(max(pm), 3),
        "torch_loop_steps_per_s": round(max(pt), 3),
        "ratio": round(max(pm) / max(pt), 4),
        "all_polymodal": [round(x, 3) for x in pm],
        "all_torch": [round(x, 3) for x in pt],
        "model": "transformer fusion, dim 64, av-digits batch 64",
    })


if __name__ == "__main__":
    main()
