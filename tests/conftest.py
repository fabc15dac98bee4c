"""Test-wide settings: offline, one torch thread per worker, deterministic seeds."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.fixtures_paths import DATA, ORACLES  # noqa: E402  (fixture paths live in one place)

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def oracles_dir() -> Path:
    """``tests/fixtures/oracles``: reference numbers shipped with the repository (missing -> the test fails)."""
    assert ORACLES.is_dir(), f"oracle fixtures missing: {ORACLES}"
    return ORACLES


@pytest.fixture(scope="session")
def fixture_data() -> Path:
    """``tests/fixtures/data``: the slices of public datasets the tests compare against (missing -> fails)."""
    assert DATA.is_dir(), f"data fixtures missing: {DATA}"
    return DATA


@pytest.fixture(scope="session")
def exported_av_digits(tmp_path_factory):
    """``export(limit) -> folder``: av-digits written to ordinary files (PNG, WAV, Parquet manifests) by the real
    CLI, once per row limit per test session. The folder is shared between test modules: treat it as read-only."""
    from typer.testing import CliRunner

    from polymodal.cli.app import app

    folders: dict[int, Path] = {}

    def export(limit: int) -> Path:
        if limit not in folders:
            out = tmp_path_factory.mktemp(f"avd{limit}")
            res = CliRunner().invoke(app, ["datasets", "export", "av-digits", str(out), "--limit", str(limit)])
            assert res.exit_code == 0, res.output
            folders[limit] = out
        return folders[limit]

    return export


@pytest.fixture(scope="session")
def xor_model():
    """A small concat-fusion model trained once on ``tests.xor_data.xor_table`` (each modality carries one bit)."""
    import polymodal as pm

    from tests.xor_data import GROUPS, xor_table

    return pm.fit(xor_table(), "y", fusion="concat", groups=GROUPS, epochs=12, dim=16, batch_size=32,
                  lr=5e-3, progress=False, seed=0)


@pytest.fixture(scope="session")
def xor_test_ds(xor_model):
    from polymodal.data.decode import decode

    from tests.xor_data import xor_table

    return decode(xor_model.schema, xor_table(200, seed=1), labels="require", progress=False).dataset
