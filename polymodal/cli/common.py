"""What every command module shares: the two consoles, the error guard, flag parsers, the table writer and the
config-option helpers (``--preset`` / ``--config`` / ``--set``). Command modules import this module only.

Results go to stdout (``out``), errors to stderr (``err``). User data (paths, reprs, messages) is printed with
Rich markup off, so square brackets in it survive. ``guarded`` turns polymodal's own errors (``PolymodalError``:
config, schema, decode, unknown-name errors) into one paragraph on stderr and exit code 2; any other exception is
a bug and propagates with its traceback (exit code 1).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn, Optional, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from polymodal.errors import PolymodalError

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

F = TypeVar("F", bound=Callable[..., Any])


# ------------------------------------------------------------------------------------------------------- printing
def say(text: Any) -> None:
    """Print one line of (user) text to stdout, markup off."""
    out.print(str(text), markup=False)


def raw(text: str) -> None:
    """Machine-readable output (JSON lines): straight to stdout, untouched by Rich."""
    typer.echo(text)


def done(label: str, text: Any) -> None:
    """``label`` in green, then ``text`` verbatim: ``saved runs/m1 (Model(...))``."""
    out.print(Text.assemble((label, "green"), " ", str(text)))


def fail(message: str, code: int = 2) -> NoReturn:
    """``error: message`` on stderr, then exit with ``code`` (no traceback)."""
    err.print(Text.assemble(("error:", "bold red"), " ", " ".join(message.split())))
    raise typer.Exit(code)


def error_message(e: BaseException) -> str:
    """``str(e)``, except that a ``KeyError`` without its own ``__str__`` is not shown quoted."""
    if isinstance(e, KeyError) and type(e).__str__ is KeyError.__str__ and e.args:
        return str(e.args[0])
    return str(e)


def guarded(fn: F) -> F:
    """Decorate a command: polymodal's own errors -> message on stderr, exit 2. Anything else propagates."""

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PolymodalError as e:
            fail(error_message(e))

    return command  # type: ignore[return-value]


def fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def table(title: str, headers: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    """A Rich table whose title and cells are plain text (markup off); floats to 4 decimals."""
    t = Table(title=Text(title))
    for i, h in enumerate(headers):
        t.add_column(Text(str(h)), justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*[Text(fmt(v)) for v in r])
    return t


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


def write_table(frame: Any, path: Path, *, other_as_csv: bool = True) -> None:
    """Write a DataFrame by file extension: .parquet/.pq, .jsonl/.ndjson, .csv (row index as ``row``). Any other
    extension is written as CSV, or refused when ``other_as_csv`` is False."""
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
