"""Ingest: partition input files, load chunk tables on the workers, publish atomically.

Owns the ingest workflow for one table: register it in css as LOADING
(invisible), partition its rows (director: own position; child: director
key -> chunk through the director index; replicated: whole file to every
worker), choose placement for new chunks (balanced, with replicas), stream
chunk data to every replica through the worker's gRPC ``LoadBatch`` call, build
the director index in the czar's MariaDB, make sure every partitioned table
has a (possibly empty) table in every chunk, and publish in one css
transaction.  A failure anywhere drops what was loaded and leaves nothing
visible.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pymysql

from css import Column, Css, Family, Table, TableKind, TableState
from ingest import loaddata
from ingest.config import DatabaseConfig, TableConfig, rewrite_create_table
from ingest.loaddata import Block, InputFormatError, TextFormat
from ingest.partitioner import Chunker
from proto import worker_pb2 as pb
from proto import worker_pb2_grpc as pb_grpc
from skyshard.mariadb import ServerAddress
from skyshard.memory import keep_freed_memory

log = logging.getLogger("skyshard.ingest")

EMPTY_CHUNK = 1234567890  # see czar.planner.context.EMPTY_CHUNK
INDEX_DATABASE = "skyshard_index"
PIECE_BYTES = 4 << 20
FIRST_BLOCK_BYTES = 8 << 20
CHUNK_COLUMNS = (Column("chunkId", "INT NOT NULL"), Column("subChunkId", "INT NOT NULL"))
INTERNAL_COLUMNS = {"chunkid", "subchunkid"}


class IngestError(RuntimeError):
    """An ingest failed; nothing of it is visible."""


@dataclass
class IngestSummary:
    database: str
    table: str
    kind: TableKind
    rows: int = 0
    overlap_rows: int = 0
    chunks: int = 0
    rows_per_worker: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    orphan_rows: int = 0  # child rows whose director key is unknown (placed by position)
    orphan_lines: list[int] = field(default_factory=list)


ProgressCallback = Callable[[str, int, int, int], None]  # (table, rows, bytes, chunks)


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def index_table_name(database: str, table: str) -> str:
    return f"{database}__{table}"


def orphan_table_name(database: str, child: str) -> str:
    """Where a child table's rows with an unknown director key are indexed (see czar.director_index)."""
    return f"{database}__{child}__orphans"


def _charset_of(create_sql: str) -> str:
    match = re.search(r"CHARSET\s*=\s*(\w+)", create_sql, re.IGNORECASE)
    return match.group(1) if match else "utf8mb4"


def chunk_table_ddl(table: Table, physical_name: str) -> str:
    """CREATE TABLE for one physical table of ``table`` on a worker.

    A replicated table keeps its original definition (keys, AUTO_INCREMENT);
    a chunk table gets the user columns plus ``chunkId, subChunkId`` and
    indexes on the director key and the sub-chunk.
    """
    if not table.partitioned and table.create_sql:
        renamed = rewrite_create_table(table.create_sql, table_name=physical_name, if_not_exists=True)
        unqualified = quote(physical_name)
        return renamed.replace(unqualified, f"{quote(table.database)}.{unqualified}", 1)
    columns = list(table.columns)
    if table.partitioned:
        columns += [c for c in CHUNK_COLUMNS if table.column(c.name) is None]
    body = [f"{quote(c.name)} {c.definition}" for c in columns]
    if table.partitioned and table.director_key and table.column(table.director_key):
        body.append(f"KEY ({quote(table.director_key)})")
    if table.partitioned:
        body.append("KEY (`subChunkId`)")
    return (
        f"CREATE TABLE IF NOT EXISTS {quote(table.database)}.{quote(physical_name)} "
        f"({', '.join(body)}) ENGINE=MyISAM DEFAULT CHARSET={_charset_of(table.create_sql)}"
    )


class WorkerLinks:
    """Synchronous gRPC stubs of the workers, for the ingest tool."""

    def __init__(self, css: Css) -> None:
        self.workers = {w.worker_id: w for w in css.workers(active_only=True)}
        self._stubs: dict[str, pb_grpc.WorkerStub] = {}
        self._channels: list[grpc.Channel] = []

    def stub(self, worker_id: str) -> pb_grpc.WorkerStub:
        if worker_id not in self._stubs:
            channel = grpc.insecure_channel(
                self.workers[worker_id].address,
                options=[("grpc.max_send_message_length", 64 << 20)],
            )
            self._channels.append(channel)
            self._stubs[worker_id] = pb_grpc.WorkerStub(channel)
        return self._stubs[worker_id]

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


class Ingester:
    """Loads tables of one database into the cluster."""

    def __init__(
        self,
        css: Css,
        czar_db: ServerAddress,
        *,
        replication: int = 1,
        progress: ProgressCallback | None = None,
        block_bytes: int = 64 << 20,
    ) -> None:
        self.css = css
        self.czar_db = czar_db
        self.replication = replication
        self.progress = progress
        self.block_bytes = block_bytes
        self.links = WorkerLinks(css)
        keep_freed_memory()  # each block's buffers are reused, not re-faulted (skyshard/memory.py)
        if not self.links.workers:
            raise IngestError("no active worker is registered in css")
        if replication > len(self.links.workers):
            raise IngestError(
                f"replication factor {replication} exceeds the {len(self.links.workers)} active workers"
            )

    def close(self) -> None:
        self.links.close()

    # -- databases ----------------------------------------------------------
    def create_database(self, config: DatabaseConfig) -> None:
        family = Family(
            f"s{config.num_stripes}_ss{config.num_sub_stripes}_o{config.overlap}",
            config.num_stripes,
            config.num_sub_stripes,
            config.overlap,
        )
        self.css.create_database(config.name, family)
        for worker_id in self.links.workers:
            self._admin(worker_id, [f"CREATE DATABASE IF NOT EXISTS {quote(config.name)}"])

    # -- tables -------------------------------------------------------------
    def ingest_table(self, config: TableConfig, files: Iterable[Path]) -> IngestSummary:
        """Load one table from ``files``; publishes it only if everything succeeded."""
        started = time.monotonic()
        database = self.css.database(config.database)
        if database is None:
            raise IngestError(f"unknown database {config.database!r}: create it first")
        if config.kind == "ref-match" and (config.ang_sep or 0.0) > database.family.overlap:
            # Queries read the second director from the chunk's overlap: a match
            # farther apart than the overlap could be missed.
            raise IngestError(
                f"{config.name}: ang_sep {config.ang_sep} deg exceeds the overlap "
                f"{database.family.overlap} deg of database {config.database}"
            )
        table = self._table_from_config(config)
        self.css.add_table(table)
        summary = IngestSummary(config.database, config.name, table.kind)
        loaded: dict[str, set[str]] = defaultdict(set)  # worker -> physical tables created
        try:
            chunker = Chunker(
                database.family.num_stripes, database.family.num_sub_stripes, database.family.overlap
            )
            if table.kind is TableKind.REPLICATED:
                self._load_replicated(table, config, files, summary, loaded)
                new_replicas: dict[int, tuple[str, ...]] = {}
            else:
                new_replicas = self._load_partitioned(table, config, chunker, files, summary, loaded)
            self._complete_chunk_tables(table, new_replicas, loaded)
            self.css.publish_table(
                table.database, table.name, row_count=summary.rows, new_replicas=new_replicas
            )
        except BaseException as exc:
            self._roll_back(table, loaded)
            if isinstance(exc, InputFormatError | IngestError):
                raise IngestError(f"ingest of {table.database}.{table.name} failed: {exc}") from exc
            raise
        summary.seconds = time.monotonic() - started
        return summary

    def _table_from_config(self, config: TableConfig) -> Table:
        kind = TableKind(config.kind)
        columns = tuple(
            Column(name, definition)
            for name, definition in config.columns
            if not (kind.partitioned and name.lower() in INTERNAL_COLUMNS)
        )
        return Table(
            database=config.database,
            name=config.name,
            kind=kind,
            columns=columns,
            create_sql=config.create_sql,
            state=TableState.LOADING,
            director_table=config.director_table or (config.name if kind is TableKind.DIRECTOR else None),
            director_key=config.director_key,
            director_table2=config.director_table2,
            director_key2=config.director_key2,
            longitude_column=config.longitude_key,
            latitude_column=config.latitude_key,
        )

    def _column_index(self, config: TableConfig, name: str | None, role: str) -> int:
        names = [n.lower() for n, _ in config.columns]
        if not name or name.lower() not in names:
            raise IngestError(f"{config.name}: {role} column {name!r} is not in the table schema")
        return names.index(name.lower())

    def _blocks(self, files: Iterable[Path], config: TableConfig) -> Iterator[Block]:
        """Blocks of every input file: text (plain or gzipped) in the table's format, or Parquet.

        A Parquet file's columns are taken by the table's column names (in the
        table's order) and converted to default-format LOAD DATA text.
        """
        first = True
        for path in files:
            if str(path).endswith(".parquet"):
                yield from self._parquet_blocks(path, config)
            else:
                # A small first block gets the workers loading (and creating chunk
                # tables) while the partitioner cuts the next, larger block.
                first_bytes = min(self.block_bytes, FIRST_BLOCK_BYTES) if first else None
                first = False
                for block in loaddata.iter_blocks(path, config.text_format, block_bytes=self.block_bytes,
                                                  first_block_bytes=first_bytes):
                    loaddata.validate_escapes(block)  # a stray escape at the end of the file
                    yield block

    def _parquet_blocks(self, path: Path, config: TableConfig) -> Iterator[Block]:
        try:
            import pyarrow.parquet as pq

            available = {name.lower(): name for name in pq.ParquetFile(path).schema_arrow.names}
        except ImportError as exc:
            raise IngestError(f"{path}: {exc}") from exc
        except Exception as exc:
            raise InputFormatError(path, None, f"not a readable Parquet file: {exc}") from exc
        missing = [name for name in config.column_names if name.lower() not in available]
        if missing:
            raise InputFormatError(path, None, f"Parquet file has no column(s) {missing}")
        columns = [available[name.lower()] for name in config.column_names]
        rows = max(1024, self.block_bytes // 128)
        try:
            yield from loaddata.iter_parquet_blocks(path, columns, batch_rows=rows)
        except TypeError as exc:
            raise InputFormatError(path, None, str(exc)) from exc

    # -- replicated -----------------------------------------------------------
    def _load_replicated(
        self,
        table: Table,
        config: TableConfig,
        files: Iterable[Path],
        summary: IngestSummary,
        loaded: dict[str, set[str]],
    ) -> None:
        workers = sorted(self.links.workers)
        ddl = chunk_table_ddl(table, table.name)
        shipper = _Shipper(self, table, summary, loaded)
        try:
            for block in self._blocks(files, config):
                loaddata.field_bounds(block, block.fmt, len(table.columns))
                rows = np.arange(block.nrows)
                data = loaddata.gather_rows(block, rows)
                segment = _Segment(table.name, ddl, data, rows, block)
                for worker_id in workers:
                    shipper.ship(worker_id, block.fmt, [segment])
                summary.rows += block.nrows
                self._report(summary, len(data))
            shipper.finish()
        finally:
            shipper.drain()
        for worker_id in workers:  # no input rows: still create the table everywhere
            if table.name not in loaded[worker_id]:
                self._admin(worker_id, [ddl])
                loaded[worker_id].add(table.name)

    # -- partitioned ------------------------------------------------------------
    def _placement(self, database: str, chunk_ids: Iterable[int], planned: dict[int, tuple[str, ...]]) -> dict[int, tuple[str, ...]]:
        """Replicas of each chunk: existing placement, else the least-loaded workers."""
        existing = self.css.chunk_placement(database).replicas
        load: dict[str, int] = dict.fromkeys(self.links.workers, 0)
        for replicas in list(existing.values()) + list(planned.values()):
            for worker_id in replicas:
                if worker_id in load:
                    load[worker_id] += 1
        result: dict[int, tuple[str, ...]] = {}
        for chunk_id in sorted(chunk_ids):
            if chunk_id in existing:
                result[chunk_id] = existing[chunk_id]
                continue
            if chunk_id in planned:
                result[chunk_id] = planned[chunk_id]
                continue
            chosen = sorted(load, key=lambda w: (load[w], w))[: self.replication]
            for worker_id in chosen:
                load[worker_id] += 1
            result[chunk_id] = planned[chunk_id] = tuple(chosen)
        return result

    def _director_lookup(self, table: Table, director: str | None = None) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The director index of ``table``'s director (or ``director``): sorted keys, chunk ids, sub-chunk ids."""
        director = director or table.director_table
        connection = self.czar_db.connect()
        try:
            cursor = connection.cursor()
            cursor.execute(
                f"SELECT `key`, chunkId, subChunkId FROM {quote(INDEX_DATABASE)}."
                f"{quote(index_table_name(table.database, director or ''))} ORDER BY `key`"
            )
            rows = cursor.fetchall()
        except Exception as exc:
            raise IngestError(
                f"the director table {table.database}.{director} of {table.name} has no index: "
                f"load the director first ({exc})"
            ) from exc
        finally:
            connection.close()
        data = np.array(rows, dtype=np.int64).reshape(-1, 3)
        if data.shape[0] == 0:  # a sentinel no real key equals (NULL keys are refused)
            data = np.array([[np.iinfo(np.int64).min, 0, 0]], dtype=np.int64)
        return data[:, 0], data[:, 1], data[:, 2]

    def _load_partitioned(
        self,
        table: Table,
        config: TableConfig,
        chunker: Chunker,
        files: Iterable[Path],
        summary: IngestSummary,
        loaded: dict[str, set[str]],
    ) -> dict[int, tuple[str, ...]]:
        ncols = config.field_count
        is_director = table.kind is TableKind.DIRECTOR
        key_index = self._column_index(config, table.director_key, "director key")
        lon_index = lat_index = -1
        if is_director or (table.longitude_column and table.latitude_column):
            lon_index = self._column_index(config, table.longitude_column, "longitude")
            lat_index = self._column_index(config, table.latitude_column, "latitude")
        if is_director:
            index = DirectorIndexBuilder(self.czar_db, table)
        else:
            keys, key_chunks, key_subs = self._director_lookup(table)
            # Child rows placed by their own position must still be found by key.
            index = DirectorIndexBuilder(self.czar_db, table, orphans=True)
        is_match = table.kind is TableKind.REF_MATCH
        if is_match:
            key2_index = self._column_index(config, table.director_key2, "second director key")
            keys2, key2_chunks, key2_subs = self._director_lookup(table, table.director_table2)
        planned: dict[int, tuple[str, ...]] = {}
        chunks_seen: set[int] = set()
        shipper = _Shipper(self, table, summary, loaded, defer_keys=True)
        try:
            for block in self._blocks(files, config):
                starts, ends = loaddata.field_bounds(block, block.fmt, ncols)
                key_values, key_nulls = loaddata.int_column(block, starts, ends, key_index, table.director_key)
                if key_nulls.any():
                    first_null = int(np.flatnonzero(key_nulls)[0])
                    raise InputFormatError(
                        block.path, block.line_of(first_null),
                        f"{int(key_nulls.sum())} row(s) have a NULL director key ({table.director_key})",
                    )
                if is_director:
                    lon = loaddata.float_column(block, starts, ends, lon_index, table.longitude_column)
                    lat = loaddata.float_column(block, starts, ends, lat_index, table.latitude_column)
                    bad = np.flatnonzero(np.isnan(lon) | np.isnan(lat))
                    if bad.size:
                        raise InputFormatError(block.path, block.line_of(int(bad[0])), "NULL position")
                    chunk_ids, sub_ids = chunker.locate(lon, lat)
                    index.add(key_values, chunk_ids, sub_ids)
                elif is_match:
                    out_rows, chunk_ids, sub_ids, match_columns = self._match_locations(
                        table, block, starts, ends, key_values, key2_index,
                        (keys, key_chunks, key_subs), (keys2, key2_chunks, key2_subs),
                    )
                else:
                    where = np.searchsorted(keys, key_values)
                    where = np.minimum(where, keys.size - 1)
                    found = keys[where] == key_values
                    chunk_ids = key_chunks[where].copy()
                    sub_ids = key_subs[where].astype(np.int32)
                    missing = np.flatnonzero(~found)
                    if missing.size and lon_index >= 0:
                        # Rows whose director is unknown are placed by their own position
                        # (as Qserv's partitioner does for child tables) and reported.
                        lon = loaddata.float_column(block, starts, ends, lon_index, table.longitude_column)
                        lat = loaddata.float_column(block, starts, ends, lat_index, table.latitude_column)
                        bad = missing[np.isnan(lon[missing]) | np.isnan(lat[missing])]
                        if bad.size:
                            raise InputFormatError(
                                block.path, block.line_of(int(bad[0])),
                                f"director key ({table.director_key}) not in {table.director_table} "
                                "and no position to place the row by",
                            )
                        own_chunks, own_subs = chunker.locate(lon[missing], lat[missing])
                        chunk_ids[missing] = own_chunks
                        sub_ids[missing] = own_subs
                        index.add(key_values[missing], own_chunks, own_subs)
                        summary.orphan_rows += int(missing.size)
                        summary.orphan_lines.extend(
                            block.line_of(int(r)) for r in missing[: max(0, 10 - len(summary.orphan_lines))]
                        )
                    elif missing.size:
                        lines = ", ".join(str(block.line_of(int(r))) for r in missing[:10])
                        raise InputFormatError(
                            block.path,
                            block.line_of(int(missing[0])),
                            f"{missing.size} row(s) have a director key ({table.director_key}) that is not "
                            f"in {table.director_table}; lines {lines}{'...' if missing.size > 10 else ''}",
                        )
                del starts, ends
                column_chunks = match_columns if is_match else None
                if not is_match:
                    out_rows = np.arange(block.nrows)
                segments = self._chunk_segments(
                    table, table.name, block, out_rows, chunk_ids, sub_ids, column_chunks
                )
                if is_director and chunker.overlap > 0:
                    rows, o_chunks, o_subs = chunker.overlap_locations(lon, lat)
                    overlap = self._chunk_segments(
                        table, f"{table.name}FullOverlap", block, rows, o_chunks, o_subs
                    )
                    summary.overlap_rows += int(rows.size)
                    segments += overlap
                chunk_list = sorted({chunk for chunk, _ in segments})
                placement = self._placement(table.database, chunk_list, planned)
                per_worker: dict[str, list[_Segment]] = defaultdict(list)
                for chunk_id, segment in segments:
                    for worker_id in placement[chunk_id]:
                        per_worker[worker_id].append(segment)
                for worker_id in sorted(per_worker):
                    shipper.ship(worker_id, block.fmt, per_worker[worker_id])
                chunks_seen.update(int(c) for c in np.unique(chunk_ids))
                summary.rows += block.nrows
                summary.chunks = len(chunks_seen)
                self._report(summary, len(block.data))
            # The index's key builds in the czar's MariaDB while the last loads run and the chunk
            # tables' keys are built.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-index-finish") as finisher:
                finishing = finisher.submit(index.finish)
                try:
                    shipper.finish()
                    shipper.enable_keys()
                finally:
                    finishing.result()
        finally:
            shipper.drain()
            index.close()
        return planned

    def _match_locations(
        self,
        table: Table,
        block: Block,
        starts: Any,
        ends: Any,
        key_values: npt.NDArray[np.int64],
        key2_index: int,
        first: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]],
        second: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]],
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.int64]]:
        """Where the rows of a ref-match table go: the chunk of each of its two directors.

        A row goes to its first director's chunk and, when that differs, also to
        its second director's; both copies carry the first director's chunk in
        ``chunkId`` (the second's when the first is unknown), so a query reading
        the match table alone keeps one copy with ``chunkId = <chunk>``.  A row
        with neither director known fails the ingest, naming its line.
        Returns (block rows, placement chunks, sub-chunks, chunkId column values).
        """
        key2_values, key2_nulls = loaddata.int_column(block, starts, ends, key2_index, table.director_key2)

        def lookup(index: tuple[Any, Any, Any], values: Any) -> tuple[Any, Any, Any]:
            keys, chunks, subs = index
            where = np.minimum(np.searchsorted(keys, values), keys.size - 1)
            return keys[where] == values, chunks[where], subs[where].astype(np.int32)

        found1, chunk1, sub1 = lookup(first, key_values)
        found2, chunk2, sub2 = lookup(second, key2_values)
        found2 &= ~key2_nulls
        neither = np.flatnonzero(~found1 & ~found2)
        if neither.size:
            raise InputFormatError(
                block.path, block.line_of(int(neither[0])),
                f"{neither.size} row(s) match neither a known {table.director_table}.{table.director_key} "
                f"nor a known {table.director_table2}.{table.director_key2}",
            )
        primary = np.where(found1, chunk1, chunk2).astype(np.int64)
        primary_sub = np.where(found1, sub1, sub2).astype(np.int32)
        also = np.flatnonzero(found1 & found2 & (chunk2 != chunk1))
        rows = np.concatenate([np.arange(block.nrows), also]).astype(np.int64)
        chunks = np.concatenate([primary, chunk2[also]]).astype(np.int64)
        subs = np.concatenate([primary_sub, sub2[also]]).astype(np.int32)
        column = np.concatenate([primary, chunk1[also]]).astype(np.int64)
        return rows, chunks, subs, column

    def _chunk_segments(
        self,
        table: Table,
        prefix: str,
        block: Block,
        rows: npt.NDArray[np.int64],
        chunk_ids: npt.NDArray[Any],
        sub_ids: npt.NDArray[Any],
        column_chunks: npt.NDArray[Any] | None = None,
    ) -> list[tuple[int, _Segment]]:
        """The rows ``rows`` of ``block`` cut into one segment per chunk (table ``<prefix>_<chunk>``).

        The ``chunkId`` column gets ``column_chunks`` when given (a ref-match row's
        copy in its second director's chunk keeps the first director's chunk).
        """
        if rows.size == 0:
            return []
        order = loaddata.stable_order(chunk_ids)
        sorted_chunks = chunk_ids[order]
        selected = rows[order]
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(sorted_chunks)) + 1, [rows.size])).tolist()
        written = sorted_chunks if column_chunks is None else column_chunks[order]
        texts = loaddata.append_columns_grouped(block, selected, [written, sub_ids[order]], bounds)
        segments: list[tuple[int, _Segment]] = []
        for a, b, text in zip(bounds[:-1], bounds[1:], texts, strict=True):
            chunk_id = int(sorted_chunks[a])
            physical = f"{prefix}_{chunk_id}"
            segments.append(
                (
                    chunk_id,
                    _Segment(
                        physical,
                        chunk_table_ddl(table, physical),
                        text,
                        selected[a:b],
                        block,
                    ),
                )
            )
        return segments

    def _complete_chunk_tables(
        self, table: Table, new_replicas: dict[int, tuple[str, ...]], loaded: dict[str, set[str]]
    ) -> None:
        """Every partitioned table of the database gets a table in every chunk (empty if no rows)."""
        existing = self.css.chunk_placement(table.database).replicas
        all_chunks: dict[int, tuple[str, ...]] = {**existing, **new_replicas}
        partitioned = [t for t in self.css.tables(table.database) if t.partitioned]
        if table.partitioned:
            partitioned.append(table)
        statements: dict[str, list[str]] = defaultdict(list)
        for worker_id in self.links.workers:
            for other in partitioned:
                for physical in (f"{other.name}_{EMPTY_CHUNK}", f"{other.name}FullOverlap_{EMPTY_CHUNK}"):
                    statements[worker_id].append(chunk_table_ddl(other, physical))
                    if other is table:
                        loaded[worker_id].add(physical)
        for chunk_id, workers in all_chunks.items():
            for worker_id in workers:
                for other in partitioned:
                    for physical in (f"{other.name}_{chunk_id}", f"{other.name}FullOverlap_{chunk_id}"):
                        if other is table and physical in loaded[worker_id]:
                            continue  # created by this ingest's loads already
                        statements[worker_id].append(chunk_table_ddl(other, physical))
                        if other is table:
                            loaded[worker_id].add(physical)
        for worker_id, ddl in statements.items():
            self._admin_in_batches(worker_id, ddl)

    def _roll_back(self, table: Table, loaded: dict[str, set[str]]) -> None:
        """Drop what this ingest created and forget the table."""
        for worker_id, physical_tables in loaded.items():
            names = sorted(physical_tables)
            for start in range(0, len(names), 200):
                try:
                    self._admin(
                        worker_id,
                        [
                            "DROP TABLE IF EXISTS "
                            + ", ".join(f"{quote(table.database)}.{quote(n)}" for n in names[start : start + 200])
                        ],
                    )
                except Exception:
                    log.exception("could not drop tables of failed ingest on worker %s", worker_id)
        if table.partitioned:
            try:
                connection = self.czar_db.connect()
                try:
                    connection.cursor().execute(
                        f"DROP TABLE IF EXISTS {quote(INDEX_DATABASE)}."
                        f"{quote(index_table_name(table.database, table.name))}, {quote(INDEX_DATABASE)}."
                        f"{quote(orphan_table_name(table.database, table.name))}"
                    )
                finally:
                    connection.close()
            except Exception:
                log.exception("could not drop the director index of %s.%s", table.database, table.name)
        try:
            self.css.drop_table(table.database, table.name)
        except Exception:
            log.exception("could not remove the css record of %s.%s", table.database, table.name)

    # -- gRPC -----------------------------------------------------------------
    def _admin(self, worker_id: str, statements: list[str]) -> None:
        try:
            self.links.stub(worker_id).Admin(pb.AdminRequest(statements=statements), timeout=600)
        except grpc.RpcError as exc:
            raise IngestError(f"worker {worker_id}: {exc.details()}") from exc  # type: ignore[attr-defined]

    def _admin_in_batches(self, worker_id: str, statements: list[str], batch: int = 500) -> None:
        for start in range(0, len(statements), batch):
            self._admin(worker_id, statements[start : start + batch])

    def _load_batch(
        self,
        worker_id: str,
        database: str,
        fmt: TextFormat,
        segments: list[tuple[_Segment, bool]],
        defer_keys: bool = False,
    ) -> pb.LoadBatchReply:
        """One LoadBatch call: ``segments`` with, for each, whether its table is new here
        (``defer_keys``: new tables get their keys disabled until :meth:`_Shipper.enable_keys`)."""
        header = pb.LoadBatchHeader(
            database=database,
            fields_terminated_by=fmt.fields_terminated_by.decode("latin1"),
            fields_enclosed_by=fmt.fields_enclosed_by.decode("latin1"),
            lines_terminated_by=fmt.lines_terminated_by.decode("latin1"),
            sql_mode="NO_ENGINE_SUBSTITUTION",
            character_set="binary",
            segments=[
                pb.LoadSegment(
                    table=segment.physical,
                    create_sql=segment.ddl if new else "",
                    replace=new,
                    defer_keys=new and defer_keys,
                    size=len(segment.data),
                    rows=int(segment.rows.size),
                )
                for segment, new in segments
            ],
        )

        def messages() -> Iterator[pb.LoadBatchRequest]:
            yield pb.LoadBatchRequest(header=header)
            pending: list[bytes | memoryview] = []
            size = 0
            for segment, _ in segments:
                view = memoryview(segment.data)
                while len(view):
                    take = view[: PIECE_BYTES - size]
                    pending.append(take)
                    size += len(take)
                    view = view[len(take) :]
                    if size >= PIECE_BYTES:
                        yield pb.LoadBatchRequest(data=b"".join(pending))
                        pending, size = [], 0
            if pending:
                yield pb.LoadBatchRequest(data=b"".join(pending))

        try:
            reply: pb.LoadBatchReply = self.links.stub(worker_id).LoadBatch(messages(), timeout=3600)
        except grpc.RpcError as exc:
            raise IngestError(f"worker {worker_id}: {exc.details()}") from exc  # type: ignore[attr-defined]
        return reply

    def _report(self, summary: IngestSummary, nbytes: int) -> None:
        if self.progress is not None:
            self.progress(summary.table, summary.rows, nbytes, summary.chunks)


@dataclass(eq=False)
class _Segment:
    """Rows of one block bound for one physical table, and where they came from."""

    physical: str
    ddl: str
    data: bytes | memoryview
    rows: npt.NDArray[np.int64]  # block row of each row in ``data`` (for line numbers)
    block: Block


_ROW_IN_WARNING = re.compile(r"\brow (\d+)", re.IGNORECASE)


class _Shipper:
    """Ships batches of segments to the workers, one batch in flight per worker.

    Each worker has a thread of its own, so the workers load in parallel
    while the caller partitions the next block.  Every reply is checked:
    each segment's loaded row count must equal what was sent (on every
    replica), and a MariaDB warning (bad value, wrong column count) fails
    the ingest naming the input file and line it came from.
    """

    def __init__(self, ingester: Ingester, table: Table, summary: IngestSummary,
                 loaded: dict[str, set[str]], *, defer_keys: bool = False) -> None:
        self.ingester = ingester
        # Chunk tables are created with their keys disabled and get them by one sort at the end
        # (enable_keys): keys kept up to date through every block's load cost their MariaDB about
        # 1.6x the CPU (300 tables, 8 loads of 350 rows each: 3.3 s against 2.0 + 0.4 s).
        self.defer_keys = defer_keys
        self.table = table
        self.summary = summary
        self.loaded = loaded
        self.started: set[tuple[str, str]] = set()
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(ingester.links.workers)),
                                       thread_name_prefix="ingest-load")
        self.inflight: dict[str, Future[None]] = {}

    def ship(self, worker_id: str, fmt: TextFormat, segments: list[_Segment]) -> None:
        previous = self.inflight.pop(worker_id, None)
        if previous is not None:
            previous.result()
        batch: list[tuple[_Segment, bool]] = []
        for segment in segments:
            key = (worker_id, segment.physical)
            batch.append((segment, key not in self.started))
            self.started.add(key)
            self.loaded[worker_id].add(segment.physical)
        self.inflight[worker_id] = self.pool.submit(self._run, worker_id, fmt, batch)

    def _run(self, worker_id: str, fmt: TextFormat, batch: list[tuple[_Segment, bool]]) -> None:
        reply = self.ingester._load_batch(worker_id, self.table.database, fmt, batch, self.defer_keys)
        if len(reply.segments) != len(batch):
            raise IngestError(f"worker {worker_id} answered for {len(reply.segments)} of {len(batch)} tables")
        total = 0
        for (segment, _), result in zip(batch, reply.segments, strict=True):
            if result.warnings:
                raise self._warning_error(worker_id, segment, result)
            if result.rows_loaded != segment.rows.size:
                raise IngestError(
                    f"worker {worker_id} loaded {result.rows_loaded} of {segment.rows.size} rows into "
                    f"{self.table.database}.{segment.physical}"
                )
            if "FullOverlap_" not in segment.physical:
                total += int(result.rows_loaded)
        with _SUMMARY_LOCK:
            rows = self.summary.rows_per_worker
            rows[worker_id] = rows.get(worker_id, 0) + total

    def _warning_error(self, worker_id: str, segment: _Segment, result: pb.SegmentResult) -> InputFormatError:
        messages = list(result.warning_messages)
        line: int | None = None
        for message in messages:
            match = _ROW_IN_WARNING.search(message)
            if match and 0 < int(match.group(1)) <= segment.rows.size:
                line = segment.block.line_of(int(segment.rows[int(match.group(1)) - 1]))
                break
        detail = "; ".join(messages) or "bad values or a wrong column count"
        return InputFormatError(
            segment.block.path, line,
            f"MariaDB on worker {worker_id} gave {result.warnings} warning(s) loading "
            f"{self.table.database}.{segment.physical}: {detail}",
        )

    def finish(self) -> None:
        """Wait for every batch; raise the first failure."""
        for worker_id in sorted(self.inflight):
            self.inflight.pop(worker_id).result()

    def enable_keys(self) -> None:
        """Build the keys of every table this shipper created with them disabled (after :meth:`finish`),
        on every worker at once."""
        if not self.defer_keys:
            return
        tables: dict[str, list[str]] = defaultdict(list)
        for worker_id, physical in sorted(self.started):
            tables[worker_id].append(physical)
        database = quote(self.table.database)
        futures = [
            self.pool.submit(self.ingester._admin_in_batches, worker_id,
                             [f"ALTER TABLE {database}.{quote(name)} ENABLE KEYS" for name in names])
            for worker_id, names in tables.items()
        ]
        for future in futures:
            future.result()

    def drain(self) -> None:
        """Wait for whatever is still running (after a failure, before dropping tables)."""
        for future in self.inflight.values():
            try:
                future.result()
            except BaseException:
                pass
        self.inflight.clear()
        self.pool.shutdown(wait=True)


_SUMMARY_LOCK = threading.Lock()


class DirectorIndexBuilder:
    """The director index table in the czar's MariaDB: key -> (chunkId, subChunkId).

    Built while the workers load: each block's entries go in by ``LOAD
    DATA`` from a thread of its own, into a MyISAM table whose key on ``key``
    is disabled meanwhile and built once, by sort, at the end (``ENABLE
    KEYS``; an ``ADD PRIMARY KEY`` instead copied the whole table first).
    The key is not declared unique, so uniqueness is checked on the built key
    afterwards: a duplicate director key fails the ingest.

    The entries go as a file the server reads itself when this process can
    put one where the server sees it (:meth:`_server_directory`), else by
    ``LOAD DATA LOCAL``.  LOCAL implies IGNORE, and an IGNORE load makes
    MyISAM write row by row instead of through its write cache: 5M entries
    cost the server about 7x the CPU, most of it in system calls.
    """

    def __init__(self, czar_db: ServerAddress, table: Table, *, orphans: bool = False) -> None:
        self.table = table
        self.unique = not orphans
        physical = orphan_table_name(table.database, table.name) if orphans else index_table_name(table.database, table.name)
        self.name = f"{quote(INDEX_DATABASE)}.{quote(physical)}"
        self.connection = czar_db.connect()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-index")
        self.pending: Future[None] | None = None
        self.dir = tempfile.TemporaryDirectory(prefix="skyshard-index-")
        self.pieces = 0
        self.closed = False
        cursor = self.connection.cursor()
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS {quote(INDEX_DATABASE)}")
        cursor.execute(f"DROP TABLE IF EXISTS {self.name}")
        cursor.execute(
            f"CREATE TABLE {self.name} (`key` BIGINT NOT NULL, chunkId INT NOT NULL,"
            " subChunkId INT NOT NULL, KEY (`key`)) ENGINE=MyISAM"
        )
        cursor.execute(f"ALTER TABLE {self.name} DISABLE KEYS")
        self.server_dir = self._server_directory()

    def _server_directory(self) -> Path | None:
        """A directory where a file this process writes is read by the server as written (its
        ``secure_file_priv``, or anywhere when that is empty), checked with ``LOAD_FILE``; None
        when there is none (another machine or mount, no FILE privilege, loads disabled)."""
        cursor = self.connection.cursor()
        try:
            cursor.execute("SELECT @@secure_file_priv")
            row = cursor.fetchone()
        except pymysql.MySQLError:
            return None
        if row is None or row[0] is None:
            return None  # NULL: the server reads no files at all
        directory = Path(row[0]) if row[0] else Path(self.dir.name)
        token = uuid.uuid4().hex
        probe = directory / f"skyshard-probe-{token}"
        try:
            probe.write_text(token)
            probe.chmod(0o644)
        except OSError:
            return None
        try:
            cursor.execute("SELECT LOAD_FILE(%s)", (str(probe),))
            seen = cursor.fetchone()
        except pymysql.MySQLError:
            seen = None
        finally:
            probe.unlink(missing_ok=True)
        return directory if seen is not None and seen[0] in (token, token.encode()) else None

    def add(self, keys: npt.NDArray[np.int64], chunks: npt.NDArray[Any], subs: npt.NDArray[Any]) -> None:
        self._wait()
        self.pending = self.pool.submit(self._load, keys, chunks, subs)

    def _wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def _load(self, keys: npt.NDArray[np.int64], chunks: npt.NDArray[Any], subs: npt.NDArray[Any]) -> None:
        directory = self.server_dir or Path(self.dir.name)
        path = directory / f"skyshard-index-{uuid.uuid4().hex}-{self.pieces}.tsv"
        self.pieces += 1
        path.write_bytes(loaddata.int_rows_text([keys, chunks, subs]))
        try:
            if self.server_dir is not None:
                path.chmod(0o644)
                self._execute(f"LOAD DATA INFILE %s INTO TABLE {self.name}", (str(path),))
            else:
                self._execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE {self.name}", (str(path),))
        finally:
            path.unlink(missing_ok=True)

    def _execute(self, sql: str, args: Any = None) -> None:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, args)
        except Exception as exc:
            raise IngestError(f"building the director index of {self.table.name} failed: {exc}") from exc
        if cursor.warning_count:
            cursor.execute("SHOW WARNINGS LIMIT 3")
            detail = "; ".join(str(w[2]) for w in cursor.fetchall())
            raise IngestError(f"director index of {self.table.name}: {detail}")

    def finish(self) -> None:
        try:
            self._wait()
            self._execute(f"ALTER TABLE {self.name} ENABLE KEYS")
            if self.unique:
                cursor = self.connection.cursor()
                cursor.execute(
                    f"SELECT `key`, COUNT(*) FROM {self.name} GROUP BY `key` HAVING COUNT(*) > 1 LIMIT 1"
                )
                duplicate = cursor.fetchone()
                if duplicate is not None:
                    raise IngestError(
                        f"director key {self.table.director_key} = {duplicate[0]} appears "
                        f"{duplicate[1]} times in the input of {self.table.name}"
                    )
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._wait()
        except BaseException:
            pass
        self.pool.shutdown(wait=True)
        self.connection.close()
        self.dir.cleanup()
