"""Every registered fusion under one protocol (``polymodal.experiments.compare``), on two real datasets, plus the MNAR shift.

Sections (``--only`` runs some of them; results merge into ``benchmarks/results/fusion_compare.json``):

* ``av_digits``: all fusions x 3 seeds + unimodal baselines, the ``fit`` defaults (early stopping, modality
  dropout 0.5, auxiliary losses) with 8 epochs (``--epochs``; the demo uses 15); test = the 300 test pairs. Per fusion: accuracy mean/std,
  parameters, training time, inference latency (ms/sample, batch 256, 1 thread, best of 3), subset accuracies,
  noise-sweep relative/effective robustness, integration test.
* ``basicmotions``: the same on BasicMotions (accelerometer + gyroscope, 40 train / 40 test recordings).
* ``mnar``: the MultiModN experiment on av-digits. Training rows lose their audio missing-not-at-random: 60 % of
  the rows of digits 0-4 and none of digits 5-9 (30 % overall). ``no_shift_acc`` = test accuracy under the same
  pattern, ``shift_acc`` = under the shifted pattern (60 % of the rows of digits 5-9 lose it; same 30 % rate), and
  ``complete_acc`` = no missing audio. Every fusion trains with the same recipe (8 epochs) but without modality dropout
  (the MNAR pattern is the only missingness it sees). Two extra rows: ``concat_zero`` (P-Fusion: zero-imputed
  missing vectors) trained on the MNAR table, and ``concat_zero_complete`` trained on complete data.

Training time and latency are measured inside the worker processes (2 at a time, 1 thread each), so they carry
the noise of a shared machine; accuracy does not depend on it.
"""

from __future__ import annotations

import argparse
import json
import time

from _common import RESULTS, emit, setup

import numpy as np

from polymodal.experiments.compare import Job, compare, resolve_fusions, run_jobs
EPOCHS = 8  # fewer than the demo's 15: 52 av-digits models must fit in a session on 2 shared cores

SEEDS = (0, 1, 2)
NOISE = (0.0, 0.1, 0.3, 0.5)
SECTIONS = ("av_digits", "basicmotions", "mnar")


def contract(summary: dict) -> dict:
    out = {}
    for name, e in summary["models"].items():
        out[name] = {
            "acc_mean": round(e["mean"], 4), "acc_std": round(e["std"], 4), "params": e["params"],
            "train_s": round(e["train_s"], 1), "latency_ms": round(e["latency_ms"], 4), "scores": e["scores"],
        }
        if "subsets" in e:
            out[name]["subsets"] = {k: round(v, 4) for k, v in e["subsets"].items()}
        if "noise" in e:
            out[name]["relative_robustness"] = {k: round(v, 4) for k, v in e["noise"]["relative_robustness"].items()}
            out[name]["noise_curve_all"] = [round(v, 4) for v in e["noise"]["curves"].get("all", [])]
            if "effective_robustness_vs_late" in e["noise"]:
                out[name]["effective_robustness_vs_late"] = {
                    k: round(v, 4) for k, v in e["noise"]["effective_robustness_vs_late"].items()
                }
    return out


def progress(name: str):
    """Print each finished run and append it to ``results/fusion_compare_<name>_runs.jsonl`` (a partial run is
    still inspectable)."""
    log = RESULTS / f"fusion_compare_{name}_runs.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")

    def done(r: dict) -> None:
        print(f"  {r['key']}: {r['score']:.3f} ({r['train_s']:.0f}s)", flush=True)
        with log.open("a") as f:  # probabilities included, so a partial run can still be summarised
            f.write(json.dumps(r) + "\n")

    return done


def run_compare(name: str, train, test, label: str, epochs: int, workers: int) -> dict:
    t0 = time.perf_counter()
    s = compare(train, label, test=test, fusions="all", seeds=SEEDS, noise=NOISE, workers=workers,
                on_done=progress(name), epochs=epochs, out=RESULTS / f"fusion_compare_{name}")
    res = contract(s)
    return {"fusions": res, "integration": s.get("integration", {}), "total_s": round(time.perf_counter() - t0, 1)}


def run_mnar(workers: int, epochs: int, fusions: str = "all") -> dict:
    from polymodal.datasets import load_av_digits
    from polymodal.evaluate.mnar import MNARPattern, dependence, hide_in_frame, missing_rows

    train, test = load_av_digits("train"), load_av_digits("test")
    pattern = MNARPattern("audio", rate=0.3, depends_on="label", classes=(0, 1, 2, 3, 4), strength=1.0)
    shifted = pattern.shifted(10)
    rate_hi = 0.6
    train_miss = missing_rows(pattern, len(train), labels=train["digit"].to_numpy(), n_classes=10, seed=0)
    test_a = missing_rows(pattern, len(test), labels=test["digit"].to_numpy(), n_classes=10, seed=1)
    test_b = missing_rows(shifted, len(test), labels=test["digit"].to_numpy(), n_classes=10, seed=1)
    train_mnar = hide_in_frame(train, ["audio"], train_miss)
    tables = {"no_shift": hide_in_frame(test, ["audio"], test_a), "shift": hide_in_frame(test, ["audio"], test_b)}
    recipe = {"epochs": epochs, "modality_dropout": 0.0}
    jobs = []
    zero = {**recipe, "fusion": {"options": {"missing": "zero"}}}
    jobs = [Job(f, f, 0, "digit", train_mnar, test, options=dict(recipe), extra_tests=tables) for f in resolve_fusions(fusions)]
    if fusions == "all":
        jobs.append(Job("concat_zero", "concat", 0, "digit", train_mnar, test, options=zero, extra_tests=tables))
        jobs.append(Job("concat_zero_complete", "concat", 0, "digit", train, test, options=zero, extra_tests=tables))
    results = run_jobs(jobs, workers=workers, on_done=lambda r: print(
        f"  mnar {r['key']}: " + ", ".join(f"{k} {v:.3f}" for k, v in r["tables"].items()), flush=True))
    out = {}
    for r in results:
        t = r["tables"]
        out[r["key"]] = {"no_shift_acc": round(t["no_shift"], 4), "shift_acc": round(t["shift"], 4),
                         "complete_acc": round(t["test"], 4), "drop": round(t["no_shift"] - t["shift"], 4)}
    return {
        "pattern": {"train": dependence(train_miss, train["digit"].to_numpy()),
                    "test_no_shift": dependence(test_a, test["digit"].to_numpy()),
                    "test_shift": dependence(test_b, test["digit"].to_numpy()),
                    "rate_in_targeted_classes": rate_hi},
        "fusions": out,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=EPOCHS, help="epochs per av-digits model")
    ap.add_argument("--mnar-fusions", default="all", help="re-run the MNAR study for these fusions only (merged)")
    args = ap.parse_args()
    setup(threads=1)
    path = RESULTS / "fusion_compare.json"
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    for section in sections:
        print(f"== {section}", flush=True)
        if section == "av_digits":
            out = run_compare("av_digits", ("dataset", "av-digits", "train"), ("dataset", "av-digits", "test"),
                              "digit", args.epochs, args.workers)
        elif section == "basicmotions":
            out = run_compare("basicmotions", ("dataset", "basicmotions", "train"), ("dataset", "basicmotions", "test"),
                              "activity", 60, args.workers)
        else:
            out = run_mnar(args.workers, args.epochs, args.mnar_fusions)
        # re-read before writing: sections may run in separate processes; each replaces only its own entry
        res = json.loads(path.read_text()) if path.exists() else {}
        res.pop("_meta", None)
        if section == "mnar" and args.mnar_fusions != "all" and "mnar" in res:  # a re-run of some fusions
            res["mnar"]["fusions"].update(out["fusions"])
        else:
            res[section] = out
        emit("fusion_compare", res)  # after every section, so a later failure keeps what finished


if __name__ == "__main__":
    main()
