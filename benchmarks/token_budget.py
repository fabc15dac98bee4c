"""Token budgets on av-digits: speed / accuracy / FLOPs for every reducer at 1, 0.75, 0.5, 0.25, 0.1.

Model (chosen so that reduction matters, >= 64 tokens per sample): ``image_conv`` with one stride-2 stage
(a 14x14 grid: 196 image tokens, stem width 8) followed by 3 transformer blocks (a small ViT over the conv grid),
``audio_logmel`` (~11 tokens, one block), a 2-layer ``transformer`` fusion, dim 64, 4 heads; token budgets use ``schedule="input"`` (reduce before a stack's first
block, with that block's keys / query scores). Trained ``EPOCHS`` epochs with the usual recipe (modality dropout,
auxiliary losses, best of 10 % validation), two worker processes with 1 thread each:

* ``full``: no budget. The curve is this model *off the shelf* at each budget (``trained_with_budget: false``);
* ``merge_0.5``: trained with merge at budget 0.5 (the trained-with-budget answer to the 0.5 target);
* ``pool_random``: Matryoshka / M3 training, one random pool budget from {1, 0.75, 0.5, 0.25, 0.1} per step;
* ``pool_<b>``: trained with pool at budget b alone, for b in 0.75, 0.5, 0.25, 0.1;
* ``full_seed<s>`` / ``merge_0.5_seed<s>`` for seeds 1 to 8: the accuracy comparison at merge 0.5 over 9 seeds.

Timing: the encoder + fusion forward on a fixed batch of 128 test samples, 1 thread, alternating full and reduced
``REPS`` times; ``throughput_ratio`` is the median over those back-to-back pairs of full / reduced time (ratios
within one run; the best-of-each ratio is kept beside it). FLOPs: op-by-op count of that forward (convolutions,
matmuls and attention; ``tokens/flops.py``), so ``flops_ratio`` = full / reduced for the same work the timer sees.
Trained models are cached under ``runs/bench_tokens/<recipe hash>/`` (delete it to retrain).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import time

from _common import ROOT, emit, setup

EPOCHS = 8
REPS = 21
BUDGETS = (1.0, 0.75, 0.5, 0.25, 0.1)
CONFIG = {
    "dim": 64,
    "encoders": {"image": {"name": "image_conv", "options": {"stages": 1, "width": 8, "layers": 3}}},
    "fusion": {"name": "transformer", "options": {"layers": 2}},
}
SCHEDULE = {"schedule": "input"}
# cached models live under a folder named after the recipe, so a changed CONFIG / EPOCHS retrains
RUNS = ROOT / "runs" / "bench_tokens" / hashlib.sha1(json.dumps([CONFIG, EPOCHS], sort_keys=True).encode()).hexdigest()[:10]
JOBS = {
    "full": {"tokens": SCHEDULE},
    "merge_0.5": {"tokens": {**SCHEDULE, "budget": 0.5, "reducer": "merge"}},
    "pool_random": {"tokens": {**SCHEDULE, "reducer": "pool", "train_budgets": list(BUDGETS)}},
    **{f"pool_{b}": {"tokens": {**SCHEDULE, "budget": b, "reducer": "pool"}} for b in BUDGETS[1:]},
    # eight more seeds of the accuracy comparison at merge 0.5 (one test split of 300 pairs is +-2.7 points)
    **{f"full_seed{s}": {"tokens": SCHEDULE, "seed": s} for s in range(1, 9)},
    **{f"merge_0.5_seed{s}": {"tokens": {**SCHEDULE, "budget": 0.5, "reducer": "merge"}, "seed": s} for s in range(1, 9)},
}
SEEDS = {0: ("full", "merge_0.5"), **{s: (f"full_seed{s}", f"merge_0.5_seed{s}") for s in range(1, 9)}}


def train_one(key: str) -> tuple[str, float]:
    import torch

    from polymodal.datasets import load_av_digits
    from polymodal.recipes.fit import fit

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    fit(load_av_digits("train"), "digit", epochs=EPOCHS, progress=False, out=RUNS / key, **CONFIG, **JOBS[key])
    return key, time.perf_counter() - t0


def train_all() -> dict[str, float]:
    from polymodal.experiments.runner import run_parallel

    todo = [k for k in JOBS if not (RUNS / k / "weights.safetensors").exists()]
    stamp = RUNS / "train_s.json"  # training wall times of the cached models (seconds, 1 thread per model)
    times = json.loads(stamp.read_text()) if stamp.exists() else {}
    if todo:
        def done(result: tuple[str, float]) -> None:
            k, s = result
            times[k] = round(s, 1)
            print(f"trained {k} in {s:.0f}s", file=sys.stderr, flush=True)

        run_parallel(train_one, todo, workers=2, on_done=done)
        stamp.write_text(json.dumps(times))
    return times


def main() -> None:
    t0 = time.perf_counter()
    train_s = train_all()
    setup(threads=1)
    from polymodal.datasets import load_av_digits
    from polymodal.evaluate.token_bench import REDUCERS, budget_curve
    from polymodal.recipes.loading import load

    test = load_av_digits("test")
    full = load(RUNS / "full")

    def log(reducer, b, row):
        print(f"{reducer:5s} {b:4}: acc {row['acc']:.3f}  x{row['throughput_ratio']:.2f} (flops x{row['flops_ratio']:.2f})"
              f"  tokens {row['tokens']:.1f}", file=sys.stderr, flush=True)

    res = budget_curve(full, test, BUDGETS, REDUCERS, batch_size=128, reps=REPS, log=log)
    curve = {r: {b: {k: row[k] for k in ("acc", "throughput_ratio", "flops_ratio")} for b, row in rows.items()}
             for r, rows in res["curve"].items()}
    detail = {r: {b: {k: v for k, v in row.items() if k != "layers"} for b, row in rows.items()}
              for r, rows in res["curve"].items()}

    # Trained with the budget: merge at 0.5, and the pool models (random budgets vs each budget alone).
    def acc_at(run: str, b: float, reducer: str) -> float:
        m = load(RUNS / run).with_token_budget(b, reducer, schedule="input")
        return float(m.evaluate(test, subsets=False)["metrics"]["accuracy"])

    # Where the time goes (torch.profiler, self CPU ms per forward by op category) and where the FLOPs go.
    from polymodal.data.dataset import make_loader
    from polymodal.evaluate.token_bench import encode_fuse, profile_forward
    from polymodal.tokens.flops import count_flops

    _, ds, _ = full.decode(test, labels="require", progress=False)
    batch = next(iter(make_loader(ds, 128, shuffle=False)))
    half = full.with_token_budget(0.5, "merge", schedule="input")
    profile, flops_by_op = {}, {}
    for name, m in (("full", full.with_token_budget(1.0)), ("merge_0.5", half)):
        profile[name] = profile_forward(m.net, batch)
        count_flops(encode_fuse, m.net, batch)
        flops_by_op[name] = {k: round(v / len(batch) / 1e6, 3) for k, v in count_flops.last_by_op.items()}

    merge_trained = acc_at("merge_0.5", 0.5, "merge")
    seeds = {}
    for seed, (full_run, merge_run) in SEEDS.items():
        seeds[seed] = {"full": acc_at(full_run, 1.0, "merge"), "full_merge_0.5_off_the_shelf": acc_at(full_run, 0.5, "merge"),
                       "trained_with_merge_0.5": acc_at(merge_run, 0.5, "merge")}
    mean = lambda k: sum(r[k] for r in seeds.values()) / len(seeds)  # noqa: E731
    paired = [100 * (r["full"] - r["trained_with_merge_0.5"]) for r in seeds.values()]  # points, per seed
    pool = {str(b): {"random_budgets": acc_at("pool_random", b, "pool"),
                     "fixed_budget": acc_at("full" if b == 1.0 else f"pool_{b}", b, "pool")} for b in BUDGETS}
    m05 = res["curve"]["merge"]["0.5"]
    full_acc = res["full"]["acc"]
    out = {
        "tokens_full": res["tokens_full"],
        "curve": curve,
        "trained_with_budget": False,
        "target_merge_0.5": {
            "throughput_ratio": m05["throughput_ratio"],
            "flops_ratio": m05["flops_ratio"],
            "speedup_vs_flops": round(m05["throughput_ratio"] / m05["flops_ratio"], 3),
            "acc_full": full_acc,
            "acc_off_the_shelf": m05["acc"],
            "acc_trained_with_budget": merge_trained,
            "drop_points_off_the_shelf": round(100 * (full_acc - m05["acc"]), 2),
            "drop_points_trained_with_budget": round(100 * (full_acc - merge_trained), 2),
            "seeds": seeds,
            "mean_over_seeds": {k: round(mean(k), 4) for k in next(iter(seeds.values()))},
            "drop_points_trained_with_budget_mean_over_seeds": round(100 * (mean("full") - mean("trained_with_merge_0.5")), 2),
            "drop_points_trained_with_budget_per_seed": [round(x, 2) for x in paired],
            "drop_points_trained_with_budget_standard_error": round(statistics.stdev(paired) / len(paired) ** 0.5, 2),
            "drop_points_off_the_shelf_mean_over_seeds": round(100 * (mean("full") - mean("full_merge_0.5_off_the_shelf")), 2),
        },
        "pool_random_vs_fixed": pool,
        "profile_ms_per_batch": profile,
        "mflops_per_sample_by_op": flops_by_op,
        "detail": detail,
        "full_layers": res["full"]["layers"],
        "config": {**CONFIG, "epochs": EPOCHS, "batch_size_timed": res["batch_size"], "threads_timed": 1,
                   "reps": REPS},
        "train_s": train_s,
        "total_s": round(time.perf_counter() - t0, 1),
    }
    emit("token_budget", out)


if __name__ == "__main__":
    main()
