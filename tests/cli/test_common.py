"""``cli/common.py`` and ``cli/app.py``: polymodal's own errors -> stderr + exit 2, bugs -> traceback + exit 1;
user data printed verbatim (markup off); the command table; command modules import ``common`` only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from polymodal.cli import common
from polymodal.cli.app import COMMANDS, app
from polymodal.errors import SchemaError, UnknownNameError

runner = CliRunner()
CLI = Path(common.__file__).parent


def test_own_errors_go_to_stderr_with_exit_code_2(tiny_csv, tmp_path):
    res = runner.invoke(app, ["evaluate", str(tmp_path / "nothing"), str(tiny_csv / "test.csv")])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and "is not a run folder" in res.stderr
    assert res.stdout == "" and "Traceback" not in res.output


def test_a_bug_propagates_with_its_traceback(tiny_csv, tmp_path, monkeypatch):
    import polymodal.recipes.fit as recipe

    def broken(*args, **kwargs):
        raise RuntimeError("boom: a real bug")

    monkeypatch.setattr(recipe, "fit", broken)
    res = runner.invoke(app, ["fit", str(tiny_csv / "train.csv"), "--label", "y", "--out", str(tmp_path / "r")])
    assert res.exit_code == 1
    assert isinstance(res.exception, RuntimeError) and "boom" in str(res.exception)
    assert "error:" not in res.stderr  # not disguised as a user error


def test_bugs_are_exit_1_but_ctrl_c_is_130():
    @common.guarded
    def cmd(what: str) -> None:
        raise {"bug": RuntimeError("boom"), "ctrl-c": KeyboardInterrupt()}[what]

    with pytest.raises(RuntimeError):
        cmd("bug")
    with pytest.raises(typer.Exit) as e:
        cmd("ctrl-c")
    assert e.value.exit_code == 130


def test_user_data_keeps_its_square_brackets(tiny_csv, tmp_path, monkeypatch):
    import polymodal.recipes.fit as recipe

    def refuse(*args, **kwargs):
        raise SchemaError("use= names unknown modalities ['x']; the table gives ['a', 'b'] in [bold]odd[/bold].csv")

    monkeypatch.setattr(recipe, "fit", refuse)
    res = runner.invoke(app, ["fit", str(tiny_csv / "train.csv"), "--label", "y", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert "unknown modalities ['x']; the table gives ['a', 'b'] in [bold]odd[/bold].csv" in res.stderr


def test_guarded_keeps_the_signature_and_maps_errors():
    @common.guarded
    def cmd(name: str = "x") -> str:
        """Doc."""
        if name == "bad":
            raise UnknownNameError("fusion", name, ["late", "concat"])
        if name == "bug":
            raise KeyError("not ours")
        return name

    assert cmd() == "x" and cmd.__doc__ == "Doc." and cmd.__wrapped__.__name__ == "cmd"
    with pytest.raises(typer.Exit) as e:
        cmd("bad")
    assert e.value.exit_code == 2
    with pytest.raises(KeyError):
        cmd("bug")


def test_numbers_are_formatted_by_type():
    import numpy as np

    assert [common.fmt(v) for v in (4, np.int64(4), 0.5, np.float32(0.25), True, None, "c4")] == [
        "4", "4", "0.5000", "0.2500", "True", "-", "c4"]
    assert common.fmt(12.345, ".1f") == "12.3" and common.fmt(1234.0, "d") == "1234"
    assert common.fmt(float("nan")) == "nan"


def test_tables_in_a_pipe_are_plain_and_full_width(capsys):
    headers = ["reducer", "budget", "tokens", "accuracy", "ms/batch", "throughput x", "FLOPs x", "MFLOPs/sample",
               "attn MB (peak layer)"]
    title = "token budgets: " + "/a/rather/long/path/to/a/run/folder" * 4
    common.print_table(title, headers, [["merge_with_a_long_name", 0.5, 12, 0.875, 1.5, 2.0, 2.1, 3.25, 0.5]])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == title  # the title on its own line, not wrapped into the table's width
    assert lines[1].split() == "reducer budget tokens accuracy ms/batch throughput x FLOPs x MFLOPs/sample attn MB " \
                               "(peak layer)".split()
    assert lines[2].split() == ["merge_with_a_long_name", "0.5000", "12", "0.8750", "1.5000", "2.0000", "2.1000",
                                "3.2500", "0.5000"]
    assert not any(ch in "\u2026\u2502\u2503\u2501" for line in lines for ch in line)  # no "reduc…", no box


def test_a_terminal_keeps_the_boxed_table(monkeypatch):
    import io

    from rich.console import Console

    buf = io.StringIO()
    monkeypatch.setattr(common, "out", Console(file=buf, force_terminal=True, width=100))
    common.print_table("evaluation", ["modalities used", "n"], [["all", 60]])
    assert "evaluation" in buf.getvalue() and "\u2503" in buf.getvalue()


def test_flag_parsers():
    assert common.pairs("a=x, b = y", "--f", "k=v") == {"a": "x", "b": "y"}
    assert common.groups("vitals=hr+bp,scan=ct") == {"vitals": ["hr", "bp"], "scan": ["ct"]}
    assert common.names(" a, b,,c ") == ["a", "b", "c"] and common.names("") is None
    assert common.budget("0.5") == 0.5 and common.budget("image=0.25,audio=0.5") == {"image": 0.25, "audio": 0.5}
    assert common.tokens_flag(None, None) is None
    assert common.tokens_flag("0.5", "prune") == {"budget": 0.5, "reducer": "prune"}
    assert common.given(a=None, b=0, c=False) == {"b": 0, "c": False}
    assert common.layered({"epochs": 2, "fusion": "transformer"}, ["train.epochs=1", "fusion.options.layers=4"]) == {
        "epochs": 1, "fusion": {"name": "transformer", "options": {"layers": 4}}}
    for bad in (lambda: common.budget("lots"), lambda: common.floats("1,x", "--noise"),
                lambda: common.pairs("a", "--kinds", "column=kind")):
        with pytest.raises(common.PolymodalError):
            bad()


def test_every_command_of_the_table_is_reachable():
    for name, _ in COMMANDS:
        res = runner.invoke(app, [*name.split(), "--help"])
        assert res.exit_code == 0, (name, res.output)
    readme = ["fit", "evaluate", "predict", "list", "datasets export", "align", "embed", "index build", "index info",
              "search", "zero-shot", "compare", "robustness", "explain", "bench tokens", "demo", "datasets list",
              "models", "report", "serve", "export", "catalog add", "catalog query", "catalog show", "catalog sources",
              "lm fit", "lm ask", "lm evaluate", "pretrain", "generate"]
    assert sorted(readme) == sorted(n for n, _ in COMMANDS)


def test_command_modules_import_common_only():
    for path in CLI.glob("*.py"):
        if path.name in ("__init__.py", "app.py", "common.py"):
            continue
        tree = ast.parse(path.read_text())
        found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        found |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        found |= {f"polymodal.cli.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                  and n.module == "polymodal.cli" for a in n.names}
        cli = {m for m in found if m.startswith("polymodal.cli")} - {"polymodal.cli"}
        assert cli == {"polymodal.cli.common"}, (path.name, cli)
