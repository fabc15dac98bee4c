"""The ``polymodal`` command line, assembled from one table (the way litgpt lists its verbs in ``PARSER_DATA``).

``COMMANDS`` maps a command name to ``"module:function"``; a name with a space is a subcommand of the group named
by its first word (``GROUPS``: ``datasets``, ``index``, ``bench``). The command modules are cheap to import (typer
and ``cli/common.py`` only); the library (torch, Lightning, the encoders) loads inside each command, on use.

Help text is printed verbatim (``rich_markup_mode=None``: no Rich markup, so square brackets in docstrings and
help strings survive) and tracebacks of internal errors are Python's own, plain text. ``polymodal --version``
prints ``polymodal <version>``; the exit codes are the ``--help`` epilog (``common.EXIT_CODES``).
"""

from __future__ import annotations

import importlib
import os

import typer

from polymodal.cli.common import EXIT_CODES

COMMANDS: list[tuple[str, str]] = [
    ("fit", "polymodal.cli.train:fit"),
    ("evaluate", "polymodal.cli.train:evaluate"),
    ("predict", "polymodal.cli.train:predict"),
    ("align", "polymodal.cli.align:align"),
    ("embed", "polymodal.cli.align:embed"),
    ("zero-shot", "polymodal.cli.align:zero_shot"),
    ("index build", "polymodal.cli.index:build"),
    ("index info", "polymodal.cli.index:info"),
    ("search", "polymodal.cli.index:search"),
    ("compare", "polymodal.cli.robustness:compare"),
    ("robustness", "polymodal.cli.robustness:robustness"),
    ("explain", "polymodal.cli.robustness:explain"),
    ("bench tokens", "polymodal.cli.tokens:bench_tokens"),
    ("list", "polymodal.cli.info:list_parts"),
    ("datasets list", "polymodal.cli.info:datasets_list"),
    ("datasets export", "polymodal.cli.info:datasets_export"),
    ("models", "polymodal.cli.models:models"),
    ("demo", "polymodal.cli.info:demo"),
    ("report", "polymodal.cli.report:report"),
    ("serve", "polymodal.cli.serve:serve"),
    ("export", "polymodal.cli.export:export"),
    ("catalog add", "polymodal.cli.catalog:add"),
    ("catalog query", "polymodal.cli.catalog:query"),
    ("catalog show", "polymodal.cli.catalog:show"),
    ("catalog sources", "polymodal.cli.catalog:sources"),
    ("lm fit", "polymodal.cli.lm:fit"),
    ("lm ask", "polymodal.cli.lm:ask"),
    ("lm evaluate", "polymodal.cli.lm:evaluate"),
    ("pretrain", "polymodal.cli.pretrain:pretrain"),
    ("generate", "polymodal.cli.pretrain:generate"),
]

GROUPS: dict[str, str] = {
    "datasets": "Built-in real datasets.",
    "index": "Persistent cross-modal search index (LanceDB on disk).",
    "bench": "Speed / accuracy / FLOPs measurements of a trained run.",
    "catalog": "A multimodal data catalogue: sources, subjects, provenance, de-duplication, cohorts (DuckDB).",
    "lm": "Multimodal tokens into a causal language model: train a connector, ask, evaluate.",
}


def _target(spec: str):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


PLAIN = dict(rich_markup_mode=None, pretty_exceptions_enable=False)  # verbatim help, Python's own tracebacks


def _version(value: bool) -> None:
    if value:
        from polymodal import __version__

        typer.echo(f"polymodal {__version__}")
        raise typer.Exit()


def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Multimodal machine learning from a table of records."""


def build_app() -> typer.Typer:
    """The Typer app with every command of ``COMMANDS``, in table order."""
    root = typer.Typer(name="polymodal", add_completion=False, no_args_is_help=True,
                       help="Multimodal machine learning from a table of records.", epilog=EXIT_CODES, **PLAIN)
    root.callback()(_root)
    groups: dict[str, typer.Typer] = {}
    for name, spec in COMMANDS:
        group, _, sub = name.partition(" ")
        if not sub:
            root.command(name)(_target(spec))
            continue
        if group not in groups:
            groups[group] = typer.Typer(no_args_is_help=True, help=GROUPS[group], **PLAIN)
            root.add_typer(groups[group], name=group)
        groups[group].command(sub)(_target(spec))
    return root


app = build_app()


def main() -> None:  # pragma: no cover
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
