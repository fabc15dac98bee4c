"""The shipped `emoji` dataset: shapes, the lossless copy of its source, the split, licences, export.

``test_images_equal_the_source_rows`` compares with the 80 source rows kept in tests/fixtures/data/emoji (see its
LICENSE.md for how they were cut); everything else needs only the files shipped inside the package.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from polymodal.datasets import DATASETS, export_emoji, load_emoji
from polymodal.datasets import emoji as em

N_TRAIN, N_TEST = 1528, 383


@pytest.fixture(scope="module")
def everything() -> pd.DataFrame:
    return load_emoji("all", with_meta=True)


def test_registry_entry():
    entry = DATASETS["emoji"]
    assert entry["load"] is load_emoji and entry["export"] is export_emoji
    assert "MIT" in entry["description"] and "Apache-2.0" in entry["description"]


def test_shapes_columns_and_cells(everything):
    train, test = load_emoji("train"), load_emoji("test")
    assert (len(train), len(test), len(everything)) == (N_TRAIN, N_TEST, N_TRAIN + N_TEST)
    assert list(train.columns) == ["image", "name", "category"]
    assert list(everything.columns) == ["image", "name", "category", "subcategory", "short_names", "unified"]
    img = train["image"].iat[0]
    assert isinstance(img, np.ndarray) and img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert all(isinstance(n, str) and n for n in train["name"])
    assert everything["category"].nunique() == 10 and everything["unified"].is_unique
    assert everything["name"].iat[0] == "grinning face" and everything["unified"].iat[0] == "1F600"
    with pytest.raises(ValueError, match="valid splits"):
        load_emoji("val")


def test_the_image_kind_reads_the_cells():
    from polymodal.data.schema import infer_schema

    s = infer_schema(load_emoji("train", limit=30), "category")
    assert [(m.name, m.kind) for m in s] == [("image", "image"), ("name", "text")]


def test_images_are_the_source_bytes_exactly(everything):
    images = np.stack(everything["image"].tolist())
    assert images.shape == (N_TRAIN + N_TEST, 64, 64, 3)
    assert hashlib.sha256(images.tobytes()).hexdigest() == em.IMAGES_SHA256


def test_images_equal_the_source_rows(fixture_data, everything):
    with np.load(fixture_data / "emoji" / "emoji_google_64_rows.npz", allow_pickle=False) as z:
        rows, images, names, cats = z["rows"], z["images"], z["name"], z["category"]
    assert len(rows) == 80
    for k, r in enumerate(rows):
        assert np.array_equal(everything["image"].iat[int(r)], images[k])
    assert everything["name"].iloc[rows].tolist() == names.tolist()
    assert everything["category"].iloc[rows].tolist() == cats.tolist()


def test_split_is_stratified_deterministic_and_disjoint(everything):
    train, test = load_emoji("train", with_meta=True), load_emoji("test", with_meta=True)
    assert not set(train["unified"]) & set(test["unified"])
    assert set(train["unified"]) | set(test["unified"]) == set(everything["unified"])
    counts = everything["category"].value_counts()
    held = test["category"].value_counts()
    for cat, n in counts.items():  # round(20 %) of every category, at least one
        assert held[cat] == max(1, round(0.2 * n)), cat
    assert held["Component"] == 1 and held["People & Body"] == 77
    # the rule, recomputed: within a category, the lowest sha256("polymodal-emoji-v1:" + unified) go to test
    for cat, group in everything.groupby("category"):
        keys = sorted(group["unified"], key=lambda u: hashlib.sha256(f"polymodal-emoji-v1:{u}".encode()).hexdigest())
        assert set(keys[: held[cat]]) == set(test.loc[test["category"] == cat, "unified"]), cat
    # each split keeps the source order, and a second load gives the same rows (fresh, writable arrays)
    order = {u: i for i, u in enumerate(everything["unified"])}
    assert [order[u] for u in test["unified"]] == sorted(order[u] for u in test["unified"])
    again = load_emoji("test", with_meta=True)
    assert again["unified"].tolist() == test["unified"].tolist()
    again["image"].iat[0][:] = 0
    assert load_emoji("test")["image"].iat[0].max() == 255


def test_limit_is_class_stratified_and_a_subset():
    small = load_emoji("train", limit=100, with_meta=True)
    assert len(small) == 100
    per = small["category"].value_counts()
    assert per["Component"] == 4 and set(per.drop("Component")) <= {10, 11}  # Component has 4 training rows
    full = load_emoji("train", with_meta=True)
    assert set(small["unified"]) <= set(full["unified"])
    assert load_emoji("train", limit=100)["name"].tolist() == small["name"].tolist()
    assert len(load_emoji("test", limit=10_000)) == N_TEST
    with pytest.raises(ValueError, match="limit"):
        load_emoji("train", limit=0)


def test_licence_and_readme_ship():
    files = {p.name: p.stat().st_size for p in em.DATA_DIR.iterdir()}
    assert set(files) == {"emoji.npz", "LICENSE.md", "README.md"}
    assert files["emoji.npz"] < 4.5e6
    text = (em.DATA_DIR / "LICENSE.md").read_text()
    for needle in ("MIT License", "Copyright (c) 2013 Cal Henderson", "emoji-datasource-google@16.0.0",
                   "Apache License", "Version 2.0, January 2004", "END OF TERMS AND CONDITIONS", "Noto Emoji"):
        assert needle in text, needle
    assert em.IMAGES_SHA256 in (em.DATA_DIR / "README.md").read_text()


def test_export_writes_pngs_and_manifests_the_table_reader_accepts(tmp_path):
    from polymodal.data.kinds.base import DecodeContext
    from polymodal.data.schema import infer_schema
    from polymodal.data.table import decode_table, fit_schema, read_table

    out = tmp_path / "emoji"
    manifests = export_emoji(out, limit=24, progress=False)  # > 20 distinct names: text, not a category
    assert set(manifests) == {"train", "test"}
    assert (out / "LICENSE.md").read_text() == (em.DATA_DIR / "LICENSE.md").read_text()
    assert (out / "README.md").is_file()
    for split, path in manifests.items():
        ref = load_emoji(split, limit=24, with_meta=True)
        frame, base = read_table(path)
        assert list(frame.columns) == ["image", "name", "category"] and len(frame) == 24
        assert frame["name"].tolist() == ref["name"].tolist()
        assert frame["category"].tolist() == ref["category"].tolist()
        assert frame["image"].tolist() == [f"images/{u}.png" for u in ref["unified"]]
        for rel, pixels in zip(frame["image"], ref["image"]):
            with Image.open(out / rel) as im:
                assert im.format == "PNG" and im.mode == "RGB" and np.array_equal(np.asarray(im), pixels)
        # the files decode exactly as the in-memory arrays do, through the schema the recipes infer
        schema = infer_schema(frame, "category")
        assert [(m.name, m.kind) for m in schema] == [("image", "image"), ("name", "text")]
        ctx = DecodeContext(base_dir=base)
        fit_schema(schema, frame, ctx, progress=False)
        from_files = decode_table(schema, frame, ctx, progress=False)
        from_arrays = decode_table(schema, ref[["image", "name", "category"]], DecodeContext(), progress=False)
        np.testing.assert_array_equal(from_files["image"][0]["pixels"], from_arrays["image"][0]["pixels"])


def test_cli_export(tmp_path):
    from typer.testing import CliRunner

    from polymodal.cli.app import app

    res = CliRunner().invoke(app, ["datasets", "export", "emoji", str(tmp_path), "--limit", "12"])
    assert res.exit_code == 0, res.output
    assert len(pd.read_parquet(tmp_path / "train.parquet")) == 12
    assert len(list((tmp_path / "images").glob("*.png"))) == 24
