"""The Lightning module: one training step = modality dropout + task loss + unimodal auxiliary losses."""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.config.model import ModelConfig, TrainConfig
from polymodal.nets.multimodal import MultimodalNet, NetOutput
from polymodal.types import Batch


def task_loss(logits: Tensor, target: Tensor, task: str) -> Tensor:
    if task == "regress":
        return F.mse_loss(logits.squeeze(-1), target.float())
    return F.cross_entropy(logits, target)


def training_loss(out: NetOutput, batch: Batch, task: str, aux_weight: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Task loss on the fused output plus ``aux_weight`` x the mean unimodal loss over each modality's samples.

    The auxiliary losses use the modality's true presence (not the dropped one): each encoder learns to be
    predictive on its own, which counters modality competition in joint training.
    """
    if out.step_logits is not None and out.step_mask is not None and out.step_mask.any():
        # per-step supervision (MultiModN): the same head decodes the state after each step a sample took, and the
        # loss is the mean over those steps. The final prediction is one of them (the last step the sample took),
        # so there is no separate loss on it: an extra term on the final state would over-weight, on the state
        # after the image step, exactly the samples that miss the later modalities -- a missingness pattern that
        # depends on the label would then bias that state's predictions again.
        steps = out.step_mask
        parts = {"task": task_loss(out.step_logits[steps], batch.target[:, None].expand(-1, steps.shape[1])[steps], task)}
    else:
        parts = {"task": task_loss(out.logits, batch.target, task)}
    loss = parts["task"]
    if aux_weight > 0 and out.aux_logits:
        aux_terms = []
        for m, logits in out.aux_logits.items():
            present = batch.present[m]
            if present.any():
                aux_terms.append(task_loss(logits[present], batch.target[present], task))
        if aux_terms:
            parts["aux"] = torch.stack(aux_terms).mean()
            loss = loss + aux_weight * parts["aux"]
    if out.align_loss is not None:  # ModelConfig.align: contrastive objective, already weighted
        parts["align"] = out.align_loss
        loss = loss + out.align_loss
    if out.fusion.aux_loss is not None:
        parts["fusion_aux"] = out.fusion.aux_loss
        loss = loss + out.fusion.aux_loss
    return loss, parts


class LitMultimodal(L.LightningModule):
    """One Lightning module for every net: task + auxiliary (+ alignment) losses, or the alignment objective alone
    for an alignment net (no fusion, no task head)."""

    def __init__(self, net: MultimodalNet, model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
        super().__init__()
        self.net, self.model_cfg, self.train_cfg = net, model_cfg, train_cfg
        self.task = net.schema.task

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        if not self.net.has_task:
            loss = self.net(batch).align_loss
        else:
            out = self.net(batch, modality_dropout=self.model_cfg.modality_dropout)
            loss, _ = training_loss(out, batch, self.task, self.model_cfg.aux_weight)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if not self.net.has_task:
            self.log("val_loss", self.net(batch, align_loss=True).align_loss, on_step=False, on_epoch=True,
                     batch_size=len(batch))
            return
        out = self.net(batch)
        loss = task_loss(out.logits, batch.target, self.task)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch))
        if self.task == "classify":
            acc = (out.logits.argmax(-1) == batch.target).float().mean()
            self.log("val_acc", acc, on_step=False, on_epoch=True, batch_size=len(batch))

    def configure_optimizers(self):
        opt, sched = build_optimizer(self.net, self.train_cfg, self.trainer.estimated_stepping_batches)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def build_optimizer(net: torch.nn.Module, cfg: TrainConfig, total_steps: int):
    """AdamW (no weight decay on biases, norms and embeddings), warm-up then cosine learning-rate schedule.

    Encoders declare ``lr_scaled_parameters()`` (none by default; an unfrozen pretrained backbone, option
    ``lr_scale``): those parameters go in extra groups at ``lr * scale``.
    """
    from polymodal.encoders.base import Encoder

    scale: dict[int, float] = {}
    for module in net.modules():
        if isinstance(module, Encoder):
            for p, s in module.lr_scaled_parameters():
                scale[id(p)] = float(s)
    decay, no_decay = [], []
    scaled: dict[tuple[bool, float], list] = {}
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        nd = p.ndim < 2 or "embed" in name or "token" in name
        if id(p) in scale:
            scaled.setdefault((nd, scale[id(p)]), []).append(p)
        else:
            (no_decay if nd else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    for (nd, s), ps in scaled.items():
        groups.append({"params": ps, "weight_decay": 0.0 if nd else cfg.weight_decay, "lr": cfg.lr * s})
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(max(1, int(total_steps))))
    return opt, sched


def warmup_cosine(total: int, warmup_frac: float = 0.1, floor: float = 0.02):
    """LR multiplier: linear warm-up over the first 10 % of steps, then cosine decay to ``floor``."""
    warmup = max(1, int(total * warmup_frac))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return factor
