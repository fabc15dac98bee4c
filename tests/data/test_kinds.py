"""Per-kind processors: real files decode to the right arrays; bad cells fail with row, column and file named."""

import io
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from polymodal.data.kinds import PROCESSORS, DecodeContext
from polymodal.data.schema import ModalitySpec
from polymodal.errors import DecodeError

N_IMG = 12


# ---------------------------------------------------------------------------------------------------- helpers
def run(kind, cells, *, options=None, on_error="raise", base_dir=".", index=None, fit_cells=None, columns=None):
    """Fit on ``fit_cells`` (default: the same cells) then decode ``cells``; returns arrays, present, ctx, spec."""
    frame = cells if isinstance(cells, pd.DataFrame) else pd.DataFrame({"col": pd.Series(cells, dtype=object)})
    if index is not None:
        frame.index = index
    spec = ModalitySpec("m", kind, columns or list(frame.columns), dict(options or {}))
    proc = PROCESSORS.build(kind)
    fit_frame = frame if fit_cells is None else (
        fit_cells if isinstance(fit_cells, pd.DataFrame) else pd.DataFrame({"col": pd.Series(fit_cells, dtype=object)})
    )
    proc.fit(spec, fit_frame, DecodeContext(base_dir=base_dir))
    ctx = DecodeContext(base_dir=base_dir, on_error=on_error)
    arrays, present = proc.decode(spec, frame, ctx)
    return arrays, present, ctx, spec


def assert_names(err: DecodeError, row, column="col", file=None):
    msg = str(err)
    assert f"row {row!r}" in msg and f"column {column!r}" in msg, msg
    if file is not None:
        assert file in msg, msg
    assert "What to do" in msg


@pytest.fixture(scope="module")
def mnist(shared_data):
    with np.load(shared_data / "mnist" / "mnist_test.npz") as z:
        return z["images"][:N_IMG], z["labels"][:N_IMG]


@pytest.fixture
def png_dir(tmp_path, mnist):
    d = tmp_path / "imgs"
    d.mkdir()
    for i, a in enumerate(mnist[0]):
        Image.fromarray(a).save(d / f"{i}.png")
    return d


@pytest.fixture(scope="module")
def wav_paths(shared_data):
    paths = sorted((shared_data / "fsdd" / "recordings").glob("*_jackson_*.wav"))[:8]
    if not paths:
        pytest.skip("FSDD recordings not found")
    return paths


# --------------------------------------------------------------------------------------------------- registry
def test_every_kind_is_registered():
    assert PROCESSORS.names() == sorted(["image", "depth", "audio", "text", "tabular", "timeseries"])


CONTRACT_CELLS = {
    "image": ([np.full((6, 5), 200, np.uint8), None, np.zeros((6, 5), np.uint8)], {"pixels": np.float32}),
    "depth": ([np.ones((6, 5)) * 3, None, np.arange(30.0).reshape(6, 5)], {"pixels": np.float32}),
    "audio": (
        [{"array": np.ones(80), "sampling_rate": 8000}, None, {"array": np.ones(40), "sampling_rate": 8000}],
        {"wave": np.float32, "length": np.int64},
    ),
    "text": (["hello world", None, "hi"], {"ids": np.int64, "length": np.int64}),
    "tabular": ([1.0, None, 3.0], {"num": np.float32, "num_mask": np.bool_, "cat": np.int64, "cat_mask": np.bool_}),
    "timeseries": ([[1.0, 2.0, 3.0], None, [4.0, 5.0]], {"series": np.float32, "length": np.int64}),
}


@pytest.mark.parametrize("kind", sorted(CONTRACT_CELLS))
def test_contract_keys_dtypes_and_absent_rows(kind):
    cells, keys = CONTRACT_CELLS[kind]
    frame = pd.DataFrame({"col": pd.Series(cells, dtype=object if kind != "tabular" else float)})
    arrays, present, ctx, _ = run(kind, frame)
    assert set(arrays) == set(keys)
    for k, dtype in keys.items():
        a = arrays[k]
        assert isinstance(a, np.ndarray) and a.dtype == dtype and a.flags["C_CONTIGUOUS"], k
        assert a.shape[0] == 3
        assert not a[1].any(), f"{kind}.{k}: absent row must hold zeros"
    assert present.dtype == np.bool_ and present.tolist() == [True, False, True]
    assert ctx.report.missing == {"col": 1} and ctx.report.n_errors == 0


# ------------------------------------------------------------------------------------------------------ image
def test_image_real_pngs_equal_source(png_dir, mnist):
    images, _ = mnist
    arrays, present, _, spec = run("image", [str(p) for p in sorted(png_dir.glob("*.png"), key=lambda p: int(p.stem))])
    assert spec.options == {"size": [28, 28], "channels": 1}
    px = arrays["pixels"]
    assert px.shape == (N_IMG, 1, 28, 28) and present.all()
    np.testing.assert_allclose(px[:, 0], images / 255.0, atol=1e-6)


def test_image_relative_paths_resolve_against_base_dir(png_dir, mnist):
    arrays, present, _, _ = run("image", ["imgs/0.png", "imgs/1.png"], base_dir=png_dir.parent)
    assert present.all()
    np.testing.assert_allclose(arrays["pixels"][1, 0], mnist[0][1] / 255.0, atol=1e-6)


def test_image_bytes_and_arrays(mnist):
    a = mnist[0][0]
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    cells = [buf.getvalue(), a, a.astype(np.float32) / 255.0, a[:, :, None]]
    arrays, present, _, spec = run("image", cells)
    assert spec.options["channels"] == 1 and present.all()
    for k in range(4):
        np.testing.assert_allclose(arrays["pixels"][k, 0], a / 255.0, atol=1e-6)


def test_image_most_common_size_resize_and_rgb(mnist):
    gray = mnist[0][0]
    rgb = np.stack([gray, np.zeros_like(gray), 255 - gray], axis=-1)
    big = np.asarray(Image.fromarray(gray).resize((56, 56), Image.BILINEAR))
    arrays, present, _, spec = run("image", [gray, rgb, big, gray])
    assert spec.options == {"size": [28, 28], "channels": 3}  # one RGB image -> 3 channels
    px = arrays["pixels"]
    assert px.shape == (4, 3, 28, 28) and present.all()
    for c in range(3):  # gray replicated into every channel
        np.testing.assert_allclose(px[0, c], gray / 255.0, atol=1e-6)
    np.testing.assert_allclose(px[1, 2], (255 - gray) / 255.0, atol=1e-6)
    assert np.abs(px[2] - px[0]).mean() < 0.05  # 56x56 resized back to 28x28 stays close to the original


def test_image_user_options_are_kept_and_rgb_to_gray(mnist):
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[..., 0] = 255
    arrays, _, _, spec = run("image", [rgb], options={"size": [4, 6], "channels": 1})
    assert spec.options == {"size": [4, 6], "channels": 1}
    assert arrays["pixels"].shape == (1, 1, 4, 6)
    np.testing.assert_allclose(arrays["pixels"][0, 0], round(0.299 * 255) / 255, atol=1e-6)


def test_image_float_out_of_range_is_an_error():
    with pytest.raises(DecodeError, match=r"\[0, 1\].*divide"):
        run("image", [np.full((5, 5), 200.0)], options={"size": [5, 5], "channels": 1})


def _bad_image_files(png_dir):
    good = (png_dir / "0.png").read_bytes()
    (png_dir / "trunc.png").write_bytes(good[: len(good) // 2])
    (png_dir / "noise.png").write_bytes(np.random.default_rng(0).bytes(300))
    (png_dir / "empty.png").write_bytes(b"")
    return ["0.png", "trunc.png", "noise.png", "empty.png", "nothere.png"]


@pytest.mark.parametrize(
    "pos, file, problem",
    [(1, "trunc.png", "truncated or corrupt"), (2, "noise.png", "not a recognised image"),
     (3, "empty.png", "empty"), (4, "nothere.png", "does not exist")],
)
def test_image_bad_files_raise_decode_error_naming_row_column_file(png_dir, pos, file, problem):
    names = _bad_image_files(png_dir)
    frame = pd.DataFrame({"photo": [names[0], names[pos]]}, index=["r0", f"r{pos}"])
    with pytest.raises(DecodeError) as info:
        run("image", frame, base_dir=png_dir, options={"size": [28, 28], "channels": 1})
    assert_names(info.value, f"r{pos}", "photo", file)
    assert problem in str(info.value)
    if file == "nothere.png":
        assert str(png_dir.resolve()) in str(info.value)  # says where it looked


def test_image_bad_files_under_missing_policy(png_dir):
    names = _bad_image_files(png_dir)
    arrays, present, ctx, _ = run("image", names + [None], base_dir=png_dir, on_error="missing")
    assert present.tolist() == [True, False, False, False, False, False]
    assert ctx.report.errors == {"col": 4} and ctx.report.missing == {"col": 1}
    assert [e["file"] for e in ctx.report.examples] == names[1:]
    assert not arrays["pixels"][1:].any()


def test_image_wrong_cell_type_is_an_error():
    with pytest.raises(DecodeError, match=r"row 0, column 'col'.*got int"):
        run("image", [5], options={"size": [2, 2], "channels": 1})


# ------------------------------------------------------------------------------------------------------ depth
def test_depth_16bit_png_npy_and_array(tmp_path):
    rng = np.random.default_rng(0)
    d16 = rng.integers(0, 60000, size=(12, 10)).astype(np.uint16)
    Image.fromarray(d16).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    np.save(tmp_path / "d.npy", d16.astype(np.float32) * 0.5)
    arrays, present, _, spec = run("depth", ["d.png", "d.npy", d16.astype(np.float64)], base_dir=tmp_path)
    mean, std = spec.options["mean"], spec.options["std"]
    raw = np.concatenate([d16.ravel(), d16.ravel() * 0.5, d16.ravel()]).astype(np.float64)
    assert spec.options["size"] == [12, 10]
    assert mean == pytest.approx(raw.mean(), rel=1e-5) and std == pytest.approx(raw.std(), rel=1e-5)
    px = arrays["pixels"]
    assert px.shape == (3, 1, 12, 10) and present.all()
    np.testing.assert_allclose(px[0, 0] * std + mean, d16, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(px[1, 0] * std + mean, d16 * 0.5, rtol=1e-4, atol=1e-2)
    assert abs(float(px.mean())) < 1e-3 and abs(float(px.std()) - 1) < 1e-3


def test_depth_nan_is_an_error_or_missing():
    m = np.ones((4, 4))
    m[1, 2] = np.nan
    with pytest.raises(DecodeError, match=r"row 'b', column 'col'.*1 NaN"):
        run("depth", [np.ones((4, 4)), m], index=["a", "b"])
    _, present, ctx, _ = run("depth", [np.ones((4, 4)), m], on_error="missing")
    assert present.tolist() == [True, False] and ctx.report.errors == {"col": 1}


def test_depth_resizes_to_fitted_size():
    arrays, present, _, spec = run("depth", [np.ones((8, 8)), np.ones((8, 8)), np.full((16, 4), 3.0)])
    assert spec.options["size"] == [8, 8] and arrays["pixels"].shape == (3, 1, 8, 8) and present.all()


# ------------------------------------------------------------------------------------------------------ audio
def test_audio_real_wavs(wav_paths):
    arrays, present, _, spec = run("audio", [str(p) for p in wav_paths])
    durations = [sf.info(str(p)).duration for p in wav_paths]
    assert spec.options["sample_rate"] == 8000
    expect = min(np.ceil(np.percentile(durations, 95) * 10 - 1e-9) / 10, 10.0)
    assert spec.options["max_seconds"] == pytest.approx(expect)
    t = int(round(spec.options["max_seconds"] * 8000))
    wave, length = arrays["wave"], arrays["length"]
    assert wave.shape == (len(wav_paths), t) and wave.dtype == np.float32 and present.all()
    for k, p in enumerate(wav_paths):
        y, _ = sf.read(str(p), dtype="float32")
        n = min(len(y), t)
        assert length[k] == n
        np.testing.assert_array_equal(wave[k, :n], y[:n])
        assert not wave[k, n:].any()


def test_audio_resampling_changes_length(wav_paths):
    path = str(wav_paths[0])
    n8 = sf.info(path).frames
    arrays, _, _, _ = run("audio", [path], options={"sample_rate": 16000, "max_seconds": 10.0})
    assert abs(int(arrays["length"][0]) - 2 * n8) <= 1
    assert arrays["wave"].shape == (1, 160000)
    arrays, _, _, _ = run("audio", [path], options={"sample_rate": 4000, "max_seconds": 0.1})
    assert arrays["length"][0] == 400 and arrays["wave"].shape == (1, 400)  # cropped to 0.1 s


def test_audio_resampling_matches_librosa(wav_paths):
    librosa = pytest.importorskip("librosa")
    y, _ = sf.read(str(wav_paths[1]), dtype="float32")
    arrays, _, _, _ = run("audio", [str(wav_paths[1])], options={"sample_rate": 22050, "max_seconds": 5.0})
    ref = librosa.resample(y, orig_sr=8000, target_sr=22050)
    assert arrays["length"][0] == len(ref)
    np.testing.assert_allclose(arrays["wave"][0, : len(ref)], ref, atol=1e-6)


def test_audio_bytes_dict_stereo_and_int16(wav_paths):
    path = wav_paths[0]
    y, rate = sf.read(str(path), dtype="float32")
    pcm = (np.clip(y, -1, 1) * 32767).astype(np.int16)
    cells = [
        path.read_bytes(),
        {"array": y, "sampling_rate": rate},
        {"array": np.stack([y, y]), "sampling_rate": rate},  # channels-first stereo
        {"array": pcm, "sampling_rate": rate},
    ]
    arrays, present, _, _ = run("audio", cells, options={"sample_rate": 8000, "max_seconds": 5.0})
    assert present.all() and (arrays["length"] == len(y)).all()
    for k in range(3):
        np.testing.assert_allclose(arrays["wave"][k, : len(y)], y, atol=1e-6)
    np.testing.assert_allclose(arrays["wave"][3, : len(y)], y, atol=1e-4)


def _bad_audio_files(tmp_path, wav_paths):
    shutil.copy(wav_paths[0], tmp_path / "good.wav")
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).bytes(500))
    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(tmp_path / "silent.wav", np.zeros(0, np.float32), 8000)  # a valid WAV with 0 samples
    return ["good.wav", "noise.wav", "empty.wav", "silent.wav", "gone.wav"]


@pytest.mark.parametrize(
    "pos, problem",
    [(1, "cannot decode the audio"), (2, "empty (0 bytes)"), (3, "0 samples"), (4, "does not exist")],
)
def test_audio_bad_files_raise_decode_error(tmp_path, wav_paths, pos, problem):
    names = _bad_audio_files(tmp_path, wav_paths)
    frame = pd.DataFrame({"speech": [names[0], names[pos]]}, index=[10, 20])
    with pytest.raises(DecodeError) as info:
        run("audio", frame, base_dir=tmp_path, options={"sample_rate": 8000, "max_seconds": 1.0})
    assert_names(info.value, 20, "speech", names[pos])
    assert problem in str(info.value)


def test_audio_bad_files_under_missing_policy(tmp_path, wav_paths):
    names = _bad_audio_files(tmp_path, wav_paths)
    arrays, present, ctx, spec = run("audio", names, base_dir=tmp_path, on_error="missing")
    assert spec.options["sample_rate"] == 8000
    assert present.tolist() == [True, False, False, False, False]
    assert ctx.report.errors == {"col": 4} and not arrays["wave"][1:].any() and not arrays["length"][1:].any()


def test_audio_nan_and_bare_array_errors():
    bad = np.zeros(100)
    bad[5] = np.inf
    with pytest.raises(DecodeError, match=r"row 0, column 'col'.*1 inf"):
        run("audio", [{"array": bad, "sampling_rate": 8000}])
    with pytest.raises(DecodeError, match="no sampling rate"):
        run("audio", [np.zeros(100)], options={"sample_rate": 8000, "max_seconds": 1.0})


# ------------------------------------------------------------------------------------------------------- text
def test_text_vocab_ids_and_lengths():
    train = ["The cat sat.", "the dog sat!", "a cat", "cat"]
    arrays, present, _, spec = run("text", ["The cat sat.", "zebra cat", "...", "!!"], fit_cells=train)
    vocab = spec.options["vocab"]
    assert vocab[:2] == ["<pad>", "<unk>"]
    assert vocab[2:] == ["cat", "sat", "the", "!", ".", "a", "dog"]  # by count, then alphabetically
    assert spec.options["max_len"] == 4  # 95th percentile of [4, 4, 2, 1] rounded up
    ids, length = arrays["ids"], arrays["length"]
    assert ids.shape == (4, 4) and present.all()
    lookup = {t: i for i, t in enumerate(vocab)}
    assert ids[0].tolist() == [lookup["the"], lookup["cat"], lookup["sat"], lookup["."]]
    assert ids[1].tolist() == [1, lookup["cat"], 0, 0] and length[1] == 2  # unseen -> <unk>
    assert ids[2].tolist() == [lookup["."]] * 3 + [0]
    assert length[3] == 2 and ids[3, :2].tolist() == [lookup["!"]] * 2


def test_text_truncation_min_count_max_vocab_and_empty():
    train = ["a a a b b c"] * 3
    arrays, present, _, spec = run(
        "text", ["a b c d", "   \t"], fit_cells=train, options={"max_len": 2, "min_count": 4, "max_vocab": 3}
    )
    assert spec.options["vocab"] == ["<pad>", "<unk>", "a"]  # b has 6 >= 4 but max_vocab caps the list
    assert arrays["ids"].tolist() == [[2, 1], [0, 0]] and present.tolist() == [True, False]
    arrays, present, _, _ = run("text", ["@@"], options={"vocab": ["<pad>", "<unk>"], "max_len": 3})
    assert arrays["ids"].tolist() == [[1, 1, 0]]
    arrays, present, _, _ = run("text", ["\u200b"], options={"vocab": ["<pad>", "<unk>"], "max_len": 3})
    assert arrays["length"].tolist() == [1] and present.all()  # a zero-width space is text, not a blank cell


def test_text_number_in_text_column():
    frame = pd.DataFrame({"review": pd.Series(["good", 42, "bad"], index=["a", "b", "c"], dtype=object)})
    with pytest.raises(DecodeError) as info:
        run("text", frame)
    assert_names(info.value, "b", "review")
    assert "expected text, got int" in str(info.value)
    _, present, ctx, _ = run("text", frame, on_error="missing")
    assert present.tolist() == [True, False, True] and ctx.report.errors == {"review": 1}


# ---------------------------------------------------------------------------------------------------- tabular
def test_tabular_numeric_categorical_masks_and_unseen():
    train = pd.DataFrame({"age": [10.0, 20.0, np.nan, 30.0], "city": ["rome", "oslo", None, "rome"],
                          "flag": [True, False, True, True], "n": pd.array([1, 2, None, 4], dtype="Int64")})
    test = pd.DataFrame({"age": [20.0, np.nan, np.nan], "city": ["oslo", "lima", None],
                         "flag": [False, True, False], "n": pd.array([2, None, None], dtype="Int64")})
    test.loc[2, "flag"] = False
    arrays, present, ctx, spec = run("tabular", test, fit_cells=train)
    opts = spec.options
    assert opts["categorical"] == {"city": ["oslo", "rome"]}
    assert list(opts["numeric"]) == ["age", "flag", "n"]
    assert opts["numeric"]["age"] == {"mean": pytest.approx(20.0), "std": pytest.approx(np.std([10, 20, 30]))}
    num, num_mask, cat, cat_mask = arrays["num"], arrays["num_mask"], arrays["cat"], arrays["cat_mask"]
    assert num.shape == (3, 3) and cat.shape == (3, 1)
    assert num[0, 0] == 0.0 and num_mask[:, 0].tolist() == [True, False, False]
    assert num[1, 0] == 0.0  # missing feature -> 0
    assert cat[:, 0].tolist() == [1, 0, 0]  # oslo -> 1, unseen 'lima' -> 0, missing -> 0
    assert cat_mask[:, 0].tolist() == [True, True, False]
    assert present.tolist() == [True, True, True]  # every row has some feature (flag)
    assert ctx.report.missing == {"age": 2, "n": 2, "city": 1}


def test_tabular_row_with_all_features_missing_is_absent():
    frame = pd.DataFrame({"a": [1.0, np.nan], "b": ["x", None]})
    arrays, present, _, _ = run("tabular", frame)
    assert present.tolist() == [True, False]
    assert not arrays["num"][1].any() and not arrays["cat"][1].any()


def test_tabular_numeric_strings_stay_categorical_and_empty_groups():
    frame = pd.DataFrame({"code": ["1", "2", "n/a", "2"]})
    arrays, present, _, spec = run("tabular", frame)
    assert spec.options["numeric"] == {} and spec.options["categorical"] == {"code": ["1", "2", "n/a"]}
    assert arrays["num"].shape == (4, 0) and arrays["num_mask"].shape == (4, 0)
    assert arrays["cat"][:, 0].tolist() == [1, 2, 3, 2] and present.all()
    arrays, _, _, _ = run("tabular", pd.DataFrame({"x": [1.0, 2.0]}))
    assert arrays["cat"].shape == (2, 0) and arrays["cat"].dtype == np.int64


def test_tabular_inf_is_an_error_or_missing_feature():
    frame = pd.DataFrame({"x": [1.0, np.inf, 3.0], "y": [1.0, 2.0, 3.0]}, index=["a", "b", "c"])
    fit = pd.DataFrame({"x": [1.0, 3.0], "y": [1.0, 3.0]})
    with pytest.raises(DecodeError) as info:
        run("tabular", frame, fit_cells=fit)
    assert_names(info.value, "b", "x")
    assert "inf" in str(info.value)
    arrays, present, ctx, _ = run("tabular", frame, fit_cells=fit, on_error="missing")
    assert arrays["num_mask"][1].tolist() == [False, True] and present.all()
    assert ctx.report.errors == {"x": 1} and ctx.report.missing == {}


def test_tabular_non_number_in_numeric_column_at_decode():
    fit = pd.DataFrame({"x": [1.0, 3.0]})
    frame = pd.DataFrame({"x": pd.Series([2.0, "abc", "4"], dtype=object)})
    with pytest.raises(DecodeError, match=r"row 1, column 'x'.*expected a number.*'abc'"):
        run("tabular", frame, fit_cells=fit)
    arrays, present, ctx, _ = run("tabular", frame, fit_cells=fit, on_error="missing")
    assert present.tolist() == [True, False, True] and arrays["num"][2, 0] == pytest.approx(2.0)


# ------------------------------------------------------------------------------------------------- timeseries
def test_timeseries_lengths_channels_and_standardisation():
    rng = np.random.default_rng(0)
    train = [rng.normal(5, 2, (20, 3)), rng.normal(5, 2, (30, 3)), rng.normal(5, 2, (10, 3))]
    arrays, present, _, spec = run("timeseries", train + [rng.normal(size=(40, 3))], fit_cells=train)
    allv = np.concatenate(train)
    assert spec.options["length"] == 30 and spec.options["channels"] == 3
    np.testing.assert_allclose(spec.options["mean"], allv.mean(0))
    np.testing.assert_allclose(spec.options["std"], allv.std(0))
    series, length = arrays["series"], arrays["length"]
    assert series.shape == (4, 30, 3) and length.tolist() == [20, 30, 10, 30] and present.all()
    np.testing.assert_allclose(series[0, :20], (train[0] - allv.mean(0)) / allv.std(0), rtol=1e-5, atol=1e-5)
    assert not series[0, 20:].any() and not series[2, 10:].any()


def test_timeseries_files_lists_and_json(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(6.0))
    (tmp_path / "b.csv").write_text("v\n1\n2\n3\n")
    (tmp_path / "c.csv").write_text("4\n5\n")
    cells = ["a.npy", "b.csv", "c.csv", [7, 8], "[9.0, 10.0]"]
    arrays, present, _, spec = run("timeseries", cells, base_dir=tmp_path, options={"mean": [0.0], "std": [1.0]})
    assert present.all() and spec.options["length"] == 6 and spec.options["channels"] == 1
    assert arrays["length"].tolist() == [6, 3, 2, 2, 2]
    assert arrays["series"][:, :, 0].tolist()[1] == [1, 2, 3, 0, 0, 0]
    assert arrays["series"][4, :2, 0].tolist() == [9, 10]


def test_timeseries_nan_is_an_error_or_missing():
    cells = [[1.0, 2.0], [1.0, np.nan, 3.0]]
    with pytest.raises(DecodeError) as info:
        run("timeseries", cells, index=["s1", "s2"])
    assert_names(info.value, "s2")
    assert "NaN" in str(info.value)
    _, present, ctx, _ = run("timeseries", cells, on_error="missing")
    assert present.tolist() == [True, False] and ctx.report.errors == {"col": 1}


def test_timeseries_channel_mismatch_and_missing_file(tmp_path):
    opts = {"length": 5, "channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3}
    with pytest.raises(DecodeError, match=r"expected 3 channel.*got 2"):
        run("timeseries", [np.zeros((5, 2))], options=opts)
    with pytest.raises(DecodeError, match="transpose"):
        run("timeseries", [np.zeros((3, 50))], options=opts)
    with pytest.raises(DecodeError) as info:
        run("timeseries", ["missing.npy"], options=opts, base_dir=tmp_path)
    assert_names(info.value, 0, file="missing.npy")
    with pytest.raises(DecodeError, match="ragged"):
        run("timeseries", [[[1, 2], [3]]], options=opts)


# ------------------------------------------------------------------------------------------------------ speed
def test_decoding_many_pngs_is_fast(tmp_path, mnist):
    """Guard against per-row overhead creeping into the hot loop (generous bound; real timing is in benchmarks/)."""
    import time

    d = tmp_path / "many"
    d.mkdir()
    for i in range(300):
        Image.fromarray(mnist[0][i % N_IMG]).save(d / f"{i}.png")
    t = time.perf_counter()
    arrays, present, _, _ = run("image", [f"{i}.png" for i in range(300)], base_dir=d)
    assert present.all() and arrays["pixels"].shape == (300, 1, 28, 28)
    assert time.perf_counter() - t < 5.0
