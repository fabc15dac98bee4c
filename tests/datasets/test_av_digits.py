"""The shipped `av-digits` dataset: shape, balance, agreement with its public sources, degradation, export.

Tests that take the `fixture_data` fixture compare against the raw FSDD / MNIST files kept in tests/fixtures/data
(see its README.md for what was kept); everything else only needs the files shipped inside the package.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from polymodal.datasets import DATASETS, export_av_digits, load_av_digits
from polymodal.datasets import av_digits as avd


def _img(b: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(b)) as im:
        assert im.mode == "L" and im.size == (28, 28)
        return np.asarray(im)


@pytest.fixture(scope="module")
def train_meta() -> pd.DataFrame:
    return load_av_digits("train", with_meta=True)


@pytest.fixture(scope="module")
def test_clean() -> pd.DataFrame:
    return load_av_digits("test", degrade=False, with_meta=True)


def test_registry_entry():
    entry = DATASETS["av-digits"]
    assert entry["load"] is load_av_digits and entry["export"] is export_av_digits
    assert isinstance(entry["description"], str) and entry["description"]


def test_shipped_files_are_small_and_licensed():
    files = {p.name: p.stat().st_size for p in avd.DATA_DIR.iterdir()}
    assert {"audio.flac", "meta.npz", "LICENSE.md", "README.md"} <= set(files)
    assert sum(files.values()) < 15e6
    text = (avd.DATA_DIR / "LICENSE.md").read_text()
    for needle in ("CC BY-SA 4.0", "CC BY-SA 3.0", "Jakobovski/free-spoken-digit-dataset", "LeCun", "Cortes"):
        assert needle in text


def test_row_counts_columns_and_balance(train_meta):
    test = load_av_digits("test")
    assert len(train_meta) == 2700 and len(test) == 300
    assert list(test.columns) == ["image", "audio", "digit"]
    assert list(train_meta.columns) == ["image", "audio", "digit", "speaker", "take", "mnist_index"]
    assert train_meta["digit"].value_counts().to_dict() == {d: 270 for d in range(10)}
    assert test["digit"].value_counts().to_dict() == {d: 30 for d in range(10)}
    # the official FSDD split: takes 0-4 test, 5-49 train; every (digit, speaker, take) exactly once
    test_meta = load_av_digits("test", with_meta=True)
    assert set(test_meta["take"]) == set(range(5)) and set(train_meta["take"]) == set(range(5, 50))
    both = pd.concat([train_meta, test_meta])
    assert not both.duplicated(["digit", "speaker", "take"]).any()
    assert both["speaker"].nunique() == 6


def test_cell_formats(train_meta):
    row = train_meta.iloc[0]
    assert isinstance(row["image"], bytes) and row["image"].startswith(b"\x89PNG")
    assert _img(row["image"]).dtype == np.uint8
    audio = row["audio"]
    assert set(audio) == {"array", "sampling_rate"} and audio["sampling_rate"] == 8000
    wave = audio["array"]
    assert wave.dtype == np.float32 and wave.ndim == 1 and 1000 < len(wave) < 20000
    assert np.abs(wave).max() <= 1.0
    assert isinstance(row["speaker"], str) and 0 <= row["take"] <= 49 and row["digit"] in range(10)


def test_unknown_split_lists_valid_ones():
    with pytest.raises(ValueError, match="'train'.*'test'"):
        load_av_digits("validation")
    with pytest.raises(ValueError):
        export_av_digits("/nonexistent-never-written", splits=("dev",))


def test_train_and_test_images_come_from_disjoint_mnist_sets(train_meta):
    test = load_av_digits("test", with_meta=True)
    # indices are into MNIST's own train (60000) and test (10000) sets; distinct within each split
    assert train_meta["mnist_index"].is_unique and test["mnist_index"].is_unique
    assert train_meta["mnist_index"].between(0, 59999).all() and test["mnist_index"].between(0, 9999).all()


def test_loads_are_deterministic_and_fresh(train_meta):
    again = load_av_digits("train", with_meta=True)
    assert again is not train_meta
    assert list(again["image"]) == list(train_meta["image"])
    assert all(np.array_equal(a["array"], b["array"]) for a, b in zip(again["audio"], train_meta["audio"]))
    # a fresh DataFrame: mutating one load does not leak into the next
    again.at[0, "digit"] = -1
    again["audio"].iat[0]["array"][:] = 0.5
    third = load_av_digits("train")
    assert third.at[0, "digit"] == train_meta.at[0, "digit"]
    assert np.array_equal(third["audio"].iat[0]["array"], train_meta["audio"].iat[0]["array"])


def test_degradation_changes_data_but_keeps_shape_and_range(train_meta):
    clean = load_av_digits("train", degrade=False, limit=200, with_meta=True)
    noisy = load_av_digits("train", degrade=True, limit=200, with_meta=True)
    meta = ["digit", "speaker", "take", "mnist_index"]
    assert clean[meta].equals(noisy[meta])
    img_diff, snrs = [], []
    for c, n in zip(clean.itertuples(), noisy.itertuples()):
        ci, ni = _img(c.image), _img(n.image)
        assert ci.shape == ni.shape == (28, 28)
        img_diff.append(np.abs(ci.astype(int) - ni.astype(int)).mean())
        ca, na = c.audio["array"], n.audio["array"]
        assert ca.shape == na.shape and na.dtype == np.float32 and np.abs(na).max() <= 1.0
        # undo the optional peak rescale, then measure the SNR that was added
        scale = float(np.dot(na, ca) / np.dot(ca, ca))
        noise = na / scale - ca
        snrs.append(10 * np.log10(np.mean(ca**2) / np.mean(noise**2)))
    assert min(img_diff) > 5  # every image visibly changed (noise sigma 0.25 on [0, 1] is ~50 grey levels)
    assert abs(np.median(snrs) - avd.AUDIO_SNR_DB) < 0.5


def test_degrade_image_occludes_a_black_square():
    rng = np.random.default_rng(0)
    img = np.full((28, 28), 200, dtype=np.uint8)
    out = avd.degrade_image(img, rng, occlusion=avd.OCCLUSION_SIZE, noise_std=0.0)
    dark = out == 0
    assert dark.sum() == avd.OCCLUSION_SIZE**2 and (out[~dark] == 200).all()
    rows, cols = np.flatnonzero(dark.any(1)), np.flatnonzero(dark.any(0))
    assert len(rows) == len(cols) == avd.OCCLUSION_SIZE and np.ptp(rows) == np.ptp(cols) == avd.OCCLUSION_SIZE - 1
    grey = np.full((28, 28), 128, dtype=np.uint8)
    noisy = avd.degrade_image(grey, np.random.default_rng(0), occlusion=0, noise_std=0.1)
    assert abs(float((noisy.astype(float) - 128).std()) - 0.1 * 255) < 3


def test_degradation_is_per_sample_not_per_load_order(train_meta):
    sub = load_av_digits("train", limit=37, with_meta=True)
    full = train_meta.set_index(["digit", "speaker", "take"])
    for row in sub.itertuples():
        ref = full.loc[(row.digit, row.speaker, row.take)]
        assert row.image == ref["image"]
        assert np.array_equal(row.audio["array"], ref["audio"]["array"])


def test_limit_is_stratified_and_deterministic():
    sub = load_av_digits("train", limit=50, with_meta=True)
    assert len(sub) == 50 and sub["digit"].value_counts().to_dict() == {d: 5 for d in range(10)}
    odd = load_av_digits("test", limit=23)
    counts = odd["digit"].value_counts()
    assert len(odd) == 23 and counts.max() - counts.min() <= 1 and set(counts.index) == set(range(10))
    again = load_av_digits("train", limit=50, with_meta=True)
    assert sub[["digit", "speaker", "take"]].equals(again[["digit", "speaker", "take"]])
    assert len(load_av_digits("test", limit=10_000)) == 300
    with pytest.raises(ValueError, match="limit"):
        load_av_digits("test", limit=0)


def test_clean_audio_and_images_equal_their_sources(fixture_data, test_clean):
    with np.load(fixture_data / "mnist" / "mnist_test.npz") as z:  # NpzFile re-reads a key on every access
        mnist = {"images": z["images"], "labels": z["labels"]}
    pat = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")
    # the names of all 3000 upstream recordings; the fixture keeps only the WAV files the tests open
    names = (fixture_data / "fsdd" / "recordings.txt").read_text().split()
    assert {p.name for p in (fixture_data / "fsdd" / "recordings").glob("*.wav")} <= set(names)
    source_keys = {(int(m[1]), m[2], int(m[3])) for m in map(pat.match, names)}
    assert len(source_keys) == 3000
    # the test split is exactly FSDD's official test split (takes 0-4)
    assert {k for k in source_keys if k[2] < 5} == {(r.digit, r.speaker, r.take) for r in test_clean.itertuples()}
    for r in test_clean.itertuples():
        path = fixture_data / "fsdd" / "recordings" / f"{r.digit}_{r.speaker}_{r.take}.wav"
        src, sr = sf.read(str(path), dtype="float32")
        assert sr == r.audio["sampling_rate"] == 8000
        assert np.array_equal(r.audio["array"], src), path.name
        assert mnist["labels"][r.mnist_index] == r.digit
        assert np.array_equal(_img(r.image), mnist["images"][r.mnist_index])


def test_clean_train_samples_equal_their_sources(fixture_data):
    # not the whole 10 MB MNIST training file: its rows that av-digits pairs with, `rows` holding their MNIST indices
    with np.load(fixture_data / "mnist" / "mnist_train_rows.npz") as z:  # NpzFile re-reads a key on every access
        mnist = {"images": z["images"], "labels": z["labels"]}
        at = {int(i): k for k, i in enumerate(z["rows"])}  # MNIST training index -> position in the slice
    clean = load_av_digits("train", degrade=False, limit=40, with_meta=True)
    for r in clean.itertuples():
        path = fixture_data / "fsdd" / "recordings" / f"{r.digit}_{r.speaker}_{r.take}.wav"
        src, _ = sf.read(str(path), dtype="float32")
        assert np.array_equal(r.audio["array"], src)
        assert mnist["labels"][at[r.mnist_index]] == r.digit
        assert np.array_equal(_img(r.image), mnist["images"][at[r.mnist_index]])
    # every paired image, not only the first 40, is the MNIST training image it claims to be
    full = load_av_digits("train", degrade=False, with_meta=True)
    pos = np.array([at[i] for i in full["mnist_index"]])
    assert (mnist["labels"][pos] == full["digit"].to_numpy()).all()
    assert np.array_equal(np.stack([_img(b) for b in full["image"]]), mnist["images"][pos])


def test_export_writes_readable_files_with_relative_paths(tmp_path):
    out = tmp_path / "avd"
    manifests = export_av_digits(out, limit=20, progress=False)
    assert set(manifests) == {"train", "test"}
    assert (out / "LICENSE.md").read_text() == (avd.DATA_DIR / "LICENSE.md").read_text()
    for split, path in manifests.items():
        df = pd.read_parquet(path)
        assert list(df.columns) == ["image", "audio", "digit"] and len(df) == 20
        ref = load_av_digits(split, limit=20)
        assert df["digit"].tolist() == ref["digit"].tolist()
        for i, r in enumerate(df.itertuples()):
            assert r.image == f"images/{split}_{i:05d}.png" and r.audio == f"audio/{split}_{i:05d}.wav"
            assert not r.image.startswith("/")
            with Image.open(out / r.image) as im:
                assert np.array_equal(np.asarray(im), _img(ref["image"].iat[i]))
            info = sf.info(str(out / r.audio))
            assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
            wave, _ = sf.read(str(out / r.audio), dtype="float32")
            assert np.abs(wave - ref["audio"].iat[i]["array"]).max() <= 1.0 / 32768 + 1e-7
