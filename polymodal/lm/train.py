"""Stage-1 training with Lightning: the bridge (connectors + markers) learns; encoders and LM stay frozen.

The frozen encoders run once per row before training (``FeatureTable``): every epoch reads those tokens, so an
epoch costs LM passes only. Loss on the answer tokens only; modality dropout hides each present modality of a
row with probability ``modality_dropout`` (never all of them), so the model learns to answer without it. Early
stopping on the validation loss and the best weights come from ``train/loop.py: run_trainer``, as for every
other polymodal model.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from polymodal.config.model import TrainConfig
from polymodal.data.dataset import DecodedDataset
from polymodal.lm.bridge import MultimodalLM, Trainable
from polymodal.nets.multimodal import drop_modalities
from polymodal.train.loop import run_trainer
from polymodal.train.module import build_optimizer
from polymodal.types import Tokens


@dataclass
class FeatureTable(Dataset):
    """Per row: each modality's encoder tokens (padded: ``x``, ``mask``, ``present``), prompt and answer ids."""

    x: dict[str, torch.Tensor]
    mask: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    prompts: list[list[int]]
    answers: list[list[int]]

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, idx):
        idx = list(idx)
        return {"x": {m: v[idx] for m, v in self.x.items()}, "mask": {m: v[idx] for m, v in self.mask.items()},
                "present": {m: v[idx] for m, v in self.present.items()},
                "prompts": [self.prompts[i] for i in idx], "answers": [self.answers[i] for i in idx]}

    def subset(self, rows) -> "FeatureTable":
        rows = list(map(int, rows))
        return FeatureTable({m: v[rows] for m, v in self.x.items()}, {m: v[rows] for m, v in self.mask.items()},
                            {m: v[rows] for m, v in self.present.items()}, [self.prompts[i] for i in rows],
                            [self.answers[i] for i in rows])


def tokens_of(batch: dict) -> dict[str, Tokens]:
    return {m: Tokens(batch["x"][m], batch["mask"][m], batch["present"][m]) for m in batch["x"]}


@torch.no_grad()
def encode_rows(mlm: MultimodalLM, ds: DecodedDataset, prompts, answers, batch_size: int = 64) -> FeatureTable:
    """Run the frozen encoders over every row once (in batches) and keep their tokens."""
    xs: dict[str, list] = {}
    ms: dict[str, list] = {}
    ps: dict[str, list] = {}
    for start in range(0, len(ds), batch_size):
        toks = mlm.encode(ds[list(range(start, min(len(ds), start + batch_size)))])
        for m, t in toks.items():
            xs.setdefault(m, []).append(t.x)
            ms.setdefault(m, []).append(t.valid)
            ps.setdefault(m, []).append(t.present)

    def cat(parts: list[torch.Tensor], pad_value) -> torch.Tensor:
        n = max(p.shape[1] for p in parts)
        return torch.cat([torch.nn.functional.pad(p, (0, 0, 0, n - p.shape[1]) if p.dim() == 3 else (0, n - p.shape[1]),
                                                  value=pad_value) for p in parts])

    return FeatureTable({m: cat(v, 0.0) for m, v in xs.items()}, {m: cat(v, False) for m, v in ms.items()},
                        {m: torch.cat(v) for m, v in ps.items()}, list(prompts), list(answers))


def loader(table: FeatureTable, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    sampler = (RandomSampler(range(len(table)), generator=torch.Generator().manual_seed(seed)) if shuffle
               else SequentialSampler(range(len(table))))
    return DataLoader(table, batch_size=None, sampler=BatchSampler(sampler, batch_size, drop_last=False))


class LitLM(L.LightningModule):
    """Lightning module of stage 1; ``net`` is the bridge (what ``BestWeights`` keeps and the optimiser sees)."""

    def __init__(self, mlm: MultimodalLM, net: Trainable, train_cfg: TrainConfig, modality_dropout: float) -> None:
        super().__init__()
        self.net = net
        self._mlm = [mlm]
        self.train_cfg, self.modality_dropout = train_cfg, modality_dropout

    def _loss(self, batch: dict, dropout: float) -> torch.Tensor:
        tokens = tokens_of(batch)
        if dropout > 0 and len(tokens) > 1:
            present = drop_modalities({m: t.present for m, t in tokens.items()}, dropout)
            tokens = {m: t.with_present(present[m]) for m, t in tokens.items()}
        return self._mlm[0].loss(tokens, batch["prompts"], batch["answers"])

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch, self.modality_dropout)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(batch["prompts"]))
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch, 0.0), on_step=False, on_epoch=True, batch_size=len(batch["prompts"]))

    def configure_optimizers(self):
        opt, sched = build_optimizer(self.net, self.train_cfg, self.trainer.estimated_stepping_batches)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def train_bridge(mlm: MultimodalLM, train: FeatureTable, val: FeatureTable | None, train_cfg: TrainConfig,
                 modality_dropout: float, progress: bool = True, lora=None) -> dict:
    """Train the bridge (and ``lora``, the LM's LoRA layers, if given) in place, best validation weights restored;
    returns the training history."""
    L.seed_everything(train_cfg.seed, workers=True, verbose=False)
    net = Trainable(mlm.bridge, lora)
    lit = LitLM(mlm, net, train_cfg, modality_dropout)
    tr = loader(train, train_cfg.batch_size, True, train_cfg.seed)
    va = loader(val, train_cfg.batch_size, False, 0) if val is not None and len(val) else None
    history = run_trainer(lit, net, tr, va, train_cfg, "val_loss", "min", progress=progress)
    mlm.eval()
    return history


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    k = int(round(n * fraction)) if n >= 10 else 0
    return np.sort(order[k:]), np.sort(order[:k])


__all__ = ["FeatureTable", "LitLM", "encode_rows", "train_bridge"]
