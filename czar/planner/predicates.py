"""The top-level AND terms of a statement, which the planner's rules read restrictions from.

Only a top-level term restricts every row the query reads (a term under OR
or NOT does not), so pruning, index lookups and join analysis look at these
terms alone.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp


def where_terms(where: Any) -> list[Any]:
    """The AND terms of a WHERE clause (parentheses around the whole clause removed)."""
    if where is None:
        return []
    node = where.this
    while isinstance(node, exp.Paren):
        node = node.this
    return list(node.flatten()) if isinstance(node, exp.And) else [node]


def join_terms(statement: exp.Select) -> list[Any]:
    """The AND terms of WHERE and of every JOIN ... ON."""
    terms = where_terms(statement.args.get("where"))
    for join in statement.args.get("joins") or []:
        on = join.args.get("on")
        if on is not None:
            terms.extend(on.flatten() if isinstance(on, exp.And) else [on])
    return terms
