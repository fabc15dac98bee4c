"""Build the shipped `av-digits` data from the raw public sources (run once by a developer).

    python scripts/build_av_digits.py [--shared ../shared/data] [--out polymodal/datasets/_data/av_digits]

Inputs (see ../shared/data/README.md):
  fsdd/recordings/{digit}_{speaker}_{take}.wav   3000 clips, 8 kHz mono int16 (CC BY-SA 4.0)
  mnist/mnist_{train,test}.npz                   keys images (N,28,28) uint8, labels (N,) (CC BY-SA 3.0)

Pairing (fixed seed, PAIR_SEED): every FSDD clip gets one MNIST image of the same digit, drawn without
replacement, so no MNIST image is used twice. train = FSDD takes 5-49 (2700 clips) x MNIST train images;
test = FSDD takes 0-4 (the official FSDD test split, 300 clips) x MNIST test images. Rows of each split
are shuffled with the same seed so that `df.head(n)` is not all one digit.

Outputs (only the samples used, undegraded; degradation happens at load time):
  audio.flac   all 3000 clips concatenated (ordered by speaker, digit, take, which compresses best),
               lossless 16-bit FLAC, 8 kHz mono
  meta.npz     compressed, one entry per row: images (3000,28,28) uint8, digit, split (0=train, 1=test),
               speaker, take, mnist_index, audio_start / audio_length (samples into audio.flac); plus
               the pairing seed
Both together are about 11.6 MB. The loader (polymodal/datasets/av_digits.py) checks the layout.
"""

from __future__ import annotations

import argparse
import io
import re
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
PAIR_SEED = 20240607
SPLITS = ("train", "test")
TEST_TAKES = range(0, 5)  # the official FSDD test split
SAMPLING_RATE = 8000
_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def _read_fsdd(root: Path) -> list[tuple[int, str, int, np.ndarray]]:
    clips = []
    for path in sorted(root.glob("*.wav")):
        m = _NAME.match(path.name)
        if m is None:
            raise ValueError(f"unexpected FSDD file name {path.name!r}")
        info = sf.info(str(path))
        if info.samplerate != SAMPLING_RATE or info.channels != 1 or info.subtype != "PCM_16":
            raise ValueError(f"{path.name}: expected 8 kHz mono PCM_16, got {info}")
        wave, _ = sf.read(str(path), dtype="int16")
        clips.append((int(m.group(1)), m.group(2), int(m.group(3)), wave))
    if len(clips) != 3000:
        raise ValueError(f"expected 3000 FSDD clips under {root}, found {len(clips)}")
    return clips


def build(shared: Path, out: Path) -> dict[str, int]:
    clips = _read_fsdd(shared / "fsdd" / "recordings")
    rng = np.random.default_rng(PAIR_SEED)

    images, digits, splits, speakers, takes, mnist_index, waves = [], [], [], [], [], [], []
    for split_id, split in enumerate(SPLITS):
        mnist = np.load(shared / "mnist" / f"mnist_{split}.npz")
        m_images, m_labels = mnist["images"], mnist["labels"].astype(np.int64)
        rows = [c for c in clips if (c[2] in TEST_TAKES) == (split == "test")]
        rows = [rows[i] for i in rng.permutation(len(rows))]
        # distinct MNIST images per digit: a seeded permutation of that digit's indices, consumed in order
        pools = {d: list(rng.permutation(np.flatnonzero(m_labels == d))) for d in range(10)}
        for digit, speaker, take, wave in rows:
            idx = int(pools[digit].pop())
            assert m_labels[idx] == digit
            images.append(m_images[idx])
            digits.append(digit)
            splits.append(split_id)
            speakers.append(speaker)
            takes.append(take)
            mnist_index.append(idx)
            waves.append(wave)

    # audio in (speaker, digit, take) order: similar neighbours make FLAC's adaptive predictor work best
    order = sorted(range(len(waves)), key=lambda i: (speakers[i], digits[i], takes[i]))
    lengths = np.array([len(w) for w in waves], dtype=np.int64)
    starts = np.zeros(len(waves), dtype=np.int64)
    starts[order] = np.concatenate([[0], np.cumsum(lengths[order])[:-1]])
    audio = np.concatenate([waves[i] for i in order])
    out.mkdir(parents=True, exist_ok=True)
    sf.write(str(out / "audio.flac"), audio, SAMPLING_RATE, format="FLAC", subtype="PCM_16", compression_level=1.0)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        images=np.stack(images).astype(np.uint8),
        digit=np.array(digits, dtype=np.int8),
        split=np.array(splits, dtype=np.int8),
        speaker=np.array(speakers, dtype="<U16"),
        take=np.array(takes, dtype=np.int16),
        mnist_index=np.array(mnist_index, dtype=np.int32),
        audio_start=starts,
        audio_length=lengths.astype(np.int32),
        pair_seed=np.array(PAIR_SEED, dtype=np.int64),
    )
    (out / "meta.npz").write_bytes(buf.getvalue())

    # check the round trip before declaring success
    back, sr = sf.read(str(out / "audio.flac"), dtype="int16")
    assert sr == SAMPLING_RATE and np.array_equal(back, audio)
    assert all(np.array_equal(back[s : s + n], w) for s, n, w in zip(starts, lengths, waves))
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "polymodal" / "datasets" / "_data" / "av_digits")
    args = ap.parse_args()
    sizes = build(args.shared, args.out)
    for name, size in sizes.items():
        print(f"{name:12s} {size / 1e6:8.3f} MB")
    print(f"{'total':12s} {sum(sizes.values()) / 1e6:8.3f} MB")


if __name__ == "__main__":
    main()
