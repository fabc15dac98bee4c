import numpy as np
import pytest

from polymodal.datasets import DATASETS, load_basicmotions
from polymodal.datasets.basicmotions import _data_dir, parse_ts


def test_splits_shapes_and_classes():
    for split in ("train", "test"):
        f = load_basicmotions(split)
        assert list(f.columns) == ["accel", "gyro", "activity"] and len(f) == 40
        assert f["accel"][0].shape == (100, 3) and f["gyro"][0].dtype == np.float32
        assert f["activity"].value_counts().to_dict() == {"Standing": 10, "Running": 10, "Walking": 10, "Badminton": 10}
    with pytest.raises(ValueError, match="splits"):
        load_basicmotions("val")


# SHA-256 of the source files (sktime 1.2.0 wheel, sktime/datasets/data/BasicMotions/), recorded when they were
# copied into the package: the shipped copies must be those bytes (a copy in tests/fixtures would only repeat them)
SOURCE_SHA256 = {
    "BasicMotions_TRAIN.ts": "8dc43cc6306cb679c888c01e26f91772ac4441a916da43bac8b79734a538b9d6",
    "BasicMotions_TEST.ts": "79213102bc6fca1a398ad98ce1185dff0208fa3d1465e687f48288946b0ff8dc",
}


def test_shipped_files_are_the_source_files():
    import hashlib

    for name, digest in SOURCE_SHA256.items():
        assert hashlib.sha256((_data_dir() / name).read_bytes()).hexdigest() == digest, name


def test_loader_matches_the_parsed_file():
    x, y = parse_ts((_data_dir() / "BasicMotions_TRAIN.ts").read_text())
    f = load_basicmotions("train")
    assert np.array_equal(np.stack(f["accel"]), x[:, :3].transpose(0, 2, 1))
    assert np.array_equal(np.stack(f["gyro"]), x[:, 3:].transpose(0, 2, 1))
    assert list(f["activity"]) == y


def test_license_ships_and_schema_infers_two_timeseries():
    from polymodal.data.schema import infer_schema

    assert "BSD" in (_data_dir() / "LICENSE.md").read_text()
    s = infer_schema(load_basicmotions("train"), "activity")
    assert [(m.name, m.kind) for m in s] == [("accel", "timeseries"), ("gyro", "timeseries")]
    assert "basicmotions" in DATASETS


def test_parse_ts_errors():
    with pytest.raises(ValueError, match="@data"):
        parse_ts("# nothing\n1,2:3,4:a\n")
    with pytest.raises(ValueError, match="line 3"):
        parse_ts("@problemName x\n@data\n1,zz:3,4:a\n")


def test_export_round_trips(tmp_path):
    from polymodal.data.schema import infer_schema  # noqa: F401

    paths = DATASETS["basicmotions"]["export"](tmp_path, splits=("test",), limit=5)
    import pandas as pd

    f = pd.read_parquet(paths["test"])
    assert len(f) == 5 and (tmp_path / "LICENSE.md").exists()
