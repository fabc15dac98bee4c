"""Images predicted from audio alone, per pre-training variant (the ``recon_*`` readings of ``pretrain.py``).

``pretrain.py`` pre-trains with MultiMAE's masking and reads the images its model predicts from audio alone.
This script asks what limits them: each variant pre-trains on the 2700 av-digits training rows without labels
(crossmodal masking, mask ratio 0.75, seed 0), predicts every test image from its audio alone, and ``pretrain.py``'s
readers (trained once on the real training images: logistic regression on the pixels, and the image-only CNN)
read them, as predicted and contrast-matched to the real test images; ``loo_centroid`` is the leave-one-out
nearest class centroid among the predictions. Variants: the pre-training batch size (``pretrain.py`` uses 16),
``hide_modality`` (rows that hide one modality whole, which is what prediction asks) and a wider net. Writes
``results/pretrain_recon.json``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, setup
from pretrain import (NET, PRE_BATCH, class_mean_images, image_readers, images_from_audio, loo_centroid, read_images,
                      real_pixels)

import numpy as np

VARIANTS = {  # each on top of pretrain.py's recipe (batch PRE_BATCH = 16, 20 epochs, dim 32, 1 fusion layer)
    "baseline": {},
    "batch_64": {"batch_size": 64},
    "batch_8": {"batch_size": 8},
    "hide_modality_0.5": {"hide_modality": 0.5},
    "dim64_2layers": {"net": {"dim": 64, "fusion": {"name": "transformer", "options": {"layers": 2}}}},
}


def main() -> None:
    from polymodal.datasets import load_av_digits
    from polymodal.pretrain import pretrain

    setup()
    only = sys.argv[1:] or list(VARIANTS)
    load_start = os.getloadavg()[0]
    train, test = load_av_digits("train"), load_av_digits("test")
    ft = dict(epochs=60, patience=10, batch_size=32, **NET)
    t0 = time.perf_counter()
    digits = test["digit"].to_numpy()
    out: dict = {"chance": float(np.bincount(digits).max() / len(test)), "variants": {}}
    readers = class_means = real = None
    work = Path(tempfile.mkdtemp(prefix="polymodal-recon-"))
    for name in only:
        kw = dict(VARIANTS[name])
        net = {**NET, **kw.pop("net", {})}
        epochs, batch = kw.pop("epochs", 20), kw.pop("batch_size", PRE_BATCH)
        t = time.perf_counter()
        pre = pretrain(train.drop(columns=["digit"]), out=work / name, masking="crossmodal", mask_ratio=0.75,
                       epochs=epochs, patience=epochs, batch_size=batch, seed=0, **kw, **net)
        pretrain_s = round(time.perf_counter() - t, 1)
        last = pre.info["training"]["history"][-1]
        if readers is None:  # the real images, decoded once with a run's schema (the first run's), and their readers
            train_pixels, real = real_pixels(pre.decode(train)[1]), real_pixels(pre.decode(test)[1])
            readers = image_readers(train_pixels, train, ft)
            class_means = class_mean_images(train_pixels, train["digit"].to_numpy())
        fake = images_from_audio(pre, test)
        out["variants"][name] = {"readings": read_images(readers, fake, real, digits, class_means),
                                 "loo_centroid": loo_centroid(fake.reshape(len(fake), -1), digits),
                                 "options": {**VARIANTS[name]},
                                 "val_loss_image": last.get("val_loss_image"),
                                 "train_loss_image": last.get("train_loss_image"),
                                 "pretrain_s": pretrain_s}
        print(name, out["variants"][name], file=sys.stderr, flush=True)
    out["load_avg_1min"] = {"start": load_start, "end": os.getloadavg()[0]}
    out["total_s"] = round(time.perf_counter() - t0, 1)
    emit("pretrain_recon", out)


if __name__ == "__main__":
    main()
