"""Importance pruning ([CLS]/fusion-guided or query-guided, VTC-CLS / VisionZip "dominant" tokens).

Optional VisionZip "contextual" tokens: the dropped tokens are folded into ``context`` extra tokens instead of
being thrown away. Batch-safe: each sample keeps its own top tokens; samples with fewer real tokens than
``keep`` are padded (``mask=False``), so the output is always ``[B, protected + keep + context, D]``.

Two token reducers (``REDUCERS``): ``Prune`` (``prune``: the most important tokens) and ``Zip`` (``zip``:
VisionZip, a share ``context`` of the kept tokens are contextual).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.errors import ComponentError
from polymodal.tokens.registry import REDUCERS, TokenReducer
from polymodal.types import Tokens


def _real_first(real: Tensor, idx: Tensor) -> Tensor:
    """Reorder the indices ``idx[B, K]`` so real tokens come first, keeping the order within each group."""
    return idx.gather(1, real.gather(1, idx).int().sort(dim=1, descending=True, stable=True).indices)


def _take(t: Tensor, idx: Tensor) -> Tensor:
    return t.gather(1, idx[..., None].expand(*idx.shape, t.shape[-1])) if t.dim() == 3 else t.gather(1, idx)


def prune_by_importance(
    tokens: Tokens,
    scores: Tensor,
    keep: int,
    protected: int = 0,
    context: int = 0,
    metric: Tensor | None = None,
    size: Tensor | None = None,
) -> tuple[Tokens, Tensor]:
    """Keep the ``keep`` highest-scoring real tokens per sample (plus ``protected`` leading tokens, always kept).

    * ``scores[B, N]``: importance, e.g. attention from the [CLS]/fusion token or from a text query (entries
      for protected tokens are ignored). Padded tokens are only kept after every real token of the sample;
      kept tokens stay in their original order.
    * ``context > 0`` (VisionZip "contextual"): per sample, ``context`` targets are chosen evenly spaced among
      the dropped real tokens (in original order); every dropped token joins its most similar target (cosine
      on ``metric``, default ``tokens.x``) and each group becomes one token: the size-weighted mean of its
      members (VisionZip adds the target to the plain mean of the others; we take a proper mean so ``size``
      stays meaningful). A sample with fewer than ``context`` dropped tokens gets padded context slots.
    * Returns ``(Tokens, size)`` with ``size`` the number of original tokens each output token stands for
      (input ``size`` defaults to ones). ``keep >= N - protected`` returns the input unchanged (exact no-op).
    """
    x, mask = tokens.x, tokens.mask
    b, n, _ = x.shape
    size = x.new_ones(b, n) if size is None else size.reshape(b, n)
    rest = n - protected
    if keep < 0 or context < 0:
        raise ValueError(f"keep and context must be >= 0, got keep={keep}, context={context}")
    if keep >= rest:
        return tokens, size
    real = mask[:, protected:]
    score = torch.nan_to_num(scores[:, protected:].float(), nan=-torch.inf)
    order = _real_first(real, score.sort(dim=1, descending=True, stable=True).indices)  # real by score, then pads
    kept = order[:, :keep].sort(dim=1).values + protected
    parts_x = [x[:, :protected], _take(x, kept)]
    parts_m = [mask[:, :protected], _take(mask, kept)]
    parts_s = [size[:, :protected], _take(size, kept)]
    if context > 0:
        dropped = _real_first(real, order[:, keep:].sort(dim=1).values) + protected  # original order, real first
        cx, cm, cs = _contextual(x, x if metric is None else metric, mask, size, dropped, context)
        parts_x.append(cx)
        parts_m.append(cm)
        parts_s.append(cs)
    out = Tokens(torch.cat(parts_x, 1), torch.cat(parts_m, 1), tokens.present)
    return out, torch.cat(parts_s, 1)


def _contextual(x, metric, mask, size, dropped, k):
    """Fold the dropped tokens ``dropped[B, Dp]`` (real first, in original order) into ``k`` context tokens."""
    real = _take(mask, dropped)  # [B, Dp]
    n_drop = real.sum(1, keepdim=True)  # [B, 1]
    t = torch.arange(k, device=x.device)[None]  # [1, K]
    valid = t < n_drop  # [B, K] context slot has a target
    rank = torch.where(n_drop >= k, t * n_drop // k, t).clamp_max((n_drop - 1).clamp_min(0))  # evenly spaced
    m = F.normalize(_take(metric, dropped).float(), dim=-1)  # [B, Dp, C]
    sim = m @ _take(m, rank).transpose(1, 2)  # [B, Dp, K]
    sim = sim.scatter_add(1, rank[:, None], 4.0 * valid[:, None].float())  # each target joins its own slot
    assign = sim.masked_fill(~valid[:, None], -torch.inf).argmax(-1)  # [B, Dp]
    w = (_take(size, dropped) * real).to(x.dtype)  # padding weighs nothing
    onehot = F.one_hot(assign, k).to(x.dtype) * w[..., None]  # [B, Dp, K]
    csize = onehot.sum(1)  # [B, K]
    xd = torch.where(real[..., None], _take(x, dropped), 0.0)  # padded values never leak in
    cx = onehot.transpose(1, 2) @ xd / csize.clamp_min(torch.finfo(x.dtype).tiny)[..., None]
    return cx, valid, csize.to(size.dtype)


def query_importance(query: Tensor, keys: Tensor, mask: Tensor | None = None) -> Tensor:
    """Text/query-guided importance: softmax attention of ``query`` (``[B, D]`` or ``[B, Q, D]``) over ``keys[B, N, D]``,
    averaged over the queries -> ``[B, N]`` (padded keys, ``mask=False``, get 0). Feed it to ``prune_by_importance``."""
    q = query[:, None] if query.dim() == 2 else query
    logits = (q.float() @ keys.float().transpose(1, 2)) * keys.shape[-1] ** -0.5  # [B, Q, N]
    if mask is not None:
        logits = logits.masked_fill(~(mask | ~mask.any(1, keepdim=True))[:, None], -torch.inf)
    return logits.softmax(-1).mean(1)


def zip_tokens(
    tokens: Tokens,
    scores: Tensor,
    keep: int,
    context: int,
    protected: int = 0,
    metric: Tensor | None = None,
    size: Tensor | None = None,
) -> tuple[Tokens, Tensor]:
    """VisionZip: ``keep`` dominant tokens (most attended) plus ``context`` contextual tokens absorbing the rest."""
    return prune_by_importance(tokens, scores, keep, protected=protected, context=context, metric=metric, size=size)


@REDUCERS.register("prune")
class Prune(TokenReducer):
    """Keep the most attended tokens (the [CLS]/fusion token's attention, else the mean query's); drop the rest."""

    name = "prune"
    needs_importance = True
    primitive = staticmethod(prune_by_importance)

    def context_tokens(self, target: int) -> int:
        """How many of the ``target`` output tokens are contextual (none: pure pruning)."""
        return 0

    def reduce(self, tokens, size, target, grid, metric, importance):
        context = self.context_tokens(target)
        out, size = prune_by_importance(tokens, importance, target - context, context=context, metric=metric, size=size)
        return out, size, None


@REDUCERS.register("zip")
class Zip(Prune):
    """VisionZip: dominant tokens plus ``context`` x budget contextual tokens that absorb the dropped ones."""

    name = "zip"
    defaults = {"prop_attn": False, "context": 0.15}  # context: VisionZip keeps 10 of 64 as contextual tokens
    primitive = staticmethod(zip_tokens)

    def check(self) -> None:
        if not 0.0 <= self.options["context"] < 1.0:
            raise ComponentError(f"zip's context must be in [0, 1), got {self.options['context']}")

    def context_tokens(self, target: int) -> int:
        return 0 if target < 2 else max(1, round(self.options["context"] * target))
