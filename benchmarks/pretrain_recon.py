"""Images predicted from audio alone, per pre-training variant (the ``recon_*`` readings of ``pretrain.py``).

``pretrain.py`` pre-trains with MultiMAE's masking and reads the images its model predicts from audio at chance.
This script asks whether the masking or the net's size is what limits it: each variant pre-trains on the 2700
av-digits training rows without labels (crossmodal masking, mask ratio 0.75, seed 0), predicts every test image
from its audio alone, and the same image-only classifier (trained once on the real training images) reads them:
as predicted, contrast-matched to the real test images, and by leave-one-out nearest class centroid among the
predictions. Variants: ``hide_modality`` (rows that hide one modality whole, which is what prediction asks) and
a wider net. Writes ``results/pretrain_recon.json``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, setup
from pretrain import NET, accuracy, images_from_audio

import numpy as np

VARIANTS = {
    "baseline": {},
    "hide_modality_0.5": {"hide_modality": 0.5},
    "hide_0.5_dim64_2layers_30ep": {"hide_modality": 0.5, "epochs": 30,
                                    "net": {"dim": 64, "fusion": {"name": "transformer", "options": {"layers": 2}}}},
}


def main() -> None:
    import polymodal as pm
    from polymodal.datasets import load_av_digits
    from polymodal.pretrain import pretrain

    setup()
    only = sys.argv[1:] or list(VARIANTS)
    load_start = os.getloadavg()[0]
    train, test = load_av_digits("train"), load_av_digits("test")
    ft = dict(epochs=60, patience=10, batch_size=32, **NET)
    t0 = time.perf_counter()
    clf = pm.fit(train[["image", "digit"]], label="digit", seed=0, **{**ft, "fusion": "late"})
    out: dict = {"classifier_acc_on_real_images": accuracy(clf, test.drop(columns=["audio"])),
                 "chance": float(np.bincount(test["digit"]).max() / len(test)), "variants": {}}
    work = Path(tempfile.mkdtemp(prefix="polymodal-recon-"))
    for name in only:
        kw = dict(VARIANTS[name])
        net = {**NET, **kw.pop("net", {})}
        epochs = kw.pop("epochs", 20)
        t = time.perf_counter()
        pre = pretrain(train.drop(columns=["digit"]), out=work / name, masking="crossmodal", mask_ratio=0.75,
                       epochs=epochs, patience=epochs, batch_size=64, seed=0, **kw, **net)
        last = pre.info["training"]["history"][-1]
        out["variants"][name] = {**images_from_audio(pre, clf, test)[2], "options": {**VARIANTS[name]},
                                 "val_loss_image": last.get("val_loss_image"),
                                 "train_loss_image": last.get("train_loss_image"),
                                 "pretrain_s": round(time.perf_counter() - t, 1)}
        print(name, out["variants"][name], file=sys.stderr, flush=True)
    out["load_avg_1min"] = {"start": load_start, "end": os.getloadavg()[0]}
    out["total_s"] = round(time.perf_counter() - t0, 1)
    emit("pretrain_recon", out)


if __name__ == "__main__":
    main()
