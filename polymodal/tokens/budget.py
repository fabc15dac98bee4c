"""Token budgets: one knob (``budget``, ``reducer``) for every transformer polymodal builds.

``TokenBudget(budget=0.5, reducer="merge")`` asks each modality's token stream to shrink to ``budget`` x its
token count (``{"image": 0.25, "audio": 0.5}`` for per-modality budgets; an absent name keeps all its tokens).
Where the reduction happens (the *route* of a modality, chosen by ``install_token_budget``):

* ``"encoder"`` (default ``where``): inside the modality's encoder when it has transformer blocks (``image_conv``,
  ``audio_logmel``): between the attention and the MLP of a block, as ToMe does, so every later layer and the
  fusion see fewer tokens;
* ``"fusion"``: inside the ``transformer`` fusion's blocks (``where="fusion"``, or an encoder without blocks);
  the fusion token and the "missing" tokens are protected (never reduced), and pruning is guided by the fusion
  token's attention (the [CLS]-guided pruning of VTC-CLS / VisionZip's "dominant" tokens);
* ``"boundary"``: between encoder and fusion, for any other pair (merge on the token features, prune by the
  attention of the mean token).

Reducers (``REDUCERS`` holds the primitives): ``merge`` (ToMe bipartite matching on the keys, size-weighted
average, proportional attention ``log(size)`` in every later attention), ``prune`` (keep the most attended tokens),
``zip`` (VisionZip: dominant tokens plus ``context`` x budget contextual tokens that absorb the dropped ones),
``pool`` (Matryoshka / M3: average pooling of the patch grid, or of the time axis, to the budget).

Schedules (per stack of L blocks; the count after each reduction point, see ``schedule_counts``): ``"first"``
(everything in block 0, after its attention), ``"input"`` (everything before block 0, with block 0's keys as the
merge metric and its query scores as importance: no attention runs on the full count), ``"constant"`` (the same number of tokens removed in each block, ToMe's
constant r), ``"decreasing"`` (r proportional to L, L-1, ..., 1), or a tuple of cumulative fractions of the
reduction done after each block (length L) or before block 0 and after each block (length L + 1).

Batch-safe: token counts are the padded counts of the batch; samples with padding keep masks (merge removes padding
first, prune keeps real tokens first, pool averages real tokens only). Budget 1.0 everywhere leaves every module
on its original code path: an exact no-op. ``train_budgets`` (M3): during training each step samples one budget
from the list for all modalities, so one model serves any of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor, nn

from polymodal.types import Tokens

from .merge import merge_tokens
from .pool import pool_shape, pool_to
from .prune import prune_by_importance, query_importance

REDUCER_NAMES = ("merge", "prune", "pool", "zip")
SCHEDULES = ("first", "input", "constant", "decreasing")
WHERE = ("encoder", "fusion")


# ----------------------------------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class TokenBudget:
    """What to reduce, how much and where. See the module docstring."""

    budget: float | Mapping[str, float] = 1.0
    reducer: str = "merge"
    schedule: str | tuple[float, ...] = "first"
    where: str = "encoder"
    prop_attn: bool | None = None  # proportional attention; default: on for merge (ToMe), off otherwise
    context: float = 0.15  # zip: share of the kept tokens that are contextual (VisionZip: 10 of 64)
    train_budgets: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        budgets = dict(self.budget) if isinstance(self.budget, Mapping) else {"*": self.budget}
        for k, b in budgets.items():
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0.0 < float(b) <= 1.0:
                raise ValueError(f"token budget for {k!r} must be a number in (0, 1], got {b!r}")
        if self.reducer not in REDUCER_NAMES:
            raise ValueError(f"unknown token reducer {self.reducer!r}; choose one of {', '.join(REDUCER_NAMES)}")
        if isinstance(self.schedule, str):
            if self.schedule not in SCHEDULES:
                raise ValueError(f"unknown token schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)} "
                                 "or give a tuple of cumulative fractions")
        else:
            s = [float(v) for v in self.schedule]
            if not s or any(not 0.0 <= v <= 1.0 for v in s) or any(a > b for a, b in zip(s, s[1:])) or s[-1] != 1.0:
                raise ValueError(f"a schedule tuple must be non-decreasing fractions in [0, 1] ending at 1, got {s}")
            object.__setattr__(self, "schedule", tuple(s))
        if self.where not in WHERE:
            raise ValueError(f"where must be one of {WHERE}, got {self.where!r}")
        if not 0.0 <= self.context < 1.0:
            raise ValueError(f"context must be in [0, 1), got {self.context}")
        tb = tuple(float(b) for b in self.train_budgets)
        if any(not 0.0 < b <= 1.0 for b in tb):
            raise ValueError(f"train_budgets must be numbers in (0, 1], got {list(self.train_budgets)}")
        object.__setattr__(self, "train_budgets", tb)
        if isinstance(self.budget, Mapping):
            object.__setattr__(self, "budget", {str(k): float(v) for k, v in self.budget.items()})
        else:
            object.__setattr__(self, "budget", float(self.budget))

    @classmethod
    def from_config(cls, cfg) -> "TokenBudget":
        """From a ``ModelConfig`` (``token_budget``, ``reducer``, ``train_budgets``, ``token_options``)."""
        opts = dict(getattr(cfg, "token_options", None) or {})
        valid = {f.name for f in fields(cls)} - {"budget", "reducer", "train_budgets"}
        unknown = set(opts) - valid
        if unknown:
            raise ValueError(f"unknown token_options {sorted(unknown)}; valid: {sorted(valid)}")
        if isinstance(opts.get("schedule"), list):
            opts["schedule"] = tuple(opts["schedule"])
        return cls(budget=getattr(cfg, "token_budget", 1.0), reducer=getattr(cfg, "reducer", "merge"),
                   train_budgets=tuple(getattr(cfg, "train_budgets", None) or ()), **opts)

    def for_modality(self, name: str) -> float:
        if isinstance(self.budget, Mapping):
            return float(self.budget.get(name, 1.0))
        return float(self.budget)

    @property
    def use_prop_attn(self) -> bool:
        return self.reducer == "merge" if self.prop_attn is None else bool(self.prop_attn)

    @property
    def is_noop(self) -> bool:
        """True when nothing is ever reduced (budget 1.0 everywhere and no random training budgets)."""
        full = all(b >= 1.0 for b in self.budget.values()) if isinstance(self.budget, Mapping) else self.budget >= 1.0
        return full and not self.train_budgets


class BudgetState:
    """The budget a net's modules read at each forward (shared by its encoders and fusion).

    In training with ``train_budgets``, ``sample()`` (called once per step by the net) picks the step's budget.
    """

    def __init__(self, spec: TokenBudget) -> None:
        self.spec = spec
        self.sampled: float | None = None

    def budget(self, modality: str, training: bool) -> float:
        if training and self.spec.train_budgets:
            return 1.0 if self.sampled is None else self.sampled
        return self.spec.for_modality(modality)

    def sample(self) -> float:
        tb = self.spec.train_budgets
        self.sampled = tb[int(torch.randint(len(tb), ()))] if tb else None
        return self.sampled


@dataclass
class SizedTokens(Tokens):
    """``Tokens`` plus ``size[B, N]``: how many original tokens each token stands for (after merge / pool / zip).

    ``pooled()`` weights by size, so a merged sequence's mean equals the mean over the tokens it came from.
    """

    size: Tensor | None = None

    def with_present(self, present: Tensor) -> "SizedTokens":
        return SizedTokens(self.x, self.mask, present, self.size)

    def pooled(self) -> Tensor:
        if self.size is None:
            return super().pooled()
        w = (self.valid.to(self.x.dtype) * self.size.to(self.x.dtype))[..., None]
        return (self.x * w).sum(1) / w.sum(1).clamp_min(torch.finfo(self.x.dtype).tiny)


# -------------------------------------------------------------------------------------------------- schedules
def schedule_counts(
    n: int,
    budget: float,
    layers: int,
    schedule: str | Sequence[float] = "first",
    reducer: str = "merge",
    grid: tuple[int, int] | None = None,
) -> list[int]:
    """Token count of one stream after each reduction point: ``[before block 0, after block 0, ..., after L-1]``.

    The final count is ``max(1, round(budget * n))`` (``n`` when ``budget >= 1``); with ``layers == 0`` only the
    first point exists. ``pool`` counts are the exact pooled-grid sizes (``pool_shape``), which can differ from
    the target by a few tokens.
    """
    final = n if budget >= 1.0 else max(1, min(n, round(budget * n)))
    removed = n - final
    if layers == 0:
        fracs = [1.0]
    elif isinstance(schedule, str):
        if schedule == "input":
            fracs = [1.0] * (layers + 1)
        elif schedule == "first":
            fracs = [0.0] + [1.0] * layers
        elif schedule == "constant":
            fracs = [0.0] + [(i + 1) / layers for i in range(layers)]
        elif schedule == "decreasing":
            w = list(range(layers, 0, -1))
            fracs = [0.0] + [sum(w[: i + 1]) / sum(w) for i in range(layers)]
        else:
            raise ValueError(f"unknown schedule {schedule!r}")
    else:
        s = [float(v) for v in schedule]
        if len(s) == layers:
            fracs = [0.0] + s
        elif len(s) == layers + 1:
            fracs = s
        else:
            raise ValueError(f"a schedule tuple needs {layers} (or {layers + 1}) entries for {layers} blocks, got {len(s)}")
    counts = [n - round(removed * f) for f in fracs]
    if reducer == "pool":
        g = grid or (1, n)
        out = []
        for c in counts:
            if c < g[0] * g[1]:
                g = pool_shape(g, c)
            out.append(g[0] * g[1])
        counts = out
    return counts


# ------------------------------------------------------------------------------------------- segment reduction
@dataclass
class Segment:
    """One reducible stream inside a sequence: its current padded length, its planned counts, its grid."""

    n: int
    counts: list[int]
    grid: tuple[int, int] | None = None
    name: str = ""


def _importance(scores: Tensor | None, x: Tensor, mask: Tensor, sl: slice) -> Tensor:
    """Per-token importance inside ``sl``: the attention scores a block computed (from the [CLS]/fusion token, or
    from the mean query), else (no block at hand) the attention of the mean real token over the tokens."""
    if scores is not None:
        return scores[:, sl]
    seg, m = x[:, sl], mask[:, sl]
    w = m.to(x.dtype)[..., None]
    query = (seg * w).sum(1) / w.sum(1).clamp_min(1.0)
    return query_importance(query, seg, m)


def reduce_segment(
    spec: TokenBudget,
    tokens: Tokens,
    size: Tensor,
    target: int,
    grid: tuple[int, int] | None,
    metric: Tensor,
    importance: Tensor | None,
) -> tuple[Tokens, Tensor, tuple[int, int] | None]:
    """Shrink one stream (no protected tokens inside) to ``target`` tokens with ``spec.reducer``."""
    n = tokens.x.shape[1]
    if target >= n:
        return tokens, size, grid
    r = spec.reducer
    if r == "merge":
        d = tokens.x.shape[-1]
        cur, m = tokens, metric
        while cur.x.shape[1] > target:
            k = min(cur.x.shape[1] - target, cur.x.shape[1] // 2)
            if k == cur.x.shape[1] - target:  # last round: the metric need not be carried along
                cur, size = merge_tokens(cur, k, metric=m, size=size)
                break
            joint = Tokens(torch.cat([cur.x, m.to(cur.x.dtype)], -1), cur.mask, cur.present)
            out, size = merge_tokens(joint, k, metric=m, size=size)
            if out.x.shape[1] == cur.x.shape[1]:
                break  # nothing left that may merge (e.g. every candidate pair crosses real/padding)
            cur, m = Tokens(out.x[..., :d], out.mask, out.present), out.x[..., d:]
        return cur, size, None
    if r == "pool":
        g = grid or (1, n)
        out_grid = pool_shape(g, target)
        out, size = pool_to(tokens, g, out_grid, size=size)
        return out, size, out_grid
    context = 0 if r == "prune" or target < 2 else max(1, round(spec.context * target))
    out, size = prune_by_importance(tokens, importance, target - context, context=context, metric=metric, size=size)
    return out, size, None


def reduce_sequence(
    spec: TokenBudget,
    x: Tensor,
    mask: Tensor,
    size: Tensor | None,
    segments: list[Segment],
    point: int,
    protected: int,
    metric: Tensor,
    scores: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Reduce every segment of ``x = [protected | seg_0 | seg_1 | ...]`` to its count at ``point``; the protected
    prefix passes through untouched. Updates the segments' lengths and grids in place."""
    if all(s.counts[point] >= s.n for s in segments):
        return x, mask, size
    b = x.shape[0]
    if size is None:
        size = x.new_ones(b, x.shape[1])
    dummy = torch.ones(b, dtype=torch.bool, device=x.device)
    xs, ms, ss = [x[:, :protected]], [mask[:, :protected]], [size[:, :protected]]
    start = protected
    for seg in segments:
        sl = slice(start, start + seg.n)
        start += seg.n
        tok = Tokens(x[:, sl], mask[:, sl], dummy)
        imp = _importance(scores, x, mask, sl) if spec.reducer in ("prune", "zip") else None
        out, s, seg.grid = reduce_segment(spec, tok, size[:, sl], seg.counts[point], seg.grid, metric[:, sl], imp)
        seg.n = out.x.shape[1]
        xs.append(out.x)
        ms.append(out.mask)
        ss.append(s.to(size.dtype))
    return torch.cat(xs, 1), torch.cat(ms, 1), torch.cat(ss, 1)


@dataclass
class StackResult:
    x: Tensor
    mask: Tensor
    size: Tensor | None
    segments: list[Segment]
    trace: list[tuple[int, int]] = field(default_factory=list)  # (tokens in attention, tokens in MLP) per block


def run_stack(
    blocks: Sequence[nn.Module],
    x: Tensor,
    mask: Tensor,
    spec: TokenBudget,
    segments: list[Segment],
    protected: int = 0,
    size: Tensor | None = None,
    cls: bool = False,
) -> StackResult:
    """Run transformer ``blocks`` over ``x = [protected | segments...]`` reducing each segment on its schedule.

    ``size`` (or the sizes the reductions create) turns on proportional attention when ``spec.use_prop_attn``.
    A block with nothing to reduce and no sizes to weigh runs its plain ``forward``.
    """
    prop = spec.use_prop_attn
    importance = ("cls" if cls else "mean") if spec.reducer in ("prune", "zip") else None
    if any(s.counts[0] < s.n for s in segments):  # before block 0: block 0's own keys / query scores
        if len(blocks):
            metric, scores = blocks[0].input_scores(x, mask, size if prop else None, importance)
        else:
            metric, scores = x, None
        x, mask, size = reduce_sequence(spec, x, mask, size, segments, 0, protected, metric, scores)
    trace = []
    for i, blk in enumerate(blocks):
        reduces = any(s.counts[i + 1] < s.n for s in segments)
        n_in = x.shape[1]
        if not reduces and (size is None or not prop):
            x = blk(x, mask)
        else:
            holder = {"size": size}

            def reduce(xx, mm, _ss, metric, scores, _i=i + 1, holder=holder):
                xx, mm, s = reduce_sequence(spec, xx, mm, holder["size"], segments, _i, protected, metric, scores)
                holder["size"] = s
                return xx, mm, s

            x, mask, _ = blk.forward_reduce(
                x, mask, size if prop else None, reduce if reduces else None, importance if reduces else None
            )
            size = holder["size"]
        trace.append((n_in, x.shape[1]))
    return StackResult(x, mask, size, segments, trace)


# ------------------------------------------------------------------------------------------ wiring into a net
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


__all__ = [
    "BudgetState",
    "REDUCER_NAMES",
    "SCHEDULES",
    "Segment",
    "SizedTokens",
    "StackResult",
    "TokenBudget",
    "begin_step",
    "describe",
    "encoder_stack",
    "install_token_budget",
    "reduce_at_boundary",
    "reduce_segment",
    "reduce_sequence",
    "run_stack",
    "schedule_counts",
]
