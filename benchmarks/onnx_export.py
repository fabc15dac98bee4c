"""ONNX export of the av-digits default model: parity for every modality subset, onnxruntime vs PyTorch speed.

1. The model: ``--run DIR`` (a run folder of an av-digits model), or one trained here with the library defaults
   (transformer fusion, dim 64) on the first 400 training rows for 2 epochs (``--quick``: 200 rows, 1 epoch);
   the weights' quality does not matter here, only that they are trained ones.
2. Export with ``polymodal.export.export_run``; the parity check runs on the 300 av-digits test rows (``--quick``:
   64) for every subset of {image, audio}, the empty one included, plus one row alone at its own audio length.
3. Throughput on the decoded test rows, decoding excluded, the same CPU threads for both (torch intra-op threads =
   onnxruntime ``intra_op_num_threads``; ``--threads``, default 1: on a busy shared machine two spinning OpenMP
   threads per process slow PyTorch down by an order of magnitude, which would flatter onnxruntime): batch 1 (one row per call) and batch 64. Backends alternate (A B A B,
   ``REPS`` times) and the best repetition of each is kept, so machine noise hits both alike.

Output (``results/onnx_export.json``): ``onnx_max_abs_diff``, ``onnx_subset_diffs``, ``onnx_vs_torch_throughput``
(``{"b1", "b64"}``: onnxruntime rows/s over PyTorch rows/s), the rows/s themselves and the export time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import emit, setup

import torch

REPS = 5


def rows_per_s(fn, batches) -> float:
    start = time.perf_counter()
    n = 0
    for b in batches:
        fn(b)
        n += len(b)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="an av-digits run folder (default: train one here)")
    ap.add_argument("--quick", action="store_true", help="a smaller model and check (smoke test)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of both backends (default 1)")
    args = ap.parse_args()
    threads = args.threads
    setup(threads)

    import polymodal as pm
    from polymodal.datasets import load_av_digits
    from polymodal.export import export_run, open_backend

    t0 = time.perf_counter()
    if args.run is not None:
        model, trained = pm.load(args.run), f"loaded from {args.run}"
    else:
        n, epochs = (200, 1) if args.quick else (400, 2)
        model = pm.fit(load_av_digits("train", limit=n), label="digit", epochs=epochs, progress=False, seed=0)
        trained = f"pm.fit defaults (transformer fusion, dim 64) on the first {n} av-digits train rows, {epochs} epochs"
    train_s = time.perf_counter() - t0
    test = load_av_digits("test", limit=64 if args.quick else 300)
    _, ds, _ = model.decode(test, labels="ignore", progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        graph = Path(tmp) / "m.onnx"
        t0 = time.perf_counter()
        rec = export_run(model.net, model.schema, ds, graph, run=args.run, threads=threads,
                         check_source=f"av-digits test split, first {len(ds)} rows")
        export_s = time.perf_counter() - t0
        onnx = open_backend(graph, model.schema, model.net, threads=threads).net
        net = model.net.eval()
        n1 = 32 if args.quick else 100
        sizes = {"b1": [ds[[i]] for i in range(n1)],
                 "b64": [ds[list(range(s, min(s + 64, len(ds))))] for s in range(0, len(ds), 64)]}

        def torch_fn(b):
            with torch.inference_mode():
                return net(b).logits

        speed = {k: {"torch": 0.0, "onnx": 0.0} for k in sizes}
        for k, batches in sizes.items():
            torch_fn(batches[0]), onnx(batches[0])  # warm-up (allocations, first-run graph work)
            for _ in range(REPS):
                speed[k]["torch"] = max(speed[k]["torch"], rows_per_s(torch_fn, batches))
                speed[k]["onnx"] = max(speed[k]["onnx"], rows_per_s(onnx, batches))
    ratio = {k: round(v["onnx"] / v["torch"], 3) for k, v in speed.items()}
    emit("onnx_export", {
        "onnx_max_abs_diff": rec["max_abs_diff"],
        "onnx_subset_diffs": rec["check"]["subsets"],
        "onnx_shape_diffs": rec["check"]["shapes"],
        "onnx_vs_torch_throughput": ratio,
        "rows_per_s": {k: {b: round(r, 1) for b, r in v.items()} for k, v in speed.items()},
        "atol": rec["atol"],
        "passed": rec["passed"],
        "opset": rec["opset"],
        "check_rows": rec["check"]["rows"],
        "export_s": round(export_s, 1),
        "model": trained,
        "train_s": round(train_s, 1),
        "threads": threads,
        "quick": bool(args.quick),
        "note": ("measured on a shared, busy machine (2 CPU cores shared by several agents): absolute rows/s "
                 "are noisy; the ratios compare the two backends side by side in one run, alternating, best of "
                 f"{REPS} each, the same {threads} thread(s) for both"),
    })


if __name__ == "__main__":
    main()
