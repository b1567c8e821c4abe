"""Ingest: partition input files, load chunk tables on the workers, publish atomically.

Owns the ingest workflow for one table: register it in css as LOADING
(invisible), partition its rows (director: own position; child: director
key -> chunk through the director index; replicated: whole file to every
worker), choose placement for new chunks (balanced, with replicas), stream
chunk data to every replica through the worker's gRPC ``Load`` call, build
the director index in the czar's MariaDB, make sure every partitioned table
has a (possibly empty) table in every chunk, and publish in one css
transaction.  A failure anywhere drops what was loaded and leaves nothing
visible.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from css import Column, Css, Family, Table, TableKind, TableState
from ingest import loaddata
from ingest.config import DatabaseConfig, TableConfig, rewrite_create_table
from ingest.loaddata import Block, InputFormatError, TextFormat
from ingest.partitioner import Chunker
from proto import worker_pb2 as pb
from proto import worker_pb2_grpc as pb_grpc
from skyshard.mariadb import ServerAddress

log = logging.getLogger("skyshard.ingest")

EMPTY_CHUNK = 1234567890  # see czar.planner.context.EMPTY_CHUNK
INDEX_DATABASE = "skyshard_index"
PIECE_BYTES = 4 << 20
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
        table = self._table_from_config(config)
        self.css.add_table(table)
        summary = IngestSummary(config.database, config.name, table.kind)
        loaded: dict[str, set[str]] = defaultdict(set)  # worker -> physical tables created
        try:
            chunker = Chunker(
                database.family.num_stripes, database.family.num_sub_stripes, database.family.overlap
            )
            if table.kind is TableKind.REPLICATED:
                self._load_replicated(table, config.text_format, files, summary, loaded)
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

    def _blocks(self, files: Iterable[Path], fmt: TextFormat) -> Iterator[Block]:
        for path in files:
            if str(path).endswith(".parquet"):
                raise IngestError("Parquet input is not supported by this loader yet")
            yield from loaddata.iter_blocks(path, fmt, block_bytes=self.block_bytes)

    # -- replicated -----------------------------------------------------------
    def _load_replicated(
        self,
        table: Table,
        fmt: TextFormat,
        files: Iterable[Path],
        summary: IngestSummary,
        loaded: dict[str, set[str]],
    ) -> None:
        workers = sorted(self.links.workers)
        ddl = chunk_table_ddl(table, table.name)
        first = True
        for block in self._blocks(files, fmt):
            loaddata.field_bounds(block, fmt, len(table.columns))
            data = loaddata.gather_rows(block, np.arange(block.nrows))
            for worker_id in workers:
                rows = self._load(worker_id, table, table.name, ddl, data, fmt, replace=first)
                loaded[worker_id].add(table.name)
                if rows != block.nrows:
                    raise IngestError(
                        f"worker {worker_id} loaded {rows} of {block.nrows} rows of {block.path}"
                    )
                summary.rows_per_worker[worker_id] = summary.rows_per_worker.get(worker_id, 0) + rows
            first = False
            summary.rows += block.nrows
            self._report(summary, len(data))
        if first:  # no input rows: still create the table everywhere
            for worker_id in workers:
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

    def _director_lookup(self, table: Table) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The director index of ``table``'s director: sorted keys, chunk ids, sub-chunk ids."""
        director = table.director_table
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
        fmt = config.text_format
        ncols = config.field_count
        is_director = table.kind is TableKind.DIRECTOR
        key_index = self._column_index(config, table.director_key, "director key")
        if is_director:
            lon_index = self._column_index(config, table.longitude_column, "longitude")
            lat_index = self._column_index(config, table.latitude_column, "latitude")
            index_rows: list[bytes] = []
        else:
            keys, key_chunks, key_subs = self._director_lookup(table)
        planned: dict[int, tuple[str, ...]] = {}
        started_tables: set[tuple[str, str]] = set()
        chunks_seen: set[int] = set()
        for block in self._blocks(files, fmt):
            starts, ends = loaddata.field_bounds(block, fmt, ncols)
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
                index_rows.append(
                    _index_tsv(key_values, chunk_ids, sub_ids)
                )
            else:
                where = np.searchsorted(keys, key_values)
                where = np.minimum(where, keys.size - 1)
                found = keys[where] == key_values
                chunk_ids = key_chunks[where].copy()
                sub_ids = key_subs[where].astype(np.int32)
                missing = np.flatnonzero(~found)
                if missing.size and table.longitude_column and table.latitude_column:
                    # Rows whose director is unknown are placed by their own position
                    # (as Qserv's partitioner does for child tables) and reported.
                    lon = loaddata.float_column(block, starts, ends, self._column_index(config, table.longitude_column, "longitude"))
                    lat = loaddata.float_column(block, starts, ends, self._column_index(config, table.latitude_column, "latitude"))
                    own_chunks, own_subs = chunker.locate(lon[missing], lat[missing])
                    chunk_ids[missing] = own_chunks
                    sub_ids[missing] = own_subs
                    summary.orphan_rows += int(missing.size)
                    summary.orphan_lines.extend(block.line_of(int(r)) for r in missing[: 10 - len(summary.orphan_lines)])
                elif missing.size:
                    lines = ", ".join(str(block.line_of(int(r))) for r in missing[:10])
                    raise InputFormatError(
                        block.path,
                        block.line_of(int(missing[0])),
                        f"{missing.size} row(s) have a director key ({table.director_key}) that is not "
                        f"in {table.director_table}; lines {lines}{'...' if missing.size > 10 else ''}",
                    )
            placement = self._placement(table.database, np.unique(chunk_ids).tolist(), planned)
            order = np.argsort(chunk_ids, kind="stable")
            sorted_chunks = chunk_ids[order]
            bounds = np.flatnonzero(np.diff(sorted_chunks)) + 1
            for rows in np.split(order, bounds):
                if rows.size == 0:
                    continue
                chunk_id = int(chunk_ids[rows[0]])
                chunks_seen.add(chunk_id)
                data = loaddata.append_columns(block, rows, [chunk_ids[rows], sub_ids[rows]])
                physical = f"{table.name}_{chunk_id}"
                for worker_id in placement[chunk_id]:
                    first = (worker_id, physical) not in started_tables
                    started_tables.add((worker_id, physical))
                    loaded[worker_id].add(physical)
                    count = self._load(worker_id, table, physical, chunk_table_ddl(table, physical), data, fmt, replace=first)
                    if count != rows.size:
                        raise IngestError(
                            f"worker {worker_id} loaded {count} of {rows.size} rows into {physical}"
                        )
                    summary.rows_per_worker[worker_id] = summary.rows_per_worker.get(worker_id, 0) + count
            if is_director and chunker.overlap > 0:
                summary.overlap_rows += self._load_overlap(
                    table, block, lon, lat, chunker, planned, started_tables, loaded
                )
            summary.rows += block.nrows
            summary.chunks = len(chunks_seen)
            self._report(summary, len(block.data))
        if is_director:
            self._build_index(table, index_rows)
        return planned

    def _load_overlap(
        self,
        table: Table,
        block: Block,
        lon: npt.NDArray[np.float64],
        lat: npt.NDArray[np.float64],
        chunker: Chunker,
        planned: dict[int, tuple[str, ...]],
        started_tables: set[tuple[str, str]],
        loaded: dict[str, set[str]],
    ) -> int:
        # Qserv's FullOverlap_<chunk>: one copy per sub-chunk of <chunk> whose overlap
        # holds the row (own chunk included), carrying that sub-chunk's ids.
        rows, chunk_ids, sub_ids = chunker.overlap_locations(lon, lat)
        if rows.size == 0:
            return 0
        placement = self._placement(table.database, np.unique(chunk_ids).tolist(), planned)
        order = np.argsort(chunk_ids, kind="stable")
        bounds = np.flatnonzero(np.diff(chunk_ids[order])) + 1
        total = 0
        fmt = block.fmt
        for part in np.split(order, bounds):
            chunk_id = int(chunk_ids[part[0]])
            part_rows = rows[part]
            data = loaddata.append_columns(block, part_rows, [chunk_ids[part], sub_ids[part]])
            physical = f"{table.name}FullOverlap_{chunk_id}"
            for worker_id in placement[chunk_id]:
                first = (worker_id, physical) not in started_tables
                started_tables.add((worker_id, physical))
                loaded[worker_id].add(physical)
                self._load(worker_id, table, physical, chunk_table_ddl(table, physical), data, fmt, replace=first)
            total += part_rows.size
        return total

    def _build_index(self, table: Table, pieces: list[bytes]) -> None:
        """The director index table in the czar's MariaDB: key -> (chunkId, subChunkId)."""
        import tempfile

        name = f"{quote(INDEX_DATABASE)}.{quote(index_table_name(table.database, table.name))}"
        connection = self.czar_db.connect()
        try:
            cursor = connection.cursor()
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS {quote(INDEX_DATABASE)}")
            cursor.execute(f"DROP TABLE IF EXISTS {name}")
            cursor.execute(
                f"CREATE TABLE {name} (`key` BIGINT NOT NULL PRIMARY KEY, chunkId INT NOT NULL,"
                " subChunkId INT NOT NULL) ENGINE=InnoDB"
            )
            with tempfile.NamedTemporaryFile(suffix=".tsv") as handle:
                for piece in pieces:
                    handle.write(piece)
                handle.flush()
                try:
                    cursor.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE {name}", (handle.name,))
                except Exception as exc:
                    raise IngestError(f"building the director index of {table.name} failed: {exc}") from exc
                cursor.execute("SELECT @@warning_count")
                warnings = int(cursor.fetchone()[0])
                if warnings:
                    cursor.execute("SHOW WARNINGS LIMIT 3")
                    detail = "; ".join(str(w[2]) for w in cursor.fetchall())
                    raise IngestError(
                        f"director index of {table.name}: {warnings} problem(s), e.g. duplicate "
                        f"director key: {detail}"
                    )
        finally:
            connection.close()

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
                        statements[worker_id].append(chunk_table_ddl(other, physical))
                        if other is table:
                            loaded[worker_id].add(physical)
        for worker_id, ddl in statements.items():
            for start in range(0, len(ddl), 500):
                self._admin(worker_id, ddl[start : start + 500])

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

    def _load(
        self,
        worker_id: str,
        table: Table,
        physical: str,
        ddl: str,
        data: bytes,
        fmt: TextFormat,
        *,
        replace: bool,
    ) -> int:
        header = pb.LoadHeader(
            database=table.database,
            table=physical,
            create_sql=ddl,
            replace=replace,
            fields_terminated_by=fmt.fields_terminated_by.decode("latin1"),
            fields_enclosed_by=fmt.fields_enclosed_by.decode("latin1"),
            lines_terminated_by=fmt.lines_terminated_by.decode("latin1"),
            sql_mode="NO_ENGINE_SUBSTITUTION",
            character_set="binary",
        )

        def messages() -> Iterator[pb.LoadRequest]:
            yield pb.LoadRequest(header=header)
            for start in range(0, len(data), PIECE_BYTES):
                yield pb.LoadRequest(data=data[start : start + PIECE_BYTES])

        try:
            reply = self.links.stub(worker_id).Load(messages(), timeout=3600)
        except grpc.RpcError as exc:
            raise IngestError(f"worker {worker_id}: {exc.details()}") from exc  # type: ignore[attr-defined]
        if reply.warnings:
            raise IngestError(
                f"worker {worker_id}: loading {table.database}.{physical} gave {reply.warnings} "
                "warning(s) (bad values or a wrong column count)"
            )
        return int(reply.rows_loaded)

    def _report(self, summary: IngestSummary, nbytes: int) -> None:
        if self.progress is not None:
            self.progress(summary.table, summary.rows, nbytes, summary.chunks)


def _index_tsv(keys: npt.NDArray[np.int64], chunks: npt.NDArray[Any], subs: npt.NDArray[Any]) -> bytes:
    """Rows ``key\\tchunk\\tsub\\n`` for LOAD DATA, built with numpy string ops."""
    if keys.size == 0:
        return b""
    table = np.char.add(
        np.char.add(np.char.add(np.char.add(keys.astype("S20"), b"\t"), chunks.astype("S11")), b"\t"),
        np.char.add(subs.astype("S11"), b"\n"),
    )
    return b"".join(table.tolist())
