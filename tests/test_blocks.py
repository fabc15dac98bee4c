"""The shared transformer block: masking, finiteness, parity with plain attention, position helpers."""

from __future__ import annotations

import pytest
import torch

from polymodal.blocks import LearnedPositions, SinusoidalPositions, TransformerBlock, sinusoidal_positions


def reference_block(block: TransformerBlock, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The same block written out with explicit softmax attention."""
    b, n, d = x.shape
    q, k, v = block.qkv_heads(block.norm1(x))
    scores = q @ k.transpose(-1, -2) / block.head_dim**0.5
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    att = scores.softmax(-1) @ v
    x = x + block.proj(att.transpose(1, 2).reshape(b, n, d))
    return x + block.mlp(block.norm2(x))


def test_matches_explicit_attention():
    block = TransformerBlock(16, 4).eval()
    x = torch.randn(3, 6, 16)
    mask = torch.rand(3, 6) > 0.4
    mask[:, 0] = True
    with torch.no_grad():
        torch.testing.assert_close(block(x, mask), reference_block(block, x, mask), atol=1e-5, rtol=1e-5)


def test_padded_tokens_do_not_reach_real_ones():
    block = TransformerBlock(16, 2).eval()
    x = torch.randn(4, 7, 16)
    mask = torch.rand(4, 7) > 0.5
    mask[:, 0] = True
    x2 = torch.where(mask[..., None], x, 50 * torch.randn_like(x))
    with torch.no_grad():
        a, b = block(x, mask), block(x2, mask)
    torch.testing.assert_close(a[mask], b[mask], atol=1e-5, rtol=0)
    # ... and real outputs equal those of the sequence with the padding cut away.
    with torch.no_grad():
        for i in range(4):
            alone = block(x[i : i + 1, mask[i]], torch.ones(1, int(mask[i].sum()), dtype=torch.bool))
            torch.testing.assert_close(a[i, mask[i]], alone[0], atol=1e-5, rtol=0)


def test_all_padding_sample_stays_finite_with_gradients():
    block = TransformerBlock(8, 2).train()
    x = torch.randn(2, 5, 8, requires_grad=True)
    mask = torch.tensor([[True, True, False, False, False], [False] * 5])
    out = block(x, mask)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in block.parameters())


def test_heads_must_divide_dim():
    with pytest.raises(ValueError, match="multiple of heads"):
        TransformerBlock(10, 4)


def test_positions():
    table = sinusoidal_positions(5, 7)
    assert table.shape == (5, 7) and torch.isfinite(table).all()
    x = torch.zeros(2, 5, 7)
    torch.testing.assert_close(SinusoidalPositions(7)(x)[0], table)
    pos = LearnedPositions(4, 6)
    assert pos(torch.zeros(1, 3, 6)).shape == (1, 3, 6)
    torch.testing.assert_close(pos(torch.zeros(1, 3, 6))[0], pos.table[0, :3])  # shorter: first rows, unchanged
    assert pos(torch.zeros(1, 9, 6)).shape == (1, 9, 6)  # longer: interpolated
