"""Feature gathering across processes for contrastive losses, with gradients done right.

A contrastive loss wants every other process's samples as negatives. ``gather_features(x)`` concatenates the
``[B, D]`` shards of all processes in rank order (``[world * B, D]``) and, unlike a plain ``all_gather``, lets the
gradient flow back: the backward pass sums the incoming gradients over all processes (every process's loss may
use this process's rows) and hands each process the slice that belongs to its own shard.

The losses use it when called with ``gather=True``: each process scores its *local* rows against the *gathered*
columns, with its positives at column ``rank * B + i`` (open_clip's "local loss" layout, so the logits are
``[B, world * B]`` rather than ``[world * B, world * B]``). Contract, checked by ``tests/objectives/test_distributed``:

* the mean over processes of the returned losses equals the single-process loss on the concatenated batch;
* the gradient reaching each process's shard equals ``world_size`` times the single-process gradient on those
  rows, which is exactly what DistributedDataParallel's gradient *averaging* turns back into the single-process
  gradient of the parameters (the same convention as open_clip with ``gather_with_grad=True``).

Every process must hold the same number of rows (drop the last incomplete batch, or pad), and every process must
call ``backward`` (the backward pass is a collective). When ``torch.distributed`` is not initialised (single
process, CPU tests) ``gather_features`` returns its input unchanged and ``rank_and_world`` is ``(0, 1)``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when ``torch.distributed`` is available, initialised, and has more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world(group=None) -> tuple[int, int]:
    if not is_distributed():
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather in forward; all_reduce(sum) of the gradient + own slice in backward."""

    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:  # type: ignore[override]
        ctx.group = group
        ctx.rank = dist.get_rank(group)
        ctx.batch = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = ctx.rank * ctx.batch
        return grad[start : start + ctx.batch], None


def gather_features(x: Tensor, group=None) -> Tensor:
    """Concatenate ``x`` ([B, ...], same B on every process) over all processes in rank order, keeping gradients.

    A no-op (returns ``x`` itself) when torch.distributed is not initialised or has a single process.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x, group)


def local_offset(batch: int, group=None) -> int:
    """Column of this process's first positive in a gathered ``[world * batch]`` axis (``rank * batch``)."""
    rank, _ = rank_and_world(group)
    return rank * batch
