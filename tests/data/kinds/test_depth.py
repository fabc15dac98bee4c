"""Depth processor: any-bit-depth images, .npy, arrays; NaN handling; resizing."""


import numpy as np
import pytest
from PIL import Image

from polymodal.errors import DecodeError

from ._helpers import run


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
