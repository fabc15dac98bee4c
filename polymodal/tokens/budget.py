"""Wiring a token budget (``spec.py``: ``TokenBudget``) into a net: which module reduces which stream.

``install_token_budget`` points every budget-aware part of a ``MultimodalNet`` at the spec and chooses the *route*
of each modality:

* ``"encoder"`` (default ``where``): inside the modality's encoder when it has transformer blocks (``image_conv``,
  ``audio_logmel``): between the attention and the MLP of a block, as ToMe does, so every later layer and the
  fusion see fewer tokens (``encoder_stack``);
* ``"fusion"``: inside the ``transformer`` fusion's blocks (``where="fusion"``, or an encoder without blocks);
  the fusion token and the "missing" tokens are protected (never reduced), and pruning is guided by the fusion
  token's attention (the [CLS]-guided pruning of VTC-CLS / VisionZip's "dominant" tokens);
* ``"boundary"``: between encoder and fusion, for any other pair (merge on the token features, prune by the
  attention of the mean token; ``reduce_at_boundary``).

The modules run their blocks through ``stack.py`` (``run_stack``). Budget 1.0 everywhere leaves every module on its
original code path: an exact no-op. With ``train_budgets`` the net calls ``begin_step`` at each forward, which
samples the step's budget in training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from polymodal.types import Tokens

from polymodal.tokens.spec import BudgetState, SizedTokens, TokenBudget, schedule_counts
from polymodal.tokens.stack import Segment, StackResult, reduce_sequence, run_stack


def module_budget(module: nn.Module, name: str) -> tuple[TokenBudget, float] | None:
    """``(spec, budget)`` for a budget-aware module's stream ``name``, or ``None`` when it runs untouched."""
    state: BudgetState | None = getattr(module, "token_state", None)
    if state is None:
        return None
    b = state.budget(name, module.training)
    if b >= 1.0:
        return None
    return state.spec, b


def encoder_stack(
    module: nn.Module, blocks: Sequence[nn.Module], x: Tensor, mask: Tensor, grid: tuple[int, int] | None = None
) -> StackResult | None:
    """Run an encoder's blocks under its budget; ``None`` when the budget is 1.0 (the caller's plain path)."""
    got = module_budget(module, module.spec.name)
    if got is None:
        return None
    spec, b = got
    n = x.shape[1]
    counts = schedule_counts(n, b, len(blocks), spec.schedule, spec.reducer, grid)
    res = run_stack(blocks, x, mask, spec, [Segment(n, counts, grid, module.spec.name)])
    module.token_trace = res.trace
    return res


def install_token_budget(net: nn.Module, spec: TokenBudget | None) -> dict[str, str]:
    """Point every budget-aware part of a ``MultimodalNet`` at ``spec``; returns each modality's route.

    ``spec=None`` (or a no-op spec) detaches everything: all modules run their original code.
    """
    names = list(net.encoders)
    if spec is not None and isinstance(spec.budget, Mapping):
        unknown = set(spec.budget) - set(names)
        if unknown:
            raise ValueError(f"token budget names unknown modalities {sorted(unknown)}; modalities: {names}")
    state = None if spec is None or spec.is_noop else BudgetState(spec)
    fusion_ok = hasattr(net.fusion, "token_state")
    route: dict[str, str] = {}
    for m in names:
        enc = net.encoders[m]
        in_encoder = state is not None and spec.where == "encoder" and getattr(enc, "supports_token_budget", False)
        if hasattr(enc, "token_state"):
            enc.token_state = state if in_encoder else None
        route[m] = "encoder" if in_encoder else ("fusion" if fusion_ok else "boundary")
    if fusion_ok:
        net.fusion.token_state = state
        net.fusion.token_modalities = {m for m, r in route.items() if r == "fusion"}
    net.token_state = state
    net.token_route = route
    return route


def begin_step(net: nn.Module) -> None:
    """Called by the net at the start of each forward: samples the step's budget in training (``train_budgets``)."""
    state = getattr(net, "token_state", None)
    if state is not None and net.training and state.spec.train_budgets:
        state.sample()


def reduce_at_boundary(net: nn.Module, tokens: dict[str, Tokens]) -> dict[str, Tokens]:
    """Reduce the streams routed to ``"boundary"`` (no transformer could take them) before the fusion."""
    state = getattr(net, "token_state", None)
    if state is None:
        return tokens
    out = dict(tokens)
    for m, r in getattr(net, "token_route", {}).items():
        if r != "boundary":
            continue
        b = state.budget(m, net.training)
        if b >= 1.0:
            continue
        t = tokens[m]
        n = t.x.shape[1]
        size = getattr(t, "size", None)
        seg = Segment(n, schedule_counts(n, b, 0, "input", state.spec.reducer), None, m)
        x, mask, size = reduce_sequence(state.spec, t.x, t.mask, size, [seg], 0, 0, t.x, None)
        out[m] = SizedTokens(x, mask, t.present, size)
    return out


def describe(spec: TokenBudget | None) -> str:
    if spec is None or spec.is_noop:
        return "no token budget"
    b = spec.budget if not isinstance(spec.budget, Mapping) else ", ".join(f"{k}={v}" for k, v in spec.budget.items())
    extra = f", random training budgets {list(spec.train_budgets)}" if spec.train_budgets else ""
    return f"token budget {b} ({spec.reducer}, schedule {spec.schedule}, in {spec.where}){extra}"


__all__ = ["begin_step", "describe", "encoder_stack", "install_token_budget", "reduce_at_boundary"]
