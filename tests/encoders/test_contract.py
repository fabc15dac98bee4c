"""Contract tests run over every registered encoder (and every modality kind it accepts).

An encoder registered later is tested here automatically; a new *kind* needs an entry in ``SPECS`` below.
"""

from __future__ import annotations

import copy

import pytest
import torch

from polymodal.data.schema import KINDS, ModalitySpec
from polymodal.encoders import ENCODERS
from polymodal.types import Tokens

DIM = 32
B = 6
PRESENT = torch.tensor([True, True, False, True, False, True])

SPECS = {
    "image": {"size": [28, 28], "channels": 1},
    "depth": {"size": [20, 24], "channels": 1},
    "audio": {"sample_rate": 8000, "max_seconds": 0.4},
    "text": {"vocab": ["<pad>", "<unk>"] + [f"w{i}" for i in range(30)], "max_len": 12},
    "tabular": {
        "numeric": {"a": {"mean": 0.0, "std": 1.0}, "b": {"mean": 0.0, "std": 1.0}, "c": {"mean": 0.0, "std": 1.0}},
        "categorical": {"d": ["x", "y", "z"], "e": ["p", "q"]},
    },
    "timeseries": {"length": 50, "channels": 3},
}


def make_spec(kind: str, **override) -> ModalitySpec:
    if kind not in SPECS:
        pytest.fail(f"no test spec for kind {kind!r}: add one to SPECS in {__file__}")
    options = copy.deepcopy(SPECS[kind])
    options.update(override)
    columns = [*options["numeric"], *options["categorical"]] if kind == "tabular" else [f"col_{kind}"]
    return ModalitySpec(f"m_{kind}", kind, columns, options)


def make_inputs(spec: ModalitySpec, b: int, g: torch.Generator, labels: torch.Tensor | None = None) -> dict:
    """Synthetic inputs following the data contract (polymodal/data/kinds/base.py); absent rows hold zeros.

    With ``labels`` (0/1 per row) the inputs carry the label in an easily learnable way.
    """
    o = spec.options
    y = labels.float() if labels is not None else None
    if spec.kind in ("image", "depth"):
        h, w = o["size"]
        pixels = torch.rand(b, o["channels"], h, w, generator=g)
        if y is not None:  # bright left half for class 0, bright right half for class 1
            left = torch.zeros(1, 1, h, w)
            left[..., : w // 2] = 1.0
            pixels = 0.3 * pixels + 0.7 * torch.where(y[:, None, None, None] > 0, 1 - left, left)
        return {"pixels": pixels}
    if spec.kind == "audio":
        sr = o["sample_rate"]
        t = int(sr * o["max_seconds"])
        length = torch.randint(1, t + 1, (b,), generator=g)
        length[0], length[-1] = t, 7  # a full clip and a clip shorter than one hop
        wave = 0.1 * torch.randn(b, t, generator=g)
        if y is not None:  # 400 Hz vs 1600 Hz tone
            length = torch.randint(t // 2, t + 1, (b,), generator=g)
            f = torch.where(y > 0, 1600.0, 400.0)[:, None]
            wave = 0.05 * wave + torch.sin(2 * torch.pi * f * torch.arange(t)[None] / sr)
        wave = wave * (torch.arange(t)[None] < length[:, None])
        return {"wave": wave, "length": length}
    if spec.kind == "text":
        v, n = len(o["vocab"]), o["max_len"]
        length = torch.randint(0, n + 1, (b,), generator=g)
        length[0], length[1] = n, 0  # a full text and an empty one
        ids = torch.randint(1, v, (b, n), generator=g)
        if y is not None:  # words from the lower vs the upper half of the vocabulary
            length = torch.randint(2, n + 1, (b,), generator=g)
            ids = torch.where(y[:, None] > 0, ids % (v // 2) + v // 2, ids % (v // 2 - 2) + 2)
        ids = ids * (torch.arange(n)[None] < length[:, None])
        return {"ids": ids, "length": length}
    if spec.kind == "tabular":
        fn, cats = len(o.get("numeric", {})), [len(c) for c in o.get("categorical", {}).values()]
        num = torch.randn(b, fn, generator=g)
        num_mask = torch.rand(b, fn, generator=g) > 0.3
        cat = torch.zeros(b, 0, dtype=torch.long)
        if cats:
            cat = torch.stack([torch.randint(0, k + 1, (b,), generator=g) for k in cats], 1)
        cat_mask = cat > 0
        if b > 1:
            num_mask[1], cat_mask[1] = False, False  # a row whose features are all missing
        if y is not None and fn:
            num_mask[:, 0] = True
            num[:, 0] = torch.where(y > 0, 1.0, -1.0) + 0.3 * num[:, 0]
        num, cat = num * num_mask, cat * cat_mask
        return {"num": num, "num_mask": num_mask, "cat": cat, "cat_mask": cat_mask}
    if spec.kind == "timeseries":
        t, c = o["length"], o["channels"]
        length = torch.randint(1, t + 1, (b,), generator=g)
        length[0] = t
        series = torch.randn(b, t, c, generator=g)
        if y is not None:  # slow sine vs fast sine on every channel
            length = torch.full((b,), t)
            f = torch.where(y > 0, 0.25, 0.05)[:, None, None]
            series = 0.3 * series + torch.sin(2 * torch.pi * f * torch.arange(t)[None, :, None])
        series = series * (torch.arange(t)[None, :, None] < length[:, None, None])
        return {"series": series, "length": length}
    pytest.fail(f"make_inputs does not know kind {spec.kind!r}")


def perturb_padding(spec: ModalitySpec, inputs: dict, g: torch.Generator) -> dict:
    """The same inputs with every padded-out value (beyond length, masked features) changed."""
    out = {k: v.clone() for k, v in inputs.items()}
    if spec.kind == "audio":
        t = out["wave"].shape[1]
        pad = torch.arange(t)[None] >= out["length"][:, None]
        out["wave"] = torch.where(pad, 5 * torch.randn(out["wave"].shape, generator=g), out["wave"])
    elif spec.kind == "text":
        n = out["ids"].shape[1]
        pad = torch.arange(n)[None] >= out["length"][:, None]
        noise = torch.randint(1, len(spec.options["vocab"]), out["ids"].shape, generator=g)
        out["ids"] = torch.where(pad, noise, out["ids"])
    elif spec.kind == "tabular":
        out["num"] = torch.where(out["num_mask"], out["num"], 7 * torch.randn(out["num"].shape, generator=g))
        n_cats = torch.tensor([len(c) for c in spec.options["categorical"].values()])
        noise = (torch.randint(0, 100, out["cat"].shape, generator=g) % n_cats) + 1
        out["cat"] = torch.where(out["cat_mask"], out["cat"], noise)
    elif spec.kind == "timeseries":
        t = out["series"].shape[1]
        pad = torch.arange(t)[None, :, None] >= out["length"][:, None, None]
        out["series"] = torch.where(pad, 5 * torch.randn(out["series"].shape, generator=g), out["series"])
    return out  # image/depth: no padding


def select(inputs: dict, rows) -> dict:
    return {k: v[rows] for k, v in inputs.items()}


def cases() -> list:
    out = []
    for name in ENCODERS.names():
        if getattr(ENCODERS.get(name), "needs_weights", False):
            continue  # pretrained weights: tests/encoders/pretrained/ runs this contract on tiny local models
        for kind in ENCODERS.get(name).kind or KINDS:
            out.append(pytest.param(name, kind, id=f"{name}-{kind}"))
    return out


def build(name: str, kind: str, **override):
    torch.manual_seed(0)
    return ENCODERS.build(name, make_spec(kind, **override), DIM)


def assert_real_close(a: Tokens, b: Tokens, atol: float = 1e-5) -> None:
    assert torch.equal(a.mask[a.present], b.mask[b.present])  # absent rows' masks are arbitrary
    v = a.valid
    torch.testing.assert_close(a.x[v], b.x[v], atol=atol, rtol=0)


@pytest.mark.parametrize("name,kind", cases())
def test_output_contract(name, kind):
    enc = build(name, kind).eval()
    g = torch.Generator().manual_seed(1)
    inputs = make_inputs(enc.spec, B, g)
    inputs = {k: torch.where(PRESENT.view(-1, *[1] * (v.dim() - 1)), v, torch.zeros_like(v)) for k, v in inputs.items()}
    with torch.no_grad():
        out = enc(inputs, PRESENT)
    assert isinstance(out, Tokens)
    n = out.x.shape[1]
    assert out.x.shape == (B, n, DIM) and n >= 1
    assert out.x.dtype == torch.float32 and out.mask.dtype == torch.bool
    assert torch.equal(out.present, PRESENT)
    assert torch.isfinite(out.x).all()
    assert out.mask[PRESENT].any(dim=1).all(), "every present sample needs at least one real token"


@pytest.mark.parametrize("name,kind", cases())
def test_padding_is_ignored(name, kind):
    enc = build(name, kind).eval()
    g = torch.Generator().manual_seed(2)
    inputs = make_inputs(enc.spec, B, g)
    present = torch.ones(B, dtype=torch.bool)
    with torch.no_grad():
        a = enc(inputs, present)
        b = enc(perturb_padding(enc.spec, inputs, g), present)
    assert_real_close(a, b)


@pytest.mark.parametrize("name,kind", cases())
def test_batch_independence_and_absent_rows(name, kind):
    enc = build(name, kind).eval()
    g = torch.Generator().manual_seed(3)
    inputs = make_inputs(enc.spec, B, g)
    with torch.no_grad():
        full = enc(inputs, PRESENT)
        for i in range(B):
            one = enc(select(inputs, [i]), PRESENT[[i]])
            assert_real_close(Tokens(full.x[[i]], full.mask[[i]], PRESENT[[i]]), one)
        # Arbitrary values in absent rows change nothing for the present rows.
        noisy = make_inputs(enc.spec, B, torch.Generator().manual_seed(4))
        mixed = {k: torch.where(PRESENT.view(-1, *[1] * (v.dim() - 1)), v, noisy[k]) for k, v in inputs.items()}
        other = enc(mixed, PRESENT)
    assert_real_close(full, other)


@pytest.mark.parametrize("name,kind", cases())
@pytest.mark.parametrize("train", [False, True])
def test_finite_when_nothing_is_there(name, kind, train):
    enc = build(name, kind).train(train)
    inputs = make_inputs(enc.spec, B, torch.Generator().manual_seed(5))
    zeros = {k: torch.zeros_like(v) for k, v in inputs.items()}  # absent rows: zeros, lengths 0, all masked
    for present in (torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)):
        out = enc(zeros, present)
        assert torch.isfinite(out.x).all()
        assert out.mask.any(dim=1).all()
    if train:  # BatchNorm statistics are not moved by absent samples
        buffers = {k: v.clone() for k, v in enc.state_dict().items()}
        enc(zeros, torch.zeros(B, dtype=torch.bool))
        for k, v in enc.state_dict().items():
            if "running" in k:
                torch.testing.assert_close(v, buffers[k])


@pytest.mark.parametrize("name,kind", cases())
def test_gradients_reach_every_parameter(name, kind):
    enc = build(name, kind).train()
    inputs = make_inputs(enc.spec, B, torch.Generator().manual_seed(6))
    out = enc(inputs, PRESENT)
    v = out.valid.float()[..., None]
    loss = (out.x.square() * v).sum() / v.sum() + out.pooled().sum()
    loss.backward()
    for pname, p in enc.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
            assert p.grad.abs().sum() > 0, f"{pname} got an all-zero gradient"


@pytest.mark.parametrize("name,kind", cases())
def test_deterministic(name, kind):
    a_enc, b_enc = build(name, kind).eval(), build(name, kind).eval()
    inputs = make_inputs(a_enc.spec, B, torch.Generator().manual_seed(7))
    with torch.no_grad():
        a, b, c = a_enc(inputs, PRESENT), a_enc(inputs, PRESENT), b_enc(inputs, PRESENT)
    assert torch.equal(a.x, b.x) and torch.equal(a.mask, b.mask)
    assert torch.equal(a.x, c.x), "same seed must build the same encoder"


@pytest.mark.parametrize("name,kind", cases())
def test_rejects_wrong_kind(name, kind):
    accepted = ENCODERS.get(name).kind
    others = [k for k in KINDS if k not in accepted] if accepted else []
    if not others:
        pytest.skip("encoder accepts every kind")
    with pytest.raises(ValueError, match="handles kinds"):
        ENCODERS.build(name, make_spec(others[0]), DIM)


@pytest.mark.parametrize("name,kind", cases())
def test_learns_a_simple_task(name, kind):
    """Encoder + masked-mean pool + linear head separate two synthetic classes within a few dozen Adam steps."""
    enc = build(name, kind).train()
    head = torch.nn.Linear(DIM, 2)
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    g = torch.Generator().manual_seed(8)
    y = torch.arange(32) % 2
    inputs = make_inputs(enc.spec, 32, g, labels=y)
    present = torch.ones(32, dtype=torch.bool)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(head(enc(inputs, present).pooled()), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", [n for n in ENCODERS.names() if "tabular" in (ENCODERS.get(n).kind or KINDS)])
@pytest.mark.parametrize("only", ["numeric", "categorical"])
def test_tabular_with_one_feature_type(name, only):
    options = copy.deepcopy(SPECS["tabular"])
    other = "categorical" if only == "numeric" else "numeric"
    options[other] = {}
    spec = ModalitySpec("tab", "tabular", list(options[only]), options)
    enc = ENCODERS.build(name, spec, DIM).train()
    inputs = make_inputs(spec, B, torch.Generator().manual_seed(9))
    out = enc(inputs, PRESENT)
    assert torch.isfinite(out.x).all() and out.mask[PRESENT].any(1).all()
    out.pooled().sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------------- declared capabilities
@pytest.mark.parametrize("name,kind", cases())
def test_declared_capabilities_hold(name, kind):
    """Capabilities are declared on the class (``Encoder`` declares the defaults); an encoder that declares
    ``supports_token_budget`` really reduces its tokens under a budget, with every registered reducer."""
    from polymodal.encoders import Encoder
    from polymodal.tokens import REDUCERS, TokenBudget
    from polymodal.tokens.spec import BudgetState

    enc = build(name, kind).eval()
    assert isinstance(enc, Encoder) and isinstance(enc.supports_token_budget, bool)
    assert enc.lr_scaled_parameters() == []  # built-in encoders train every parameter at the base rate
    assert enc.token_state is None
    if not enc.supports_token_budget:
        with pytest.raises(ValueError, match="supports_token_budget"):
            enc.set_token_budget(BudgetState(TokenBudget(0.5)))
        return
    inputs = make_inputs(enc.spec, B, torch.Generator().manual_seed(10))
    with torch.no_grad():
        full = enc(inputs, PRESENT)
    for reducer in REDUCERS.names():
        enc.set_token_budget(BudgetState(TokenBudget(0.5, reducer)))
        with torch.no_grad():
            out = enc(inputs, PRESENT)
        assert out.x.shape[1] < full.x.shape[1], reducer
        assert torch.isfinite(out.x).all() and out.mask[PRESENT].any(1).all()
        assert enc.token_trace[-1][1] < enc.token_trace[0][0]
    enc.set_token_budget(None)
    with torch.no_grad():
        assert torch.equal(enc(inputs, PRESENT).x, full.x)  # detached: the original code path again
