"""Fusion gain on av-digits: does joint fusion beat the unimodal models and a linear baseline, and does it
survive a missing modality?

Trains (same recipe, same seed, early stopping on a held-out 10 % of train):
  * unimodal baselines: image only, audio only;
  * late / concat / transformer fusion with the defaults (modality dropout 0.3 + unimodal auxiliary losses);
  * the same three without modality dropout (``missing_acc_no_dropout``);
  * transformer fusion without modality dropout and without auxiliary losses (``missing_acc_naive``: plain
    joint training, the MultiModN failure case);
  * scikit-learn logistic regression on the same flattened raw inputs the models receive (28x28 pixels and the
    waveform), and, as a stronger linear baseline, on pixels + log-mel features.
Each fused model is scored on the test split with all modalities and with one removed (marked missing).
"""

from __future__ import annotations

import time

from _common import emit, setup

import librosa
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from polymodal.datasets import load_av_digits
from polymodal.experiments.demo import EPOCHS, run_parallel
from polymodal.config import ModelConfig
from polymodal.data.decode import decode
from polymodal.recipes.steps import prepare

FUSIONS = ("late", "concat", "transformer")


def raw_features(schema, ds, logmel: bool = False):
    """The flattened inputs the models receive: 28x28 pixels + the waveform (or its log-mel spectrogram)."""
    pixels = ds.arrays["image"]["pixels"].numpy().reshape(len(ds), -1)
    wave = ds.arrays["audio"]["wave"].numpy()
    if logmel:
        sr = schema.modalities["audio"].options["sample_rate"]
        mel = librosa.feature.melspectrogram(y=wave, sr=sr, n_fft=256, hop_length=128, n_mels=40)
        wave = np.log(mel + 1e-6).reshape(len(ds), -1)
    return np.concatenate([pixels, wave], 1), ds.target.numpy()


def logreg(train, test, logmel: bool) -> float:
    prep = prepare(train, "digit", ModelConfig(), supervised=True, progress=False)
    schema, train_ds = prep.schema, prep.dataset
    _, test_ds, _ = decode(schema, test, labels="require", progress=False)
    xtr, ytr = raw_features(schema, train_ds, logmel)
    xte, yte = raw_features(schema, test_ds, logmel)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=0.05))
    clf.fit(xtr, ytr)
    return float((clf.predict(xte) == yte).mean())


def main() -> None:
    setup()
    t0 = time.perf_counter()
    train, test = load_av_digits("train"), load_av_digits("test")
    res: dict = {"dataset": "av-digits", "n_train": len(train), "n_test": len(test)}
    jobs = [(f"uni_{m}", {"use": [m], "fusion": "late", "epochs": EPOCHS}) for m in ("image", "audio")]
    for f in FUSIONS:
        jobs += [(f, {"fusion": f, "epochs": EPOCHS}), (f"{f}_nodrop", {"fusion": f, "modality_dropout": 0.0, "epochs": EPOCHS})]
    # plain joint training (no dropout, no auxiliary losses): the MultiModN failure case, for the early fusion
    jobs.append(("transformer_naive", {"fusion": "transformer", "modality_dropout": 0.0, "aux_weight": 0.0, "epochs": EPOCHS}))
    jobs.sort(key=lambda j: j[1]["fusion"] != "transformer")  # longest first, for a better packing
    jobs = [(k, {**kw, "progress": False}) for k, kw in jobs]
    runs = run_parallel(jobs, workers=2)
    res["unimodal_acc"] = {m: runs[f"uni_{m}"]["acc"] for m in ("image", "audio")}
    res["fused_acc"] = {f: runs[f]["acc"] for f in FUSIONS}
    res["logreg_acc"] = logreg(train, test, logmel=False)
    res["logreg_logmel_acc"] = logreg(train, test, logmel=True)

    def missing(suffix: str) -> dict:
        return {f: {"image_only": runs[f + suffix]["image_only"], "audio_only": runs[f + suffix]["audio_only"]} for f in FUSIONS}

    res["missing_acc"] = missing("")
    res["missing_acc_no_dropout"] = missing("_nodrop")
    res["missing_acc_naive"] = {"transformer": {k: runs["transformer_naive"][k] for k in ("image_only", "audio_only")}}
    res["fused_acc_no_dropout"] = {f: runs[f + "_nodrop"]["acc"] for f in FUSIONS}
    res["fused_acc_naive"] = {"transformer": runs["transformer_naive"]["acc"]}
    best_uni = max(res["unimodal_acc"].values())
    res["transformer_gain_over_best_unimodal"] = round(res["fused_acc"]["transformer"] - best_uni, 4)
    res["transformer_gain_over_logreg"] = round(res["fused_acc"]["transformer"] - res["logreg_acc"], 4)
    res["train_s"] = {k: r["train_s"] for k, r in runs.items()}
    res["total_s"] = round(time.perf_counter() - t0, 1)
    emit("fusion_gain", res)


if __name__ == "__main__":
    main()
