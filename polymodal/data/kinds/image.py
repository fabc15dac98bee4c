"""Image processor: file paths, encoded bytes or pixel arrays -> ``pixels`` float32 [N, C, H, W].

Image options (fitted unless the user set them):

* ``size`` ``[H, W]``: the most common size among sampled training images (longer side capped at
  ``MAX_DEFAULT_SIDE``, keeping the aspect ratio); other sizes are resized with bilinear interpolation;
* ``channels``: 1 if every sampled training image is single-channel (grayscale), else 3.

Limits: a path must name a regular file of at most ``_common.MAX_CELL_BYTES`` (``_common.checked_file``); an
image whose header declares more than ``MAX_IMAGE_PIXELS`` pixels (width x height; 89,478,485, PIL's own default
bomb limit, about 9459 x 9459) is refused from its header, before any pixel is decoded (a 420 KB PNG can declare
12000 x 12000 = 144 M pixels); a 0 x 0 image is an error ``empty image (0x0)``, not a present value.

Depth maps reuse the opening and resizing helpers here; their processor lives in ``depth.py``.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from polymodal.data.schema import ModalitySpec, is_missing
from polymodal.data.kinds._common import (
    CellError,
    check_finite,
    check_not_url,
    checked_file,
    describe,
    fail,
    file_problem,
    most_common,
    rows_and_values,
    sample_cells,
    to_numeric_array,
    track,
)
from polymodal.data.kinds.base import PROCESSORS, DecodeContext, Processor

MAX_DEFAULT_SIDE = 224  # the inferred default size never exceeds this (memory: every row is decoded up front)
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # more than 8 bits per pixel
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as PIL's convert("L")
_FILE_HINT_KINDS = "a file path, encoded image bytes, or a pixel array (H x W or H x W x C)"
CORRUPT_IMAGE = "corrupt image"  # the decode report's cause for a file or bytes PIL cannot decode
MAX_IMAGE_PIXELS = 89_478_485  # width x height above this is refused from the header (PIL's default bomb limit)


def check_pixels(w: int, h: int, file: str | None = None) -> None:
    """Refuse a declared size over ``MAX_IMAGE_PIXELS`` and an empty (0 x 0) image."""
    if w * h > MAX_IMAGE_PIXELS:
        raise CellError(
            f"the image is {w} x {h} = {w * h:,} pixels, over the limit of {MAX_IMAGE_PIXELS:,} pixels",
            file=file,
            hint="downscale the image, or raise polymodal.data.kinds.image.MAX_IMAGE_PIXELS if it is genuine",
            cause="image too large",
        )
    if w == 0 or h == 0:
        raise CellError(f"empty image ({h}x{w})", file=file)


def _open_pil(source: Any, file: str | None, load: bool) -> Image.Image:
    """Image.open + size checks from the header (before decoding) + optional load."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below, with our own limit
            im = Image.open(source)
    except Image.DecompressionBombError as e:
        raise CellError(
            f"the image is over the limit of {MAX_IMAGE_PIXELS:,} pixels (PIL refused its header: {e})",
            file=file,
            cause="image too large",
        ) from None
    try:
        check_pixels(*im.size, file=file)
    except CellError:
        im.close()
        raise
    if load:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()
    return im


# --------------------------------------------------------------------------------------------------- opening
def open_cell(v: Any, ctx: DecodeContext, *, load: bool) -> tuple[Image.Image | np.ndarray, str | None]:
    """A cell as a PIL image (paths, bytes) or a numpy array (array cells); also the file name for errors.

    With ``load=False`` only the header is read (size and mode), which is what ``fit`` needs.
    """
    if isinstance(v, dict):  # the Hugging Face ``Image`` feature: {"bytes": ..., "path": ...}
        if v.get("bytes") is not None:
            v = v["bytes"]
        elif v.get("path"):
            v = v["path"]
        else:
            raise CellError(f"expected {_FILE_HINT_KINDS}, got a dict with keys {sorted(v)}")
    if isinstance(v, (str, os.PathLike)):
        cell = os.fspath(v)
        check_not_url(cell)
        path = checked_file(ctx, cell)  # a regular file, not too large, inside ctx.root: never blocks on a FIFO
        try:
            return _open_pil(path, cell, load), cell
        except CellError:
            raise
        except Exception as e:  # noqa: BLE001 - every library error becomes a DecodeError
            problem = file_problem(path, cell, ctx)
            if problem is not None:
                raise problem from None
            raise CellError(_pil_problem(e), file=cell, cause=CORRUPT_IMAGE) from e
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        if not b:
            raise CellError("the cell holds empty bytes (0 bytes)")
        try:
            return _open_pil(io.BytesIO(b), None, load), None
        except CellError:
            raise
        except Exception as e:  # noqa: BLE001
            raise CellError(_pil_problem(e), cause=CORRUPT_IMAGE) from e
    if isinstance(v, (np.ndarray, list, tuple)):
        return to_numeric_array(v, "pixel array"), None
    if isinstance(v, Image.Image):
        check_pixels(*v.size)
        return v, None
    raise CellError(f"expected {_FILE_HINT_KINDS}, got {describe(v)}")


def _pil_problem(e: Exception) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(e, UnidentifiedImageError):
        return "cannot decode the image: not a recognised image format (corrupt file, or not an image)"
    msg = str(e) or type(e).__name__
    return f"cannot decode the image (truncated or corrupt data): {msg}"


def _array_hw_c(arr: np.ndarray) -> tuple[int, int, int]:
    """(H, W, C) of an image array, with a clear error for other layouts."""
    if arr.ndim in (2, 3) and (arr.shape[0] == 0 or arr.shape[1] == 0):
        raise CellError(f"empty image ({arr.shape[0]}x{arr.shape[1]}): the pixel array has shape {arr.shape}")
    if arr.ndim == 2:
        return arr.shape[0], arr.shape[1], 1
    if arr.ndim == 3 and arr.shape[2] in (1, 2, 3, 4):
        return arr.shape[0], arr.shape[1], arr.shape[2]
    hint = None
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4):
        hint = "the array looks channel-first (C x H x W); transpose it to H x W x C"
    raise CellError(f"a pixel array must be H x W or H x W x C with C in 1-4, got shape {arr.shape}", hint=hint)


# ---------------------------------------------------------------------------------------------------- image
def _image_array_to_float(arr: np.ndarray) -> np.ndarray | Image.Image:
    """Validate an image array; uint8-like arrays become PIL images, floats stay float32 [0, 1] arrays."""
    _array_hw_c(arr)
    if arr.dtype == np.uint8:
        return _uint8_to_pil(arr)
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 255:
            raise CellError(
                f"integer pixel values must lie in 0-255, got range [{lo}, {hi}]",
                hint="scale the array to uint8 0-255 or float 0-1 (for depth/height maps use kind 'depth')",
            )
        return _uint8_to_pil(arr.astype(np.uint8))
    a = arr.astype(np.float32, copy=False)
    check_finite(a, "pixel array")
    if a.size and (float(a.min()) < 0.0 or float(a.max()) > 1.0):
        raise CellError(
            f"float pixel values must lie in [0, 1], got range [{float(a.min()):.4g}, {float(a.max()):.4g}]",
            hint="divide 0-255 values by 255, or store uint8 arrays (for depth/height maps use kind 'depth')",
        )
    return a


def _uint8_to_pil(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 2:  # gray + alpha: keep the gray
        arr = arr[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(arr))


def resize_float(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of an H x W float32 map (PIL mode F)."""
    if a.shape == (h, w):
        return a
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
    return np.asarray(im.resize((w, h), Image.BILINEAR), dtype=np.float32)


def _float_channels(a: np.ndarray, channels: int) -> np.ndarray:
    """H x W [x C] float -> C x H x W with the wanted number of channels."""
    if a.ndim == 2:
        a = a[:, :, None]
    c = a.shape[2]
    if c == 2:  # gray + alpha
        a, c = a[:, :, :1], 1
    if c == 4:  # drop alpha
        a, c = a[:, :, :3], 3
    if channels == 1 and c == 3:
        a = (a @ _LUMA)[:, :, None]
    elif channels == 3 and c == 1:
        a = np.repeat(a, 3, axis=2)
    return a.transpose(2, 0, 1)


def _pil_to_chw(im: Image.Image, channels: int, h: int, w: int) -> np.ndarray:
    """A loaded PIL image -> float32 C x H x W in [0, 1]."""
    if im.mode in WIDE_MODES:
        a = np.asarray(im).astype(np.float32)
        if im.mode != "F":  # 16/32-bit integers: full scale is 65535
            a *= 1.0 / 65535.0
        check_finite(a, "image")
        a = np.clip(a, 0.0, 1.0)
        a = resize_float(a, h, w)
        return _float_channels(a, channels)
    target = "L" if channels == 1 else "RGB"
    if im.mode != target:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette-with-transparency notes
            im = im.convert(target)
    if im.size != (w, h):
        im = im.resize((w, h), Image.BILINEAR)
    a = np.asarray(im)
    if a.ndim == 2:
        a = a[None]
    else:
        a = a.transpose(2, 0, 1)
    return a.astype(np.float32) * np.float32(1.0 / 255.0)


def cap_size(h: int, w: int, cap: int = MAX_DEFAULT_SIDE) -> list[int]:
    side = max(h, w)
    if side <= cap:
        return [int(h), int(w)]
    s = cap / side
    return [max(1, round(h * s)), max(1, round(w * s))]


def check_size(spec: ModalitySpec) -> tuple[int, int]:
    size = spec.options.get("size")
    if isinstance(size, int):
        size = [size, size]
    try:
        h, w = (int(x) for x in size)
        assert h > 0 and w > 0
    except Exception:  # noqa: BLE001
        from polymodal.errors import SchemaError

        raise SchemaError(
            f"modality {spec.name!r}: option size must be [H, W] (positive integers) or one integer, got {size!r}"
        ) from None
    return h, w


@PROCESSORS.register("image")
class ImageProcessor(Processor):
    """Images (file paths, encoded bytes, pixel arrays) -> pixels float32 [N, C, H, W] in [0, 1]."""

    kind = "image"

    def fit(self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext) -> None:
        opts = spec.options
        if "size" in opts and "channels" in opts:
            return
        sizes: list[tuple[int, int]] = []
        gray: list[bool] = []
        for _row, v in sample_cells(frame, spec.column):
            try:
                im, _ = open_cell(v, ctx, load=False)  # header only: size and mode
            except CellError:
                continue  # reported when the column is decoded
            if isinstance(im, np.ndarray):
                try:
                    h, w, c = _array_hw_c(im)
                except CellError:
                    continue
                sizes.append((h, w))
                gray.append(c in (1, 2))
            else:
                sizes.append((im.size[1], im.size[0]))
                gray.append(im.mode in GRAY_MODES)
                if im is not v:
                    im.close()
        if "size" not in opts:
            opts["size"] = cap_size(*most_common(sizes)) if sizes else [MAX_DEFAULT_SIDE, MAX_DEFAULT_SIDE]
        if "channels" not in opts:
            opts["channels"] = 1 if gray and all(gray) else 3

    def decode(
        self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        h, w = check_size(spec)
        channels = int(spec.options.get("channels", 3))
        if channels not in (1, 3):
            from polymodal.errors import SchemaError

            raise SchemaError(f"modality {spec.name!r}: option channels must be 1 or 3, got {channels!r}")
        n, col = len(frame), spec.column
        pixels = np.zeros((n, channels, h, w), dtype=np.float32)
        present = np.zeros(n, dtype=bool)
        n_missing = 0
        for i, row, v in track(rows_and_values(frame, col), n, f"decoding images ({spec.name})", ctx):
            if is_missing(v):
                n_missing += 1
                continue
            try:
                im, file = open_cell(v, ctx, load=True)
                try:
                    if isinstance(im, np.ndarray):
                        im = _image_array_to_float(im)
                    if isinstance(im, np.ndarray):
                        a = _float_channels(im, channels)
                        if a.shape[1:] != (h, w):
                            a = np.stack([resize_float(ch, h, w) for ch in a])
                    else:
                        a = _pil_to_chw(im, channels, h, w)
                except CellError as e:
                    e.file = e.file or file
                    raise
                except Exception as e:  # noqa: BLE001
                    raise CellError(f"cannot convert the image: {e}", file=file, cause=CORRUPT_IMAGE) from e
                finally:
                    if isinstance(im, Image.Image) and im is not v:
                        im.close()
            except CellError as e:
                fail(ctx, row, col, e)
                continue
            pixels[i] = a
            present[i] = True
        ctx.report.add_missing(col, n_missing)
        return {"pixels": pixels}, present
