"""Every kind: registered, contract keys and dtypes, absent rows; decoding speed guard."""


import numpy as np
import pandas as pd
import pytest
from PIL import Image

from polymodal.data.kinds import PROCESSORS

from ._helpers import N_IMG, run


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
