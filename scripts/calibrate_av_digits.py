"""Calibrate the `av-digits` degradation: unimodal test accuracy of small CNNs and of logistic regression.

    python scripts/calibrate_av_digits.py                       # the shipped defaults
    python scripts/calibrate_av_digits.py --occlusion 12 --noise-std 0.3 --snr-db -6 --seeds 0 1 2

Trains, on the degraded train split, (a) a 2-conv-layer CNN on the 28x28 image alone, (b) a 2-conv-layer CNN
on the 40-band log-mel spectrogram of the audio alone (8 kHz, clips cropped / zero-padded to 1.0 s), and
(c) logistic regressions on the flattened pixels, the flattened log-mel and both concatenated; prints test
accuracies (CNNs averaged over --seeds). The goal is each unimodal CNN between 0.60 and 0.80 (aim 0.68-0.75)
so that neither modality alone solves the task.
"""

from __future__ import annotations

import argparse
import json
import time

import librosa
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from polymodal.datasets import av_digits as avd

SR = avd.SAMPLING_RATE


def logmel(waves: list[np.ndarray], n_mels: int = 40) -> np.ndarray:
    y = np.stack([w[:SR] if len(w) >= SR else np.pad(w, (0, SR - len(w))) for w in waves])
    s = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=512, hop_length=128, n_mels=n_mels)  # batched
    return librosa.power_to_db(s, ref=1.0, top_db=None).astype(np.float32)  # (N, n_mels, 63)


def cnn(in_hw: tuple[int, int], width: int = 16) -> nn.Module:
    h, w = in_hw
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(2 * width * (h // 4) * (w // 4), 10),
    )


def train_cnn(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, seed: int, epochs: int) -> float:
    torch.manual_seed(seed)
    mu, sd = xtr.mean(), xtr.std() + 1e-6
    xtr_t = torch.from_numpy((xtr - mu) / sd).unsqueeze(1)
    xte_t = torch.from_numpy((xte - mu) / sd).unsqueeze(1)
    ytr_t, yte_t = torch.from_numpy(ytr), torch.from_numpy(yte)
    model = cnn(tuple(xtr.shape[1:]))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * -(-len(xtr_t) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xtr_t), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xtr_t[idx]), ytr_t[idx]).backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        return float((model(xte_t).argmax(1) == yte_t).float().mean())


def logreg(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray) -> float:
    sc = StandardScaler().fit(xtr)
    clf = LogisticRegression(max_iter=2000, C=0.05).fit(sc.transform(xtr), ytr)
    return float(clf.score(sc.transform(xte), yte))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--occlusion", type=int, default=avd.OCCLUSION_SIZE)
    ap.add_argument("--noise-std", type=float, default=avd.IMAGE_NOISE_STD)
    ap.add_argument("--snr-db", type=float, default=avd.AUDIO_SNR_DB)
    ap.add_argument("--clean", action="store_true", help="no degradation (reference numbers)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--skip", nargs="*", default=[], choices=["image", "audio", "logreg"])
    args = ap.parse_args()
    torch.set_num_threads(2)

    kw = dict(degrade=not args.clean, occlusion=args.occlusion, noise_std=args.noise_std, snr_db=args.snr_db)
    tr, te = avd._arrays("train", **kw), avd._arrays("test", **kw)
    ytr, yte = tr["digit"], te["digit"]
    img_tr, img_te = tr["images"].astype(np.float32) / 255.0, te["images"].astype(np.float32) / 255.0
    t = time.time()
    mel_tr, mel_te = logmel(tr["audio"]), logmel(te["audio"])
    print(f"log-mel features {mel_tr.shape} in {time.time() - t:.1f}s")

    result: dict[str, object] = {"occlusion": args.occlusion, "noise_std": args.noise_std, "snr_db": args.snr_db,
                                 "clean": args.clean, "epochs": args.epochs, "seeds": args.seeds}
    for name, (xtr, xte) in {"image": (img_tr, img_te), "audio": (mel_tr, mel_te)}.items():
        if name in args.skip:
            continue
        t = time.time()
        accs = [train_cnn(xtr, ytr, xte, yte, s, args.epochs) for s in args.seeds]
        result[f"cnn_{name}"] = accs
        print(f"CNN {name:5s}: test acc {np.mean(accs):.3f} +- {np.std(accs):.3f} {accs} "
              f"({(time.time() - t) / len(accs):.0f}s/run)")
    if "logreg" not in args.skip:
        ftr = {"image": img_tr.reshape(len(ytr), -1), "audio": mel_tr.reshape(len(ytr), -1)}
        fte = {"image": img_te.reshape(len(yte), -1), "audio": mel_te.reshape(len(yte), -1)}
        ftr["both"] = np.concatenate([ftr["image"], ftr["audio"]], 1)
        fte["both"] = np.concatenate([fte["image"], fte["audio"]], 1)
        for name in ("image", "audio", "both"):
            result[f"logreg_{name}"] = acc = logreg(ftr[name], ytr, fte[name], yte)
            print(f"logreg {name:5s}: test acc {acc:.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
