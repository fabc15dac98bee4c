"""Limits on what a cell may make the decoder do: special files, file sizes, pixel counts, audio crop before
resampling, values too large after standardisation, the allowed root folder (issue 12, items 1, 5 and 9)."""

import os
import struct
import zlib

import numpy as np
import pandas as pd
import pytest

from tests.threads import finishes_within
import soundfile as sf
from PIL import Image

from polymodal.data.kinds import _common
from polymodal.data.kinds import audio as audio_mod
from polymodal.data.kinds.base import DecodeContext
from polymodal.errors import DecodeError

from ._helpers import assert_names, run


def _within(fn, seconds=2.0):
    return finishes_within(fn, seconds)


def _png(path, w, h):
    """A tiny PNG whose IHDR claims w x h pixels (the data is a 1 x 1 image's: only the header matters)."""
    Image.new("L", (1, 1)).save(path)
    b = bytearray(path.read_bytes())
    ihdr = b[12:29]  # b"IHDR" + 13 bytes of fields
    ihdr[4:12] = struct.pack(">II", w, h)
    b[12:29] = ihdr
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(b))


OPTS = {
    "image": {"size": [4, 4], "channels": 1},
    "depth": {"size": [4, 4], "mean": 0.0, "std": 1.0},
    "audio": {"sample_rate": 8000, "max_seconds": 1.0},
    "timeseries": {"length": 4, "channels": 1, "mean": [0.0], "std": [1.0], "layout": "time_major"},
}
NAME = {"image": "x.png", "depth": "x.npy", "audio": "x.wav", "timeseries": "x.csv"}


# ------------------------------------------------------------------------------------------------ special files
@pytest.mark.parametrize("kind", list(OPTS))
def test_fifo_cell_is_refused_without_hanging(tmp_path, kind):
    os.mkfifo(tmp_path / NAME[kind])
    frame = pd.DataFrame({"col": [NAME[kind]]})
    err = _within(lambda: run(kind, frame, base_dir=tmp_path, options=OPTS[kind]))
    assert isinstance(err, DecodeError), err
    assert_names(err, 0, file=NAME[kind])
    assert "not a regular file (a FIFO (named pipe))" in str(err)
    _, present, ctx, _ = run(kind, frame, base_dir=tmp_path, options=OPTS[kind], on_error="missing")
    assert not present.any() and ctx.report.causes == {"unreadable file": 1}


def test_fifo_is_skipped_when_fitting(tmp_path):
    """Fitting looks at file headers (image sizes, audio durations): a FIFO must not block that either."""
    os.mkfifo(tmp_path / "x.png")
    os.mkfifo(tmp_path / "x.wav")
    err = _within(lambda: run("image", ["x.png"], base_dir=tmp_path, on_error="missing"))
    assert err is None
    err = _within(lambda: run("audio", ["x.wav"], base_dir=tmp_path, on_error="missing"))
    assert err is None


@pytest.mark.parametrize("kind", ["timeseries", "image", "audio", "depth"])
def test_dev_zero_symlink_is_refused_fast(tmp_path, kind):
    (tmp_path / NAME[kind]).symlink_to("/dev/zero")
    err = _within(lambda: run(kind, [NAME[kind]], base_dir=tmp_path, options=OPTS[kind]))
    assert isinstance(err, DecodeError) and "not a regular file (a character device)" in str(err), err


def test_symlink_loop_and_directory(tmp_path):
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    with pytest.raises(DecodeError, match="symlink loop"):
        run("image", ["a.png"], base_dir=tmp_path, options=OPTS["image"])
    (tmp_path / "d.png").mkdir()
    with pytest.raises(DecodeError, match="directory"):
        run("image", ["d.png"], base_dir=tmp_path, options=OPTS["image"])


def test_file_over_the_byte_limit_is_refused_unread(tmp_path, monkeypatch):
    np.save(tmp_path / "s.npy", np.arange(1000.0))
    monkeypatch.setattr(_common, "MAX_CELL_BYTES", 1000)
    with pytest.raises(DecodeError, match=r"the file is 8,128 bytes, over the limit of 1,000 bytes per cell"):
        run("timeseries", ["s.npy"], base_dir=tmp_path, options=OPTS["timeseries"])
    _, present, ctx, _ = run("timeseries", ["s.npy"], base_dir=tmp_path, options=OPTS["timeseries"],
                             on_error="missing")
    assert not present.any() and ctx.report.causes == {"file too large": 1}


# --------------------------------------------------------------------------------------------------- root folder
def test_root_confines_reads(tmp_path):
    inside, outside = tmp_path / "data", tmp_path / "secret"
    inside.mkdir()
    outside.mkdir()
    for d in (inside, outside):
        Image.fromarray(np.full((4, 4), 200, np.uint8)).save(d / "x.png")
    (inside / "link.png").symlink_to(outside / "x.png")
    cells = ["x.png", "../secret/x.png", str(outside / "x.png"), "link.png", "../secret/absent.png"]
    spec_opts = OPTS["image"]
    # without a root every path is read (documented in _common's docstring)
    _, present, _, _ = run("image", cells[:4], base_dir=inside, options=spec_opts)
    assert present.all()
    from polymodal.data.kinds import PROCESSORS
    from polymodal.data.schema import ModalitySpec

    spec = ModalitySpec("m", "image", ["col"], dict(spec_opts))
    for cell in cells[1:]:
        ctx = DecodeContext(base_dir=inside, root=inside)
        with pytest.raises(DecodeError, match="outside the allowed root"):
            PROCESSORS.build("image").decode(spec, pd.DataFrame({"col": [cell]}), ctx)
    ctx = DecodeContext(base_dir=inside, root=inside, on_error="missing")
    _, present = PROCESSORS.build("image").decode(spec, pd.DataFrame({"col": cells}), ctx)
    assert present.tolist() == [True, False, False, False, False]
    assert ctx.report.causes == {"forbidden path": 4}


# ------------------------------------------------------------------------------------------------ image limits
def test_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    _png(tmp_path / "big.png", 12000, 12000)
    assert (tmp_path / "big.png").stat().st_size < 1000
    with pytest.raises(DecodeError) as info:
        run("image", ["big.png"], base_dir=tmp_path, options=OPTS["image"])
    assert_names(info.value, 0, file="big.png")
    assert "12000 x 12000 = 144,000,000 pixels, over the limit of 89,478,485 pixels" in str(info.value)
    # larger than PIL's own hard limit (2 x its default): still our message, not PIL's DecompressionBombError
    _png(tmp_path / "huge.png", 40000, 40000)
    with pytest.raises(DecodeError, match="over the limit of 89,478,485 pixels"):
        run("image", ["huge.png"], base_dir=tmp_path, options=OPTS["image"])
    # as bytes, too; and fitting skips it (it does not pick its size)
    with pytest.raises(DecodeError, match="over the limit"):
        run("image", [(tmp_path / "big.png").read_bytes()], options=OPTS["image"])
    _, present, ctx, spec = run("image", ["big.png"], base_dir=tmp_path, on_error="missing")
    assert not present.any() and ctx.report.causes == {"image too large": 1} and spec.options["size"] == [224, 224]


def test_empty_image_arrays_are_errors():
    for shape in [(0, 0), (0, 5), (5, 0, 3)]:
        with pytest.raises(DecodeError, match=r"empty image \(\d+x\d+\)"):
            run("image", [np.zeros(shape, np.uint8)], options=OPTS["image"])
    _, present, ctx, _ = run("image", [np.zeros((0, 0), np.uint8), np.zeros((4, 4), np.uint8)],
                             options=OPTS["image"], on_error="missing")
    assert present.tolist() == [False, True] and ctx.report.causes == {"bad value": 1}


# --------------------------------------------------------------------------------------- audio: crop, then resample
def test_audio_at_1_hz_is_cropped_before_resampling(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "slow.wav", (rng.standard_normal(100_000) * 0.1).astype(np.float32), 1, subtype="PCM_16")
    assert (tmp_path / "slow.wav").stat().st_size > 199_000  # 100000 s at 1 Hz
    seen = []
    real = audio_mod._resample
    monkeypatch.setattr(audio_mod, "_resample", lambda y, r, t: (seen.append(len(y)), real(y, r, t))[1])
    arrays, present, _, _ = run("audio", ["slow.wav"], base_dir=tmp_path,
                                options={"sample_rate": 8000, "max_seconds": 10.0})
    assert present.all() and arrays["wave"].shape == (1, 80_000) and arrays["length"].tolist() == [80_000]
    assert seen == [audio_mod.source_samples(80_000, 1, 8000)] and seen[0] < 40  # 10 s + margin, not 100000 s
    # a {array, sampling_rate} cell too
    seen.clear()
    cell = {"array": rng.standard_normal(100_000).astype(np.float32) * 0.1, "sampling_rate": 1}
    arrays, _, _, _ = run("audio", [cell], options={"sample_rate": 8000, "max_seconds": 10.0})
    assert seen[0] < 40 and arrays["length"].tolist() == [80_000]


def test_audio_crop_before_resampling_keeps_the_kept_part(wav_paths):
    """Cropping the source first changes nothing in the samples kept (the margin feeds the filter)."""
    y, rate = sf.read(str(wav_paths[0]), dtype="float32")
    arrays, _, _, _ = run("audio", [str(wav_paths[0])], options={"sample_rate": 16000, "max_seconds": 0.2})
    full = audio_mod._resample(y, rate, 16000)[:3200]
    np.testing.assert_allclose(arrays["wave"][0], full, atol=1e-5)


# --------------------------------------------------------------------------------- values too large after scaling
def test_tabular_huge_value_is_refused_after_scaling():
    train = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.5, 0.1, 0.2, 0.3]})
    test = pd.DataFrame({"a": [1.0, 1e25, 2.0, 3.0e38], "b": [0.5, 0.1, 0.2, 0.3]}, index=["r0", "r1", "r2", "r3"])
    assert np.isfinite(np.float32(1e25))  # a valid float32: the check is on the standardised value
    with pytest.raises(DecodeError) as info:
        run("tabular", test, fit_cells=train)
    assert_names(info.value, "r1", "a")
    assert "the numeric value 1e+25 is too large to use" in str(info.value) and "limit is 1e+06" in str(info.value)
    arrays, present, ctx, _ = run("tabular", test, fit_cells=train, on_error="missing")
    assert np.isfinite(arrays["num"]).all() and np.abs(arrays["num"]).max() <= _common.MAX_SCALED
    assert arrays["num_mask"][:, 0].tolist() == [True, False, True, False] and present.all()
    assert ctx.report.errors == {"a": 2} and ctx.report.causes == {"bad value": 2}
    assert "a" not in ctx.report.missing  # errors, not empty cells
    # a huge training value does not poison the statistics into inf (values beyond float32 are left out)
    _, _, _, spec = run("tabular", pd.DataFrame({"a": [1.0, 2.0, 1e300]}), on_error="missing")
    assert spec.options["numeric"]["a"] == {"mean": 1.5, "std": 0.5}


def test_timeseries_huge_value_is_refused_after_scaling():
    train = [np.sin(np.arange(8.0)), np.cos(np.arange(8.0))]
    bad = np.sin(np.arange(8.0))
    bad[3] = 1e25
    with pytest.raises(DecodeError) as info:
        run("timeseries", [train[0], bad], fit_cells=train)
    assert_names(info.value, 1)
    assert "too large to use, e.g. 1e+25" in str(info.value)
    arrays, present, ctx, _ = run("timeseries", [train[0], bad], fit_cells=train, on_error="missing")
    assert present.tolist() == [True, False] and np.isfinite(arrays["series"]).all()
    assert ctx.report.causes == {"bad value": 1}
    # grouped: the column holding the value is named
    frame = pd.DataFrame({"x": pd.Series([train[0], train[0]], dtype=object),
                          "y": pd.Series([train[1], bad], dtype=object)})
    with pytest.raises(DecodeError) as info:
        run("timeseries", frame, fit_cells=frame.iloc[:1], columns=["x", "y"])
    assert_names(info.value, 1, "y")
    # fitting leaves out a series beyond float32 (it would make the statistics inf)
    _, _, _, spec = run("timeseries", [train[0], np.full(8, 1e300)], on_error="missing")
    assert np.isfinite(spec.options["mean"]).all() and np.isfinite(spec.options["std"]).all()


def test_depth_huge_value_is_refused_after_scaling():
    ok = np.ones((4, 4), np.float32)
    bad = ok.copy()
    bad[1, 1] = 1e25
    with pytest.raises(DecodeError, match="depth map holds .* too large"):
        run("depth", [ok, bad], fit_cells=[ok, ok * 2])
    arrays, present, ctx, _ = run("depth", [ok, bad], fit_cells=[ok, ok * 2], on_error="missing")
    assert present.tolist() == [True, False] and np.isfinite(arrays["pixels"]).all()


def test_non_numeric_csv_series_says_not_numbers(tmp_path):
    (tmp_path / "words.csv").write_text("hello,world\n")
    (tmp_path / "mixed.csv").write_text("a,b\n1,2\nx,3\n")
    for name in ("words.csv", "mixed.csv"):
        with pytest.raises(DecodeError, match="not numbers") as info:
            run("timeseries", [name], base_dir=tmp_path, options=OPTS["timeseries"])
        assert "empty" not in str(info.value)
        assert_names(info.value, 0, file=name)


def test_audio_huge_float_wave_is_refused():
    wave = np.zeros(800, np.float32)
    wave[10] = 1e25
    with pytest.raises(DecodeError, match="audio holds 1 value.* too large to use, e.g. 1e\\+25"):
        run("audio", [{"array": wave, "sampling_rate": 8000}], options=OPTS["audio"])


def test_complex_numbers_are_bad_values_not_silently_real():
    """Casting complex to real drops the imaginary part without a word: a series or a numeric cell holding
    complex numbers is a bad value (DecodeError naming row and column)."""
    import pandas as pd

    from polymodal.data.kinds._common import CellError, to_numeric_array
    from polymodal.data.kinds.tabular import _float_column

    with pytest.raises(CellError, match="complex numbers"):
        to_numeric_array(np.array([1 + 2j, 3 + 0j]), "series")
    assert _float_column(pd.Series([1 + 2j, 3 + 0j])) is None  # never cast to float behind the user's back
