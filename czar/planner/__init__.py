"""The query planner: SQL text -> :class:`QueryPlan`, as an ordered list of pure rules.

Each rule lives in a module named after what it does and maps a
:class:`PlanContext` to a new one; :data:`RULES` is the order they run in
(as in sqlglot's optimizer).  The planner's one-sentence contract: anything
that can be computed from one chunk's rows alone is turned into per-chunk
SQL and sent to the workers; the czar only combines chunk results with SQL
over the result table.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError as SqlglotParseError

from czar.catalog import CatalogSnapshot
from czar.errors import ParseError, UnsupportedQuery
from czar.planner.chunks import check_chunk_locality, restrict_chunks, rewrite_chunk_tables
from czar.planner.context import (
    CHUNK_TOKEN,
    EMPTY_CHUNK,
    REPLICATED_CHUNK,
    RESULT_TOKEN,
    PlanContext,
    QueryPlan,
    TableRef,
    sub_chunk_column,
)
from czar.planner.keys import find_key_restrictions
from czar.planner.resolve import (
    check_columns,
    check_supported,
    expand_stars,
    qualify_columns,
    resolve_tables,
)
from czar.planner.spatial import apply_spatial_restrictors
from czar.planner.split import split_query

Rule = Callable[[PlanContext], PlanContext]

RULES: tuple[Rule, ...] = (
    check_supported,
    resolve_tables,
    expand_stars,
    check_columns,
    qualify_columns,
    apply_spatial_restrictors,
    find_key_restrictions,
    check_chunk_locality,
    split_query,
    rewrite_chunk_tables,
    restrict_chunks,
)

__all__ = [
    "CHUNK_TOKEN",
    "EMPTY_CHUNK",
    "REPLICATED_CHUNK",
    "RESULT_TOKEN",
    "RULES",
    "PlanContext",
    "QueryPlan",
    "TableRef",
    "package",
    "parse_select",
    "plan",
    "plan_context",
]


def parse_select(sql: str) -> exp.Select:
    """Parse one SELECT statement (MySQL dialect) or raise a 1064/1235 error."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="mysql") if s is not None]
    except SqlglotParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        near = first.get("highlight") or ""
        line = first.get("line")
        raise ParseError(
            "You have an error in your SQL syntax; check the manual that corresponds to your "
            f"MariaDB server version for the right syntax to use near '{near}' at line {line or 1}"
        ) from exc
    if len(statements) != 1:
        raise UnsupportedQuery("exactly one statement per query is supported")
    statement = statements[0]
    if isinstance(statement, exp.Union | exp.Intersect | exp.Except):
        raise UnsupportedQuery("UNION / INTERSECT / EXCEPT are not supported")
    if not isinstance(statement, exp.Select):
        raise UnsupportedQuery(f"statement {statement.key.upper()} is not supported")
    return statement


def plan(
    sql: str,
    catalog: CatalogSnapshot,
    default_db: str | None,
    statement: exp.Select | None = None,
    rules: tuple[Rule, ...] = RULES,
) -> QueryPlan:
    """Run every rule and package the result."""
    return package(plan_context(sql, catalog, default_db, statement, rules))


def plan_context(
    sql: str,
    catalog: CatalogSnapshot,
    default_db: str | None,
    statement: exp.Select | None = None,
    rules: tuple[Rule, ...] = RULES,
) -> PlanContext:
    """The context after every rule (what :func:`package` makes the plan of; the plan cache reads it too)."""
    ctx = PlanContext(
        sql=sql,
        statement=statement if statement is not None else parse_select(sql),
        catalog=catalog,
        default_db=default_db,
    )
    for rule in rules:
        ctx = rule(ctx)
    return ctx


def package(ctx: PlanContext) -> QueryPlan:
    """The plan of a context every rule has run on."""
    assert ctx.chunk_select is not None and ctx.merge_select is not None
    assert ctx.chunk_ids is not None
    return QueryPlan(
        database=ctx.database,
        chunk_sql=ctx.chunk_select.sql(dialect="mysql"),
        chunk_ids=ctx.chunk_ids,
        merge_sql=ctx.merge_select.sql(dialect="mysql"),
        output_names=ctx.output_names,
        early_stop_rows=ctx.early_stop_rows,
        index_lookups=ctx.key_restrictions,
        rows_per_chunk=rows_per_chunk(ctx),
        sub_chunk_column=sub_chunk_column(ctx.sub_chunk_alias),
        sub_chunks=ctx.sub_chunks,
    )


def rows_per_chunk(ctx: PlanContext) -> int | None:
    """Rows a chunk task of this query reads on average: its partitioned tables' rows (each time
    the query names one) over the database's chunks; None when a count is unknown."""
    partitioned = ctx.partitioned
    counts = [ref.table.row_count for ref in partitioned]
    placement = ctx.catalog.placements.get(ctx.database)
    if not partitioned or placement is None or not placement.replicas or None in counts:
        return None
    return sum(c for c in counts if c is not None) // len(placement.replicas)
