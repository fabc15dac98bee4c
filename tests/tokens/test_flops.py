"""Analytic FLOPs / memory against hand-counted cases, and merge schedules."""

from __future__ import annotations

import pytest

from polymodal.tokens import (
    attention_memory_bytes,
    layer_flops,
    merge_schedule,
    schedule_flops,
    token_counts,
)


def test_layer_flops_hand_counted():
    # N=4 tokens, D=8, mlp_ratio=2 (hidden 16), 1 head; a multiply-add counts 2
    qkv = 2 * 4 * 8 * 24  # [4x8] @ [8x24]          = 1536
    scores = 2 * 4 * 4 * 8  # [4x8] @ [8x4]          = 256
    weighted = 2 * 4 * 4 * 8  # [4x4] @ [4x8]        = 256
    out_proj = 2 * 4 * 8 * 8  # [4x8] @ [8x8]        = 512
    mlp = 2 * 4 * 8 * 16 + 2 * 4 * 16 * 8  # fc1 + fc2 = 2048
    assert qkv + scores + weighted + out_proj + mlp == 4608
    assert layer_flops(4, 8, 2, 1) == 4608


def test_heads_do_not_change_flops_but_memory():
    assert layer_flops(4, 8, 2, 2) == layer_flops(4, 8, 2, 1)
    # [batch=3, heads=2, 4, 4] float32 scores
    assert attention_memory_bytes(4, heads=2, batch=3) == 3 * 2 * 16 * 4
    assert attention_memory_bytes(4, heads=2, batch=3, dtype_bytes=2) == 3 * 2 * 16 * 2
    with pytest.raises(ValueError):
        layer_flops(4, 8, 2, 3)


def test_schedule_flops_sums_layers():
    # N=2, D=4, mlp_ratio=1, 1 head: qkv 2*2*4*12=192, scores 2*2*2*4=32, weighted 32, proj 2*2*4*4=64,
    # mlp 2*(2*2*4*4)=128 -> 448
    assert layer_flops(2, 4, 1, 1) == 448
    assert schedule_flops(8, 2, 1, [4, 4, 2]) == 2 * 4608 + layer_flops(2, 8, 2, 1)


def test_token_counts():
    assert token_counts(10, [3, 2, 0]) == [10, 7, 5, 5]


@pytest.mark.parametrize("mode", ["constant", "decreasing"])
@pytest.mark.parametrize("n,layers,budget,protected", [(128, 4, 0.5, 0), (197, 12, 0.25, 1), (65, 3, 0.75, 1)])
def test_merge_schedule_reaches_budget(mode, n, layers, budget, protected):
    rs = merge_schedule(n, layers, budget, mode, protected=protected)
    assert len(rs) == layers and all(r >= 0 for r in rs)
    counts = token_counts(n, rs)
    assert counts[-1] == round(budget * n)
    assert all(r <= (c - protected) // 2 for r, c in zip(rs, counts))  # ToMe's per-merge clamp


def test_merge_schedule_shapes():
    assert merge_schedule(100, 4, 1.0) == [0, 0, 0, 0]
    assert merge_schedule(100, 4, 0.5) == [13, 13, 12, 12]
    assert merge_schedule(100, 4, 0.5, "decreasing") == [20, 15, 10, 5]
    assert merge_schedule(10, 3, 0.5, protected=1) == [2, 2, 1]
    # 100 -> 10 in 2 merges: at most 50 then 25 can go
    with pytest.raises(ValueError, match="out of reach"):
        merge_schedule(100, 2, 0.1)
    # 100 -> 10 in 4 merges is reachable only near-greedily (at most 50, 25, 12, 6)
    rs = merge_schedule(100, 4, 0.1)
    assert token_counts(100, rs)[-1] == 10 and all(r <= c // 2 for r, c in zip(rs, token_counts(100, rs)))
    # 8 -> 2 in 2 merges needs 4 + 2: the plan [3, 3] would leave only 5 -> 3 for the last merge
    assert merge_schedule(8, 2, 0.25) == [4, 2]


def test_layer_flops_with_a_reduction_between_attention_and_mlp():
    # N=4 -> 2 after attention, D=8, mlp_ratio=2: attention part on 4 tokens, MLP on 2
    attn = 2 * 4 * 8 * 24 + 2 * 4 * 4 * 8 + 2 * 4 * 4 * 8 + 2 * 4 * 8 * 8  # 2560
    mlp = 2 * 2 * 8 * 16 + 2 * 2 * 16 * 8  # 1024
    assert layer_flops(4, 8, 2, 1, n_out=2) == attn + mlp == 3584
    assert layer_flops(4, 8, 2, 1, n_out=4) == layer_flops(4, 8, 2, 1)


def test_stack_costs_per_layer():
    from polymodal.tokens import stack_costs

    costs = stack_costs([(4, 2), (2, 2)], 8, 2, 2, batch=3)
    assert [c["flops"] for c in costs] == [3 * 3584, 3 * layer_flops(2, 8, 2, 2)]
    assert [c["attn_bytes"] for c in costs] == [3 * 2 * 16 * 4, 3 * 2 * 4 * 4]
    assert costs[0]["tokens_attn"] == 4 and costs[0]["tokens_mlp"] == 2


def test_counted_flops_match_the_analytic_count():
    """The op-by-op counter (attention included) agrees with the hand formula, also for a reducing stack."""
    import torch

    from polymodal.blocks import TransformerBlock
    from polymodal.tokens import TokenBudget, count_flops, run_stack, schedule_counts
    from polymodal.tokens.stack import Segment

    blocks = torch.nn.ModuleList(TransformerBlock(16, 4) for _ in range(2)).eval()
    x, mask = torch.randn(2, 12, 16), torch.ones(2, 12, dtype=torch.bool)
    with torch.no_grad():
        flops, _ = count_flops(blocks[0], x, mask)
        assert flops == 2 * layer_flops(12, 16, 2.0, 4)
        spec = TokenBudget(0.5, "pool", schedule="first")
        seg = Segment(12, schedule_counts(12, 0.5, 2, "first", "pool"))
        flops, res = count_flops(run_stack, blocks, x, mask, spec, [seg])
    assert res.trace == [(12, 6), (6, 6)]
    analytic = 2 * (layer_flops(12, 16, 2.0, 4, n_out=6) + layer_flops(6, 16, 2.0, 4))
    pool_matmuls = 2 * (2 * 6 * 12 * 16 + 2 * 6 * 12 * 1 + 2 * 6 * 12 * 1)  # cell sums of x, sizes and masks
    assert flops == analytic + pool_matmuls
