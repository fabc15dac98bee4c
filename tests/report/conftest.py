"""Fixtures of the report tests: tiny real runs on the bundled av-digits data, made once per session by the real
CLI (two fusions, an alignment run, evaluate / robustness / bench tokens outputs), and a headless Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from polymodal.cli.app import app

CHROMIUM = Path("/usr/bin/chromium")
# no network, no background services: the page must open with nothing but itself
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TINY = ["--epochs", "1", "--dim", "16", "--batch-size", "32", "--val-fraction", "0.25", "--threads", "1"]

runner = CliRunner()


def cli(*args: str) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="session")
def demo(exported_av_digits, tmp_path_factory) -> dict[str, Path]:
    """Runs like the demo's: ``late`` and ``transformer`` fusions (1 epoch on 48 rows), each evaluated on a test
    table with a planted unreadable image and an empty audio cell (``--on-error missing``); ``late`` also has
    robustness and token-budget outputs; ``cmp`` is a one-fusion ``compare --out`` folder; ``align`` is an alignment
    run evaluated for retrieval."""
    data = exported_av_digits(48)
    root = tmp_path_factory.mktemp("report_runs")
    test = pd.read_parquet(data / "test.parquet")
    for col in ("image", "audio"):
        test[col] = [str(data / p) for p in test[col]]
    test.loc[3, "image"] = str(data / "images" / "no_such_image.png")  # undecodable: treated as missing
    test.loc[5, "audio"] = None  # an empty cell: missing
    test.to_parquet(root / "test.parquet")
    paths = {"data": data, "test": root / "test.parquet"}
    for fusion in ("late", "transformer"):
        run = root / fusion
        cli("fit", data / "train.parquet", "--label", "digit", "--fusion", fusion, "--out", run, *TINY)
        cli("evaluate", run, root / "test.parquet", "--on-error", "missing", "--out", run / "eval.json")
        paths[fusion] = run
    late = paths["late"]
    cli("robustness", late, root / "test.parquet", "--noise", "0,0.5", "--on-error", "missing",
        "--out", late / "robustness")
    cli("bench", "tokens", late, data / "test.parquet", "--budgets", "1,0.5", "--reducers", "merge,prune",
        "--reps", "1", "--batch-size", "16", "--out", late / "tokens.json")
    cli("compare", data / "train.parquet", "--label", "digit", "--test", data / "test.parquet", "--fusions", "late",
        "--seeds", "1", "--epochs", "1", "--noise", "0,0.5", "--no-unimodal", "--workers", "1", "--out", root / "cmp")
    paths["cmp"] = root / "cmp"
    run = root / "align"
    cli("align", data / "train.parquet", "--label", "digit", "--out", run, *TINY)
    cli("evaluate", run, data / "test.parquet", "--label", "digit", "--out", run / "eval.json")
    paths["align"] = run
    return paths


@pytest.fixture(scope="module")
def browser():  # module scope: playwright's sync API keeps an event loop running in this thread while it is open
    """Headless Debian Chromium through playwright (never `playwright install`: no download)."""
    if not os.access(CHROMIUM, os.X_OK):
        message = (f"{CHROMIUM} is missing: the report's browser tests need Debian's chromium "
                   "(install it with `apt-get install -y chromium`)")
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; under CI=true it must be there (.ci/run installs it)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()
