"""CLIP and SigLIP losses against open_clip 3.3.0 and TorchMultimodal reference numbers (tests/fixtures/oracles)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from polymodal.objectives import (
    OBJECTIVES,
    ClipLoss,
    SigLipLoss,
    clip_loss,
    clip_output,
    contrastive_loss_with_temperature,
    siglip_loss,
)
from tests.fixtures_paths import load_oracle


def t(v) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float32)


def close(ours: torch.Tensor, expected, big: bool = False) -> bool:
    expected = t(expected)
    big = big or expected.abs().max() > 10
    return torch.allclose(ours.detach(), expected, atol=1e-5, rtol=1e-5 if big else 0.0)


# in the repository (tests/fixtures/oracles): a missing file fails, never skips
OPEN_CLIP = load_oracle("open_clip_losses.json")["cases"]
TMM = load_oracle("torchmultimodal_fusion.json")["contrastive_loss_with_temperature"]


def _leaves(case):
    img = t(case["image_features"]).requires_grad_(True)
    txt = t(case["text_features"]).requires_grad_(True)
    return img, txt


@pytest.mark.parametrize("case", OPEN_CLIP, ids=lambda c: f"B{c['B']}xD{c['D']}")
def test_clip_loss_matches_open_clip(case):
    img, txt = _leaves(case)
    loss = clip_loss(img, txt, case["logit_scale"])
    loss.backward()
    ref = case["clip"]
    assert close(loss, ref["loss"])
    assert close(img.grad, ref["grad_image"])
    assert close(txt.grad, ref["grad_text"])


@pytest.mark.parametrize("case", OPEN_CLIP, ids=lambda c: f"B{c['B']}xD{c['D']}")
def test_siglip_loss_matches_open_clip(case):
    img, txt = _leaves(case)
    loss = siglip_loss(img, txt, case["logit_scale"], case["logit_bias"])
    loss.backward()
    ref = case["siglip"]
    assert close(loss, ref["loss"])
    assert close(img.grad, ref["grad_image"])
    assert close(txt.grad, ref["grad_text"])


@pytest.mark.parametrize("case", OPEN_CLIP, ids=lambda c: f"B{c['B']}xD{c['D']}")
def test_modules_with_fixed_parameters_match_open_clip(case):
    """The modules normalise themselves; the oracle features are already unit-norm, so values must agree."""
    img, txt = t(case["image_features"]), t(case["text_features"])
    clip = ClipLoss(math.log(case["logit_scale"]), learnable=False)
    sig = SigLipLoss(math.log(case["logit_scale"]), case["logit_bias"], learnable=False)
    assert close(clip(img, txt), case["clip"]["loss"])
    assert close(sig({"image": img, "text": txt}), case["siglip"]["loss"])


@pytest.mark.parametrize("case", TMM, ids=lambda c: c["name"])
def test_torchmultimodal_contrastive_loss_with_temperature(case):
    """TorchMultimodal convention: logit_scale is the LOG, clamped to [0, ln 100]; no normalisation."""
    a = t(case["embeddings_a"]).requires_grad_(True)
    b = t(case["embeddings_b"]).requires_grad_(True)
    call = case.get("call_kwargs", {})
    mask = torch.tensor(call["mask"]) if "mask" in call else None
    smoothing = call.get("cross_entropy_kwargs", {}).get("label_smoothing", 0.0)

    module = ClipLoss(case["ctor_kwargs"]["logit_scale"], normalize=False, label_smoothing=smoothing)
    out = module.output(a, b, mask=mask)
    out.loss.backward()
    assert module.logit_scale.item() == t(case["logit_scale_log_after_clamp"]).item()
    assert close(out.loss, case["loss"])
    assert close(out.loss_a, case["loss_a"])
    assert close(out.loss_b, case["loss_b"])
    assert close(out.logits_a, case["logits_a"])
    assert close(out.logits_b, case["logits_b"])
    assert close(a.grad, case["grad_embeddings_a"])
    assert close(b.grad, case["grad_embeddings_b"])
    assert close(module.logit_scale.grad, case["grad_logit_scale"])

    # the functional adapter with the clamped log-scale gives the same value
    log_scale = t(case["logit_scale_log_after_clamp"])
    fn = contrastive_loss_with_temperature(a, b, log_scale, mask=mask, label_smoothing=smoothing)
    assert close(fn.loss, case["loss"])


def test_torchmultimodal_golden_values():
    """The upstream golden numbers quoted in the oracle's notes (4 decimals)."""
    for case in TMM:
        if "upstream_golden" in case:
            a, b = t(case["embeddings_a"]), t(case["embeddings_b"])
            smoothing = case.get("call_kwargs", {}).get("cross_entropy_kwargs", {}).get("label_smoothing", 0.0)
            loss = ClipLoss(normalize=False, label_smoothing=smoothing)(a, b)
            assert abs(loss.item() - case["upstream_golden"]) < 1e-4


def test_clip_module_parameter_gets_gradient_and_clamp_holds():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(6, 8, generator=g, requires_grad=True)
    b = torch.randn(6, 8, generator=g, requires_grad=True)
    loss_fn = ClipLoss()
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(1 / 0.07), abs=1e-6)
    loss = loss_fn(a, b)
    loss.backward()
    assert loss_fn.logit_scale.grad is not None and loss_fn.logit_scale.grad.abs() > 0
    assert a.grad is not None and b.grad is not None
    # the normalisation is part of the module's graph: equals the function on normalised inputs
    ref = clip_loss(F.normalize(a, dim=-1), F.normalize(b, dim=-1), 1 / 0.07)
    assert torch.allclose(loss, ref, atol=1e-5)

    with torch.no_grad():
        loss_fn.logit_scale.fill_(10.0)  # e.g. after an optimiser step overshoot
    assert loss_fn.scale().item() == pytest.approx(100.0, rel=1e-5)
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(100.0), abs=1e-6)
    with torch.no_grad():
        loss_fn.logit_scale.fill_(-3.0)
    loss_fn(a, b)
    assert loss_fn.logit_scale.item() == 0.0  # scale >= 1

    # the clamp holds through real optimisation with a huge learning rate
    opt = torch.optim.SGD(loss_fn.parameters(), lr=1e3)
    for _ in range(3):
        opt.zero_grad()
        (-loss_fn(a.detach(), b.detach())).backward()  # push the temperature the wrong way on purpose
        opt.step()
        loss_fn(a.detach(), b.detach())
        assert 0.0 <= loss_fn.logit_scale.item() <= math.log(100) + 1e-6


def test_siglip_module_parameters_get_gradients():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(5, 8, generator=g, requires_grad=True)
    b = torch.randn(5, 8, generator=g, requires_grad=True)
    loss_fn = SigLipLoss()
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(10), abs=1e-6)
    loss_fn(a, b).backward()
    assert loss_fn.logit_bias.item() == pytest.approx(-math.log(4))  # the prior log-odds: 1 positive, 4 negatives
    assert loss_fn.logit_scale.grad.abs() > 0 and loss_fn.logit_bias.grad.abs() > 0
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
    with torch.no_grad():
        loss_fn.logit_scale.fill_(7.0)
    loss_fn(a, b)
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(100), abs=1e-6)


def test_siglip_bias_starts_at_the_prior_of_the_first_batch_unless_fixed_or_loaded():
    """The paper's rule (start at the prior log-odds of a positive pair; its -10 is that for ~22k-32k batches),
    applied to the batch the loss actually sees: -log(B - 1), once, at the first call."""
    g = torch.Generator().manual_seed(6)
    a, b = torch.randn(128, 8, generator=g), torch.randn(128, 8, generator=g)
    loss_fn = SigLipLoss()
    loss_fn(a, b)
    assert loss_fn.logit_bias.item() == pytest.approx(-math.log(127), abs=1e-6)
    loss_fn(a[:16], b[:16])  # later batches of another size leave it alone
    assert loss_fn.logit_bias.item() == pytest.approx(-math.log(127), abs=1e-6)
    fixed = SigLipLoss(init_logit_bias=-10.0)  # the paper's fixed value, on request
    fixed(a, b)
    assert fixed.logit_bias.item() == -10.0
    fixed_buffer = SigLipLoss(init_logit_bias=-3.0, learnable=False)
    fixed_buffer(a, b)
    assert fixed_buffer.logit_bias.item() == -3.0

    trained = SigLipLoss()
    trained(a, b)
    with torch.no_grad():
        trained.logit_bias.fill_(-2.5)
    reloaded = SigLipLoss()
    reloaded.load_state_dict(trained.state_dict())  # a saved run: its trained bias is kept at the first call
    reloaded(a[:8], b[:8])
    assert reloaded.logit_bias.item() == -2.5
    with pytest.raises(ValueError, match="number or 'prior'"):
        SigLipLoss(init_logit_bias="auto")


def test_siglip_equals_direct_formula():
    g = torch.Generator().manual_seed(3)
    a = F.normalize(torch.randn(4, 6, generator=g), dim=-1)
    b = F.normalize(torch.randn(4, 6, generator=g), dim=-1)
    total = 0.0
    for i in range(4):
        for j in range(4):
            z = 7.0 * float(a[i] @ b[j]) - 3.0
            y = 1.0 if i == j else -1.0
            total += -math.log(1 / (1 + math.exp(-y * z)))
    assert siglip_loss(a, b, 7.0, -3.0).item() == pytest.approx(total / 4, rel=1e-5)


def test_clip_label_smoothing_and_permuted_labels():
    g = torch.Generator().manual_seed(4)
    a = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    b = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    perm = torch.tensor([2, 0, 4, 1, 3])
    # pairing a_i with b_perm[i] is the same as reordering b to put the partners on the diagonal
    assert torch.allclose(clip_loss(a, b, 10.0, labels=perm), clip_loss(a, b[perm], 10.0), atol=1e-6)
    smooth = clip_output(a, b, 10.0, label_smoothing=0.2)
    logits = 10.0 * a @ b.T
    target = torch.full((5, 5), 0.2 / 5) + 0.8 * torch.eye(5)
    ref_a = -(target * logits.log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(smooth.loss_a, ref_a, atol=1e-6)
    with pytest.raises(ValueError, match="permutation"):
        clip_loss(a, b, 10.0, labels=torch.tensor([0, 0, 1, 2, 3]))
    with pytest.raises(ValueError, match="same shape"):
        clip_loss(a, b[:4], 10.0)


def test_registry_builds_pair_losses():
    assert {"clip", "siglip", "symile", "pairwise", "anchor", "uniformity_alignment"} <= set(OBJECTIVES.names())
    g = torch.Generator().manual_seed(5)
    feats = {"image": torch.randn(4, 8, generator=g), "text": torch.randn(4, 8, generator=g)}
    for name in ("clip", "siglip", "uniformity_alignment"):
        loss = OBJECTIVES.build(name)(feats)
        assert loss.dim() == 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="exactly 2"):
        OBJECTIVES.build("clip")({**feats, "audio": feats["text"]})
