"""Built-in real datasets, loadable offline from files shipped inside the package.

``DATASETS`` maps a dataset name to ``{"load", "export", "description"}`` so the CLI can list and export
them by name (``polymodal datasets``); each dataset's module documents its source, license and any
preprocessing.
"""

from __future__ import annotations

from polymodal.datasets.av_digits import export_av_digits, load_av_digits
from polymodal.datasets.basicmotions import export_basicmotions, load_basicmotions
from polymodal.datasets.emoji import export_emoji, load_emoji

DATASETS = {
    "av-digits": {
        "load": load_av_digits,
        "export": export_av_digits,
        "description": (
            "AV-MNIST-style audio-visual digits: FSDD spoken digits (8 kHz) paired with degraded MNIST "
            "images of the same digit; 2700 train / 300 test, columns image, audio, digit. "
            "CC BY-SA 4.0 (FSDD) / CC BY-SA 3.0 (MNIST)."
        ),
    },
    "basicmotions": {
        "load": load_basicmotions,
        "export": export_basicmotions,
        "description": (
            "BasicMotions (UEA archive): smart-watch accelerometer and gyroscope, two time-series modalities of "
            "100 steps x 3 axes; 40 train / 40 test recordings of 4 activities, columns accel, gyro, activity. "
            "BSD-3-Clause (sktime)."
        ),
    },
    "emoji": {
        "load": load_emoji,
        "export": export_emoji,
        "description": (
            "Noto emoji: 1911 images (64x64 RGB on white) with their Unicode names, an image + text table; "
            "1528 train / 383 test (stratified by category), columns image, name, category (10 classes). "
            "MIT (emoji-datasource-google) / Apache-2.0 (Noto Emoji images)."
        ),
    },
}

__all__ = [
    "DATASETS", "export_av_digits", "export_basicmotions", "export_emoji", "load_av_digits", "load_basicmotions",
    "load_emoji",
]
