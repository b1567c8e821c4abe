"""Comparing result sets with the reference: column names, row count, values.

Floats compare with a relative tolerance of 1e-9; rows compare in order when
the query orders them, as a sorted multiset otherwise.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

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
