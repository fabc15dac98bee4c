"""ToMe merging: parity with facebookresearch/ToMe (tests/fixtures/oracles/tome_merge.json), the Tokens contract."""

from __future__ import annotations

import pytest
import torch

from polymodal.tokens import (
    REDUCERS,
    bipartite_soft_matching,
    merge_source,
    merge_tokens,
    merge_wavg,
    proportional_attention_bias,
)
from polymodal.types import Tokens
from tests.fixtures_paths import load_oracle

CASES = load_oracle("tome_merge.json")["cases"]  # tests/fixtures/oracles: missing fails, never skips


def _t(v):
    return torch.tensor(v, dtype=torch.float32)


@pytest.fixture(scope="module", params=[c["name"] for c in CASES])
def case(request):
    return next(c for c in CASES if c["name"] == request.param)


def test_oracle_merge_matches_tome(case):
    metric, x = _t(case["metric"]), _t(case["x"])
    size = None if case["size"] is None else _t(case["size"])
    out = case["out"]
    merge, unmerge = bipartite_soft_matching(metric, case["r"], case["class_token"], case["distill_token"])
    assert merge.r_effective == case["r_effective"]  # r clamped to (N - protected) // 2
    x_m, size_m = merge_wavg(merge, x, size)
    assert x_m.shape[1] == out["N_out"] == case["N"] - case["r_effective"]
    assert torch.allclose(x_m, _t(out["x_merged"]), atol=1e-5)
    assert torch.allclose(size_m, _t(out["size_merged"]), atol=1e-5)
    assert torch.allclose(merge(x), _t(out["x_merged_mean_mode"]), atol=1e-5)
    assert torch.allclose(unmerge(x_m), _t(out["x_unmerged"]), atol=1e-5)
    source = merge_source(merge, x)
    groups = [[torch.nonzero(row).flatten().tolist() for row in s] for s in source]
    assert groups == out["groups"]  # exact, including ToMe's output token order
    for name in ("unm_idx", "src_idx", "dst_idx"):
        assert getattr(merge, name)[..., 0].tolist() == out[name]


def test_oracle_has_clamped_case():
    assert any(c["r"] != c["r_effective"] for c in CASES)


def test_r_zero_and_over_half_tome():
    x = torch.randn(2, 9, 4)
    merge, unmerge = bipartite_soft_matching(x, 0)
    assert merge(x) is x and unmerge(x) is x
    merge, _ = bipartite_soft_matching(x, 100, class_token=True)
    assert merge.r_effective == 4 and merge(x).shape == (2, 5, 4)


# --- Tokens-level contract ----------------------------------------------------------------------------------


def _tokens(b=3, n=12, d=8, pad=(0, 3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, d, generator=g)
    mask = torch.ones(b, n, dtype=torch.bool)
    for i, p in enumerate(pad[:b]):
        if p:
            mask[i, n - p :] = False
    return Tokens(x, mask, torch.ones(b, dtype=torch.bool))


def _groups(tokens, r, protected):
    """Run merge_tokens on one-hot tokens: x_out * size_out = the 0/1 membership of each output token."""
    b, n, _ = tokens.x.shape
    eye = Tokens(torch.eye(n).expand(b, n, n).clone(), tokens.mask, tokens.present)
    out, size = merge_tokens(eye, r, metric=tokens.x, protected=protected)
    return out, size, (out.x * size[..., None]).round().bool()


def test_registered():
    assert REDUCERS.get("merge").primitive is merge_tokens


def test_r_zero_is_exact_noop():
    tok = _tokens()
    out, size = merge_tokens(tok, 0, protected=1)
    assert out is tok and torch.equal(size, torch.ones(3, 12))


def test_no_padding_matches_tome_up_to_order():
    tok = _tokens(pad=(0, 0, 0))
    p, r = 1, 4
    out, size = merge_tokens(tok, r, protected=p)
    merge, _ = bipartite_soft_matching(tok.x[:, p:], r)
    ref, ref_size = merge_wavg(merge, tok.x[:, p:])
    # ours keeps unmerged A tokens in original order; ToMe in descending score order
    perm = merge.unm_idx[..., 0].argsort(dim=1)
    n_unm = perm.shape[1]
    ref = torch.cat([ref[:, :n_unm].gather(1, perm[..., None].expand(-1, -1, 8)), ref[:, n_unm:]], 1)
    ref_size = torch.cat([ref_size[:, :n_unm, 0].gather(1, perm), ref_size[:, n_unm:, 0]], 1)
    assert torch.allclose(out.x[:, p:], ref, atol=1e-6) and torch.equal(size[:, p:], ref_size)
    assert torch.equal(out.x[:, :p], tok.x[:, :p])


def _random_mask_tokens():
    tok = _tokens(seed=1)
    mask = torch.rand(3, 12, generator=torch.Generator().manual_seed(1)) > 0.4
    return Tokens(tok.x, mask, tok.present)


@pytest.mark.parametrize("r", [1, 3, 5])
@pytest.mark.parametrize("make", [_tokens, _random_mask_tokens])
def test_masks_and_protected_respected(r, make):
    tok, p = make(), 2
    out, size, groups = _groups(tok, r, protected=p)
    n_out = out.x.shape[1]
    assert 12 - r <= n_out < 12 and out.mask.shape == (3, n_out)  # r may be clamped to what is legal
    for b in range(3):
        for j in range(p):  # protected tokens untouched, first
            assert groups[b, j].nonzero().flatten().tolist() == [j]
        for j in range(n_out):
            members = groups[b, j].nonzero().flatten()
            assert len(members) >= 1
            # a token is real iff all its members are real: padding never mixes with real tokens
            assert tok.mask[b, members].all() == out.mask[b, j] == tok.mask[b, members].any()
    # size conserved for real tokens, and every original token lands in exactly one output token
    assert torch.equal((size * out.mask).sum(1), tok.mask.sum(1).float())
    assert torch.equal(groups.sum(1), torch.ones(3, 12, dtype=torch.long))


def test_padding_values_never_reach_real_tokens():
    tok = _tokens()
    out, size = merge_tokens(tok, 4, protected=1)
    x2 = torch.where(tok.mask[..., None], tok.x, torch.full_like(tok.x, 1e6))
    out2, size2 = merge_tokens(Tokens(x2, tok.mask, tok.present), 4, protected=1)
    assert torch.equal(out.mask, out2.mask) and torch.equal(size, size2)
    assert torch.equal(out.x[out.mask], out2.x[out2.mask])


def test_padding_is_merged_first():
    tok = _tokens(pad=(0, 4, 6))
    out, size = merge_tokens(tok, 2)
    assert out.mask[1].sum() == 8 and out.mask[2].sum() == 6  # only padding went away
    assert torch.equal(size[1][out.mask[1]], torch.ones(8))


def test_given_size_is_conserved_and_weights_average():
    tok = _tokens(pad=(0, 0, 0))
    size = torch.randint(1, 5, (3, 12)).float()
    out, new = merge_tokens(tok, 5, size=size, protected=1)
    assert torch.allclose(new.sum(1), size.sum(1))
    # size-weighted mean: sum(x * size) is conserved too
    assert torch.allclose((out.x * new[..., None]).sum(1), (tok.x * size[..., None]).sum(1), atol=1e-5)


def test_absent_samples_are_finite():
    tok = _tokens()
    x = tok.x.clone()
    x[1] = 0.0  # an absent sample zero-filled: zero-norm metric
    absent = Tokens(x, tok.mask, torch.tensor([True, False, True]))
    out, size = merge_tokens(absent, 4, protected=1)
    assert torch.isfinite(out.x).all() and torch.isfinite(size).all()
    assert torch.equal(out.present, absent.present)


def test_batch_independence():
    tok = _tokens(pad=(0, 0, 2))
    out, size = merge_tokens(tok, 3, protected=1)
    for b in range(3):
        one = Tokens(tok.x[b : b + 1], tok.mask[b : b + 1], tok.present[b : b + 1])
        o, s = merge_tokens(one, 3, protected=1)
        assert torch.allclose(o.x, out.x[b : b + 1]) and torch.equal(o.mask, out.mask[b : b + 1])
        assert torch.equal(s, size[b : b + 1])


def test_r_clamped_to_batch_feasible():
    tok = _tokens(b=2, n=9, pad=(0, 0))
    out, _ = merge_tokens(tok, 100, protected=1)
    assert out.x.shape[1] == 9 - 4  # (N - protected) // 2
    # one real token + one padded token after the protected one: nothing can merge legally
    tok = Tokens(torch.randn(1, 3, 4), torch.tensor([[True, True, False]]), torch.ones(1, dtype=torch.bool))
    out, _ = merge_tokens(tok, 1, protected=1)
    assert out is tok


def test_gradients_flow():
    tok = _tokens()
    x = tok.x.clone().requires_grad_()
    out, _ = merge_tokens(Tokens(x, tok.mask, tok.present), 4, protected=1)
    out.x[out.mask].sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[tok.mask].abs().sum() > 0


def test_proportional_attention_equals_duplicated_keys():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 3, 4, generator=g) for _ in range(3))
    # keys/values [k0, k1, k1, k2] (token 1 duplicated) vs merged [k0, k1 (size 2), k2]
    dup = lambda t: t[:, :, [0, 1, 1, 2]]  # noqa: E731
    full = torch.nn.functional.scaled_dot_product_attention(q, dup(k), dup(v))
    bias = proportional_attention_bias(torch.tensor([[1.0, 2.0, 1.0]]))
    assert bias.shape == (1, 1, 1, 3)
    merged = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    assert torch.allclose(full, merged, atol=1e-6)


def test_proportional_attention_bias_masks_padding():
    bias = proportional_attention_bias(torch.tensor([[2.0, 1.0]]), mask=torch.tensor([[True, False]]))
    assert bias[0, 0, 0, 0] == torch.tensor(2.0).log() and bias[0, 0, 0, 1] == torch.finfo(torch.float32).min


@pytest.mark.parametrize("n,class_token", [(16, False), (15, False), (17, True), (9, True)])
def test_row_copy_sum_equals_gather_scatter(n, class_token):
    """The fast ``sum`` merge (index_select / index_add_) equals ToMe's gather + scatter_reduce formulation."""
    torch.manual_seed(n)
    x, metric = torch.randn(3, n, 5), torch.randn(3, n, 4)
    r = (n - int(class_token)) // 2 - 1
    merge, _ = bipartite_soft_matching(metric, r, class_token=class_token)
    unm, src, dst = merge.unm_idx, merge.src_idx, merge.dst_idx
    a, b = x[:, ::2], x[:, 1::2]
    ref = torch.cat([a.gather(1, unm.expand(-1, -1, 5)),
                     b.scatter_reduce(1, dst.expand(-1, -1, 5), a.gather(1, src.expand(-1, -1, 5)), reduce="sum")], 1)
    x0 = x.clone()
    out = merge(x, mode="sum")
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    assert torch.equal(x, x0)  # the input is untouched: the B set is copied before sources are added into it
