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
        self.fingerprint: dict[str, str] | None = None  # config + table, stored in crash checkpoints
        self.gather = False  # contrastive losses use every rank's rows (set by train/loop.py under DDP)
        self._rng_to_restore: dict | None = None
        self.train_loader = None  # the resumable train loader (its position is restored on resume)

    # ------------------------------------------------------------------------ distributed + checkpoint hooks
    def _set_gather(self, on: bool) -> None:
        """Training steps gather contrastive features over ranks (equal per-rank batches); validation does not
        (its per-rank blocks may differ by a row, and a gather needs equal shapes)."""
        from polymodal.objectives import Objective

        for m in self.net.modules():
            if isinstance(m, Objective) and hasattr(m, "gather"):
                m.gather = on

    gather_ok = False  # every training row has every modality (set by train/loop.py)

    _stop_on_start = False

    def on_fit_start(self) -> None:
        self.gather = self.gather_ok and self.trainer.world_size > 1

    def on_train_start(self) -> None:
        if self._stop_on_start:  # the checkpoint was written after early stopping decided: nothing more to train
            self.trainer.should_stop = True

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        if self._rng_to_restore is not None:  # as late as possible: nothing may draw between restore and the step
            from polymodal.train.checkpoint import set_rng_state

            set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None
        self._set_gather(self.gather)

    def on_validation_start(self) -> None:
        self._set_gather(False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        import torch.distributed as dist

        from polymodal.train.checkpoint import rng_state

        states = [rng_state()]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            states = [None] * dist.get_world_size()
            dist.all_gather_object(states, rng_state())  # every rank's own stream, saved by rank 0
        # the early-stop decision: Lightning does not keep trainer.should_stop, and a run killed after its last
        # epoch-end checkpoint would otherwise resume into one more epoch
        checkpoint["polymodal"] = {"fingerprint": self.fingerprint, "rng": states,
                                   "should_stop": bool(self.trainer.should_stop)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("polymodal", {}).get("rng") or []
        rank = self.trainer.global_rank if self._trainer is not None else 0
        if rank < len(states):
            self._rng_to_restore = states[rank]
        self._stop_on_start = bool(checkpoint.get("polymodal", {}).get("should_stop"))
        # The train loader's position. Lightning restores it in FitLoop.setup_data, but configure_optimizers asks
        # for trainer.estimated_stepping_batches, which sets the data up before the checkpoint is read, so that
        # restore never runs (Lightning 2.6): hand the position to the loader here. Its sampler starts iterating
        # only at the first batch, so the iterator Lightning already made still skips the batches trained on.
        loader_states = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader")
        if loader_states and hasattr(self.train_loader, "load_state_dict"):
            self.train_loader.load_state_dict(loader_states[0])

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        if not self.net.has_task:
            loss = self.net(batch).align_loss
        else:
            out = self.net(batch, modality_dropout=self.model_cfg.modality_dropout)
            loss, _ = training_loss(out, batch, self.task, self.model_cfg.aux_weight)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(batch), sync_dist=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if not self.net.has_task:
            self.log("val_loss", self.net(batch, align_loss=True).align_loss, on_step=False, on_epoch=True,
                     batch_size=len(batch), sync_dist=True)
            return
        out = self.net(batch)
        loss = task_loss(out.logits, batch.target, self.task)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch), sync_dist=True)
        if self.task == "classify":
            acc = (out.logits.argmax(-1) == batch.target).float().mean()
            self.log("val_acc", acc, on_step=False, on_epoch=True, batch_size=len(batch), sync_dist=True)

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
