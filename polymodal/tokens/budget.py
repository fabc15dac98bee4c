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

Capabilities are declared, not discovered: an encoder or fusion that can reduce its own tokens declares
``supports_token_budget = True`` (``Encoder`` / ``Fusion`` declare ``False``) and receives its budget through its
``set_token_budget`` hook; the state it reads at each forward is its declared ``token_state``. The net itself
declares ``token_state`` and ``token_route`` (``MultimodalNet``), which ``install_token_budget`` writes and
``begin_step`` / ``reduce_at_boundary`` read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from polymodal.types import Tokens

from polymodal.tokens.spec import BudgetState, SizedTokens, TokenBudget, schedule_counts
from polymodal.tokens.stack import Segment, StackResult, reduce_sequence, run_stack


def module_budget(module: nn.Module, name: str) -> tuple[TokenBudget, float] | None:
    """``(spec, budget)`` for a budget-aware module's stream ``name``, or ``None`` when it runs untouched.

    ``module``: an ``Encoder`` or ``Fusion`` (both declare ``token_state``, set by their ``set_token_budget``)."""
    state: BudgetState | None = module.token_state
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
    counts = schedule_counts(n, b, len(blocks), spec.schedule, spec.token_reducer, grid)
    res = run_stack(blocks, x, mask, spec, [Segment(n, counts, grid, module.spec.name)])
    module.token_trace = res.trace
    return res


def install_token_budget(net: nn.Module, spec: TokenBudget | None) -> dict[str, str]:
    """Point every budget-aware part of a ``MultimodalNet`` at ``spec``; returns each modality's route.

    ``spec=None`` (or a no-op spec) detaches everything: all modules run their original code. Encoders and the
    fusion get their part through their ``set_token_budget`` hook (``None``: run untouched); the net's declared
    ``token_state`` / ``token_route`` are written here (the net has no hook of its own).
    """
    names = list(net.encoders)
    if spec is not None and isinstance(spec.budget, Mapping):
        unknown = set(spec.budget) - set(names)
        if unknown:
            raise ValueError(f"token budget names unknown modalities {sorted(unknown)}; modalities: {names}")
    state = None if spec is None or spec.is_noop else BudgetState(spec)
    fusion = net.fusion  # None in an alignment net: no fusion, every stream is reduced at the boundary
    fusion_ok = fusion is not None and fusion.supports_token_budget
    route: dict[str, str] = {}
    for m in names:
        enc = net.encoders[m]
        in_encoder = state is not None and spec.where == "encoder" and enc.supports_token_budget
        enc.set_token_budget(state if in_encoder else None)
        route[m] = "encoder" if in_encoder else ("fusion" if fusion_ok else "boundary")
    if fusion_ok:
        fusion.set_token_budget(state, {m for m, r in route.items() if r == "fusion"})
    net.token_state = state
    net.token_route = route
    return route


def begin_step(net: nn.Module) -> None:
    """Called by the net at the start of each forward: samples the step's budget in training (``train_budgets``)."""
    state = net.token_state
    if state is not None and net.training and state.spec.train_budgets:
        state.sample()


def reduce_at_boundary(net: nn.Module, tokens: dict[str, Tokens]) -> dict[str, Tokens]:
    """Reduce the streams routed to ``"boundary"`` (no transformer could take them) before the fusion."""
    state = net.token_state
    if state is None:
        return tokens
    out = dict(tokens)
    for m, r in net.token_route.items():
        if r != "boundary":
            continue
        b = state.budget(m, net.training)
        if b >= 1.0:
            continue
        t = tokens[m]
        n = t.x.shape[1]
        size = t.size if isinstance(t, SizedTokens) else None
        seg = Segment(n, schedule_counts(n, b, 0, "input", state.spec.token_reducer), None, m)
        x, mask, size = reduce_sequence(state.spec, t.x, t.mask, size, [seg], 0, 0, t.x, None)
        out[m] = SizedTokens(x, mask, t.present, size)
    return out


__all__ = ["begin_step", "encoder_stack", "install_token_budget", "module_budget", "reduce_at_boundary"]
