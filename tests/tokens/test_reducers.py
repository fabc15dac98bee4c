"""Token reducers dispatch through their registry: every registered name is reachable through ``TokenBudget`` and
``reduce_segment``, its options are validated by its registry entry, and a new reducer is one registered class."""

from __future__ import annotations

import json

import pytest
import torch

from polymodal.errors import ComponentError, UnknownNameError
from polymodal.registry import Component
from polymodal.tokens import REDUCERS, TokenBudget, TokenReducer, run_stack, schedule_counts
from polymodal.tokens.stack import Segment, reduce_segment
from polymodal.types import Tokens

names = pytest.mark.parametrize("name", REDUCERS.names())


def _stream(b: int = 2, n: int = 16, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, d, generator=g)
    tokens = Tokens(x, torch.ones(b, n, dtype=torch.bool), torch.ones(b, dtype=torch.bool))
    return tokens, torch.ones(b, n), torch.softmax(torch.randn(b, n, generator=g), -1)


@names
def test_every_registered_reducer_is_reached_through_token_budget_and_reduce_segment(name, monkeypatch):
    spec = TokenBudget(0.5, name)
    cls = REDUCERS.get(name)
    assert issubclass(cls, TokenReducer) and type(spec.token_reducer) is cls and spec.reducer == Component(name)
    calls = []
    original = cls.reduce

    def spy(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "reduce", spy)
    tokens, size, importance = _stream()
    target = schedule_counts(16, 0.5, 0, "input", name, (4, 4))[0]
    out, out_size, _ = reduce_segment(spec, tokens, size, target, (4, 4), tokens.x, importance)
    assert calls == [spec.token_reducer]  # the registry's entry did the work, nothing else
    assert out.x.shape[1] == target < 16 and out_size.shape == (2, target)
    assert torch.allclose(out_size.sum(1), torch.full((2,), 16.0)) or cls.needs_importance  # pruning drops tokens
    # and a target at or above the count is the exact no-op, without calling the reducer
    same, same_size, grid = reduce_segment(spec, tokens, size, 16, (4, 4), tokens.x, importance)
    assert same is tokens and same_size is size and grid == (4, 4) and len(calls) == 1


@names
def test_every_registered_reducer_runs_a_stack_and_round_trips(name):
    spec = TokenBudget(0.25, name, schedule="constant")
    assert TokenBudget.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    torch.manual_seed(0)
    from polymodal.blocks import TransformerBlock

    blocks = torch.nn.ModuleList(TransformerBlock(8, 2) for _ in range(2)).eval()
    tokens, _, _ = _stream(n=36)
    seg = Segment(36, schedule_counts(36, 0.25, 2, "constant", spec.reducer, (6, 6)), (6, 6))
    with torch.no_grad():
        res = run_stack(blocks, tokens.x, tokens.mask, spec, [seg])
    assert res.x.shape[1] == seg.counts[-1] < 36 and torch.isfinite(res.x).all()


def test_reducer_names_alias_is_derived_from_the_registry():
    from polymodal.tokens import REDUCER_NAMES

    assert REDUCER_NAMES == tuple(REDUCERS.names())
    assert {"merge", "prune", "pool", "zip"} <= set(REDUCER_NAMES)


def test_the_reducer_accepts_a_name_a_mapping_or_a_component():
    a = TokenBudget(0.5, "zip")
    assert a == TokenBudget(0.5, Component("zip")) == TokenBudget(0.5, {"name": "zip", "options": {}})
    assert isinstance(a.reducer, Component)
    b = TokenBudget(budget=0.5, reducer="merge", schedule="input", where="fusion", train_budgets=(0.5, 0.25))
    assert b.reducer == Component("merge") and b.train_budgets == (0.5, 0.25)
    with pytest.raises(ComponentError, match="expected a component"):
        TokenBudget(0.5, 3)


def test_options_live_in_the_reducer_and_are_read_from_it():
    assert TokenBudget(0.5, "merge").use_prop_attn is True  # ToMe's default
    assert TokenBudget(0.5, Component("merge", {"prop_attn": False})).use_prop_attn is False
    assert TokenBudget(0.5, "prune").use_prop_attn is False
    assert TokenBudget(0.5, Component("pool", {"prop_attn": True})).use_prop_attn is True
    assert TokenBudget(0.5, Component("merge", {"prop_attn": None})).use_prop_attn is True  # None: the default
    zip_default = TokenBudget(0.5, "zip").token_reducer
    zip_wide = TokenBudget(0.5, Component("zip", {"context": 0.5})).token_reducer
    assert zip_default.options == {"prop_attn": False, "context": 0.15}
    assert zip_default.context_tokens(20) == 3 and zip_wide.context_tokens(20) == 10 and zip_wide.context_tokens(1) == 0
    # the context option changes what zip keeps: more contextual tokens, fewer dominant ones
    tokens, size, importance = _stream(n=20)
    outs = [reduce_segment(TokenBudget(0.5, Component("zip", {"context": c})), tokens, size, 10, None, tokens.x,
                           importance)[0] for c in (0.15, 0.5)]
    assert not torch.equal(outs[0].x, outs[1].x)


def test_options_are_validated_by_the_reducer_with_clear_messages():
    with pytest.raises(ComponentError, match="no option 'contxt'. Did you mean 'context'"):
        TokenBudget(0.5, Component("zip", {"contxt": 0.2}))
    with pytest.raises(ComponentError, match="'merge' has no option 'context'.*Valid options: prop_attn"):
        TokenBudget(0.5, Component("merge", {"context": 0.2}))
    with pytest.raises(ValueError, match="context must be in \\[0, 1\\)"):
        TokenBudget(0.5, Component("zip", {"context": 1.0}))
    with pytest.raises(ValueError, match="'prop_attn' of token reducer 'prune' must be a bool"):
        TokenBudget(0.5, {"name": "prune", "options": {"prop_attn": "yes"}})
    with pytest.raises(ValueError, match="'context' of token reducer 'zip' must be a float"):
        TokenBudget(0.5, {"name": "zip", "options": {"context": True}})
    with pytest.raises(UnknownNameError, match="Did you mean 'merge'"):
        TokenBudget(0.5, "merg")


def test_to_dict_from_dict_round_trip_through_json():
    spec = TokenBudget(
        {"image": 0.25, "audio": 0.5}, Component("zip", {"context": 0.2}), schedule=(0.5, 1.0), where="fusion",
        train_budgets=(0.5, 0.25),
    )
    d = spec.to_dict()
    assert d == {
        "budget": {"image": 0.25, "audio": 0.5},
        "reducer": {"name": "zip", "options": {"context": 0.2}},
        "schedule": [0.5, 1.0],
        "where": "fusion",
        "train_budgets": [0.5, 0.25],
    }
    back = TokenBudget.from_dict(json.loads(json.dumps(d)))
    assert back == spec and back.schedule == (0.5, 1.0) and back.train_budgets == (0.5, 0.25)
    assert TokenBudget.from_dict({"budget": 0.5}) == TokenBudget(0.5)
    assert TokenBudget.from_dict({}).is_noop
    assert TokenBudget.from_dict({"budget": 0.5, "reducer": "pool"}).reducer == Component("pool")
    with pytest.raises(ValueError, match="unknown token budget option 'shedule'. Did you mean 'schedule'"):
        TokenBudget.from_dict({"budget": 0.5, "shedule": "first"})


@pytest.fixture
def keep_first():
    """A new reducer is one registered class: here, keep the first ``target`` tokens."""

    class KeepFirst(TokenReducer):
        """Keep the first tokens (a test reducer)."""

        name = "keep_first"
        primitive = staticmethod(lambda tokens, n: tokens)

        def reduce(self, tokens, size, target, grid, metric, importance):
            t = Tokens(tokens.x[:, :target], tokens.mask[:, :target], tokens.present)
            return t, size[:, :target], None

    REDUCERS.register("keep_first")(KeepFirst)
    yield KeepFirst
    del REDUCERS._items["keep_first"]


def test_a_newly_registered_reducer_works_everywhere_at_once(keep_first):
    from polymodal.tokens import REDUCER_NAMES

    assert "keep_first" in REDUCER_NAMES
    spec = TokenBudget(0.5, "keep_first")
    tokens, size, _ = _stream()
    out, _, _ = reduce_segment(spec, tokens, size, 8, None, tokens.x, None)
    assert torch.equal(out.x, tokens.x[:, :8])
    seg = Segment(16, schedule_counts(16, 0.5, 0, "input", "keep_first"))
    res = run_stack([], tokens.x, tokens.mask, spec, [seg])
    assert torch.equal(res.x, tokens.x[:, :8])
