"""Comparing result sets with the reference: column names, row count, values.

Floats compare with a relative tolerance of 1e-9; rows compare in order when
the query orders them, as a sorted multiset otherwise.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, cast

REL_TOL = 1e-9


def _normal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytearray):
        return bytes(value)
    return value


def values_equal(a: Any, b: Any) -> bool:
    a, b = _normal(a), _normal(b)
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=1e-12)
    return bool(a == b)


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, repr(type(_normal(v))), _normal(v) if v is not None else 0) for v in row)


def rows_equal(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]], *, ordered: bool) -> str | None:
    """None when equal, else a description of the first difference."""
    if len(got) != len(want):
        return f"{len(got)} rows, expected {len(want)}"
    if not ordered:
        got = sorted(got, key=_sort_key)
        want = sorted(want, key=_sort_key)
    for index, (g, w) in enumerate(zip(got, want, strict=True)):
        if len(g) != len(w) or not all(values_equal(x, y) for x, y in zip(g, w, strict=True)):
            return f"row {index}: {g!r} != {w!r}"
    return None


def run(connection: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        names = [d[0] for d in cursor.description or ()]
        return names, [tuple(row) for row in cursor.fetchall()]


def with_order_keys(sql: str) -> tuple[str, int] | None:
    """The query with its ORDER BY terms appended as extra result columns, and how many.

    Rows that tie on every ORDER BY term may come in any order, from MySQL as
    from the engine; the keys let :func:`ordered_rows_equal` compare each run of
    ties as a multiset and the runs in order.  None when the query cannot be
    rewritten so (no ORDER BY, DISTINCT, or a parse failure).
    """
    import sqlglot
    from sqlglot import exp

    try:
        statement = sqlglot.parse_one(sql, read="mysql")
    except Exception:
        return None
    if not isinstance(statement, exp.Select) or statement.args.get("distinct") is not None:
        return None
    order = statement.args.get("order")
    if order is None:
        return None
    items = list(statement.expressions)
    by_alias = {item.alias.lower(): item.this for item in items if isinstance(item, exp.Alias)}
    keys: list[exp.Expression] = []
    for term in order.expressions:
        expression = term.this
        if isinstance(expression, exp.Literal) and not expression.is_string:
            position = int(expression.this)
            if not 1 <= position <= len(items):
                return None
            item = items[position - 1]
            expression = item.this if isinstance(item, exp.Alias) else item
        elif isinstance(expression, exp.Column) and not expression.table and expression.name.lower() in by_alias:
            expression = by_alias[expression.name.lower()]
        keys.append(cast(exp.Expression, exp.alias_(expression.copy(), f"_order_key_{len(keys)}")))
    statement.set("expressions", items + keys)
    return statement.sql(dialect="mysql"), len(keys)


def ordered_rows_equal(
    got: list[tuple[Any, ...]], want_keyed: list[tuple[Any, ...]], key_count: int
) -> str | None:
    """Rows in order, where runs of rows tying on every ORDER BY key compare as multisets."""
    if len(got) != len(want_keyed):
        return f"{len(got)} rows, expected {len(want_keyed)}"
    start = 0
    while start < len(want_keyed):
        key = want_keyed[start][-key_count:]
        end = start + 1
        while end < len(want_keyed) and all(
            values_equal(a, b) for a, b in zip(want_keyed[end][-key_count:], key, strict=True)
        ):
            end += 1
        want_run = [row[:-key_count] for row in want_keyed[start:end]]
        difference = rows_equal(got[start:end], want_run, ordered=end - start == 1)
        if difference is not None:
            return f"rows {start}..{end - 1} (tied on the ORDER BY keys): {difference}"
        start = end
    return None
