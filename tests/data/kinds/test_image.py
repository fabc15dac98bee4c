"""Image processor: real PNGs, bytes, arrays; bad files name row, column and file."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from polymodal.errors import DecodeError

from ._helpers import N_IMG, assert_names, run


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
    assert ctx.report.causes == {"corrupt image": 2, "empty file": 1, "absent file": 1}
    assert [e["file"] for e in ctx.report.examples] == names[1:]
    assert not arrays["pixels"][1:].any()


def test_image_wrong_cell_type_is_an_error():
    with pytest.raises(DecodeError, match=r"row 0, column 'col'.*got int"):
        run("image", [5], options={"size": [2, 2], "channels": 1})
