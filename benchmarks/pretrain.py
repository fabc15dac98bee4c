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
* images predicted from audio alone on the test rows, read by classifiers trained on the real training images
  (logistic regression on the pixels, the headline ``recon_digit_acc``; and an image-only CNN, which reads even
  the class-mean images at chance); beside them a training-free peer, ridge regression from a log-mel summary of
  the clip to the pixels; and a PNG grid (real / predicted) at docs/img/pretrain_recon.png.

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
# pre-training batch: 16, not the default 64. Images read from audio alone (logistic-regression reader, seed 0,
# 20 epochs): batch 64 0.28, 8 0.37, 16 0.42; batch 64 for 60 epochs 0.30 (so not the step count alone)
PRE_BATCH = 16


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


def real_pixels(ds) -> np.ndarray:
    """The images of a decoded dataset (``pre.decode(frame)[1]``), ``[N, H, W]`` in [0, 1]."""
    return ds.arrays["image"]["pixels"][:, 0].numpy()


def class_mean_images(pixels: np.ndarray, digits: np.ndarray) -> np.ndarray:
    """The mean real training image of each digit, ``[10, H, W]``: MSE's best prediction from a clip of that digit."""
    return np.stack([pixels[digits == d].mean(0) for d in range(10)])


def image_readers(pixels: np.ndarray, train, ft: dict) -> dict:
    """Two classifiers trained on the real (degraded) training images, each ``images [N, H, W] -> digits``:
    ``linear`` (logistic regression on the pixels, scikit-learn) and ``cnn`` (polymodal's image-only ``late``
    model, ``image_conv``). A reader of predicted images must read a perfect prediction: MSE's best prediction
    from a clip that says "3" is the mean of the training images of 3s, so ``read_images`` also reads the 10
    class-mean images (the CNN, trained on noisy strokes, reads them all as one digit). ``pixels``: ``train``'s
    images as decoded (``real_pixels``)."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    linear = LogisticRegression(C=0.1, max_iter=2000).fit(pixels.reshape(len(pixels), -1), train["digit"].to_numpy())
    cnn = pm.fit(train[["image", "digit"]], label="digit", seed=0, **{**ft, "fusion": "late"})
    return {"linear": lambda imgs: linear.predict(imgs.reshape(len(imgs), -1)),
            "cnn": lambda imgs: cnn.predict(pd.DataFrame({"image": list(imgs.astype(np.float32))}),
                                            progress=False)["prediction"].to_numpy()}


def read_images(readers: dict, fake: np.ndarray, real: np.ndarray, digits: np.ndarray,
                class_means: np.ndarray) -> dict:
    """Each reader's accuracy on the predicted images as they are, contrast-matched (each prediction's pixel mean
    and std set to the real test images'), on the real test images and on the 10 class-mean training images."""
    z = (fake - fake.mean((1, 2), keepdims=True)) / (fake.std((1, 2), keepdims=True) + 1e-6)
    matched = np.clip(z * real.std() + real.mean(), 0, 1)
    out = {}
    for name, read in readers.items():
        out[name] = {"predicted": float((read(fake) == digits).mean()),
                     "contrast_matched": float((read(matched) == digits).mean()),
                     "real": float((read(real) == digits).mean()),
                     "class_means": float((read(class_means) == np.arange(len(class_means))).mean())}
    return out


def images_from_audio(pre: PretrainedModel, test) -> np.ndarray:
    """Every test image predicted from its audio alone, ``[N, H, W]`` in [0, 1]."""
    _, preds, _, _ = pre.predict_modality(test.drop(columns=["image"]), "image")
    target = pre.net.targets["image"]
    return np.stack([target.decode(p)[..., 0] for p in preds])


def audio_summary(pre: PretrainedModel, ds, segments: int = 6) -> np.ndarray:
    """Per clip of a decoded dataset, the run's own normalised log-mel (its audio target) averaged over
    ``segments`` equal stretches of the clip's real frames, and its std per band over the clip:
    ``[N, (segments + 1) * n_mels]``."""
    target = pre.net.targets["audio"]
    a = ds.arrays["audio"]
    rows = []
    for start in range(0, len(ds), 256):
        sl = slice(start, start + 256)
        tok, real = target.make({"wave": a["wave"][sl], "length": a["length"][sl]})
        for t, r in zip(tok, real):
            frames = t[r].reshape(-1, target.n_mels).numpy()  # [real tokens x stride, n_mels]
            parts = np.array_split(frames, segments)
            rows.append(np.concatenate([p.mean(0) if len(p) else frames.mean(0) for p in parts] + [frames.std(0)]))
    return np.stack(rows)


def ridge_images_from_audio(pre: PretrainedModel, train_ds, test_ds, lam: float = 100.0) -> np.ndarray:
    """A training-free peer: ridge regression from each clip's log-mel summary (``audio_summary``, standardised)
    to the pixels of its image, fit on the decoded training pairs (no labels), applied to the test clips."""
    from sklearn.linear_model import Ridge

    xa, ta = audio_summary(pre, train_ds), audio_summary(pre, test_ds)
    mu, sd = xa.mean(0), xa.std(0) + 1e-6
    y = real_pixels(train_ds)
    ridge = Ridge(alpha=lam).fit((xa - mu) / sd, y.reshape(len(y), -1))
    return np.clip(ridge.predict((ta - mu) / sd), 0, 1).reshape(len(ta), *y.shape[1:]).astype(np.float32)


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
                       alpha=1.0, epochs=pre_epochs, patience=pre_epochs, batch_size=PRE_BATCH, seed=0, **NET)
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

    # images from audio alone, read by classifiers trained on the real training images; the ridge peer beside
    t = time.perf_counter()
    pre, digits = runs["crossmodal"], test["digit"].to_numpy()
    (_, train_ds, _), (_, test_ds, _) = pre.decode(train), pre.decode(test)  # each frame decoded once
    train_pixels, real = real_pixels(train_ds), real_pixels(test_ds)
    readers = image_readers(train_pixels, train, ft)
    class_means = class_mean_images(train_pixels, train["digit"].to_numpy())
    fake = images_from_audio(pre, test)
    recon = read_images(readers, fake, real, digits, class_means)
    ridge_fake = ridge_images_from_audio(pre, train_ds, test_ds)
    ridge_read = read_images(readers, ridge_fake, real, digits, class_means)
    counts = np.bincount(digits, minlength=10)
    chance = float(counts.max() / counts.sum())
    grid_path = ROOT / "docs" / "img" / "pretrain_recon.png"
    recon_grid(real, fake, digits, grid_path)
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
        "recon_digit_acc": round(recon["linear"]["predicted"], 4),
        "recon_chance": round(chance, 4),
        "recon_reader": "linear: logistic regression on the pixels of the real training images",
        "recon_reader_acc_on_real_images": round(recon["linear"]["real"], 4),
        "recon_reader_acc_on_class_means": round(recon["linear"]["class_means"], 4),
        "recon_loo_centroid_acc": round(loo_centroid(fake.reshape(len(fake), -1), digits), 4),
        "recon_ridge_digit_acc": round(ridge_read["linear"]["predicted"], 4),
        "recon_ridge_loo_centroid_acc": round(loo_centroid(ridge_fake.reshape(len(ridge_fake), -1), digits), 4),
        "recon_digit_acc_cnn": round(recon["cnn"]["predicted"], 4),
        "recon_readings": {"net": recon, "ridge_peer": ridge_read},
        "accuracy_mean": {k: mean(k) for k in per_seed[0] if k not in ("seed", "n_labelled", "seconds")},
        "per_seed": per_seed,
        "pretrain": {m: {"final_epoch": r.info["training"]["history"][-1] if r.info["training"]["history"] else None,
                         "epochs_run": r.info["training"]["epochs_run"], "n_rows": r.info["n_train"] + r.info["n_val"]}
                     for m, r in runs.items()},
        "setup": {
            "data": f"av-digits: pre-training on {len(train)} training rows without labels; fine-tuning on 10 % of "
                    "their labels (stratified, a different draw per seed); test: the 300 official test rows",
            "net": "dim 32, image_conv + audio_logmel encoders, transformer fusion (1 layer), 1-layer decoders",
            "pretrain": f"mask_ratio 0.75, Dirichlet alpha 1, {pre_epochs} epochs, batch {PRE_BATCH}, seed 0 (one "
                        "pre-training per masking; the seeds vary the labelled subset and the fine-tuning)",
            "finetune": f"{ft['epochs']} epochs max, early stopping (patience {ft['patience']}) on 10 % of the "
                        "labelled rows, batch 32; scratch and fine-tune share every option but init",
            "linear_probe": "freeze='encoders,fusion': only the linear head (and the unimodal auxiliary heads) learn",
            "mlp_probe": "freeze='encoders', fusion='late' (trainable per-modality MLP on mean-pooled frozen tokens)",
            "recon": "every image token predicted from the audio alone (image absent), read by classifiers trained "
                     "on the real (degraded) training images: linear (the headline: logistic regression on pixels) "
                     "and cnn (polymodal's image-only late model); each reader also reads the 10 class-mean "
                     "training images (what a perfect MSE prediction from a clip of that digit looks like: the CNN "
                     "reads them at chance, so it cannot judge any MSE prediction) and contrast-matched "
                     "predictions (pixel mean / std set to the real test images'); loo_centroid: leave-one-out "
                     "nearest class centroid among the predicted images themselves; ridge_peer: ridge regression "
                     "(lambda 100) from each clip's log-mel summary (6 segment means + per-band std of the run's own "
                     "normalised log-mel) to its image's pixels, fit on the training pairs without labels",
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
