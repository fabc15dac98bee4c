"""Streaming vs in-memory data path (issue 13 part 1): memory flat in table size, throughput, chunked predict.

Tables: the bundled av-digits training split exported as files (PNG + WAV, ``export_av_digits``), written as
Parquet shards of file paths (300 rows a shard, row groups of 100): ``1x`` (2,700 rows) and ``10x`` (27,000 rows:
the 1x rows plus 9 re-pairings, each pairing every image with another audio clip of the same digit, so labels stay
right and every row is a new pair).

Every measurement runs in a fresh subprocess (this script with ``--child``), watched from here: its peak resident
memory is the maximum over time of the RSS summed over the process and all its descendants (the DataLoader
workers), sampled every 50 ms with psutil (PSS, which counts pages shared by forked workers once, is recorded
beside it).

* ``fit``: ``polymodal.fit`` on the shards with ``stream="on"`` (2 DataLoader workers) or ``"off"`` (in memory),
  1 epoch capped by ``--minutes`` of training (the same cap for 1x and 10x, so the runs compare at equal work
  per step; the in-memory run first decodes the whole table). Training throughput (samples / s) comes from a
  Lightning callback in the child: rows of the training batches over the wall time from the end of the first
  step to the end of the last (data waits included).
* ``predict``: ``polymodal predict RUN SHARDS --out preds.parquet`` (the real CLI; chunks of 1,024 rows, written
  as they come) with the model saved by the 1x streaming fit.

Keys: ``stream_peak_rss_ratio_10x`` (target <= 1.15), ``memory_peak_rss_mb`` {"1x", "10x"} (in-memory path),
``stream_peak_rss_mb``, ``stream_vs_memory_throughput`` (target >= 0.8; 1x table, median of the repeats, run side by
side), ``predict_peak_rss_ratio_10x`` (target <= 1.15), ``predict_peak_rss_mb``. ``--quick``: 1x = 600 rows, a
shorter cap, one repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, emit  # noqa: E402

SHARD_ROWS, GROUP_ROWS = 300, 100


def build_tables(folder: Path, limit: int | None) -> dict[str, Path]:
    """``{"1x": shards, "10x": shards}`` under ``folder`` (paths relative to each shard folder)."""
    import numpy as np
    import pandas as pd

    from polymodal.datasets.av_digits import export_av_digits

    exported = export_av_digits(folder / "files", splits=("train",), limit=limit, progress=False)
    manifest = pd.read_parquet(exported["train"])
    manifest = manifest.assign(image="../files/" + manifest["image"], audio="../files/" + manifest["audio"])
    rng = np.random.default_rng(0)
    pairings = [manifest]
    for _ in range(9):
        audio = manifest["audio"].to_numpy().copy()
        for d in manifest["digit"].unique():  # another clip of the same digit for every image
            idx = np.flatnonzero(manifest["digit"].to_numpy() == d)
            audio[idx] = audio[rng.permutation(idx)]
        pairings.append(manifest.assign(audio=audio))
    out = {}
    for name, frame in (("1x", manifest), ("10x", pd.concat(pairings, ignore_index=True))):
        d = folder / f"shards_{name}"
        d.mkdir()
        for k, a in enumerate(range(0, len(frame), SHARD_ROWS)):
            part = frame.iloc[a : a + SHARD_ROWS]
            part.to_parquet(d / f"part-{k:04d}.parquet", index=False, row_group_size=GROUP_ROWS)
        out[name] = d
    return out


def watch(cmd: list[str], env: dict[str, str]) -> dict:
    """Run ``cmd``; its peak summed RSS / PSS (MiB) over the process tree, wall time, and its JSON last line."""
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = {"rss": 0, "pss": 0}
    stop = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            rss = pss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                    pss += getattr(p.memory_full_info(), "pss", 0)
                except psutil.Error:
                    pass
            peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
            stop.wait(0.05)

    t0 = time.perf_counter()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    stop.set()
    thread.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    return {"peak_rss_mb": round(peak["rss"] / 2**20, 1), "peak_pss_mb": round(peak["pss"] / 2**20, 1),
            "wall_s": round(time.perf_counter() - t0, 1), **(json.loads(lines[-1]) if lines else {})}


def child_fit(shards: str, stream: str, minutes: float, out: str | None) -> None:
    """One fit in this process; prints its throughput as JSON."""
    import lightning as L

    from polymodal.config.presets import resolve
    from polymodal.recipes.model import Model
    from polymodal.recipes.steps import hold_out, prepare, train_run
    import polymodal.recipes.steps as steps

    class Throughput(L.Callback):
        def __init__(self) -> None:
            self.rows, self.t_first, self.t_last = 0, None, None

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            now = time.perf_counter()
            if self.t_first is None:
                self.t_first = now  # the first step pays for worker start-up and warm-up
            else:
                self.rows += len(batch)
            self.t_last = now

    meter = Throughput()
    train_net = steps.train_net
    steps.train_net = lambda *a, **k: train_net(*a, **{**k, "callbacks": [meter]})
    options = dict(epochs=1, dim=32, fusion="late", batch_size=64, val_fraction=0.0, stream=stream, num_workers=2,
                   max_minutes=minutes)
    cfg, train_cfg = resolve(options)
    prep = prepare(shards, "digit", cfg, supervised=True, train_cfg=train_cfg, progress=False)
    train_ds, val_ds = hold_out(prep, None, train_cfg, on_error="raise", progress=False)
    net, info = train_run(prep, cfg, train_cfg, train_ds, val_ds, run_type="model", on_error="raise", out=None,
                          progress=False)
    if out:
        Model(prep.schema, cfg, train_cfg, net, info).save(out)
    span = (meter.t_last or 0) - (meter.t_first or 0)
    print(json.dumps({"samples_per_s": round(meter.rows / span, 2) if span > 0 else None, "rows_timed": meter.rows,
                      "n_train": info["n_train"], "path": type(prep.dataset).__name__}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1x = 600 rows, shorter training cap, one repeat")
    ap.add_argument("--throughput", type=int, metavar="PAIRS", default=0,
                    help="only the throughput: PAIRS side-by-side in-memory / streaming fits on the 1x table, into "
                         "results/scale_data_throughput.json (for a quiet machine)")
    ap.add_argument("--child", nargs=4, metavar=("SHARDS", "STREAM", "MINUTES", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        shards, stream, minutes, out = args.child
        return child_fit(shards, stream, float(minutes), None if out == "-" else out)
    limit, minutes, repeats = (600, 0.25, 1) if args.quick else (None, 0.75, 2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="scale_data_") as tmp:
        tmp = Path(tmp)
        tables = build_tables(tmp, limit)
        runs: dict[str, dict] = {}

        def fit(name: str, stream: str, save: str | None = None) -> dict:
            cmd = [py, __file__, "--child", str(tables[name]), stream, str(minutes), save or "-"]
            res = watch(cmd, env)
            print(f"fit {name} stream={stream}: {res}", file=sys.stderr, flush=True)
            return res

        if args.throughput:
            import statistics

            pairs = []
            for k in range(args.throughput):  # alternating order, so a trend in the machine's load hits both
                a, b = (fit("1x", "off"), fit("1x", "on")) if k % 2 == 0 else (fit("1x", "on"), fit("1x", "off"))[::-1]
                pairs.append({"memory": a, "stream": b, "ratio": round(b["samples_per_s"] / a["samples_per_s"], 3)})
            ratios = [p["ratio"] for p in pairs]
            return emit("scale_data_throughput", {
                "stream_vs_memory_throughput": round(statistics.median(ratios), 3), "runs": ratios, "pairs": pairs,
                "target": ">= 0.8", "rows": pairs[0]["stream"]["n_train"],
                "note": f"streaming (2 DataLoader workers) over in-memory training samples/s on the 1x table, {minutes} "
                        "min of training per fit, side by side; median over the pairs"})
        model = tmp / "run"
        runs["stream_1x"] = fit("1x", "on", str(model))
        runs["memory_1x"] = fit("1x", "off")
        runs["stream_10x"] = fit("10x", "on")
        runs["memory_10x"] = fit("10x", "off")
        ratios = [runs["stream_1x"]["samples_per_s"] / runs["memory_1x"]["samples_per_s"]]
        for k in range(1, repeats):  # side by side again: the machine is shared and noisy
            a, b = fit("1x", "off"), fit("1x", "on")
            runs[f"memory_1x_repeat{k}"], runs[f"stream_1x_repeat{k}"] = a, b
            ratios.append(b["samples_per_s"] / a["samples_per_s"])
        for name in ("1x", "10x"):
            cmd = [str(Path(py).parent / "polymodal"), "predict", str(model), str(tables[name]),
                   "--out", str(tmp / f"p{name}.parquet")]
            runs[f"predict_{name}"] = watch(cmd, env)
            print(f"predict {name}: {runs[f'predict_{name}']}", file=sys.stderr, flush=True)
        rows = {name: sum(1 for _ in Path(tables[name]).iterdir()) for name in tables}
    import statistics

    result = {
        "stream_peak_rss_ratio_10x": round(runs["stream_10x"]["peak_rss_mb"] / runs["stream_1x"]["peak_rss_mb"], 3),
        "stream_peak_rss_mb": {"1x": runs["stream_1x"]["peak_rss_mb"], "10x": runs["stream_10x"]["peak_rss_mb"]},
        "memory_peak_rss_mb": {"1x": runs["memory_1x"]["peak_rss_mb"], "10x": runs["memory_10x"]["peak_rss_mb"]},
        "memory_peak_rss_ratio_10x": round(runs["memory_10x"]["peak_rss_mb"] / runs["memory_1x"]["peak_rss_mb"], 3),
        "stream_vs_memory_throughput": round(statistics.median(ratios), 3),
        "stream_vs_memory_throughput_runs": [round(r, 3) for r in ratios],
        "predict_peak_rss_ratio_10x": round(runs["predict_10x"]["peak_rss_mb"] / runs["predict_1x"]["peak_rss_mb"], 3),
        "predict_peak_rss_mb": {"1x": runs["predict_1x"]["peak_rss_mb"], "10x": runs["predict_10x"]["peak_rss_mb"]},
        "stream_peak_pss_ratio_10x": round(runs["stream_10x"]["peak_pss_mb"] / runs["stream_1x"]["peak_pss_mb"], 3),
        "rows": {"1x": runs["stream_1x"]["n_train"], "10x": runs["stream_10x"]["n_train"]},
        "shards": rows,
        "targets": {"stream_peak_rss_ratio_10x": "<= 1.15", "stream_vs_memory_throughput": ">= 0.8",
                    "predict_peak_rss_ratio_10x": "<= 1.15"},
        "runs": runs,
        "quick": bool(args.quick),
        "note": "shared machine: 2 CPU cores used by several agents at once, so absolute times are noisy; compare "
                "the ratios, measured side by side in this run. Peak memory is RSS summed over the process and its "
                "DataLoader workers (forked workers share pages with the parent: PSS, which counts them once, is "
                f"in runs.*.peak_pss_mb). Training capped at {minutes} min per fit, 1 epoch, late fusion, dim 32.",
    }
    emit("scale_data", result)


if __name__ == "__main__":
    main()
