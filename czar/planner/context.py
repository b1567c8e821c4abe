"""The data that flows through the planner's rules, and the plan it produces.

A rule is a pure function ``PlanContext -> PlanContext``; it never does I/O.
``QueryPlan`` is the rules' final product: the per-chunk SQL (a template in
which ``CHUNK_TOKEN`` stands for the chunk id), the merge SQL (in which
``RESULT_TOKEN`` stands for the result table), the chunk list and the names
of the result columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from css import Table
from czar.catalog import CatalogSnapshot

CHUNK_TOKEN = "__SKYSHARD_CHUNK__"
RESULT_TOKEN = "__SKYSHARD_RESULT__"
# A WHERE term of the chunk SQL of a query over a small area: in each chunk's statement it becomes
# ``<alias>.subChunkId IN (...)`` (the sub-chunks of that chunk the area touches) or TRUE.
SUB_CHUNK_TOKEN = "__SKYSHARD_SUBCHUNKS__"
REPLICATED_CHUNK = -1  # chunk id of a task that reads only replicated tables
# Every worker holds an empty table <Table>_1234567890 of each partitioned table
# (Qserv's "dummy chunk"): a query whose chunk list is empty runs there, so that
# its result still has a schema and aggregates over no rows answer correctly.
EMPTY_CHUNK = 1234567890
SubChunks = tuple[tuple[int, tuple[int, ...]], ...]  # (chunk id, the sub-chunks of it to read), ...


@dataclass(frozen=True)
class TableRef:
    """One table of the FROM clause, resolved against css."""

    alias: str  # the name the query refers to it by
    table: Table


@dataclass(frozen=True)
class KeyRestriction:
    """``alias.<director key>`` is one of ``values`` (or in ``[low, high]``): an index lookup."""

    alias: str
    database: str
    director: str  # the director table whose index maps keys to chunks
    child: str | None = None  # set when the key is a child table's (its orphans count too)
    values: tuple[int, ...] = ()
    low: int | None = None
    high: int | None = None


@dataclass(frozen=True)
class NearNeighbour:
    """A self-join of a director on angular distance, evaluated per sub-chunk with overlap."""

    primary: str  # alias read from the chunk table
    secondary: str  # alias read from the chunk table and its overlap, same sub-chunk
    radius: float  # degrees


@dataclass(frozen=True)
class PlanContext:
    sql: str
    statement: exp.Select
    catalog: CatalogSnapshot
    default_db: str | None
    tables: tuple[TableRef, ...] = ()
    output_names: tuple[str, ...] = ()
    chunk_select: exp.Select | None = None
    merge_select: exp.Select | None = None
    chunk_ids: tuple[int, ...] | None = None
    early_stop_rows: int | None = None  # stop dispatch once this many rows are collected
    regions: tuple[Any, ...] = ()  # spatial.AreaRestriction: rows of an alias lie in an area
    key_restrictions: tuple[KeyRestriction, ...] = ()  # director-key predicates (index lookups)
    near_neighbour: NearNeighbour | None = None
    sub_chunk_alias: str | None = None  # the alias SUB_CHUNK_TOKEN restricts (see chunks.rewrite_chunk_tables)
    sub_chunks: SubChunks = ()  # (chunk id, its sub-chunks to read)
    match_filters: tuple[str, ...] = ()  # ref-match aliases read as their chunk's own copy only
    notes: tuple[str, ...] = field(default_factory=tuple)

    def prunes(self, alias: str) -> bool:
        """Whether a restriction on ``alias`` restricts the chunks the query must visit.

        Every alias of a chunk-local join lives in the same chunk; in a
        near-neighbour join only the primary alias does (the other one is read
        from the chunk and its overlap).
        """
        return self.near_neighbour is None or alias == self.near_neighbour.primary

    @property
    def partitioned(self) -> list[TableRef]:
        return [ref for ref in self.tables if ref.table.partitioned]

    @property
    def database(self) -> str:
        """The database whose chunks the query runs on."""
        partitioned = self.partitioned
        if partitioned:
            return partitioned[0].table.database
        if self.tables:
            return self.tables[0].table.database
        return self.default_db or ""


@dataclass(frozen=True)
class QueryPlan:
    database: str
    chunk_sql: str  # contains CHUNK_TOKEN where a chunk id goes (if partitioned)
    chunk_ids: tuple[int, ...]  # (REPLICATED_CHUNK,) for replicated-only queries
    merge_sql: str  # contains RESULT_TOKEN where the result table name goes
    output_names: tuple[str, ...]
    early_stop_rows: int | None = None
    index_lookups: tuple[KeyRestriction, ...] = ()  # the engine intersects chunk_ids with these
    # Rows a chunk task reads on average (the partitioned tables' rows over the database's chunks;
    # None: unknown). The dispatcher runs a small query's chunks of small tables in one task per worker.
    rows_per_chunk: int | None = None
    # The shape of chunk_sql for the worker's probe cache (ChunkTask.probe_key): a cached plan's
    # template, whose WHERE parameters are placeholders; "" means chunk_sql itself.
    probe_key: str = field(default="", compare=False)
    # For chunk_sql's SUB_CHUNK_TOKEN: the column it restricts and, for each chunk restricted, the
    # sub-chunks to read (a chunk not listed reads all of them).
    sub_chunk_column: str = ""
    sub_chunks: SubChunks = ()

    @property
    def shape(self) -> str:
        """What the worker's probe cache keys on: statements of one shape have the same columns."""
        return self.probe_key or self.chunk_sql

    def chunk_sql_for(self, chunk_id: int) -> str:
        sql = self.chunk_sql.replace(CHUNK_TOKEN, str(chunk_id))
        if SUB_CHUNK_TOKEN in sql:
            sql = sql.replace(SUB_CHUNK_TOKEN, sub_chunk_term(self.sub_chunk_column, self.sub_chunks, chunk_id))
        return sql

    def merge_sql_for(self, result_table: str) -> str:
        return self.merge_sql.replace(RESULT_TOKEN, result_table)


def sub_chunk_column(alias: str | None) -> str:
    """The column SUB_CHUNK_TOKEN restricts, as it goes in the chunk SQL ("": none)."""
    return "" if alias is None else exp.column("subChunkId", table=alias, quoted=True).sql(dialect="mysql")


def sub_chunk_term(column: str, sub_chunks: SubChunks, chunk_id: int) -> str:
    """What SUB_CHUNK_TOKEN becomes in the statement of ``chunk_id``."""
    for chunk, ids in sub_chunks:
        if chunk == chunk_id and ids:
            return f"{column} IN ({', '.join(map(str, ids))})"
    return "TRUE"
