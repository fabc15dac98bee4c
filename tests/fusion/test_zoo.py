"""Operator-specific tests for the fusion zoo (the shared contract is in test_contract.py). ``gated`` and ``deepset``
reproduce TorchMultimodal (tests/fixtures/oracles/torchmultimodal_fusion.json): the reference state_dict loads by
key, its input vectors become one-token ``Tokens``, and ``pooled`` must equal its ``fused`` within 1e-5."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from polymodal.fusion import FUSIONS
from polymodal.fusion.intermediary import grid_pool
from polymodal.fusion.moe import switch_balance_loss
from polymodal.types import Tokens
from tests.fixtures_paths import load_oracle

from .test_contract import DIM, NAMES, PRESENT, build, make_tokens, run

CASES = load_oracle("torchmultimodal_fusion.json")  # in the repository: missing fails, never skips


def t(v) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float32)


def vectors(inputs: dict, present: dict | None = None) -> dict[str, Tokens]:
    """``{name: [B, d]}`` -> one-token ``Tokens`` (the masked mean of one real token is the vector itself)."""
    x = {m: torch.as_tensor(v, dtype=torch.float32)[:, None] for m, v in inputs.items()}
    one = {m: torch.ones(v.shape[:2], dtype=torch.bool) for m, v in x.items()}
    return {m: Tokens(x[m], one[m], one[m][:, 0] if present is None else present[m]) for m in x}


def load_reference(fusion, case, extras: set[str]) -> None:
    state = {k: t(v["value"]) for k, v in case["state_dict"].items()}
    missing, unexpected = fusion.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) == extras, (missing, unexpected)


@pytest.mark.parametrize("case", CASES["attention_fusion"], ids=lambda c: c["name"])
def test_gated_reproduces_torchmultimodal_attention_fusion(case):
    dims = case["ctor"]["channel_to_encoder_dim"]
    fusion = FUSIONS.build("gated", list(dims), case["resolved_projection_dim"], input_dims=dims).eval()
    load_reference(fusion, case, {f"missing.{m}" for m in dims} | {"nothing"})
    tokens = vectors(case["inputs"])
    out = run(fusion, tokens)
    assert torch.allclose(out.pooled, t(case["fused"]), atol=1e-5)
    present = torch.ones(out.pooled.shape[0], len(dims), dtype=torch.bool)
    w = fusion.gate({m: tokens[m].pooled() for m in fusion.order}, present)
    assert torch.allclose(w, t(case["attention_weights"]), atol=1e-5)


@pytest.mark.parametrize("case", CASES["deepset_fusion"], ids=lambda c: c["name"])
def test_deepset_reproduces_torchmultimodal_deepset_fusion(case):
    ctor = case["ctor"]
    dims, mlp = ctor["channel_to_encoder_dim"], ctor["mlp"]
    kw = {k: ctor.get(k, False) for k in ("apply_attention", "modality_normalize", "use_auto_mapping")}
    kw.update(input_dims=dims, mlp_hidden=mlp.get("hidden_dims", []), attention_dim=ctor.get("attention_dim"))
    kw["pooling"] = ctor["pooling_function"].removeprefix("torch.")  # torch.max / torch.median: values are used
    fusion = FUSIONS.build("deepset", list(dims), mlp["out_dim"], **kw).eval()
    assert fusion.mlp.model[0].in_features == mlp["in_dim"]
    load_reference(fusion, case, {"nothing"})
    assert torch.allclose(run(fusion, vectors(case["inputs"])).pooled, t(case["fused"]), atol=1e-5)


@pytest.mark.parametrize("pooling", ["sum", "mean", "max", "median"])
def test_deepset_absent_modality_is_left_out_of_the_pool(pooling):
    """With 'c' absent everywhere, the 3-modality deepset equals a deepset built on {a, b} with the same weights."""
    opts = {"pooling": pooling, "apply_attention": True, "modality_normalize": True}
    three, two = build("deepset", **opts).eval(), FUSIONS.build("deepset", ["a", "b"], DIM, **opts).eval()
    two.load_state_dict(three.state_dict(), strict=False)
    g = torch.Generator().manual_seed(9)
    inputs = {m: torch.randn(5, DIM, generator=g) for m in NAMES}
    ones = torch.ones(5, dtype=torch.bool)
    absent_c = {"a": ones, "b": ones, "c": ~ones}
    ours = run(three, vectors(inputs, absent_c)).pooled
    ref = run(two, vectors({m: inputs[m] for m in "ab"})).pooled
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_gated_weights_are_renormalised_over_present_modalities():
    fusion = build("gated").eval()
    tokens = make_tokens(torch.Generator().manual_seed(10))
    present = torch.stack([PRESENT[m] for m in fusion.order], 1)
    w = fusion.gate({m: tokens[m].pooled() for m in fusion.order}, present)
    assert (w[~present] == 0).all() and torch.allclose(w.sum(1), present.any(1).float())  # zeros when none


def test_sequential_order_skip_and_per_step_states():
    fusion = build("sequential", order=["c", "a", "b"]).eval()
    tokens = make_tokens(torch.Generator().manual_seed(11))
    out = run(fusion, tokens)
    steps = out.tokens  # the state after every step, in fusion.order
    assert steps.x.shape == (8, 3, DIM) and torch.equal(steps.mask, torch.stack([PRESENT[m] for m in "cab"], 1))
    torch.testing.assert_close(steps.x[:, -1], out.pooled)  # the prediction after the last step is the output
    with torch.no_grad():
        for i in range(8):  # per sample: apply the present modalities' cells in order, skipping the absent ones
            s = fusion.init_state[None]
            for j, m in enumerate(fusion.order):
                if PRESENT[m][i]:
                    s = fusion.cells[m](tokens[m].pooled()[[i]], s)
                torch.testing.assert_close(steps.x[i, j], s[0], atol=1e-6, rtol=0)  # a skipped step repeats the state
    only_c = PRESENT["c"] & ~PRESENT["a"] & ~PRESENT["b"]
    torch.testing.assert_close(out.pooled[only_c], out.per_modality["c"][only_c])
    other = build("sequential", order=["a", "b", "c"]).eval()
    other.load_state_dict(fusion.state_dict())
    all_three = PRESENT["a"] & PRESENT["b"] & PRESENT["c"]
    assert not torch.allclose(run(other, tokens).pooled[all_three], out.pooled[all_three])  # order matters


def test_moe_aux_loss_and_utilisation():
    e, real = 2, torch.ones(1, 4, dtype=torch.bool)
    balanced, chosen = torch.full((1, 4, e), 0.5), torch.tensor([[[0], [1], [0], [1]]])
    assert switch_balance_loss(balanced, chosen, real)[0].item() == pytest.approx(1.0)
    collapsed = torch.tensor([[[1.0, 0.0]] * 4])
    assert switch_balance_loss(collapsed, torch.zeros(1, 4, 1, dtype=torch.long), real)[0].item() == pytest.approx(e)
    for top_k in (1, 2):
        fusion = build("moe", experts=e, top_k=top_k, aux_weight=1.0).train()
        out = fusion(make_tokens(torch.Generator().manual_seed(12)))
        assert out.aux_loss.item() >= 1.0 / e - 1e-6  # Switch loss lower bound: P_e >= f_e / E
        assert set(fusion.last_utilisation) == set(NAMES)
        for util in fusion.last_utilisation.values():
            assert util.shape == (e,) and util.sum().item() == pytest.approx(1.0)


def test_low_rank_tensor_equals_full_tensor_fusion_and_trains():
    fusion = FUSIONS.build("low_rank_tensor", ["a", "b"], 4, rank=3, input_dims={"a": 2, "b": 3})
    ha, hb = torch.randn(5, 2), torch.randn(5, 3)
    out = fusion(vectors({"a": ha, "b": hb}))
    # The rank-r factors are a factorisation of one full weight tensor over the outer product [h_a,1] x [h_b,1].
    full = torch.einsum("r,rio,rjo->ijo", fusion.fusion_weights, fusion.factors["a"], fusion.factors["b"])
    za, zb = (torch.cat([fusion.norms[m](h), torch.ones(5, 1)], 1) for m, h in (("a", ha), ("b", hb)))
    ref = torch.einsum("bi,bj,ijo->bo", za, zb, full) + fusion.fusion_bias
    torch.testing.assert_close(out.pooled, ref, atol=1e-5, rtol=1e-5)
    out.pooled.square().sum().backward()
    for name, p in fusion.named_parameters():
        if not name.startswith("missing"):  # nothing is missing in this batch
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def attention_shapes(monkeypatch, fusion, tokens) -> list[tuple[int, int]]:
    calls, sdpa = [], F.scaled_dot_product_attention

    def counting(q, k, *args, **kwargs):
        calls.append((q.shape[-2], k.shape[-2]))
        return sdpa(q, k, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(F, "scaled_dot_product_attention", counting)
        run(fusion, tokens)
    return calls


def test_bottleneck_cost_is_linear_in_the_number_of_modalities(monkeypatch):
    n, latents, layers = 6, 4, 2
    for m in (2, 3, 4):
        names = [f"m{i}" for i in range(m)]
        ones = torch.ones(2, n, dtype=torch.bool)
        tokens = {k: Tokens(torch.randn(2, n, DIM), ones, ones[:, 0]) for k in names}
        fusion = FUSIONS.build("bottleneck", names, DIM, latents=latents, layers=layers).eval()
        # One block per modality and layer, each over its own tokens plus the latents: no N_i x N_j pairs.
        assert attention_shapes(monkeypatch, fusion, tokens) == [(n + latents, n + latents)] * (layers * m)
        cross = attention_shapes(monkeypatch, FUSIONS.build("cross_attention", names, DIM).eval(), tokens)
        assert max(k for _, k in cross) == (m - 1) * n  # cross-attention keys grow with the other modalities


def test_cross_attention_is_symmetric_in_modality_order():
    fusion = build("cross_attention").eval()
    flipped = FUSIONS.build("cross_attention", NAMES[::-1], DIM).eval()
    flipped.load_state_dict(fusion.state_dict())
    tokens = make_tokens(torch.Generator().manual_seed(13))
    a, b = run(fusion, tokens), run(flipped, tokens)
    torch.testing.assert_close(a.pooled, b.pooled, atol=1e-5, rtol=0)
    for m in NAMES:
        torch.testing.assert_close(a.per_modality[m], b.per_modality[m], atol=1e-5, rtol=0)
    # ... and genuinely cross-modal: another modality's tokens change a modality's own vector.
    changed = dict(tokens, b=Tokens(tokens["b"].x.flip(-1), tokens["b"].mask, tokens["b"].present))
    both = PRESENT["a"] & PRESENT["b"]
    assert not torch.allclose(run(fusion, changed).per_modality["a"][both], a.per_modality["a"][both])


def test_intermediary_grid_is_adaptive_pooling_of_real_tokens():
    x = torch.randn(2, 10, DIM)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 7:] = False  # sample 1 has 7 real tokens then padding
    cells, ok = grid_pool(Tokens(x, mask, torch.ones(2, dtype=torch.bool)), 4)
    assert ok.all()
    torch.testing.assert_close(cells[0], F.adaptive_avg_pool1d(x[0].T, 4).T)
    torch.testing.assert_close(cells[1], F.adaptive_avg_pool1d(x[1, :7].T, 4).T)
    fusion = build("intermediary", grid=4).eval()
    run(fusion, make_tokens(torch.Generator().manual_seed(14)))
    w = fusion.last_weights  # [B, G, M]
    absent = ~torch.stack([PRESENT[m] for m in NAMES], 1)
    assert (w.permute(0, 2, 1)[absent] == 0).all()
    torch.testing.assert_close(w.sum(-1), (~absent).any(1, keepdim=True).float().expand(-1, 4))


def test_concat_zero_imputation_mode():
    g = torch.Generator().manual_seed(5)
    tokens = make_tokens(g)
    zero = build("concat", missing="zero").eval()
    out = run(zero, tokens)
    for m in NAMES:
        assert torch.all(out.per_modality[m][~PRESENT[m]] == 0)  # absent -> zeros, not a learned embedding
        assert torch.all(out.per_modality[m][PRESENT[m]].abs().sum(1) > 0)
    learned = run(build("concat").eval(), tokens)
    assert not torch.allclose(learned.per_modality["a"][~PRESENT["a"]], out.per_modality["a"][~PRESENT["a"]])
    with pytest.raises(ValueError, match="missing="):
        build("concat", missing="mean")
