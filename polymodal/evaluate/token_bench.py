"""Speed / accuracy / FLOPs of a trained model across token budgets (``polymodal bench tokens``,
``benchmarks/token_budget.py``).

Throughput is the encoder + fusion forward on one fixed batch, timed alternately with the full-token model in the
same process (ratios within one run: the median over ``reps`` back-to-back pairs). FLOPs are counted op by op over
that same forward (``count_flops``: matmuls and convolutions, the merge / pool arithmetic included), and per
transformer layer analytically from each stack's token trace (``stack_costs``).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from polymodal.data.decode import decode
from polymodal.evaluate.scoring import outputs, targets, task_metrics
from polymodal.tokens import REDUCER_NAMES
from polymodal.tokens.budget import reduce_at_boundary
from polymodal.tokens.flops import count_flops, stack_costs

BUDGETS = (1.0, 0.75, 0.5, 0.25, 0.1)
REDUCERS = tuple(REDUCER_NAMES)


def encode_fuse(net, batch):
    """The part a token budget changes: encoders, boundary reductions, fusion (not the small heads)."""
    return net.fusion(reduce_at_boundary(net, net.encode(batch)))


def layer_costs(net, batch_size: int) -> dict[str, list[dict[str, int]]]:
    """Analytic per-layer cost of every transformer stack, from the token traces of the last forward."""
    out = {}
    parts = {f"encoder:{m}": e for m, e in net.encoders.items()}
    parts["fusion"] = net.fusion
    for name, mod in parts.items():
        trace = getattr(mod, "token_trace", None)
        blocks = getattr(mod, "blocks", None)
        if not trace or not blocks:
            continue
        b0 = blocks[0]
        ratio = b0.mlp[0].out_features / b0.dim
        out[name] = stack_costs(trace, b0.dim, ratio, b0.heads, batch=batch_size)
    return out


def fusion_tokens(net, batch) -> float:
    """Mean number of real tokens per sample that reach the fusion (present modalities only)."""
    with torch.inference_mode():
        toks = reduce_at_boundary(net, net.encode(batch))
    return float(sum(t.valid.sum() for t in toks.values())) / len(batch)


def time_pair(fa, fb, reps: int = 5, warmup: int = 1) -> dict[str, float]:
    """Time ``fa`` and ``fb`` alternately (a, b, a, b, ...) ``reps`` times each.

    Returns the median seconds of each and ``ratio`` = the median over pairs of ``t_a / t_b``: each pair runs
    back to back, so a slow spell of the machine (these CPUs drift by 10-20 % over minutes) slows both sides of
    a pair alike, which best-of-each timing does not guarantee."""
    ta, tb = [], []
    with torch.inference_mode():
        for _ in range(warmup):
            fa(), fb()
        for _ in range(reps):
            t = time.perf_counter()
            fa()
            ta.append(time.perf_counter() - t)
            t = time.perf_counter()
            fb()
            tb.append(time.perf_counter() - t)
    return {"a": statistics.median(ta), "b": statistics.median(tb),
            "ratio": statistics.median(a / b for a, b in zip(ta, tb)), "ratio_best": min(ta) / min(tb)}


def budget_curve(
    model,
    data,
    budgets=BUDGETS,
    reducers=REDUCERS,
    *,
    batch_size: int = 128,
    reps: int = 5,
    token_options: dict[str, Any] | None = None,
    accuracy: bool = True,
    log=None,
) -> dict[str, Any]:
    """``{"tokens_full", "full": {...}, "curve": {reducer: {budget: {acc, throughput_ratio, flops_ratio, ...}}}}``.

    ``model`` is a trained ``polymodal.Model``; ``data`` a labelled table (for accuracy) whose first
    ``batch_size`` rows make the timing batch.
    """
    from polymodal.data.dataset import make_loader

    _, ds, _ = decode(model.schema, data, labels="require" if accuracy else "auto", progress=False)
    batch = next(iter(make_loader(ds, batch_size, shuffle=False)))
    n = len(batch)
    full = model.with_token_budget(1.0, model.cfg.tokens.reducer, **(token_options or {}))
    full_flops, _ = count_flops(encode_fuse, full.net, batch)
    full_layers = layer_costs(full.net, n)

    def acc_of(m):
        if not accuracy or model.schema.task != "classify":
            return None
        return float(task_metrics(m.schema, outputs(m, ds), targets(ds), confusion=False)["accuracy"])

    full_acc = acc_of(full)
    res: dict[str, Any] = {
        "tokens_full": fusion_tokens(full.net, batch),
        "batch_size": n,
        "full": {"acc": full_acc, "flops_per_sample": full_flops / n, "layers": full_layers},
        "curve": {},
    }
    for reducer in reducers:
        res["curve"][reducer] = {}
        for b in budgets:
            m = model.with_token_budget(b, reducer, **(token_options or {}))
            flops, _ = count_flops(encode_fuse, m.net, batch)
            layers = layer_costs(m.net, n)
            t = time_pair(lambda: encode_fuse(full.net, batch), lambda: encode_fuse(m.net, batch), reps)
            t_full, t_red = t["a"], t["b"]
            row = {
                "acc": acc_of(m) if b < 1.0 else full_acc,
                "throughput_ratio": round(t["ratio"], 3),
                "throughput_ratio_best_of": round(t["ratio_best"], 3),
                "flops_ratio": round(full_flops / flops, 3),
                "tokens": fusion_tokens(m.net, batch),
                "ms_per_batch": round(t_red * 1000, 2),
                "ms_per_batch_full": round(t_full * 1000, 2),
                "flops_per_sample": flops / n,
                "transformer_flops_ratio": round(_total(full_layers) / max(_total(layers), 1), 3),
                "attn_bytes_peak": max((c["attn_bytes"] for s in layers.values() for c in s), default=0),
                "layers": layers,
            }
            res["curve"][reducer][str(b)] = row
            if log:
                log(reducer, b, row)
    return res


def _total(layers: dict[str, list[dict[str, int]]]) -> int:
    return sum(c["flops"] for s in layers.values() for c in s)


def plot_curve(res: dict[str, Any], path) -> bool:
    """Accuracy and throughput ratio against budget, one line per reducer (``plots.budget_curve_figure``);
    ``False`` without matplotlib."""
    from polymodal.evaluate.plots import budget_curve_plot

    return budget_curve_plot(res, path)


_CATEGORIES = (
    ("attention", ("scaled_dot_product", "softmax")),
    ("linear (matmul)", ("addmm", "aten::mm", "bmm", "matmul")),
    ("convolution", ("conv",)),
    ("stft / fft", ("fft", "stft")),
    ("reduction bookkeeping (gather / scatter / sort / cat)", ("gather", "scatter", "sort", "cat", "index", "argmax",
                                                               "max", "topk", "one_hot", "kron", "eq", "floor")),
    ("norm / activation / elementwise", ("norm", "gelu", "add", "mul", "div", "sub", "where", "copy", "fill", "log",
                                         "exp", "sqrt", "pow", "clamp", "bitwise", "masked", "mean", "sum", "neg")),
)


def profile_forward(net, batch, reps: int = 3) -> dict[str, float]:
    """Self CPU milliseconds per forward (``encode_fuse``) by op category, from ``torch.profiler``."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        encode_fuse(net, batch)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(reps):
                encode_fuse(net, batch)
    out: dict[str, float] = {}
    for ev in prof.key_averages():
        name = ev.key.lower()
        cat = next((c for c, keys in _CATEGORIES if any(k in name for k in keys)), "other")
        out[cat] = out.get(cat, 0.0) + ev.self_cpu_time_total / 1000 / reps
    return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}
