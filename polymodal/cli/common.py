"""What every command module shares: the two consoles, the error guard, flag parsers, tables, the table writer,
the run-folder and thread flags, and the config-option helpers (``--preset`` / ``--config`` / ``--set``). Command
modules import this module only.

Streams: results go to stdout (``out``); errors, warnings, notes and training progress to stderr (``err``). User
data (paths, reprs, messages, docstrings) is printed with Rich markup off, so square brackets in it survive.
When a stream is not a terminal (a pipe, a log file, CI) its console is as wide as the text: nothing is wrapped
at 80 columns and no table cell is truncated; tables are then plain text (title line, aligned columns, no box).

Exit codes (``EXIT_CODES``, shown by ``polymodal --help``): 0 success; 2 usage error or bad input (``guarded``
turns polymodal's own errors, ``PolymodalError``: config, schema, decode, unknown-name errors, into one ``error:``
paragraph on stderr; Click's usage errors exit 2 as well); 1 internal error (any other exception is a bug and
propagates with its traceback); 130 interrupted (Ctrl-C: one ``interrupted`` line on stderr).
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn, Optional, TypeVar

import typer
from rich.console import Console, ConsoleDimensions
from rich.table import Table
from rich.text import Text

from polymodal.errors import PolymodalError

PIPE_WIDTH = 10_000  # the width of a console whose stream is not a terminal: never wrap, never truncate

EXIT_CODES = """\b
Exit codes:
  0    success
  1    internal error: a bug (the traceback is printed)
  2    usage error or bad input: a bad flag, an unknown name, an unreadable table, an undecodable value
       (one 'error:' line on stderr)
  130  interrupted (Ctrl-C; fit / align save the best weights so far)
Results go to stdout; errors, warnings and progress go to stderr."""


class _Console(Console):
    """A Rich console that keeps its terminal width in a terminal and is ``PIPE_WIDTH`` wide anywhere else."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        return size if self.is_terminal else ConsoleDimensions(PIPE_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


out = _Console(highlight=False, soft_wrap=True, emoji=False)
err = _Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

F = TypeVar("F", bound=Callable[..., Any])


# ------------------------------------------------------------------------------------------------------- printing
def say(text: Any) -> None:
    """Print one line of (user) text to stdout, markup off."""
    out.print(str(text), markup=False)


def note(text: Any) -> None:
    """Print one line of (user) text to stderr, markup off: what is not a result (``predict --out -``)."""
    err.print(str(text), markup=False)


def raw(text: str) -> None:
    """Machine-readable output (JSON lines): straight to stdout, untouched by Rich."""
    typer.echo(text)


def done(label: str, text: Any, *, stderr: bool = False) -> None:
    """``label`` in green, then ``text`` verbatim: ``saved runs/m1 (Model(...))``."""
    (err if stderr else out).print(Text.assemble((label, "green"), " ", str(text)))


def fail(message: str, code: int = 2) -> NoReturn:
    """``error: message`` on stderr, then exit with ``code`` (no traceback)."""
    err.print(Text.assemble(("error:", "bold red"), " ", " ".join(message.split())))
    raise typer.Exit(code)


def interrupted(message: str = "Ctrl-C") -> NoReturn:
    """``interrupted: message`` on stderr (one line), then exit 130."""
    err.print(Text.assemble(("interrupted:", "bold yellow"), " ", " ".join(message.split())))
    raise typer.Exit(130)


def error_message(e: BaseException) -> str:
    """``str(e)``, except that a ``KeyError`` without its own ``__str__`` is not shown quoted."""
    if isinstance(e, KeyError) and type(e).__str__ is KeyError.__str__ and e.args:
        return str(e.args[0])
    return str(e)


def guarded(fn: F) -> F:
    """Decorate a command: polymodal's own errors -> message on stderr, exit 2; Ctrl-C -> one line, exit 130.
    Anything else propagates (exit 1, with its traceback)."""

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PolymodalError as e:
            fail(error_message(e))
        except KeyboardInterrupt:
            interrupted()

    return command  # type: ignore[return-value]


def fmt(v: Any, spec: Optional[str] = None) -> str:
    """A table cell by type: ints as ints, other numbers to 4 decimals, anything else as ``str``. ``spec`` (a
    format spec such as ``".1f"`` or ``"d"``, for a column of seconds or of counts) overrides that for numbers."""
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return str(v)
    if isinstance(v, numbers.Integral) and not spec:
        return str(int(v))
    if not math.isfinite(float(v)):
        return str(float(v))
    if spec and spec.endswith("d"):
        return format(int(round(float(v))), spec)
    return format(float(v), spec or ".4f")


def table(title: Optional[str], headers: Iterable[str], rows: Iterable[Iterable[Any]],
          formats: Optional[Mapping[str, str]] = None, *, plain: bool = False) -> Table:
    """A Rich table whose title and cells are plain text (markup off), numbers formatted by type (``fmt``);
    ``formats`` maps a header to the format spec of its column. ``plain``: no box, no title styling."""
    headers = [str(h) for h in headers]
    specs = [(formats or {}).get(h) for h in headers]
    style: dict[str, Any] = dict(box=None, show_edge=False, pad_edge=False, header_style="") if plain else {}
    t = Table(title=None if title is None else Text(title), **style)
    for i, h in enumerate(headers):
        t.add_column(Text(h), justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*[Text(fmt(v, spec)) for v, spec in zip(r, specs)])
    return t


def print_table(title: str, headers: Iterable[str], rows: Iterable[Iterable[Any]],
                formats: Optional[Mapping[str, str]] = None) -> None:
    """A table on stdout: boxed, title on top, in a terminal; else plain text (the title on its own line, then
    aligned columns), full width."""
    if out.is_terminal:
        out.print(table(title, headers, rows, formats))
        return
    say(title)
    out.print(table(None, headers, rows, formats, plain=True))


# ---------------------------------------------------------------------------------------------------- flag parsers
def pairs(text: Optional[str], flag: str, example: str) -> dict[str, str] | None:
    """``"a=x,b=y"`` -> ``{"a": "x", "b": "y"}``; a malformed entry names the flag and the expected form."""
    if not text:
        return None
    result = {}
    for item in text.split(","):
        if "=" not in item:
            raise PolymodalError(f"{flag} expects {example} entries separated by commas, got {item!r}")
        key, value = item.split("=", 1)
        result[key.strip()] = value.strip()
    return result


def kinds(text: Optional[str]) -> dict[str, str] | None:
    return pairs(text, "--kinds", "column=kind")


def groups(text: Optional[str]) -> dict[str, list[str]] | None:
    found = pairs(text, "--group", "name=col1+col2")
    return None if found is None else {k: [c.strip() for c in v.split("+") if c.strip()] for k, v in found.items()}


def names(text: Optional[str]) -> list[str] | None:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; empty or None -> None."""
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def floats(text: Optional[str], flag: str, example: str = "0,0.1,0.3,0.5") -> list[float]:
    if not text:
        return []
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise PolymodalError(f"{flag} expects comma-separated numbers such as {example}; got {text!r}") from None


def budget(text: Optional[str]) -> float | dict[str, float] | None:
    """``--token-budget``: ``"0.5"`` -> 0.5; ``"image=0.25,audio=0.5"`` -> a dict per modality."""
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    try:
        if "=" not in text:
            return float(text)
        return {k: float(v) for k, v in (pairs(text, "--token-budget", "modality=fraction") or {}).items()}
    except (ValueError, PolymodalError):
        raise PolymodalError(
            f"--token-budget expects a fraction like 0.5 or per-modality pairs like image=0.25,audio=0.5, got {text!r}"
        ) from None


TOKEN_BUDGET_HELP = "Keep this fraction of each modality's tokens (0-1], or per modality: image=0.25,audio=0.5"
REDUCER_HELP = "Token reducer: merge | prune | pool | zip (see `polymodal list reducers`)"
ON_ERROR_HELP = "Undecodable values: raise | missing (counted and reported)"


def is_stdout(path: Optional[Path]) -> bool:
    """``--out -``: write to stdout."""
    return path is not None and str(path) == "-"


def write_table(frame: Any, path: Path, *, other_as_csv: bool = True, stdout: bool = False) -> None:
    """Write a DataFrame by file extension: .parquet/.pq, .jsonl/.ndjson, .csv (row index as ``row``). Any other
    extension is written as CSV, or refused when ``other_as_csv`` is False. ``-`` is CSV on stdout where the
    command allows it (``stdout``), else refused."""
    if is_stdout(path):
        if not stdout:
            raise PolymodalError("--out - (stdout) is not supported by this command: give a file name "
                                 "(.parquet, .jsonl or .csv)")
        typer.echo(frame.to_csv(index_label="row"), nl=False)
        return
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".jsonl", ".ndjson", ".csv") and not other_as_csv:
        raise PolymodalError(f"cannot write {path.name!r}: use a .parquet, .jsonl or .csv file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".parquet", ".pq"):
        frame.to_parquet(path)
    elif suffix in (".jsonl", ".ndjson"):
        frame.reset_index().to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index_label="row")


def write_json(data: Any, path: Path) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))


# ------------------------------------------------------------------------------------------- config from the CLI
def preset_option() -> Any:
    return typer.Option(None, "--preset", help="Named preset to start from (see `polymodal list presets`)")


def config_option() -> Any:
    return typer.Option(None, "--config", help="YAML / JSON config file (flat options or model: / train: sections)")


def set_option() -> Any:
    return typer.Option(
        None, "--set", metavar="KEY.PATH=VALUE",
        help="Override one config value, repeatable: --set fusion.options.layers=4 --set epochs=3 "
             "(precedence: --preset < --config < flags < --set)",
    )


def given(**flags: Any) -> dict[str, Any]:
    """The flags the user gave (every config flag defaults to None, so it overrides only when given)."""
    return {k: v for k, v in flags.items() if v is not None}


def layered(flags: Mapping[str, Any], sets: Optional[Iterable[str]]) -> dict[str, Any]:
    """One options dict for ``fit`` / ``align``: the explicit flags, then ``--set`` over them. A ``--set`` key may
    start with its section, as in a run's config.json (``--set train.epochs=3`` = ``--set epochs=3``)."""
    from polymodal.config import merge, parse_sets
    from polymodal.config.io import flatten_sections

    return merge(dict(flags), flatten_sections(parse_sets(list(sets or []))))


def encoder_flag(text: Optional[str]) -> dict[str, str] | None:
    """``--encoders image=efficientnet_lite0,text=minilm`` -> ``{"image": "efficientnet_lite0", ...}``."""
    return pairs(text, "--encoders", "modality=encoder")


def tokens_flag(token_budget: Optional[str], reducer: Optional[str]) -> dict[str, Any] | None:
    """``--token-budget`` / ``--reducer`` -> the ``tokens`` option (only the keys given)."""
    spec = given(budget=budget(token_budget), reducer=reducer or None)
    return spec or None


# ------------------------------------------------------------------------------------- run folders, threads, time
RUN_FILES = ("config.json", "schema.json", "weights.safetensors", "report.json")
CHECKPOINT = Path("checkpoints") / "best.safetensors"


def overwrite_option() -> Any:
    return typer.Option(False, "--overwrite", help="Replace the run in an existing, non-empty --out folder")


def threads_option() -> Any:
    return typer.Option(None, "--threads", min=1, metavar="N",
                        help="CPU threads for torch (torch.set_num_threads; default: torch's own choice)")


def time_limit_option() -> Any:
    return typer.Option(None, "--time-limit", metavar="MINUTES",
                        help="Stop training after this many minutes, keeping the best weights so far")


def check_run_out(out: Path, overwrite: bool) -> None:
    """``fit`` / ``align --out``: a run is a folder, so ``-`` is refused; an existing folder that holds anything
    is refused unless ``--overwrite``. Checked before the table is read."""
    if is_stdout(out):
        raise PolymodalError("--out - (stdout) cannot hold a run: a run is a folder (config, schema, weights, "
                             "report); give a folder path, e.g. --out runs/m1")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise PolymodalError(f"--out folder {str(out)!r} already exists and is not empty: pass --overwrite to "
                             "replace the run in it, or choose a new folder")


@contextlib.contextmanager
def run_folder(out: Path) -> Iterator[None]:
    """Around ``fit`` / ``align``: afterwards, a best-weights checkpoint left by an earlier run in the same folder
    (``--overwrite``; this run wrote none, e.g. without validation) is removed, so the folder holds one run."""
    ckpt = out / CHECKPOINT
    started = time.time()
    yield
    if ckpt.exists() and ckpt.stat().st_mtime < started:
        ckpt.unlink()


def minutes(value: Optional[float]) -> Optional[float]:
    """``--time-limit``: a positive number of minutes (the ``max_minutes`` training option)."""
    if value is not None and not value > 0:
        raise PolymodalError(f"--time-limit expects a positive number of minutes, got {value:g}")
    return value


def set_threads(n: Optional[int]) -> None:
    """``--threads N``: torch's intra-op CPU threads, set before any work."""
    if n is not None:
        import torch

        torch.set_num_threads(int(n))


@contextlib.contextmanager
def training() -> Iterator[None]:
    """Around a recipe that trains: its Ctrl-C warning is not printed (``stop_if_interrupted`` says it, once)."""
    import warnings

    from polymodal.train.loop import TrainingInterrupted

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=TrainingInterrupted)
        yield


def stop_if_interrupted(training_report: Mapping[str, Any], out: Path) -> None:
    """After a Ctrl-C in training the recipe returned (and saved) the best weights so far: say so, exit 130."""
    if not training_report.get("interrupted"):
        return
    best = training_report.get("best_epoch")
    kept = f"the best weights so far (epoch {best})" if best else "the last weights (no validation epoch finished)"
    interrupted(f"training stopped after {training_report.get('epochs_run')} epoch(s); saved {kept} to {out}")


def decode_note(report: Optional[Mapping[str, Any]]) -> Optional[str]:
    """``3 values treated as missing (...)`` from a decode report dict, or None when nothing was."""
    if not report or not (report.get("errors") or report.get("dropped_rows")):
        return None
    from polymodal.data.kinds.base import DecodeReport

    keys = ("errors", "examples", "missing", "dropped_rows", "causes")
    return "decode: " + DecodeReport(**{k: report[k] for k in keys if k in report}).summary()


# --- the HTML report other commands write next to their outputs (polymodal/report; `polymodal report`)
def beside(path: Path) -> Path:
    """The report of a result file: the same name with ``.html`` (``metrics.json`` -> ``metrics.html``)."""
    return path.with_name(path.name + ".html") if path.suffix.lower() in (".html", "") else path.with_suffix(".html")


def auto_report(sources: list[Any], out: Path, data: Any = None) -> None:
    """The report another command writes next to its output; a failure is a warning (the results are saved)."""
    try:
        from polymodal.report import report_of

        report_of(sources, out, data=data)
    except Exception as e:  # noqa: BLE001  (the command's own results are written; the page is a bonus)
        note(f"warning: no report written to {out}: {error_message(e)}".splitlines()[0])
        return
    done("wrote", out)
