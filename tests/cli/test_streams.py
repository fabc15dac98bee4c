"""What a new user meets in the CLI's output, in logs and pipes: results on stdout and everything else on stderr,
exit codes (0 ok, 1 bug, 2 usage / bad input, 130 Ctrl-C), ``--version``, one plain line per training epoch,
no wrapping, run folders (``--overwrite``, ``--out -``) and the training flags.

``CliRunner`` is not a terminal: every test here is the pipe / log file / CI case.
"""

from __future__ import annotations

import io
import json
import shutil

import lightning as L
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from polymodal import __version__
from polymodal.cli.app import app
from tests.cli.helpers import GROUP_FLAG

runner = CliRunner()
FAST = ["--group", GROUP_FLAG, "--dim", "16", "--batch-size", "32", "--fusion", "concat"]


@pytest.fixture
def keep_threads():
    """``--threads`` sets torch's thread count for the process: put it back afterwards."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _no_table_reading(monkeypatch):
    """Reading a training table fails loudly (a bug-shaped error, exit 1): the checks that must come first do."""
    import polymodal.recipes.align as align_recipe
    import polymodal.recipes.fit as fit_recipe

    def read(*args, **kwargs):
        raise AssertionError("the training table was read")

    monkeypatch.setattr(fit_recipe, "prepare", read)
    monkeypatch.setattr(align_recipe, "prepare", read)


# ------------------------------------------------------------------------------------------- version, exit codes
def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout == f"polymodal {__version__}\n"


def test_help_documents_the_exit_codes():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    lines = [line.strip() for line in res.stdout.splitlines()]
    assert "Exit codes:" in lines
    for start in ("0    success", "1    internal error", "2    usage error or bad input", "130  interrupted"):
        assert any(line.startswith(start) for line in lines), start


def test_a_usage_error_exits_2_on_stderr(tiny_csv):
    res = runner.invoke(app, ["fit", str(tiny_csv / "train.csv"), "--out", "x"])  # no --label
    assert res.exit_code == 2 and "Missing option '--label'" in res.stderr and res.stdout == ""


def test_ctrl_c_exits_130_with_one_line_on_stderr(tiny_csv, tmp_path, monkeypatch):
    import polymodal.recipes.fit as recipe
    import polymodal.recipes.loading as loading

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "fit", ctrl_c)
    res = runner.invoke(app, ["fit", str(tiny_csv / "train.csv"), "--label", "y", "--out", str(tmp_path / "r")])
    assert res.exit_code == 130
    assert res.stderr.splitlines() == ["interrupted: Ctrl-C"] and res.stdout == ""
    monkeypatch.setattr(loading, "load", ctrl_c)
    res = runner.invoke(app, ["predict", str(tmp_path), str(tiny_csv / "test.csv"), "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 130 and res.stderr.splitlines() == ["interrupted: Ctrl-C"]


class InterruptIn(L.Callback):
    """Ctrl-C in the middle of (1-based) epoch ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def test_ctrl_c_in_training_saves_the_best_weights_and_exits_130(tiny_csv, tmp_path, monkeypatch):
    import polymodal.recipes.steps as steps

    real = steps.train_net
    monkeypatch.setattr(steps, "train_net", lambda *a, **k: real(*a, callbacks=[InterruptIn(2)], **k))
    run = tmp_path / "r"
    res = runner.invoke(app, ["fit", str(tiny_csv / "train.csv"), "--label", "y", "--out", str(run), "--epochs", "3",
                              *FAST])
    assert res.exit_code == 130, res.output
    schema_block = ("polymodal: schema", "  ")  # the inferred schema, printed once before training
    said = [line for line in res.stderr.splitlines() if not line.startswith(("epoch ", *schema_block))]
    assert said == [f"interrupted: training stopped after 1 epoch(s); saved the best weights so far (epoch 1) to {run}"]
    assert "saved" in res.stdout and "Traceback" not in res.output
    training = json.loads((run / "report.json").read_text())["training"]
    assert training["interrupted"] is True and training["epochs_run"] == 1
    assert [h["epoch"] for h in training["history"]] == [1] and training["best_epoch"] == 1


# ------------------------------------------------------------------------------------------- pipes and logs
def test_fit_in_a_pipe_prints_one_line_per_epoch(tiny_csv, tmp_path, keep_threads):
    run = tmp_path / "r"
    res = runner.invoke(app, ["fit", str(tiny_csv / "train.csv"), "--label", "y", "--out", str(run), "--epochs", "2",
                              "--patience", "5", "--val-fraction", "0.2", "--time-limit", "10", "--threads", "1",
                              *FAST])
    assert res.exit_code == 0, res.output
    assert torch.get_num_threads() == 1
    epochs = [line for line in res.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"], res.stderr  # 1-based, one line each, as it goes
    assert all("train_loss=" in line and "val_acc=" in line and " elapsed " in line and " eta " in line
               for line in epochs)
    assert "epoch 1/2" not in res.stdout  # progress is not a result
    assert "modalities=[a:tabular, b:tabular]" in res.stdout  # markup off: the brackets of the repr survive
    training = json.loads((run / "report.json").read_text())["training"]
    assert [h["epoch"] for h in training["history"]] == [1, 2] and training["interrupted"] is False
    assert f"(epoch {training['best_epoch']})" in res.stdout
    train_cfg = json.loads((run / "config.json").read_text())["train"]
    assert (train_cfg["max_minutes"], train_cfg["patience"], train_cfg["val_fraction"]) == (10, 5, 0.2)


def test_a_long_path_in_an_error_stays_on_one_line(xor_run, tmp_path):
    deep = tmp_path / ("a-folder-with-a-rather-long-name-" * 3) / ("and-another-long-folder-name-" * 3)
    missing_run, missing_table = deep / "run", deep / "new-rows.csv"
    assert len(str(missing_table)) > 200
    res = runner.invoke(app, ["evaluate", str(missing_run), str(missing_table)])
    assert res.exit_code == 2 and any(str(missing_run) in line for line in res.stderr.splitlines()), res.stderr
    res = runner.invoke(app, ["predict", str(xor_run), str(missing_table), "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 2 and any(str(missing_table) in line for line in res.stderr.splitlines()), res.stderr
    assert res.stdout == ""


def test_predict_to_stdout_writes_csv(xor_run, tiny_csv, keep_threads):
    res = runner.invoke(app, ["predict", str(xor_run), str(tiny_csv / "test.csv"), "--out", "-", "--threads", "1"])
    assert res.exit_code == 0, res.output
    preds = pd.read_csv(io.StringIO(res.stdout))  # stdout holds the CSV and nothing else
    assert len(preds) == 60 and list(preds.columns) == ["row", "prediction", "proba_c0", "proba_c1", "proba_c2",
                                                        "proba_c3"]
    assert "wrote 60 predictions to stdout" in res.stderr


def test_evaluate_says_how_many_values_it_treated_as_missing(xor_run, tiny_csv, tmp_path):
    bad = pd.read_csv(tiny_csv / "test.csv").astype({"a1": object, "b2": object})
    bad.loc[3, "a1"], bad.loc[5, "b2"], bad.loc[8, "b2"] = "oops", "n/a?", "-"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    res = runner.invoke(app, ["evaluate", str(xor_run), str(tmp_path / "bad.csv"), "--no-subsets"])
    assert res.exit_code == 2 and "row 3" in res.stderr
    res = runner.invoke(app, ["evaluate", str(xor_run), str(tmp_path / "bad.csv"), "--no-subsets",
                              "--on-error", "missing"])
    assert res.exit_code == 0, res.output
    assert "decode: 3 values treated as missing" in res.stdout and "a1=1, b2=2" in res.stdout


# ------------------------------------------------------------------------------------------- run folders
@pytest.mark.parametrize("command", ["fit", "align"])
def test_a_run_cannot_go_to_stdout(command, tiny_csv, monkeypatch):
    _no_table_reading(monkeypatch)
    label = ["--label", "y"] if command == "fit" else []
    res = runner.invoke(app, [command, str(tiny_csv / "train.csv"), *label, "--out", "-"])
    assert res.exit_code == 2, res.output
    assert "a run is a folder" in res.stderr and res.stdout == ""


@pytest.mark.parametrize("command", ["fit", "align"])
def test_a_non_empty_out_folder_needs_overwrite(command, xor_run, tiny_csv, tmp_path, monkeypatch):
    _no_table_reading(monkeypatch)
    old = tmp_path / "old"
    shutil.copytree(xor_run, old)
    args = [command, str(tiny_csv / "train.csv"), *(["--label", "y"] if command == "fit" else []), "--out", str(old)]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "not empty" in res.stderr and "--overwrite" in res.stderr
    assert (old / "weights.safetensors").read_bytes() == (xor_run / "weights.safetensors").read_bytes()
    res = runner.invoke(app, args + ["--overwrite"])  # accepted: the next step is reading the table
    assert res.exit_code == 1 and "the training table was read" in str(res.exception)
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, [*args[:-1], str(tmp_path / "empty")])  # an empty folder is fine
    assert res.exit_code == 1 and "the training table was read" in str(res.exception)


def test_overwrite_replaces_the_run_and_its_stale_checkpoint(xor_run, tiny_csv, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(xor_run, old)
    assert (old / "checkpoints" / "best.safetensors").exists()
    res = runner.invoke(app, ["fit", str(tiny_csv / "train.csv"), "--label", "y", "--out", str(old), "--overwrite",
                              "--epochs", "1", "--val-fraction", "0", *FAST])
    assert res.exit_code == 0, res.output
    assert json.loads((old / "config.json").read_text())["train"]["epochs"] == 1
    assert not (old / "checkpoints" / "best.safetensors").exists()  # no validation this time: no best checkpoint


@pytest.mark.parametrize("command, flags", [
    ("fit", ["--patience", "--val-fraction", "--encoders", "--time-limit", "--threads", "--overwrite"]),
    ("align", ["--patience", "--val-fraction", "--encoders", "--time-limit", "--threads", "--overwrite"]),
    ("evaluate", ["--threads"]),
    ("predict", ["--threads"]),
])
def test_the_flags_exist(command, flags):
    res = runner.invoke(app, [command, "--help"])
    assert res.exit_code == 0 and all(f in res.stdout for f in flags), res.stdout


def test_time_limit_must_be_positive(tiny_csv, tmp_path, monkeypatch):
    _no_table_reading(monkeypatch)
    res = runner.invoke(app, ["fit", str(tiny_csv / "train.csv"), "--label", "y", "--out", str(tmp_path / "r"),
                              "--time-limit", "0"])
    assert res.exit_code == 2 and "--time-limit expects a positive number of minutes" in res.stderr
