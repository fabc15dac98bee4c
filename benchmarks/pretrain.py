"""Masked any-to-any pre-training (MultiMAE / 4M) on av-digits: does it pay off with few labels?

    python benchmarks/pretrain.py            # the full run (about 20 min on 2 idle cores)
    python benchmarks/pretrain.py --quick    # a smaller run (fewer rows and epochs) to check the script

Pre-trains on the training rows without their labels, once with cross-modal masking (MultiMAE: a Dirichlet split
of one visible budget over the modalities, every decoder reads every modality) and once with each modality masked
on its own (``masking="permodal"``: no cross-modal targets). Then, for each seed, with the same 10 % of the labels:

* fine-tune from each pre-trained run vs train from scratch (same net, same options) -> test accuracy;
* probes on frozen encoders, pre-trained vs randomly initialised (the same untrained ``PretrainNet`` saved as a
  run): a linear probe (encoders and the transformer fusion frozen, only the linear head learns) and an MLP probe
  (encoders frozen, a trainable ``late`` fusion on their mean-pooled tokens);
* images predicted from audio alone on the test rows, read by an image-only classifier trained on the real
  training images: its accuracy on them, chance, and a PNG grid (real / predicted) at docs/img/pretrain_recon.png.

Writes benchmarks/results/pretrain.json (its ``quick`` key says which run wrote it) and the grid. Points are
accuracy x 100.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polymodal as pm  # noqa: E402
from polymodal.datasets import load_av_digits  # noqa: E402
from polymodal.pretrain import PretrainedModel, PretrainNet, pretrain  # noqa: E402
from polymodal.pretrain.net import PretrainSpec  # noqa: E402

NET = dict(dim=32, fusion={"name": "transformer", "options": {"layers": 1}}, progress=False)


def accuracy(model, test) -> float:
    pred = model.predict(test, progress=False)["prediction"].to_numpy()
    return float((pred == test["digit"].to_numpy()).mean())


def random_run(pre: PretrainedModel, seed: int, path: Path) -> Path:
    """The pre-trained run's architecture with fresh random weights, saved as a run (the probes' baseline)."""
    torch.manual_seed(seed)
    spec = PretrainSpec.from_dict(copy.deepcopy(pre.spec.to_dict()))
    net = PretrainNet(pre.schema, pre.cfg, spec)
    PretrainedModel(pre.schema, pre.cfg, pre.train_cfg, spec, net, {}).save(path)
    return path


def loo_centroid(x: np.ndarray, y: np.ndarray) -> float:
    """How digit-specific predicted images are: leave-one-out nearest class centroid among the predictions."""
    x = x.astype(np.float64)
    sums = np.stack([x[y == d].sum(0) for d in range(10)])
    counts = np.bincount(y, minlength=10).astype(np.float64)
    hits = 0
    for i in range(len(x)):
        s, c = sums.copy(), counts.copy()
        s[y[i]] -= x[i]
        c[y[i]] -= 1
        cents = s / np.maximum(c, 1)[:, None]
        hits += int(np.argmin(((cents - x[i]) ** 2).sum(1)) == y[i])
    return hits / len(x)


def images_from_audio(pre: PretrainedModel, clf, test) -> tuple[np.ndarray, np.ndarray, dict]:
    """Every test image predicted from its audio alone: (predicted [N, H, W] in [0, 1], real, readings). The
    readings: ``clf`` (trained on real images) on the predictions as they are; on each prediction contrast-matched
    first (the predictions are smooth and low in contrast, MSE's conditional mean of noisy, occluded images, which
    a classifier of noisy real images reads as "1", little ink: each predicted image's mean / std of pixel values is
    matched to the real test images'); and leave-one-out nearest class centroid among the predictions."""
    _, preds, _, _ = pre.predict_modality(test.drop(columns=["image"]), "image")
    target = pre.net.targets["image"]
    fake = np.stack([target.decode(p)[..., 0] for p in preds])
    _, real_ds, _ = pre.decode(test)
    real = real_ds.arrays["image"]["pixels"][:, 0].numpy()
    z = (fake - fake.mean((1, 2), keepdims=True)) / (fake.std((1, 2), keepdims=True) + 1e-6)
    matched = np.clip(z * real.std() + real.mean(), 0, 1)
    base = test.drop(columns=["audio"])
    return fake, real, {"recon_digit_acc": accuracy(clf, base.assign(image=list(fake))),
                        "contrast_matched": accuracy(clf, base.assign(image=list(matched))),
                        "loo_centroid": loo_centroid(fake.reshape(len(fake), -1), test["digit"].to_numpy())}


def recon_grid(real: np.ndarray, fake: np.ndarray, digits: np.ndarray, path: Path) -> None:
    """Two rows per block: real test images, then the images predicted from their audio alone; one column per
    digit 0-9 (the first test row of each digit), three blocks."""
    from PIL import Image

    cols = []
    for block in range(3):
        for d in range(10):
            idx = np.flatnonzero(digits == d)
            i = idx[block % len(idx)]
            cols.append((block, d, i))
    scale, pad = 3, 2
    h, w = real.shape[1] * scale, real.shape[2] * scale
    grid = np.full((3 * (2 * h + 3 * pad), 10 * (w + pad)), 255, dtype=np.uint8)
    for block, d, i in cols:
        y = block * (2 * h + 3 * pad)
        for r, img in enumerate((real[i], fake[i])):
            a = np.kron(np.clip(img, 0, 1), np.ones((scale, scale)))
            grid[y + r * h: y + (r + 1) * h, d * (w + pad): d * (w + pad) + w] = np.rint(a * 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--mlp-probe", action="store_true", help="also the MLP probe (2 more fits per seed)")
    ap.add_argument("--work", type=Path, default=None,
                    help="keep the pre-trained runs here; runs already there are reused (default: a temporary folder)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    load_start = os.getloadavg()[0]
    quick = args.quick
    n_pre = 600 if quick else 2700
    pre_epochs = 3 if quick else 20
    ft = dict(epochs=8 if quick else 60, patience=6 if quick else 10, batch_size=32, **NET)
    train = load_av_digits("train", limit=None if n_pre >= 2700 else n_pre)
    test = load_av_digits("test")
    temporary = args.work is None
    work = Path(tempfile.mkdtemp(prefix="polymodal-pretrain-bench-")) if temporary else args.work
    timings = {}

    runs = {}
    for masking in ("crossmodal", "permodal"):
        t = time.perf_counter()
        if (work / masking / "config.json").exists():  # --work: a run of the same settings pre-trained earlier
            runs[masking] = PretrainedModel.load(work / masking)
            timings[f"pretrain_{masking}_s"] = runs[masking].info["train_s"]
            continue
        pre = pretrain(train.drop(columns=["digit"]), out=work / masking, masking=masking, mask_ratio=0.75,
                       alpha=1.0, epochs=pre_epochs, patience=pre_epochs, batch_size=64, seed=0, **NET)
        runs[masking] = pre
        timings[f"pretrain_{masking}_s"] = round(time.perf_counter() - t, 1)
        print(f"pretrained {masking} in {timings[f'pretrain_{masking}_s']}s: {pre.info['training']['history'][-1]}",
              flush=True)

    per_seed, reused = [], []
    labels = train["digit"].to_numpy()
    for seed in range(args.seeds):
        cached = work / f"seed{seed}.json"
        if cached.exists():  # --work: this seed was measured by an earlier run with the same runs
            per_seed.append(json.loads(cached.read_text()))
            reused.append(seed)
            continue
        rng = np.random.default_rng(100 + seed)
        few = np.concatenate([rng.choice(np.flatnonzero(labels == d), max(2, int(0.1 * (labels == d).sum())),
                                         replace=False) for d in range(10)])  # 10 % of the labels, stratified
        small = train.iloc[np.sort(few)]
        rand = random_run(runs["crossmodal"], seed, work / f"random{seed}")
        res = {"seed": seed, "n_labelled": len(small)}
        t = time.perf_counter()
        res["scratch"] = accuracy(pm.fit(small, label="digit", seed=seed, **ft), test)
        for masking in runs:
            res[f"finetune_{masking}"] = accuracy(pm.fit(small, label="digit", init=work / masking, seed=seed, **ft),
                                                  test)
        for name, init in (("pretrained", work / "crossmodal"), ("random", rand)):
            res[f"linear_probe_{name}"] = accuracy(pm.fit(small, label="digit", init=init, freeze="encoders,fusion",
                                                          seed=seed, **ft), test)
            if not args.mlp_probe:
                continue
            mlp = {**ft, "fusion": "late"}
            res[f"mlp_probe_{name}"] = accuracy(pm.fit(small, label="digit", init=init, freeze="encoders", seed=seed,
                                                       **mlp), test)
        res["seconds"] = round(time.perf_counter() - t, 1)
        print(res, flush=True)
        per_seed.append(res)
        cached.write_text(json.dumps(res))

    # images from audio alone: an image-only classifier trained on the real training images reads them
    t = time.perf_counter()
    clf = pm.fit(train[["image", "digit"]], label="digit", seed=0, **{**ft, "fusion": "late"})
    fake, real, recon = images_from_audio(runs["crossmodal"], clf, test)
    real_acc = accuracy(clf, test.drop(columns=["audio"]))
    counts = np.bincount(test["digit"].to_numpy(), minlength=10)
    chance = float(counts.max() / counts.sum())
    grid_path = ROOT / "docs" / "img" / "pretrain_recon.png"
    recon_grid(real, fake, test["digit"].to_numpy(), grid_path)
    timings["recon_s"] = round(time.perf_counter() - t, 1)

    def gain(a: str, b: str) -> tuple[float, float]:
        d = np.array([100.0 * (r[a] - r[b]) for r in per_seed])
        return round(float(d.mean()), 2), round(float(d.std(ddof=1)) if len(d) > 1 else 0.0, 2)

    def mean(key: str) -> float:
        return round(float(np.mean([r[key] for r in per_seed])), 4)

    ft_gain, ft_std = gain("finetune_crossmodal", "scratch")
    probe, probe_std = gain("linear_probe_pretrained", "linear_probe_random")
    mlp_probe, mlp_std = gain("mlp_probe_pretrained", "mlp_probe_random") if args.mlp_probe else (None, None)
    cross, cross_std = gain("finetune_crossmodal", "finetune_permodal")
    result = {
        "finetune10_gain_points": ft_gain,
        "finetune10_gain_std": ft_std,
        "probe_gain_points": probe,
        "probe_gain_std": probe_std,
        "mlp_probe_gain_points": mlp_probe,
        "mlp_probe_gain_std": mlp_std,
        "crossmodal_vs_permodal_points": cross,
        "crossmodal_vs_permodal_std": cross_std,
        "recon_digit_acc": round(recon["recon_digit_acc"], 4),
        "recon_chance": round(chance, 4),
        "recon_classifier_acc_on_real_images": round(real_acc, 4),
        "recon_digit_acc_contrast_matched": round(recon["contrast_matched"], 4),
        "recon_loo_centroid_acc": round(recon["loo_centroid"], 4),
        "accuracy_mean": {k: mean(k) for k in per_seed[0] if k not in ("seed", "n_labelled", "seconds")},
        "per_seed": per_seed,
        "pretrain": {m: {"final_epoch": r.info["training"]["history"][-1] if r.info["training"]["history"] else None,
                         "epochs_run": r.info["training"]["epochs_run"], "n_rows": r.info["n_train"] + r.info["n_val"]}
                     for m, r in runs.items()},
        "setup": {
            "data": f"av-digits: pre-training on {len(train)} training rows without labels; fine-tuning on 10 % of "
                    "their labels (stratified, a different draw per seed); test: the 300 official test rows",
            "net": "dim 32, image_conv + audio_logmel encoders, transformer fusion (1 layer), 1-layer decoders",
            "pretrain": f"mask_ratio 0.75, Dirichlet alpha 1, {pre_epochs} epochs, batch 64, seed 0 (one "
                        "pre-training per masking; the seeds vary the labelled subset and the fine-tuning)",
            "finetune": f"{ft['epochs']} epochs max, early stopping (patience {ft['patience']}) on 10 % of the "
                        "labelled rows, batch 32; scratch and fine-tune share every option but init",
            "linear_probe": "freeze='encoders,fusion': only the linear head (and the unimodal auxiliary heads) learn",
            "mlp_probe": "freeze='encoders', fusion='late' (trainable per-modality MLP on mean-pooled frozen tokens)",
            "recon": "every image token predicted from the audio alone (image absent); classifier: image-only "
                     "late-fusion model trained on the real (degraded) training images; contrast_matched: each "
                     "predicted image standardised to the real test images' pixel mean / std first; "
                     "loo_centroid: leave-one-out nearest class centroid among the predicted images themselves",
            "targets": "continuous (normalised pixel patches, normalised log-mel frames), not discrete VQ/FSQ "
                       "tokens: no tokenizer to train first, and the reconstructions are directly images",
        },
        "quick": quick,
        "seeds_reused_from_work": reused,  # --work: seeds measured by an earlier invocation with the same runs
        "timings_s": {**timings, "total": round(time.perf_counter() - t0, 1)},
        "machine": f"{platform.machine()}, {args.threads} torch threads, CPU only",
        "note": "timings depend on other jobs on the 2 cores (load_avg_1min); accuracies do not. std is over seeds "
                "(ddof=1) of the per-seed differences.",
        "load_avg_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "not_measured": [
            {"what": "pre-training seeds", "why": "one pre-training per masking (time budget on 2 shared cores); "
                                                  "the 3 seeds vary the labelled subset and fine-tuning only"},
            {"what": "discrete VQ / FSQ targets (4M)", "why": "not built: continuous targets only"},
        ] + ([] if args.mlp_probe else [{"what": "mlp_probe_gain_points", "why": "run without --mlp-probe"}]),
    }
    out = ROOT / "benchmarks" / "results" / "pretrain.json"  # "quick" says which run wrote it
    out.write_text(json.dumps(result, indent=2))
    if temporary:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_seed", "setup")}, indent=2))


if __name__ == "__main__":
    main()
