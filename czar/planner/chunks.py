"""Rules that decide where the chunk query runs.

* ``rewrite_chunk_tables``: partitioned tables in the chunk query become
  their chunk tables ``<Table>_<chunkId>`` (``CHUNK_TOKEN`` stands for the id);
  replicated tables keep their names.
* ``restrict_chunks``: the chunks to visit: every chunk of the database (less
  those outside the query's area restrictions), or a single task on any
  worker when only replicated tables are read; director-key restrictions go
  to the plan for the engine's index lookup.  A query over a small area
  (at most ``SUB_CHUNK_MAX_CHUNKS`` chunks) reads, in each chunk the area
  does not cover whole, only the sub-chunks it touches: its director's
  ``subChunkId`` index finds those rows (``SUB_CHUNK_TOKEN``), so a small
  cone in a chunk of a million rows does not scan them all.
* ``check_chunk_locality``: joins of partitioned tables must be chunk-local,
  or a near-neighbour self-join (see :mod:`czar.planner.near`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlglot import exp

from css import TableKind
from czar.errors import UnsupportedQuery
from czar.planner.context import (
    CHUNK_TOKEN,
    EMPTY_CHUNK,
    REPLICATED_CHUNK,
    SUB_CHUNK_TOKEN,
    NearNeighbour,
    PlanContext,
    SubChunks,
    TableRef,
)
from czar.planner.near import detect_near_neighbour, overlap_table
from czar.planner.predicates import join_terms
from czar.planner.spatial import chunks_in_regions, sub_chunks_in_regions

SUB_CHUNK_MAX_CHUNKS = 8  # an area over more chunks covers most of them: no sub-chunk restriction


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
    for alias in ctx.match_filters:  # one copy of each ref-match row (see check_chunk_locality)
        chunk_id = exp.column("chunkId", table=alias, quoted=True)
        own_copy = exp.or_(
            exp.EQ(this=chunk_id, expression=exp.Literal.number(CHUNK_TOKEN)),
            exp.Is(this=chunk_id.copy(), expression=exp.Null()),  # NULL-extended by an outer join
        )
        chunk = chunk.where(exp.Paren(this=own_copy), copy=False)
    sub_chunk_alias = _sub_chunk_alias(ctx)
    if sub_chunk_alias is not None:
        chunk = chunk.where(exp.var(SUB_CHUNK_TOKEN), copy=False)
    return replace(ctx, chunk_select=chunk, sub_chunk_alias=sub_chunk_alias)


def _sub_chunk_alias(ctx: PlanContext) -> str | None:
    """The director alias whose area restrictions may narrow each chunk to sub-chunks: the one
    alias every chunk-pruning area restricts, a director (its rows are placed by these positions)."""
    aliases = {r.alias for r in ctx.regions if ctx.prunes(r.alias)}
    if len(aliases) != 1:
        return None
    alias = aliases.pop()
    ref = next((r for r in ctx.partitioned if r.alias == alias), None)
    if ref is None or ref.table.kind is not TableKind.DIRECTOR:
        return None
    return alias


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
    sub_chunks: SubChunks = ()
    if database is not None:
        sub_chunks = sub_chunks_of(ctx.sub_chunk_alias, regions, database.family.num_stripes,
                                   database.family.num_sub_stripes, tuple(chunk_ids))
    keys = tuple(k for k in ctx.key_restrictions if ctx.prunes(k.alias))
    return replace(ctx, chunk_ids=tuple(chunk_ids) or (EMPTY_CHUNK,), key_restrictions=keys, sub_chunks=sub_chunks)


def sub_chunks_of(
    alias: str | None, regions: tuple[Any, ...], num_stripes: int, num_sub_stripes: int, chunk_ids: tuple[int, ...]
) -> SubChunks:
    """The sub-chunk lists for SUB_CHUNK_TOKEN: from the areas restricting ``alias``, when the
    query visits at most SUB_CHUNK_MAX_CHUNKS chunks (none when ``alias`` is None)."""
    if alias is None or len(chunk_ids) > SUB_CHUNK_MAX_CHUNKS:
        return ()
    mine = tuple(r for r in regions if r.alias == alias)
    return sub_chunks_in_regions(mine, num_stripes, num_sub_stripes, chunk_ids)


def _director_key_of(ref: TableRef) -> str | None:
    """The column that places a row of ``ref`` in its chunk (director key)."""
    table = ref.table
    if table.kind in (TableKind.DIRECTOR, TableKind.CHILD, TableKind.REF_MATCH):
        return table.director_key  # a ref-match row is in its first director's chunk
    return None


def _family_of(ref: TableRef) -> str:
    table = ref.table
    return table.name if table.kind is TableKind.DIRECTOR else (table.director_table or table.name)


def _second_director_links(ctx: PlanContext, predicates: list[Any]) -> list[tuple[str, str]]:
    """(match alias, director alias) pairs linked by ``match.<director_key2> = director.<key>``."""
    refs = {ref.alias: ref for ref in ctx.partitioned}
    links: list[tuple[str, str]] = []
    for predicate in predicates:
        if not isinstance(predicate, exp.EQ):
            continue
        for left, right in ((predicate.this, predicate.expression), (predicate.expression, predicate.this)):
            if not (isinstance(left, exp.Column) and isinstance(right, exp.Column)):
                continue
            match, director = refs.get(left.table), refs.get(right.table)
            if match is None or director is None or match.table.kind is not TableKind.REF_MATCH:
                continue
            if (
                director.table.kind is TableKind.DIRECTOR
                and director.table.name == match.table.director_table2
                and left.name.lower() == (match.table.director_key2 or "").lower()
                and right.name.lower() == (director.table.director_key or "").lower()
            ):
                links.append((match.alias, director.alias))
    return links


def check_chunk_locality(ctx: PlanContext) -> PlanContext:
    """Refuse joins of partitioned tables whose matching rows may live in different chunks.

    Two partitioned tables join chunk-locally when an equality links their
    director keys (director-child on the director key, or a self-join on the
    key); then every pair of matching rows lives in the same chunk.  Two
    forms that are not chunk-local are evaluated with the chunk's overlap:
    near-neighbour self-joins (:mod:`czar.planner.near`) and a ref-match
    table joined with both its directors: each match row is stored in the
    chunks of both its directors, the first director is read from the chunk,
    the second from the chunk and its overlap (same sub-chunk), and only the
    copy whose ``chunkId`` is the chunk's is used, so no pair appears twice.
    A match table read without its second director also keeps only that copy.
    """
    partitioned = ctx.partitioned
    matches = [ref.alias for ref in partitioned if ref.table.kind is TableKind.REF_MATCH]
    if len(partitioned) < 2:
        return replace(ctx, match_filters=tuple(matches))
    parent = {ref.alias: ref.alias for ref in partitioned}

    def find(alias: str) -> str:
        while parent[alias] != alias:
            alias = parent[alias]
        return alias

    keys = {ref.alias: (_director_key_of(ref) or "").lower() for ref in partitioned}
    families = {ref.alias: _family_of(ref) for ref in partitioned}
    statement = ctx.statement
    predicates = join_terms(statement)
    for join in statement.args.get("joins") or []:
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
    if len(roots) == 1:
        return replace(ctx, match_filters=tuple(matches))
    refs = {ref.alias: ref for ref in partitioned}
    links = _second_director_links(ctx, predicates)
    if len(roots) == 2 and len(matches) == 1 and len(links) == 1 and links[0][0] == matches[0]:
        match, second = links[0]
        alone = [alias for alias in parent if find(alias) == find(second)] == [second]
        firsts = [
            alias for alias in parent
            if find(alias) == find(match) and refs[alias].table.kind is TableKind.DIRECTOR
            and refs[alias].table.name == refs[match].table.director_table
        ]
        if alone and not firsts:  # match rows are also stored in their second director's chunk
            _refuse_outer_joins(statement, "a join of a ref-match table with its second director")
            return ctx
        if alone and len(firsts) == 1:
            _refuse_outer_joins(statement, "a join of a ref-match table with both its directors")
            matched = NearNeighbour(primary=firsts[0], secondary=second, radius=0.0)
            return replace(ctx, near_neighbour=matched, match_filters=(match,))
    near = detect_near_neighbour(ctx)
    if near is not None:
        _refuse_outer_joins(statement, "a near-neighbour join")
        return replace(ctx, near_neighbour=near, match_filters=tuple(matches))
    names = ", ".join(f"{ref.table.name} AS {ref.alias}" for ref in partitioned)
    raise UnsupportedQuery(
        f"join of partitioned tables ({names}) is not chunk-local: partitioned tables "
        "must be joined by equality on their director key (e.g. Object.objectId = "
        "Source.objectId), or be a near-neighbour self-join of two aliases of one director "
        "table with a top-level term scisql_angSep(a.ra, a.decl, b.ra, b.decl) < r "
        "(r a constant no larger than the overlap), or a ref-match table joined on the keys "
        "of its directors"
    )


def _refuse_outer_joins(statement: exp.Select, what: str) -> None:
    for join in statement.args.get("joins") or []:
        if (join.side or "").upper() in ("LEFT", "RIGHT", "FULL"):
            raise UnsupportedQuery(f"{join.side.upper()} JOIN in {what} is not supported")
