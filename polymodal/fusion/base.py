"""The fusion contract: ``Fusion(names, dim, **options)(tokens: dict[str, Tokens]) -> FusionOutput``.

Every operator honours per-sample missingness: a sample's absent modality (``Tokens.present == False``) must not
influence that sample's output, and the output is finite for every non-empty subset of present modalities (a
sample with no modality at all also gets a finite output). ``FusionOutput.per_modality[name]`` is the modality's
own vector in the fused space (used for unimodal auxiliary losses), defined for every modality.

Capabilities are declared on the class (``Fusion`` declares the defaults), never probed with ``hasattr``:
``supports_token_budget`` (the fusion reduces the token streams routed to it; it receives them through
``set_token_budget``), ``per_step_outputs`` (``FusionOutput.tokens`` holds one state per step that the net decodes
and supervises with the task head, as MultiModN) and ``utilisation()`` (mixture-of-experts routing statistics;
``None`` for fusions without experts).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from torch import Tensor, nn

from polymodal.registry import Registry
from polymodal.types import FusionOutput, Tokens

if TYPE_CHECKING:
    from polymodal.tokens.spec import BudgetState


class Fusion(nn.Module):
    supports_token_budget: bool = False
    """True when the fusion reduces token streams in its own blocks (``tokens/budget.py``: route ``"fusion"``)."""
    per_step_outputs: bool = False
    """True when ``FusionOutput.tokens`` is the state after every step, each decoded by the task head."""
    token_state: BudgetState | None = None
    """The token budget the fusion reads at each forward (``set_token_budget``); None: it runs untouched."""
    token_modalities: frozenset[str] = frozenset()
    """The modalities whose streams the fusion reduces (``set_token_budget``)."""
    token_trace: list[tuple[int, int]] | None = None
    """(tokens in attention, tokens in MLP) per block of the last forward, for FLOPs accounting (None: no blocks)."""

    def __init__(self, names: list[str], dim: int) -> None:
        super().__init__()
        if not names:
            raise ValueError("a fusion needs at least one modality")
        self.names = list(names)
        self.dim = dim

    def forward(self, tokens: dict[str, Tokens]) -> FusionOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_token_budget(self, state: BudgetState | None, modalities: Iterable[str]) -> None:
        """The token-budget hook (``tokens.budget.install_token_budget``): the state to read at each forward (None:
        run untouched) and the modalities to reduce. Only a fusion that ``supports_token_budget`` may be given one."""
        if state is not None and not self.supports_token_budget:
            raise ValueError(f"fusion {type(self).__name__} does not reduce tokens (supports_token_budget is False)")
        self.token_state = state
        self.token_modalities = frozenset(modalities)

    def utilisation(self) -> dict[str, Tensor] | None:
        """Mixture-of-experts fusions: modality -> fraction of the last forward's tokens routed to each expert of
        its group. ``None`` (the default): the fusion has no experts."""
        return None


FUSIONS: Registry[Fusion] = Registry("fusion")
