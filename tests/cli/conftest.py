"""Fixtures of the CLI tests: a tiny two-modality table on disk and a run trained on it by the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from polymodal.cli.app import app
from tests.cli.helpers import GROUP_FLAG
from tests.xor_data import xor_table


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory) -> Path:
    """``train.csv`` (120 rows) and ``test.csv`` (60 rows) of ``xor_table``: modalities ``a``, ``b``, label ``y``."""
    d = tmp_path_factory.mktemp("tiny")
    xor_table(120, seed=0).to_csv(d / "train.csv", index=False)
    xor_table(60, seed=4).to_csv(d / "test.csv", index=False)
    return d


@pytest.fixture(scope="session")
def xor_run(tiny_csv) -> Path:
    """A concat-fusion run on ``tiny_csv``, trained once per session through ``polymodal fit``."""
    run = tiny_csv / "run"
    res = CliRunner().invoke(app, ["fit", str(tiny_csv / "train.csv"), "--label", "y", "--fusion", "concat",
                                   "--out", str(run), "--group", GROUP_FLAG, "--epochs", "4", "--dim", "16",
                                   "--batch-size", "32", "--lr", "5e-3"])
    assert res.exit_code == 0, res.output
    return run
