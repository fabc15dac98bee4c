"""Running a stack of transformer blocks under a token budget.

``run_stack`` runs the blocks over ``x = [protected | segment_0 | segment_1 | ...]`` and shrinks each ``Segment``
(one modality's stream) to the counts its schedule gives (``spec.schedule_counts``): before block 0 with block 0's
own keys / query scores, and between the attention and the MLP of a block, as ToMe does. ``reduce_sequence``
does one reduction point over all segments (the protected prefix passes through untouched), ``reduce_segment``
one stream with the spec's reducer (dispatched through ``REDUCERS``: ``spec.token_reducer.reduce``).

Batch-safe: token counts are the padded counts of the batch; samples with padding keep masks (merge removes padding
first, prune keeps real tokens first, pool averages real tokens only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from polymodal.types import Tokens

from polymodal.tokens.prune import query_importance
from polymodal.tokens.spec import TokenBudget


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
    """Shrink one stream (no protected tokens inside) to ``target`` tokens with the spec's reducer: the entry
    ``REDUCERS`` built for ``spec.reducer`` (``spec.token_reducer.reduce``)."""
    n = tokens.x.shape[1]
    if target >= n:
        return tokens, size, grid
    return spec.token_reducer.reduce(tokens, size, target, grid, metric, importance)


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
        imp = _importance(scores, x, mask, sl) if spec.token_reducer.needs_importance else None
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
    importance = ("cls" if cls else "mean") if spec.token_reducer.needs_importance else None
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


__all__ = ["Segment", "StackResult", "reduce_segment", "reduce_sequence", "run_stack"]
