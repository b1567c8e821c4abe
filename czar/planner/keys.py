"""Rule ``find_key_restrictions``: director-key predicates that the director index can answer.

A top-level AND term of WHERE of the form ``t.key = c``, ``c = t.key``,
``t.key IN (c1, c2, ...)`` or ``t.key BETWEEN a AND b``, where ``key`` is the
director key of a director table or of a child table and the constants are
integers, means every row of ``t`` the query reads lies in a chunk the
director index maps those keys to.  The rule only records them
(``ctx.key_restrictions``); the engine does the lookup, because rules do no
I/O.  Other predicates on the key (``<``, ``>``, ``NOT IN``, ...) are simply
evaluated on every chunk: correct, with no pruning.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlglot import exp

from css import TableKind
from czar.planner.context import KeyRestriction, PlanContext, TableRef
from czar.planner.predicates import where_terms


def _integer(node: Any) -> int | None:
    negative = False
    while isinstance(node, exp.Neg):
        negative = not negative
        node = node.this
    if isinstance(node, exp.Literal) and not node.is_string:
        text = node.this
        if text.lstrip("-").isdigit():
            value = int(text)
            return -value if negative else value
    return None


def _key_ref(node: Any, ctx: PlanContext) -> TableRef | None:
    """The table whose director key ``node`` is, if it is one."""
    if not isinstance(node, exp.Column) or not node.table:
        return None
    for ref in ctx.partitioned:
        if ref.alias != node.table:
            continue
        table = ref.table
        if table.kind not in (TableKind.DIRECTOR, TableKind.CHILD) or not table.director_key:
            return None
        return ref if node.name.lower() == table.director_key.lower() else None
    return None


def _restriction(ref: TableRef, **bounds: Any) -> KeyRestriction:
    table = ref.table
    director = table.name if table.kind is TableKind.DIRECTOR else (table.director_table or table.name)
    child = table.name if table.kind is TableKind.CHILD else None
    return KeyRestriction(alias=ref.alias, database=table.database, director=director, child=child, **bounds)


def key_restriction_of(node: Any, ctx: PlanContext) -> KeyRestriction | None:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.EQ):
        for column, constant in ((node.this, node.expression), (node.expression, node.this)):
            ref = _key_ref(column, ctx)
            value = _integer(constant)
            if ref is not None and value is not None:
                return _restriction(ref, values=(value,))
        return None
    if isinstance(node, exp.In) and not node.args.get("query") and not node.args.get("unnest"):
        ref = _key_ref(node.this, ctx)
        values = [_integer(v) for v in node.expressions]
        if ref is not None and values and all(v is not None for v in values):
            return _restriction(ref, values=tuple(sorted({v for v in values if v is not None})))
        return None
    if isinstance(node, exp.Between):
        ref = _key_ref(node.this, ctx)
        low, high = _integer(node.args.get("low")), _integer(node.args.get("high"))
        if ref is not None and low is not None and high is not None:
            return _restriction(ref, low=low, high=high)
    return None


def find_key_restrictions(ctx: PlanContext) -> PlanContext:
    found = []
    for node in where_terms(ctx.statement.args.get("where")):
        restriction = key_restriction_of(node, ctx)
        if restriction is not None:
            found.append(restriction)
    return replace(ctx, key_restrictions=tuple(found))
