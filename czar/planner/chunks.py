"""Rules that decide where the chunk query runs.

* ``rewrite_chunk_tables``: partitioned tables in the chunk query become
  their chunk tables ``<Table>_<chunkId>`` (``CHUNK_TOKEN`` stands for the id);
  replicated tables keep their names.
* ``restrict_chunks``: the chunks to visit: every chunk of the database (less
  those outside the query's area restrictions), or a single task on any
  worker when only replicated tables are read; director-key restrictions go
  to the plan for the engine's index lookup.
* ``check_chunk_locality``: joins of partitioned tables must be chunk-local,
  or a near-neighbour self-join (see :mod:`czar.planner.near`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlglot import exp

from css import TableKind
from czar.errors import UnsupportedQuery
from czar.planner.context import CHUNK_TOKEN, EMPTY_CHUNK, REPLICATED_CHUNK, PlanContext, TableRef
from czar.planner.near import detect_near_neighbour, overlap_table
from czar.planner.spatial import chunks_in_regions


def rewrite_chunk_tables(ctx: PlanContext) -> PlanContext:
    assert ctx.chunk_select is not None
    partitioned = {ref.alias for ref in ctx.partitioned}
    near = ctx.near_neighbour
    chunk = ctx.chunk_select.copy()
    for table in list(chunk.find_all(exp.Table)):
        if table.alias not in partitioned:
            continue
        if near is not None and table.alias == near.secondary:
            table.replace(overlap_table(table.db, table.name, table.alias))
            continue
        table.set("this", exp.to_identifier(f"{table.name}_{CHUNK_TOKEN}", quoted=True))
    if near is not None:
        same_sub_chunk = exp.EQ(
            this=exp.column("subChunkId", table=near.primary, quoted=True),
            expression=exp.column("subChunkId", table=near.secondary, quoted=True),
        )
        chunk = chunk.where(same_sub_chunk, copy=False)
    return replace(ctx, chunk_select=chunk)


def restrict_chunks(ctx: PlanContext) -> PlanContext:
    if not ctx.partitioned:
        return replace(ctx, chunk_ids=(REPLICATED_CHUNK,))
    chunk_ids = ctx.catalog.chunk_ids(ctx.database)
    database = ctx.catalog.database(ctx.database)
    regions = tuple(r for r in ctx.regions if ctx.prunes(r.alias))
    if database is not None:
        family = database.family
        allowed = chunks_in_regions(regions, family.num_stripes, family.num_sub_stripes)
        if allowed is not None:
            chunk_ids = [c for c in chunk_ids if c in allowed]
    keys = tuple(k for k in ctx.key_restrictions if ctx.prunes(k.alias))
    return replace(ctx, chunk_ids=tuple(chunk_ids) or (EMPTY_CHUNK,), key_restrictions=keys)


def _director_key_of(ref: TableRef) -> str | None:
    """The column that places a row of ``ref`` in its chunk (director key)."""
    table = ref.table
    if table.kind is TableKind.DIRECTOR or table.kind is TableKind.CHILD:
        return table.director_key
    return None


def _family_of(ref: TableRef) -> str:
    table = ref.table
    return table.name if table.kind is TableKind.DIRECTOR else (table.director_table or table.name)


def check_chunk_locality(ctx: PlanContext) -> PlanContext:
    """Refuse joins of partitioned tables whose matching rows may live in different chunks.

    Two partitioned tables join chunk-locally when an equality links their
    director keys (director-child on the director key, or a self-join on the
    key); then every pair of matching rows lives in the same chunk.
    """
    partitioned = ctx.partitioned
    if len(partitioned) < 2:
        return ctx
    parent = {ref.alias: ref.alias for ref in partitioned}

    def find(alias: str) -> str:
        while parent[alias] != alias:
            alias = parent[alias]
        return alias

    keys = {ref.alias: (_director_key_of(ref) or "").lower() for ref in partitioned}
    families = {ref.alias: _family_of(ref) for ref in partitioned}
    statement = ctx.statement
    predicates: list[Any] = []
    if statement.args.get("where") is not None:
        predicates.extend(statement.args["where"].this.flatten() if isinstance(statement.args["where"].this, exp.And) else [statement.args["where"].this])
    for join in statement.args.get("joins") or []:
        on = join.args.get("on")
        if on is not None:
            predicates.extend(on.flatten() if isinstance(on, exp.And) else [on])
        using = [i.name.lower() for i in join.args.get("using") or []]
        joined = join.this.alias
        if joined in parent:
            for other in parent:
                if other != joined and keys[joined] and keys[joined] in using and keys[other] == keys[joined]:
                    parent[find(joined)] = find(other)
    for predicate in predicates:
        if not isinstance(predicate, exp.EQ):
            continue
        left, right = predicate.this, predicate.expression
        if not (isinstance(left, exp.Column) and isinstance(right, exp.Column)):
            continue
        a, b = left.table, right.table
        if (
            a in parent
            and b in parent
            and a != b
            and left.name.lower() == keys[a]
            and right.name.lower() == keys[b]
            and families[a] == families[b]
        ):
            parent[find(a)] = find(b)
    roots = {find(alias) for alias in parent}
    if len(roots) > 1:
        near = detect_near_neighbour(ctx)
        if near is not None:
            return replace(ctx, near_neighbour=near)
        names = ", ".join(f"{ref.table.name} AS {ref.alias}" for ref in partitioned)
        raise UnsupportedQuery(
            f"join of partitioned tables ({names}) is not chunk-local: partitioned tables "
            "must be joined by equality on their director key (e.g. Object.objectId = "
            "Source.objectId), or be a near-neighbour self-join of two aliases of one director "
            "table with a top-level term scisql_angSep(a.ra, a.decl, b.ra, b.decl) < r "
            "(r a constant no larger than the overlap)"
        )
    return ctx
