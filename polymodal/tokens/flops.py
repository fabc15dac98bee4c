"""Analytic cost of a pre-norm transformer layer, and ToMe merge schedules for a token budget.

FLOPs count a multiply-add as 2 and include only the matrix products (they dominate): biases, softmax,
LayerNorm, activations and the merge itself are left out. For ``n`` tokens, width ``d``, MLP hidden ``m*d``:

    qkv projection      2 * n * d * 3d
    attention scores    2 * n * n * d      (heads split d, so the head count cancels out)
    weighted sum        2 * n * n * d
    output projection   2 * n * d * d
    MLP                 2 * n * d * md  +  2 * n * md * d
"""

from __future__ import annotations

import math


def layer_flops(n_tokens: int, dim: int, mlp_ratio: float, heads: int, n_out: int | None = None) -> int:
    """FLOPs of one transformer layer over ``n_tokens`` tokens (see the module docstring for what counts).

    ``n_out``: the token count after a reduction between attention and MLP (ToMe's place): the attention part
    runs on ``n_tokens``, the MLP on ``n_out``.
    """
    if dim % heads:
        raise ValueError(f"dim {dim} is not divisible by heads {heads}")
    n, d, hidden = n_tokens, dim, int(round(dim * mlp_ratio))
    m = n if n_out is None else n_out
    qkv = 2 * n * d * 3 * d
    scores = 2 * heads * n * n * (d // heads)
    weighted_sum = 2 * heads * n * n * (d // heads)
    out_proj = 2 * n * d * d
    mlp = 2 * m * d * hidden + 2 * m * hidden * d
    return qkv + scores + weighted_sum + out_proj + mlp


def stack_costs(
    trace: list[tuple[int, int]], dim: int, mlp_ratio: float, heads: int, batch: int = 1, dtype_bytes: int = 4
) -> list[dict[str, int]]:
    """Per-layer cost of a stack from its token trace ``[(tokens in attention, tokens in MLP), ...]``.

    Each entry: ``tokens_attn``, ``tokens_mlp``, ``flops`` (for ``batch`` samples) and ``attn_bytes`` (one
    materialised ``[batch, heads, n, n]`` score matrix, the eager path's peak extra memory).
    """
    return [
        {
            "layer": i,
            "tokens_attn": n_in,
            "tokens_mlp": n_out,
            "flops": batch * layer_flops(n_in, dim, mlp_ratio, heads, n_out),
            "attn_bytes": attention_memory_bytes(n_in, heads, batch, dtype_bytes),
        }
        for i, (n_in, n_out) in enumerate(trace)
    ]


def count_flops(fn, *args, **kwargs) -> tuple[int, object]:
    """Matrix-product FLOPs of one call, counted op by op by ``torch.utils.flop_counter`` (multiply-add = 2):
    the whole forward, convolutions included. Returns ``(flops, fn's result)``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    # PyTorch's counter knows the CUDA attention kernels but not the CPU one: count it the same way.
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        out = fn(*args, **kwargs)
    count_flops.last_by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), out


def schedule_flops(dim: int, mlp_ratio: float, heads: int, token_counts: list[int]) -> int:
    """Total FLOPs of a stack whose layer ``i`` sees ``token_counts[i]`` tokens."""
    return sum(layer_flops(n, dim, mlp_ratio, heads) for n in token_counts)


def attention_memory_bytes(n: int, heads: int, batch: int, dtype_bytes: int = 4) -> int:
    """Bytes of one materialised attention matrix ``[batch, heads, n, n]`` (the eager path's peak extra)."""
    return batch * heads * n * n * dtype_bytes


def token_counts(n_tokens: int, rs: list[int]) -> list[int]:
    """``[n, n - r0, n - r0 - r1, ...]``: the count before each merge of a schedule, then the final count."""
    counts = [n_tokens]
    for r in rs:
        counts.append(counts[-1] - r)
    return counts


def merge_schedule(
    n_tokens: int, layers: int, budget: float, mode: str = "constant", protected: int = 0
) -> list[int]:
    """Per-layer ``r`` so that ``layers`` ToMe merges take ``n_tokens`` down to ``round(budget * n_tokens)``.

    ``constant``: the same r every layer (the remainder goes to the earliest layers, where it saves most).
    ``decreasing``: r proportional to ``layers, layers - 1, ..., 1`` (merge early, then taper off).
    Each r respects ToMe's clamp ``(count - protected) // 2``: an excess moves on to the next layer, and a
    layer takes more than planned when later clamps would otherwise leave the budget out of reach. Raises
    ``ValueError`` if the budget cannot be reached in ``layers`` merges. Budget 1.0 gives all zeros.
    """
    if not 0.0 < budget <= 1.0:
        raise ValueError(f"budget must be in (0, 1], got {budget}")
    if mode not in ("constant", "decreasing"):
        raise ValueError(f"mode must be 'constant' or 'decreasing', got {mode!r}")
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    target = max(round(budget * n_tokens), protected)
    total = n_tokens - target
    if mode == "constant":
        q, rem = divmod(total, layers)
        rs = [q + 1] * rem + [q] * (layers - rem)
    else:
        weights = list(range(layers, 0, -1))
        cum = [sum(weights[: i + 1]) for i in range(layers)]
        ends = [math.ceil(total * c / cum[-1]) for c in cum]
        rs = [e - s for s, e in zip([0] + ends[:-1], ends)]
    if _max_reduction(n_tokens, layers, protected) < total:
        raise ValueError(
            f"budget {budget} ({n_tokens} -> {target} tokens) is out of reach in {layers} merges of at most "
            f"half the unprotected tokens each; use more layers or a larger budget"
        )
    count, left, carry = n_tokens, total, 0  # carry: planned but not yet taken (negative: taken early)
    for i, planned in enumerate(rs):
        cap = min((count - protected) // 2, left)
        r = max(0, min(planned + carry, cap))
        while r < cap and r + _max_reduction(count - r, layers - i - 1, protected) < left:
            r += 1  # take more now, or the clamps of later merges make the budget unreachable
        rs[i], carry, count, left = r, planned + carry - r, count - r, left - r
    return rs


def _max_reduction(count: int, layers: int, protected: int) -> int:
    """The most tokens ``layers`` ToMe merges can remove (each merge removes at most half the unprotected)."""
    total = 0
    for _ in range(layers):
        r = (count - protected) // 2
        total, count = total + r, count - r
    return total
