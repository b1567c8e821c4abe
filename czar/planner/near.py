"""Near-neighbour self-joins: pairs of rows of one director closer than an angle.

``FROM Object o1, Object o2 WHERE scisql_angSep(o1.ra, o1.decl, o2.ra,
o2.decl) < r`` is not chunk-local: a pair may straddle a chunk border.  With
``r`` no larger than the partitioning overlap it is evaluated per sub-chunk,
as Qserv does: the *primary* alias reads the chunk table; the *secondary*
alias reads the rows of the same sub-chunk plus the sub-chunk's overlap rows
(``<Table>FullOverlap_<chunk>``: rows outside the sub-chunk but within the
overlap distance of it, carrying its ``subChunkId``), joined on
``subChunkId``.  Every pair is found exactly once: the primary row lies in
exactly one sub-chunk, and every row within ``r`` of it is either in that
sub-chunk or in its overlap, never both.  The distance predicate is
symmetric, so the primary may be either alias: the one restricted by an area
or a director key (those prune chunks), else the first in FROM order.
"""

from __future__ import annotations

from typing import Any

import sqlglot
from sqlglot import exp

from css import TableKind
from czar.errors import UnsupportedQuery
from czar.planner.context import CHUNK_TOKEN, NearNeighbour, PlanContext
from czar.planner.predicates import join_terms


def _radius(node: Any) -> float | None:
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return float(node.this)
        except ValueError:
            return None
    return None


def _distance_bound(node: Any) -> tuple[exp.Anonymous, float] | None:
    """``angSep(...) < r`` / ``<= r`` / ``r > angSep(...)`` / ``r >= angSep(...)``."""
    if isinstance(node, exp.LT | exp.LTE):
        call, bound = node.this, node.expression
    elif isinstance(node, exp.GT | exp.GTE):
        call, bound = node.expression, node.this
    else:
        return None
    if not (isinstance(call, exp.Anonymous) and str(call.this).lower() == "scisql_angsep"):
        return None
    radius = _radius(bound)
    if radius is None:
        return None
    return call, radius


def _position_aliases(call: exp.Anonymous, ctx: PlanContext) -> tuple[str, str] | None:
    """The two aliases whose position columns the angSep call compares, if it does."""
    if len(call.expressions) != 4 or not all(isinstance(a, exp.Column) for a in call.expressions):
        return None
    lon1, lat1, lon2, lat2 = call.expressions
    if lon1.table != lat1.table or lon2.table != lat2.table or lon1.table == lon2.table:
        return None
    refs = {ref.alias: ref for ref in ctx.partitioned}
    for column_lon, column_lat in ((lon1, lat1), (lon2, lat2)):
        ref = refs.get(column_lon.table)
        if ref is None:
            return None
        table = ref.table
        if (column_lon.name.lower(), column_lat.name.lower()) != (
            (table.longitude_column or "").lower(), (table.latitude_column or "").lower()
        ):
            return None
    return lon1.table, lon2.table


def detect_near_neighbour(ctx: PlanContext) -> NearNeighbour | None:
    """The near-neighbour form of a join that is not chunk-local, or None."""
    partitioned = ctx.partitioned
    if len(partitioned) != 2:
        return None
    first, second = partitioned
    if first.table is not second.table and (
        (first.table.database, first.table.name) != (second.table.database, second.table.name)
    ):
        return None
    if first.table.kind is not TableKind.DIRECTOR:
        return None
    for node in join_terms(ctx.statement):
        bound = _distance_bound(node)
        if bound is None:
            continue
        call, radius = bound
        aliases = _position_aliases(call, ctx)
        if aliases is None or set(aliases) != {first.alias, second.alias}:
            continue
        database = ctx.catalog.database(first.table.database)
        overlap = database.family.overlap if database is not None else 0.0
        if radius > overlap:
            raise UnsupportedQuery(
                f"near-neighbour distance {radius} deg in {call.sql(dialect='mysql')} exceeds the "
                f"overlap of database {first.table.database} ({overlap} deg): pairs could be missed"
            )
        restricted = [r.alias for r in ctx.regions] + [k.alias for k in ctx.key_restrictions]
        primary = next((a for a in restricted if a in aliases), first.alias)
        secondary = second.alias if primary == first.alias else first.alias
        return NearNeighbour(primary=primary, secondary=secondary, radius=radius)
    return None


def overlap_table(database: str, table: str, alias: str) -> exp.Expression:
    """``(SELECT * FROM T_<chunk> UNION ALL SELECT * FROM TFullOverlap_<chunk>) AS alias``."""
    db = exp.to_identifier(database, quoted=True).sql(dialect="mysql")
    own = exp.to_identifier(f"{table}_{CHUNK_TOKEN}", quoted=True).sql(dialect="mysql")
    overlap = exp.to_identifier(f"{table}FullOverlap_{CHUNK_TOKEN}", quoted=True).sql(dialect="mysql")
    union = sqlglot.parse_one(
        f"SELECT * FROM {db}.{own} UNION ALL SELECT * FROM {db}.{overlap}", read="mysql"
    )
    return exp.Subquery(this=union, alias=exp.TableAlias(this=exp.to_identifier(alias)))
