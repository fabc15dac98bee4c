"""``--where``: a SQL condition on the per-subject metadata, checked before it runs.

The condition is parsed by DuckDB's own parser (``json_serialize_sql``), never by a regex, and its syntax tree
must be a plain expression: column references that name catalogue columns (or ``subject``, ``n_records``),
constants, comparisons, ``AND`` / ``OR`` / ``NOT``, ``IN``, ``BETWEEN``, ``IS [NOT] NULL``, ``LIKE``, casts,
``CASE`` and a short list of scalar functions. No subquery, no table, no other function. The checked text then
runs inside ``SELECT ... FROM subjects WHERE (...)`` on an in-memory DuckDB connection that has already loaded the
catalogue and then switched file access off and locked its configuration (``engine.py``), so even an expression
that slipped through could neither read nor write a file, nor change the catalogue.

Why not bind the values as parameters: the condition is the user's own expression, of any shape (``age > 60 AND
site IN ('a', 'b')``), not a template with holes. Validating the parsed tree and running it where nothing can be
reached is the safe form of that; parameters are used wherever the catalogue builds SQL itself (``show``).
"""

from __future__ import annotations

import json
from typing import Any

from polymodal.catalog.errors import CatalogError
from polymodal.errors import unknown_message

CLASSES = {"COLUMN_REF", "CONSTANT", "COMPARISON", "CONJUNCTION", "BETWEEN", "OPERATOR", "FUNCTION", "CAST", "CASE"}
OPERATORS = {"OPERATOR_NOT", "OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL", "COMPARE_IN", "COMPARE_NOT_IN"}
FUNCTIONS = {
    "+", "-", "*", "/", "//", "%", "||", "~~", "!~~", "~~*", "!~~*",  # arithmetic, concatenation, [I]LIKE
    "lower", "upper", "length", "strlen", "trim", "abs", "round", "floor", "ceil", "coalesce", "contains",
    "starts_with", "ends_with", "prefix", "suffix", "regexp_matches", "list_contains", "len", "isnan", "greatest",
    "least",
}
TABLE = "subjects"


def _wrap(expr: str) -> str:
    # the newlines end a trailing `-- comment`, so it cannot swallow what the query adds after the condition
    return f"SELECT 1 FROM {TABLE} WHERE (\n{expr}\n)"


def _parse(con: Any, sql: str) -> dict[str, Any]:
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    if tree.get("error"):
        raise CatalogError(f"--where is not a valid condition: {tree.get('error_message', 'syntax error')}")
    return tree


def _walk(node: Any, columns: dict[str, str], found: list[str]) -> None:
    if isinstance(node, list):
        for n in node:
            _walk(n, columns, found)
        return
    if not isinstance(node, dict):
        return
    cls = node.get("class")
    if cls is not None:
        if cls not in CLASSES:
            raise CatalogError(f"--where may use columns, constants, comparisons, AND/OR/NOT, IN, BETWEEN, IS NULL, "
                               f"LIKE, CASE and simple functions; it contains a {cls.lower().replace('_', ' ')}")
        if cls == "OPERATOR" and node.get("type") not in OPERATORS:
            raise CatalogError(f"--where: the operator {node.get('type')} is not allowed here")
        if cls == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if name not in FUNCTIONS or node.get("distinct") or node.get("filter") or node.get("schema"):
                raise CatalogError(f"--where: the function {name!r} is not allowed; allowed: "
                                   f"{', '.join(sorted(f for f in FUNCTIONS if f.isidentifier()))}")
        if cls == "COLUMN_REF":
            names = node.get("column_names") or []
            key = names[-1].lower() if names else ""
            if len(names) != 1 or key not in columns:
                raise CatalogError(unknown_message("column in --where", ".".join(names), sorted(columns.values())))
            found.append(columns[key])
    for k, v in node.items():
        if k != "class":
            _walk(v, columns, found)


_REFERENCE: dict[str, Any] = {}


def _reference(con: Any) -> dict[str, Any]:
    """The parse of ``SELECT 1 FROM subjects WHERE (TRUE)`` without its condition (what every check compares)."""
    if not _REFERENCE:
        node = dict(_parse(con, _wrap("TRUE"))["statements"][0]["node"])
        node.pop("where_clause", None)
        _REFERENCE.update(node)
    return _REFERENCE


def check_where(con: Any, expr: str, columns: list[str]) -> tuple[str, list[str]]:
    """(the SQL condition to put after ``WHERE``, the columns it reads); ``CatalogError`` when it is not a plain
    condition over ``columns``."""
    if not isinstance(expr, str) or not expr.strip():
        raise CatalogError("--where is empty; give a condition such as \"age > 60\"")
    tree = _parse(con, _wrap(expr))
    if len(tree.get("statements", [])) != 1:
        raise CatalogError("--where must be one condition, not several statements")
    node = dict(tree["statements"][0]["node"])
    where = node.pop("where_clause", None)
    reference = _reference(con)
    if where is None or node != reference:
        raise CatalogError("--where must be a condition only (no GROUP BY, UNION, ORDER BY, LIMIT, ...)")
    found: list[str] = []
    _walk(where, {c.lower(): c for c in columns}, found)
    return f"(\n{expr}\n)", sorted(set(found))
