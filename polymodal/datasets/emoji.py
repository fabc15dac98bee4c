"""`emoji`: 1911 Noto emoji images with their names, a small real image + text table.

The images and names of the npm package ``emoji-datasource-google@16.0.0`` (iamcal/emoji-data; the package and
its metadata MIT, Copyright (c) 2013 Cal Henderson; the Noto Emoji images Apache-2.0, Google), rendered 64x64 RGB
on white. The package ships them losslessly in ``_data/emoji/emoji.npz`` (the pixels xz-compressed, about 4.2 MB;
``_data/emoji/README.md`` says how and what was measured), with both licences in ``_data/emoji/LICENSE.md``.

- ``image``: a 64x64x3 uint8 array (the image kind reads pixel arrays as they are);
- ``name``: the emoji's Unicode name in lower case ("grinning face"), read as text;
- ``category``: one of 10 Unicode groups ("Smileys & Emotion", "Flags", ...; "Component" has only 5 rows);
- ``with_meta=True`` adds ``subcategory`` (99 Unicode subgroups), ``short_names`` (space-separated) and
  ``unified`` (the code point(s), such as ``1F600``, unique per row).

The split is class-stratified and deterministic: within each category, rows are ordered by
``sha256(f"{SPLIT_SEED}:{unified}")`` and the first ``round(0.2 * n)`` (at least one) are ``test``; 1528 train /
383 test. The order depends on no random generator, so it is the same with any numpy version, and an emoji keeps
its split if rows are added. Each split lists its rows in the source order.

    from polymodal.datasets import load_emoji
    train, test = load_emoji("train"), load_emoji("test")   # columns: image, name, category
    small = load_emoji("train", limit=100)                  # 10 or 11 per category (Component: its 4)
"""

from __future__ import annotations

import functools
import hashlib
import io
import lzma
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).resolve().parent / "_data" / "emoji"
DATA_FILE = DATA_DIR / "emoji.npz"
SPLITS = ("train", "test", "all")
TEST_FRACTION = 0.2
SPLIT_SEED = "polymodal-emoji-v1"
META = ("name", "short_names", "category", "subcategory", "unified")
# sha256 of the decoded ``images`` array's bytes (1911 x 64 x 64 x 3 uint8, C order), equal to the source file's
IMAGES_SHA256 = "d2a6b9d0a45a39c58e5b508c8c73292d96ebf9b04d6033d6325b49b270b47481"

__all__ = ["SPLITS", "export_emoji", "load_emoji"]


@functools.lru_cache(maxsize=1)
def _raw() -> dict[str, np.ndarray]:
    """The shipped arrays, decoded once per process (read-only; callers copy what they hand out)."""
    if not DATA_FILE.exists():
        raise FileNotFoundError(f"emoji data file {DATA_FILE} is missing; reinstall polymodal")
    with np.load(DATA_FILE, allow_pickle=False) as z:
        shape = tuple(int(s) for s in z["images_shape"])
        raw = {k: z[k] for k in META}
        blob = z["images_xz"].tobytes()
    raw["images"] = np.frombuffer(lzma.decompress(blob), dtype=np.uint8).reshape(shape)
    for a in raw.values():
        a.flags.writeable = False
    return raw


def _order_key(unified: str) -> str:
    return hashlib.sha256(f"{SPLIT_SEED}:{unified}".encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def _test_mask() -> np.ndarray:
    """True for the rows of the ``test`` split (see the module docstring for the rule)."""
    raw = _raw()
    test = np.zeros(len(raw["unified"]), dtype=bool)
    for cat in np.unique(raw["category"]):
        rows = np.flatnonzero(raw["category"] == cat)
        rows = rows[np.argsort([_order_key(u) for u in raw["unified"][rows]], kind="stable")]
        k = min(len(rows) - 1, max(1, int(round(TEST_FRACTION * len(rows)))))
        test[rows[:k]] = True
    test.flags.writeable = False
    return test


def split_positions(split: str) -> np.ndarray:
    """Row positions (in the shipped file) of ``train``, ``test`` or ``all``, in source order."""
    if split not in SPLITS:
        raise ValueError(f"unknown emoji split {split!r}; valid splits: {', '.join(repr(s) for s in SPLITS)}")
    if split == "all":
        return np.arange(len(_raw()["unified"]))
    return np.flatnonzero(_test_mask() == (split == "test"))


def _stratified(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Positions of a deterministic class-stratified subset of ``limit`` rows: the classes take turns (sorted by
    name) giving their next row in order, so each gets ``limit // classes`` or one more, and a class with fewer
    rows gives all it has and leaves the rest to the others."""
    n = len(labels)
    if limit is None:
        return np.arange(n)
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if limit >= n:
        return np.arange(n)
    classes, cls = np.unique(labels, return_inverse=True)
    rank = np.empty(n, dtype=np.int64)
    for c in range(len(classes)):
        where = np.flatnonzero(cls == c)
        rank[where] = np.arange(len(where))
    turns = np.lexsort((cls, rank))  # by rank within the class, then by class
    return np.sort(turns[:limit])


def load_emoji(split: str = "train", limit: int | None = None, with_meta: bool = False) -> pd.DataFrame:
    """One split of `emoji` as a DataFrame (a fresh one every call): ``image``, ``name``, ``category``.

    ``split``: ``train`` (1528 rows), ``test`` (383) or ``all`` (1911). ``limit`` keeps a deterministic
    class-stratified subset of that many rows (the same rows on every call, in split order). ``with_meta`` adds
    ``subcategory``, ``short_names`` and ``unified``.
    """
    raw = _raw()
    rows = split_positions(split)
    rows = rows[_stratified(raw["category"][rows], limit)]
    data: dict[str, object] = {
        "image": [raw["images"][r].copy() for r in rows],
        "name": raw["name"][rows].tolist(),
        "category": raw["category"][rows].tolist(),
    }
    if with_meta:
        data.update({k: raw[k][rows].tolist() for k in ("subcategory", "short_names", "unified")})
    return pd.DataFrame(data)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def export_emoji(out_dir: str | Path, splits: tuple[str, ...] | list[str] = ("train", "test"),
                 limit: int | None = None, *, progress: bool = True) -> dict[str, Path]:
    """Write `emoji` as ordinary files, the way a user would hold their own data.

    ``out_dir/images/<unified>.png`` (64x64 RGB) and one manifest ``out_dir/<split>.parquet`` per split with
    columns ``image`` (the path relative to ``out_dir``), ``name`` and ``category``; ``limit`` keeps the
    class-stratified subset of ``load_emoji(split, limit=limit)``. LICENSE.md and README.md are copied alongside.
    Returns ``{split: manifest path}``.
    """
    from rich.progress import track

    if isinstance(splits, str):
        splits = (splits,)
    for split in splits:
        split_positions(split)  # validates the name before anything is written
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    manifests: dict[str, Path] = {}
    for split in splits:
        df = load_emoji(split, limit=limit, with_meta=True)
        paths = []
        for i in track(range(len(df)), description=f"emoji {split}", disable=not progress):
            rel = f"images/{df['unified'].iat[i]}.png"
            (out / rel).write_bytes(_png(df["image"].iat[i]))
            paths.append(rel)
        manifest = pd.DataFrame({"image": paths, "name": df["name"], "category": df["category"]})
        manifests[split] = out / f"{split}.parquet"
        manifest.to_parquet(manifests[split], index=False)
    for name in ("LICENSE.md", "README.md"):
        shutil.copyfile(DATA_DIR / name, out / name)
    return manifests


def pack(source: str | Path, dest: str | Path = DATA_FILE) -> str:
    """Write the shipped file from the source ``emoji_google_64.npz`` (maintainers only; how ``emoji.npz`` was
    made): the images as one xz stream of their raw bytes, the five metadata arrays unchanged. Returns the sha256
    of the image bytes, which ``load_emoji`` reproduces exactly."""
    with np.load(source, allow_pickle=False) as z:
        images = np.ascontiguousarray(z["images"], dtype=np.uint8)
        meta = {k: z[k] for k in META}
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 25,
                "lc": 4, "lp": 0, "pb": 0}]  # byte-aligned pixels: no position bits (4 % smaller than the default)
    blob = lzma.compress(images.tobytes(), format=lzma.FORMAT_XZ, filters=filters)
    np.savez_compressed(dest, images_xz=np.frombuffer(blob, dtype=np.uint8),
                        images_shape=np.asarray(images.shape, dtype=np.int64), **meta)
    return hashlib.sha256(images.tobytes()).hexdigest()
