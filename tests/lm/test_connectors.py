"""Connectors: every registered one maps Tokens to the LM width with the right mask; mlp == LLaVA's projector."""

import pytest
import torch

from polymodal.lm.connectors import CONNECTORS
from polymodal.types import Tokens


def _tokens(b=3, n=16, d=8):
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[1, 10:] = False
    return Tokens(torch.randn(b, n, d), mask, torch.tensor([True, True, False]))


@pytest.mark.parametrize("name", CONNECTORS.names())
def test_contract(name):
    conn = CONNECTORS.build(name, 8, 12).eval()
    t = _tokens()
    out = conn(t)
    assert out.x.shape[-1] == 12 and out.x.shape[1] == conn.out_tokens(16)
    assert torch.isfinite(out.x).all()
    assert not out.mask[2].any(), "an absent modality gives no token"
    assert out.mask[0].any() and out.mask[1].any()
    # padding is ignored: changing the padded values of row 1 changes none of its real outputs
    t2 = Tokens(t.x.clone(), t.mask, t.present)
    t2.x[1, 10:] = 100.0
    out2 = conn(t2)
    torch.testing.assert_close(out2.x[1][out2.mask[1]], out.x[1][out.mask[1]])
    # batch independence: row 0 alone gives the same tokens
    alone = conn(Tokens(t.x[:1], t.mask[:1], t.present[:1]))
    torch.testing.assert_close(alone.x[0][alone.mask[0]], out.x[0][out.mask[0]], atol=1e-5, rtol=1e-5)
    out.x[out.mask].sum().backward()
    assert all(p.grad is not None for p in conn.parameters())


def test_mlp_matches_llava_projector():
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    cfg = LlavaConfig(vision_config=CLIPVisionConfig(hidden_size=8, num_attention_heads=2, intermediate_size=16),
                      text_config=LlamaConfig(hidden_size=12, num_attention_heads=2, intermediate_size=24),
                      projector_hidden_act="gelu", vision_feature_layer=-2)
    ref = LlavaMultiModalProjector(cfg).eval()
    ours = CONNECTORS.build("mlp", 8, 12).eval()
    ours.load_state_dict({k: v for k, v in ref.state_dict().items()})  # same key names: linear_1, linear_2
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(ours.project(x), ref(x))


def test_pixel_shuffle_groups_square_grid_spatially():
    conn = CONNECTORS.build("pixel_shuffle", 1, 4, factor=2)
    with torch.no_grad():
        conn.proj.weight.copy_(torch.eye(4))
        conn.proj.bias.zero_()
    x = torch.arange(16.0).reshape(1, 16, 1)  # a 4x4 grid, row-major
    out = conn(Tokens(x, torch.ones(1, 16, dtype=torch.bool), torch.tensor([True])))
    assert out.x.shape == (1, 4, 4)
    torch.testing.assert_close(out.x[0, 0], torch.tensor([0.0, 1.0, 4.0, 5.0]))  # the top-left 2x2 patch


def test_resampler_fixed_count_and_pool_linear_factor():
    assert CONNECTORS.build("resampler", 8, 12, queries=5)(_tokens()).x.shape[1] == 5
    assert CONNECTORS.build("pool_linear", 8, 12, factor=4)(_tokens()).x.shape[1] == 4


@pytest.mark.parametrize("reducer", __import__("polymodal.tokens", fromlist=["REDUCERS"]).REDUCERS.names())
def test_budget_before_the_lm_keeps_the_count_for_every_reducer(reducer):
    from polymodal.lm.budget import LMBudget, reduce_tokens

    for n in (49, 30):  # a square grid and a sequence
        t = Tokens(torch.randn(2, n, 8), torch.ones(2, n, dtype=torch.bool), torch.tensor([True, False]))
        out = reduce_tokens({"a": t}, LMBudget(count=4, reducer=reducer))["a"]
        assert int(out.valid[0].sum()) <= 4 and int(out.valid[0].sum()) >= 1
        assert not out.valid[1].any()
    one = reduce_tokens({"a": t}, LMBudget(count=1))["a"]
    torch.testing.assert_close(one.x[0, 0], t.x[0].mean(0))  # one token per modality = the mean
