"""Audio processor: real WAVs, resampling, bytes/dicts; bad files name row, column and file."""

import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from polymodal.errors import DecodeError

from ._helpers import assert_names, run


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
    assert ctx.report.causes == {"corrupt audio file": 1, "empty file": 2, "absent file": 1}
    assert ctx.report.missing == {}  # nothing was empty: every cell named a file


def test_audio_nan_and_bare_array_errors():
    bad = np.zeros(100)
    bad[5] = np.inf
    with pytest.raises(DecodeError, match=r"row 0, column 'col'.*1 inf"):
        run("audio", [{"array": bad, "sampling_rate": 8000}])
    with pytest.raises(DecodeError, match="no sampling rate"):
        run("audio", [np.zeros(100)], options={"sample_rate": 8000, "max_seconds": 1.0})


# ------------------------------------------------------------------------------------------ truncated files
def _truncated(tmp_path, fmt="WAV", ext="wav", subtype="PCM_16"):
    """A 1 s tone written by soundfile, then cut to half its bytes (the header still declares 8000 frames)."""
    wave = (0.5 * np.sin(np.arange(8000) * 0.05)).astype(np.float32)
    sf.write(tmp_path / f"whole.{ext}", wave, 8000, format=fmt, subtype=subtype)
    data = (tmp_path / f"whole.{ext}").read_bytes()
    (tmp_path / f"half.{ext}").write_bytes(data[: len(data) // 2])
    with sf.SoundFile(tmp_path / f"half.{ext}") as f:  # what libsndfile alone says: no error, fewer frames
        assert 0 < f.frames < 8000 and len(f.read()) == f.frames
    return data


@pytest.mark.parametrize("fmt, ext, subtype", [("WAV", "wav", "PCM_16"), ("WAV", "wav", "FLOAT"),
                                               ("RF64", "wav", "PCM_24"), ("AIFF", "aiff", "PCM_16")])
def test_truncated_audio_file_raises_naming_row_column_file(tmp_path, fmt, ext, subtype):
    _truncated(tmp_path, fmt, ext, subtype)
    frame = pd.DataFrame({"speech": [f"whole.{ext}", f"half.{ext}"]}, index=["a", "b"])
    opts = {"sample_rate": 8000, "max_seconds": 1.0}
    with pytest.raises(DecodeError) as info:
        run("audio", frame, base_dir=tmp_path, options=opts)
    assert_names(info.value, "b", "speech", f"half.{ext}")
    assert "truncated" in str(info.value) and "declares 8000 frames" in str(info.value)
    arrays, present, _, _ = run("audio", frame.iloc[:1], base_dir=tmp_path, options=opts)  # the whole file is fine
    assert present.all() and arrays["length"].tolist() == [8000]


def test_truncated_audio_under_missing_policy_and_as_bytes(tmp_path):
    data = _truncated(tmp_path)
    cells = ["whole.wav", "half.wav", data[: len(data) // 2], data[:-2], data]
    arrays, present, ctx, _ = run("audio", cells, base_dir=tmp_path, on_error="missing",
                                  options={"sample_rate": 8000, "max_seconds": 1.0})
    assert present.tolist() == [True, False, False, False, True]  # even one frame short is truncated
    assert ctx.report.errors == {"col": 3} and ctx.report.causes == {"truncated audio file": 3}
    assert [e["file"] for e in ctx.report.examples] == ["half.wav", None, None]
    assert not arrays["wave"][1:4].any()
    assert "3 truncated audio files" in ctx.report.summary()
