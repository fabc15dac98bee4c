"""Sequential fusion (MultiModN; Swamy et al. 2023, "MultiModN -- Multimodal, Multi-Task, Interpretable Modular
Networks"): a state vector updated by one modality module at a time.

``s_0`` is learned; for each modality ``m`` in ``order`` (default: ``names``), ``s <- cell_m(h_m, s)`` (a
``GRUCell``'s (input, hidden) order, or ``cell="mlp"``) where ``h_m`` is the modality's masked-mean token vector.
A sample that lacks ``m`` SKIPS the step (per sample: ``s = where(present_m, cell_m(h_m, s), s)``), so missing
modalities are never imputed and never seen -- which is what makes MultiModN robust to missing-not-at-random
patterns. ``pooled`` is the final state.

Training (``per_step_outputs = True``): as in MultiModN, the model's task head decodes the state after every step
a sample took, and the task loss is the mean over those predictions (``train.module.training_loss``). So the state
a sample ends in when a modality is missing (e.g. the state after the image step) is trained once on *every* sample
that passes through it, not mostly on those that lack the later modalities: a missingness pattern that depends
on the label does not bias it.

Per-step predictions: ``FusionOutput.tokens`` holds the state after every step, ``x[B, M, D]`` in ``order``,
with ``mask[:, i]`` = the sample has ``order[i]`` (a skipped step repeats the previous state), so a head applied
to ``tokens.x[:, i]`` is the prediction after ``i + 1`` steps. ``per_modality[m]`` = ``cell_m(h_m, s_0)``, the
state after modality ``m`` alone.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.types import FusionOutput, Tokens
from polymodal.fusion.base import FUSIONS, Fusion


class MLPCell(nn.Module):
    """``s' = LN(s + MLP([s, h]))`` -- the MLP alternative to a GRU cell (same call signature: ``cell(h, s)``)."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or 2 * dim
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, h: Tensor, s: Tensor) -> Tensor:
        return self.norm(s + self.mlp(torch.cat([s, h], dim=1)))


@FUSIONS.register("sequential")
class SequentialFusion(Fusion):
    """MultiModN: a learned state updated by one module per modality in a fixed order, skipping (per sample) the
    modalities a sample lacks; the state after every step is returned as ``tokens`` (a prediction per step)."""

    per_step_outputs = True  # MultimodalNet decodes and supervises every step's state with the task head

    def __init__(self, names: list[str], dim: int, *, order: list[str] | None = None, cell: str = "gru") -> None:
        super().__init__(names, dim)
        self.order = list(order) if order is not None else list(self.names)
        if sorted(self.order) != sorted(self.names):
            raise ValueError(f"sequential order {self.order} must be a permutation of the modalities {self.names}")
        if cell not in ("gru", "mlp"):
            raise ValueError(f"sequential cell must be 'gru' or 'mlp', got {cell!r}")
        self.init_state = nn.Parameter(torch.randn(dim) * 0.02)
        self.cells = nn.ModuleDict({m: nn.GRUCell(dim, dim) if cell == "gru" else MLPCell(dim) for m in self.names})

    def forward(self, tokens: dict[str, Tokens]) -> FusionOutput:
        h = {m: tokens[m].pooled() for m in self.names}
        s0 = self.init_state.expand_as(h[self.names[0]])
        s, states = s0, []
        for m in self.order:
            s = torch.where(tokens[m].present[:, None], self.cells[m](h[m], s), s)
            states.append(s)
        present = torch.stack([tokens[m].present for m in self.order], dim=1)  # [B, M]
        steps = Tokens(torch.stack(states, dim=1), present, torch.ones_like(present[:, 0]))
        per_modality = {m: self.cells[m](h[m], s0) for m in self.names}
        return FusionOutput(pooled=s, per_modality=per_modality, tokens=steps)
