"""JSON properties in SQL, alike on PostgreSQL (jsonb) and SQLite (JSON1).

Every query of the store is written once with SQLAlchemy Core; only these
expressions compile differently per engine, because the two spell JSON access
differently. Each reads one property of a JSON document by its path (``plan``,
or ``address.city`` for a nested one):

* ``json_kind``: its JSON type, named alike on both engines: ``string``,
  ``number``, ``boolean``, ``null``, ``object`` or ``array`` (NULL when absent);
* ``json_text``: a string's text, or the JSON text of any other value;
* ``json_array_elements``: the elements of an array property, as a table
  (nothing when the property is missing or not an array).

``json_equals`` compares a property with a JSON value by kind and value, so
``10`` matches ``10`` and ``10.0`` but never the string ``"10"``, and ``true``
never ``"true"``. ``json_value`` turns a (kind, text) pair read back into the
Python value. ``epoch_micros`` gives a timestamp column as microseconds since
1970 (the store keeps times as TIMESTAMPTZ on PostgreSQL, as microseconds on
SQLite).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import BigInteger, ColumnElement, Numeric, String, and_, case, cast, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

_KEY: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INTEGER: Final = re.compile(r"^-?[0-9]+$")


def property_path(path: str) -> tuple[str, ...]:
    """``"address.city"`` -> ``("address", "city")``; every part a plain identifier."""
    keys = tuple(path.split("."))
    if not all(_KEY.match(key) for key in keys):
        raise ValueError(f"{path!r} is not a property path such as plan or address.city")
    return keys


class _JsonPathFunction(FunctionElement[Any]):
    """``name(document, key, key, ...)``: the keys travel as bound parameters."""

    inherit_cache = True

    def __init__(self, document: ColumnElement[Any], keys: Sequence[str]) -> None:
        super().__init__(document, *(literal(key, String()) for key in keys))


class json_kind(_JsonPathFunction):
    type = String()
    inherit_cache = True


class json_text(_JsonPathFunction):
    type = String()
    inherit_cache = True


class _json_array(_JsonPathFunction):
    inherit_cache = True


class epoch_micros(FunctionElement[int]):
    type = BigInteger()
    inherit_cache = True


def json_array_elements(document: ColumnElement[Any], keys: Sequence[str]) -> Any:
    """The elements of the array at ``keys``, as a table with one column, ``value``."""
    return _json_array(document, keys).table_valued("value")


def json_equals(document: ColumnElement[Any], keys: Sequence[str], value: Any) -> Any:
    """The property at ``keys`` equals the JSON scalar ``value`` (kind and value)."""
    kind = json_kind(document, keys)
    text = json_text(document, keys)
    if isinstance(value, bool):
        return and_(kind == "boolean", text == ("true" if value else "false"))
    if isinstance(value, int | float):
        number = case((kind == "number", cast(text, Numeric())), else_=None)
        return and_(kind == "number", number == literal(value, Numeric()))
    if isinstance(value, str):
        return and_(kind == "string", text == value)
    raise TypeError(f"only strings, numbers and booleans can be compared, not {value!r}")


def json_value(kind: str | None, text: str | None) -> Any:
    """The Python value of a property read as (``json_kind``, ``json_text``)."""
    if kind is None or kind == "null" or text is None:
        return None
    if kind == "string":
        return text
    if kind == "boolean":
        return text == "true"
    if kind == "number":
        return int(text) if _INTEGER.match(text) else float(text)
    return json.loads(text)


def value_order(value: Any) -> tuple[int, float, str]:
    """Sorts JSON values alike on both engines: numbers by value, then strings, then the rest."""
    if isinstance(value, bool) or value is None:
        return (2, 0.0, json.dumps(value))
    if isinstance(value, int | float):
        return (0, float(value), "")
    if isinstance(value, str):
        return (1, 0.0, value)
    return (3, 0.0, json.dumps(value, sort_keys=True))


# --- PostgreSQL: jsonb ----------------------------------------------------------------


def _arguments(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> list[str]:
    return [compiler.process(clause, **kw) for clause in element.clauses]


@compiles(json_kind, "postgresql")
def _pg_kind(element: json_kind, compiler: SQLCompiler, **kw: Any) -> str:
    return f"jsonb_typeof(jsonb_extract_path({', '.join(_arguments(element, compiler, **kw))}))"


@compiles(json_text, "postgresql")
def _pg_text(element: json_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f"jsonb_extract_path_text({', '.join(_arguments(element, compiler, **kw))})"


@compiles(_json_array, "postgresql")
def _pg_array(element: _json_array, compiler: SQLCompiler, **kw: Any) -> str:
    value = f"jsonb_extract_path({', '.join(_arguments(element, compiler, **kw))})"
    return (
        f"jsonb_array_elements(CASE jsonb_typeof({value}) WHEN 'array' THEN {value} "
        "ELSE '[]'::jsonb END)"
    )


@compiles(epoch_micros, "postgresql")
def _pg_epoch_micros(element: epoch_micros, compiler: SQLCompiler, **kw: Any) -> str:
    [column] = _arguments(element, compiler, **kw)
    return f"CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT)"


# --- SQLite: JSON1 ----------------------------------------------------------------------


def _sqlite_path(
    element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any
) -> tuple[str, str]:
    document, *keys = _arguments(element, compiler, **kw)
    # Keys are plain identifiers (property_path), so '$.' || key needs no quoting.
    return document, " || ".join(["'$'", *(f"'.' || {key}" for key in keys)])


@compiles(json_kind, "sqlite")
def _sqlite_kind(element: json_kind, compiler: SQLCompiler, **kw: Any) -> str:
    document, path = _sqlite_path(element, compiler, **kw)
    return (
        f"CASE json_type({document}, {path}) WHEN 'integer' THEN 'number' "
        "WHEN 'real' THEN 'number' WHEN 'text' THEN 'string' WHEN 'true' THEN 'boolean' "
        f"WHEN 'false' THEN 'boolean' ELSE json_type({document}, {path}) END"
    )


@compiles(json_text, "sqlite")
def _sqlite_text(element: json_text, compiler: SQLCompiler, **kw: Any) -> str:
    document, path = _sqlite_path(element, compiler, **kw)
    return (
        f"CASE json_type({document}, {path}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
        f"ELSE CAST(json_extract({document}, {path}) AS TEXT) END"
    )


@compiles(_json_array, "sqlite")
def _sqlite_array(element: _json_array, compiler: SQLCompiler, **kw: Any) -> str:
    document, path = _sqlite_path(element, compiler, **kw)
    return (
        f"json_each(CASE json_type({document}, {path}) WHEN 'array' "
        f"THEN json_extract({document}, {path}) ELSE '[]' END)"
    )


@compiles(epoch_micros, "sqlite")
def _sqlite_epoch_micros(element: epoch_micros, compiler: SQLCompiler, **kw: Any) -> str:
    [column] = _arguments(element, compiler, **kw)
    return column
