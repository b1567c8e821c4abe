"""Runs chunk tasks and loads on the worker's own MariaDB.

Owns the blocking side of the worker: a small connection pool, running one
SELECT into a spool file (``SELECT ... INTO OUTFILE``, so MariaDB itself
encodes the rows), reading the result schema, killing a running statement,
and ``LOAD DATA INFILE`` for loads (fed through named pipes, see
:meth:`Executor.load_segments`).  It knows nothing about gRPC; the
service in :mod:`worker.service` calls it from a thread pool, except for a
task whose shape is already probed: :meth:`Executor.quick_statement` gives
its one statement and a connection, which the service runs from its event
loop (:mod:`skyshard.quick`).
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
from pymysql.constants import CLIENT

from skyshard.mariadb import ConnectionPool, ServerAddress

_COLUMN_LINE = re.compile(r"^\s+`((?:[^`]|``)+)`\s+(.*?),?$")
_ALLOWED_ADMIN = re.compile(
    r"^\s*(CREATE\s+(DATABASE|TABLE|FUNCTION|INDEX)|DROP\s+(DATABASE|TABLE|FUNCTION)|"
    r"RENAME\s+TABLE|ALTER\s+TABLE|TRUNCATE\s+TABLE|ANALYZE\s+TABLE|FLUSH\s+TABLES)\b",
    re.IGNORECASE,
)


_SELECT = re.compile(r"^\(?\s*(SELECT|WITH)\b", re.IGNORECASE)  # what a chunk task may run

SCRATCH_DATABASE = "skyshard_scratch"
LOAD_STATEMENTS_PER_TRIP = 256  # segments whose statements go in one multi-statement query
PIPE_BYTES = 1 << 20  # load pipe buffer (the default 64 KiB: 20% longer loads in a benchmark)


class TaskError(Exception):
    """A statement failed on the worker's MariaDB; carries the MariaDB errno."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


class TaskKilled(TaskError):
    """The statement was stopped by a cancel."""


@dataclass(frozen=True)
class ColumnDef:
    name: str
    definition: str


@dataclass(frozen=True)
class SpooledResult:
    """A chunk result written by MariaDB into the spool directory (one file per statement)."""

    columns: list[ColumnDef]
    paths: list[Path]
    row_count: int

    @property
    def size(self) -> int:
        return sum(path.stat().st_size for path in self.paths)

    def discard(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class QuickStatement:
    """A chunk task ready to run as one statement from the event loop (:meth:`Executor.quick_statement`)."""

    columns: list[ColumnDef]
    sql: str  # the SELECT (or UNION ALL of the group's SELECTs) INTO OUTFILE path
    path: Path
    connection: Any  # an idle pooled connection already using the task's database


@dataclass(frozen=True)
class LoadSegment:
    """One table's part of a batched load: its rows as LOAD DATA text (empty: create only)."""

    table: str
    data: bytes | memoryview
    create_sql: str = ""
    replace: bool = False
    defer_keys: bool = False  # disable the new table's non-unique keys (the sender enables them)


@dataclass(frozen=True)
class SegmentOutcome:
    table: str
    rows_loaded: int
    warnings: int
    warning_messages: list[str]


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0")
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return "'" + escaped + "'"


_DEFAULT = re.compile(r" DEFAULT (?:'(?:[^'\\]|''|\\.)*'|\S+)")


def _types(columns: list[ColumnDef]) -> list[tuple[str, str]]:
    """Names and definitions less their DEFAULT clause (a union adds ``DEFAULT 0``; values never use it)."""
    return [(c.name, _DEFAULT.sub("", c.definition)) for c in columns]


_SHAPE_HOLE = re.compile(r"__SKYSHARD_(?:CHUNK|SUBCHUNKS|[PA]\d+|B\d+_\d)__")
# What __SKYSHARD_SUBCHUNKS__ stands for: a chunk's sub-chunks to read, or TRUE (all of them).
_SUB_CHUNKS = r"(?:TRUE|`[^`]+`\.`subChunkId` IN \([0-9]+(?:, [0-9]+)*\))"
PROBE_CACHE_ENTRIES = 1024


@dataclass
class _Probed:
    columns: list[ColumnDef]
    pattern: re.Pattern[str]  # the statements this shape stands for
    unions: dict[int, bool] = field(default_factory=dict)  # statements in a group -> union keeps the types


def shape_pattern(shape: str) -> re.Pattern[str]:
    """The statements ``shape`` stands for: a chunk id where ``__SKYSHARD_CHUNK__`` is, a number
    where a ``__SKYSHARD_P<n>__``/``__SKYSHARD_A<n>__`` parameter is, a sub-chunk restriction
    where ``__SKYSHARD_SUBCHUNKS__`` is (a WHERE term: it never changes a result column),
    everything else as it is."""
    parts = []
    last = 0
    for hole in _SHAPE_HOLE.finditer(shape):
        parts.append(re.escape(shape[last : hole.start()]))
        if hole.group() == "__SKYSHARD_CHUNK__":
            parts.append("[0-9]+")
        elif hole.group() == "__SKYSHARD_SUBCHUNKS__":
            parts.append(_SUB_CHUNKS)
        else:
            parts.append("-?[0-9][0-9.eE+-]*")
        last = hole.end()
    parts.append(re.escape(shape[last:]))
    return re.compile("".join(parts))


class ProbeCache:
    """Result columns of the chunk SQL shapes probed on this worker (thread-safe, LRU).

    A shape (``ChunkTask.probe_key``) is the chunk SQL with the chunk id and
    the WHERE clause's parameters as placeholders.  Statements of one shape
    differ only in which chunk table they read (every chunk table of a table
    is created by ingest with one definition) and in numbers of the WHERE
    clause (which never change a result column), so they have the same
    columns.  An entry is used only for statements that are instances of
    its shape (checked against :func:`shape_pattern`), and only while no
    table may have changed: every ``LoadBatch`` and ``Admin`` call runs in
    :meth:`changing`, which empties the cache when it starts and when it ends
    (failed or not) and keeps it unused in between; a probe that started
    before a change is not stored.
    """

    def __init__(self, max_entries: int = PROBE_CACHE_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], _Probed] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0
        self._changing = 0
        self.hits = 0
        self.misses = 0

    def lookup(self, database: str, shape: str, statements: Sequence[str], count_miss: bool = True) -> _Probed | None:
        """The entry for ``shape`` if every statement is an instance of it (``count_miss``: count
        a miss in :attr:`misses`; a caller that asks again on a miss passes False)."""
        if not shape:
            return None
        with self._lock:
            entry = None if self._changing else self._entries.get((database, shape))
            if entry is not None:
                self._entries.move_to_end((database, shape))
        hit = entry is not None and all(entry.pattern.fullmatch(s) for s in statements)
        with self._lock:
            if hit:
                self.hits += 1
            elif count_miss:
                self.misses += 1
        return entry if hit else None

    def generation(self) -> int:
        return self._generation

    def store(self, database: str, shape: str, generation: int, statements: Sequence[str],
              columns: list[ColumnDef]) -> _Probed | None:
        """Remember what a probe that started at ``generation`` found (unless a change came since)."""
        if not shape:
            return None
        pattern = shape_pattern(shape)
        if not all(pattern.fullmatch(s) for s in statements):
            return None  # not what the shape says: never reused
        entry = _Probed(list(columns), pattern)
        with self._lock:
            if self._changing or generation != self._generation:
                return None
            self._entries[(database, shape)] = entry
            self._entries.move_to_end((database, shape))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return entry

    def set_union(self, entry: _Probed | None, generation: int, statements: int, keeps_types: bool) -> None:
        with self._lock:
            if entry is not None and not self._changing and generation == self._generation:
                entry.unions[statements] = keeps_types

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    @contextmanager
    def changing(self) -> Iterator[None]:
        """Around anything that may change a table definition: the cache is emptied and unused."""
        with self._lock:
            self._changing += 1
            self._generation += 1
            self._entries.clear()
        try:
            yield
        finally:
            with self._lock:
                self._changing -= 1
                self._generation += 1
                self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def parse_create_table_columns(create_sql: str) -> list[ColumnDef]:
    """Column names and definitions from MariaDB's SHOW CREATE TABLE output."""
    columns = []
    for line in create_sql.splitlines()[1:]:
        match = _COLUMN_LINE.match(line)
        if match:
            columns.append(ColumnDef(match.group(1).replace("``", "`"), match.group(2)))
    return columns


SPOOL_LEFTOVERS = ("result-*.tsv", "load-*.fifo")  # what this module names its spool files


def clear_spool(spool_dir: Path) -> int:
    """Remove the result files and load pipes a previous worker process left in ``spool_dir``
    (one killed mid-task); other files stay.  Call at start-up only: a running worker's tasks use
    these names.  Returns how many were removed."""
    removed = 0
    for pattern in SPOOL_LEFTOVERS:
        for path in Path(spool_dir).glob(pattern):
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


class Executor:
    """Blocking operations on the worker's MariaDB."""

    def __init__(self, address: ServerAddress, spool_dir: Path, pool_size: int = 16) -> None:
        self.address = address
        self.spool_dir = Path(spool_dir)
        self.pool = ConnectionPool(address, pool_size)
        # Loads send many statements per round trip (see load_segments): only on
        # connections of their own, so query tasks never run multi-statements.
        self.load_pool = ConnectionPool(address, 2, client_flag=CLIENT.MULTI_STATEMENTS)
        self.probe_cache = ProbeCache()

    # -- queries ------------------------------------------------------------
    def _into_spool(self, select: str) -> tuple[str, Path]:
        """``select`` writing into a new spool file, and that file's path."""
        path = self.spool_dir / f"result-{uuid.uuid4().hex}.tsv"
        return f"{select} INTO OUTFILE {quote_string(str(path))} CHARACTER SET binary", path

    def run_query(
        self,
        database: str,
        sql: str,
        on_thread_id: Callable[[int], None],
        more_sql: Sequence[str] = (),
        stopped: Callable[[], bool] = lambda: False,
        shape: str = "",
    ) -> SpooledResult:
        """Run SELECTs into spool files; ``on_thread_id`` learns the MariaDB thread to kill.

        ``sql`` and then each of ``more_sql`` (the same query on other chunks:
        same columns) run on one connection, each ``INTO OUTFILE`` its own
        file; the schema is read once, from a ``CREATE TEMPORARY TABLE ... AS
        SELECT ... LIMIT 0`` probe of ``sql``, or from :attr:`probe_cache` when
        ``shape`` (``ChunkTask.probe_key``) was probed since the last change of
        tables (and whether the group's union keeps the columns' types, per
        number of statements).  ``stopped`` is asked between statements (a
        cancel).
        """
        statements = _statements(sql, more_sql)
        for statement in statements:
            if not _SELECT.match(statement):
                raise TaskError("only SELECT statements run as chunk tasks", 1064)
        paths: list[Path] = []
        try:
            with self.pool.connection() as conn:
                on_thread_id(conn.thread_id())
                cursor = conn.cursor()
                try:
                    target = database or SCRATCH_DATABASE
                    # the default database is set once per pooled connection (remembered on it)
                    if getattr(conn, "_skyshard_db", None) != target:
                        if not database:
                            # the probe's temporary table needs a current database
                            cursor.execute(f"CREATE DATABASE IF NOT EXISTS {SCRATCH_DATABASE}")
                        conn._skyshard_db = None  # type: ignore[attr-defined]
                        cursor.execute(f"USE {quote_identifier(target)}")
                        conn._skyshard_db = target  # type: ignore[attr-defined]
                    create = "CREATE OR REPLACE TEMPORARY TABLE `_skyshard_probe`"
                    generation = self.probe_cache.generation()
                    known = self.probe_cache.lookup(database, shape, statements)
                    if known is not None:
                        columns = known.columns
                    else:
                        # CREATE OR REPLACE: a probe left by an earlier task on this connection goes.
                        # MEMORY creates no files (about 0.15 ms less); it holds no BLOB/TEXT (error
                        # 1163) nor very wide rows (1118): on any error but a kill, the default engine.
                        probe = f" SELECT * FROM ({statements[0]}) AS `_q` LIMIT 0"
                        try:
                            cursor.execute(create + " ENGINE=MEMORY" + probe)
                        except pymysql.err.MySQLError as exc:
                            if exc.args and exc.args[0] in (1317, 1927):
                                raise
                            cursor.execute(create + probe)
                        cursor.execute("SHOW CREATE TABLE `_skyshard_probe`")
                        create_sql = cursor.fetchone()[1]
                        columns = parse_create_table_columns(create_sql)
                        known = self.probe_cache.store(database, shape, generation, statements, columns)
                    if len(statements) > 1:
                        keeps = known.unions.get(len(statements)) if known is not None else None
                        if keeps is None:
                            union = self._union(cursor, statements, columns, probe_engine=create + " ENGINE=MEMORY")
                            self.probe_cache.set_union(known, generation, len(statements), union is not None)
                        else:
                            union = _union_sql(statements) if keeps else None
                        if union is not None:
                            if stopped():
                                raise TaskKilled("query cancelled", 1317)
                            into, path = self._into_spool(union)
                            paths.append(path)
                            rows = cursor.execute(into)
                            return SpooledResult(columns, paths, int(rows))
                    rows = 0
                    for statement in statements:
                        if stopped():
                            raise TaskKilled("query cancelled", 1317)
                        into, path = self._into_spool(statement)
                        paths.append(path)
                        rows += cursor.execute(into)
                except pymysql.err.MySQLError as exc:
                    conn._skyshard_db = None  # type: ignore[attr-defined]
                    raise task_error(exc) from exc
            return SpooledResult(columns, paths, int(rows))
        except BaseException:
            for path in paths:
                path.unlink(missing_ok=True)
            raise

    @staticmethod
    def _union(cursor: Any, statements: list[str], columns: list[ColumnDef], probe_engine: str) -> str | None:
        """``(s1) UNION ALL (s2) ...`` when its columns are exactly those of ``s1`` alone, else None.

        One statement writing one file costs far less than one per chunk (each
        INTO OUTFILE creates a file: about 1 ms here).  Only when the union's
        probe shows the very same column definitions: then every value is
        written as the chunk's own SELECT would write it (a union of columns
        of different types, e.g. ENUMs, could convert them).
        """
        union = _union_sql(statements)
        try:
            cursor.execute(f"{probe_engine} SELECT * FROM ({union}) AS `_q` LIMIT 0")
            cursor.execute("SHOW CREATE TABLE `_skyshard_probe`")
            union_columns = parse_create_table_columns(cursor.fetchone()[1])
        except pymysql.err.MySQLError as exc:
            if exc.args and exc.args[0] in (1317, 1927):
                raise
            return None  # e.g. too complex for a union: one statement per chunk
        return union if _types(union_columns) == _types(columns) else None

    def quick_statement(self, database: str, sql: str, more_sql: Sequence[str] = (),
                        shape: str = "") -> QuickStatement | None:
        """The task as one statement with no probe, and an idle connection already using its
        database (non-blocking); None when it needs :meth:`run_query` (shape not probed yet, a
        union not known to keep the columns, no such connection).

        The caller runs it on the event loop (:func:`skyshard.quick.execute`) and gives the
        connection back to :attr:`pool`.
        """
        statements = _statements(sql, more_sql)
        if not all(_SELECT.match(s) for s in statements):
            return None  # run_query says why
        known = self.probe_cache.lookup(database, shape, statements, count_miss=False)
        if known is None:
            return None
        if len(statements) == 1:
            body = statements[0]
        elif known.unions.get(len(statements)):
            body = _union_sql(statements)
        else:
            return None
        conn = self.pool.take_idle()
        if conn is None:
            return None
        if getattr(conn, "_skyshard_db", None) != (database or SCRATCH_DATABASE):
            self.pool.give_back(conn)
            return None
        into, path = self._into_spool(body)
        return QuickStatement(known.columns, into, path, conn)

    def kill(self, thread_id: int) -> None:
        """Stop the statement running on MariaDB thread ``thread_id``."""
        try:
            with self.pool.connection() as conn:
                conn.cursor().execute(f"KILL QUERY {int(thread_id)}")
        except pymysql.err.MySQLError:
            pass  # the statement already ended

    # -- loads --------------------------------------------------------------
    def load_segments(
        self,
        database: str,
        segments: list[LoadSegment],
        *,
        fields_terminated_by: str,
        fields_enclosed_by: str,
        lines_terminated_by: str,
        sql_mode: str | None,
        character_set: str,
    ) -> list[SegmentOutcome]:
        """LOAD DATA INFILE each segment's rows into its table.

        A segment with ``replace`` has its table dropped if it exists and
        ``create_sql`` (``CREATE TABLE IF NOT EXISTS``) creates it; later
        segments of the same table are just a LOAD DATA.

        Round trips are what cost most here: an ingest sends thousands of
        small segments, and while the other workers and the partitioner keep
        the cores busy every reply waits for a time slice.  So up to
        ``LOAD_STATEMENTS_PER_TRIP`` segments' statements (DROP, CREATE,
        LOAD DATA, and a SHOW WARNINGS after each load, so every segment keeps
        its own warnings) go to MariaDB as one multi-statement query.  The
        rows reach MariaDB through two named pipes in the spool directory,
        used by the loads in turn, which a feeder thread opens and writes once
        per load, in order, while MariaDB reads them: no file per segment, no
        copy on disk.  (Two, because a writer that reopened the pipe MariaDB is
        still reading would extend that load instead of starting the next;
        the feeder can only open the other pipe once MariaDB has finished
        the previous load and opened it.)  Stops at the
        first MariaDB error (raised as :class:`TaskError`).
        """
        enclosed = (
            f" OPTIONALLY ENCLOSED BY {quote_string(fields_enclosed_by)}" if fields_enclosed_by else ""
        )
        options = (
            f" CHARACTER SET {character_set or 'binary'}"
            f" FIELDS TERMINATED BY {quote_string(fields_terminated_by or chr(9))}{enclosed}"
            f" LINES TERMINATED BY {quote_string(lines_terminated_by or chr(10))}"
        )
        name = uuid.uuid4().hex
        pipes = (self.spool_dir / f"load-{name}-a.fifo", self.spool_dir / f"load-{name}-b.fifo")
        for pipe in pipes:
            os.mkfifo(pipe, 0o644)
        load = "LOAD DATA INFILE {pipe} INTO TABLE {{table}}" + options
        loads = (load.format(pipe=quote_string(str(pipes[0]))), load.format(pipe=quote_string(str(pipes[1]))))
        outcomes: list[SegmentOutcome] = []
        try:
            with self.load_pool.connection() as conn, ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="load-feeder"
            ) as feeder:
                cursor = conn.cursor()
                try:
                    cursor.execute(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
                    cursor.execute(f"USE {quote_identifier(database)}")
                    if sql_mode is not None:
                        cursor.execute("SET SESSION sql_mode = %s", (sql_mode,))
                    for start in range(0, len(segments), LOAD_STATEMENTS_PER_TRIP):
                        trip = segments[start : start + LOAD_STATEMENTS_PER_TRIP]
                        outcomes.extend(self._load_trip(cursor, feeder, pipes, loads, trip))
                    cursor.execute("SET SESSION sql_mode = DEFAULT")
                except pymysql.err.MySQLError as exc:
                    raise task_error(exc) from exc
        finally:
            for pipe in pipes:
                pipe.unlink(missing_ok=True)
        return outcomes

    @staticmethod
    def _load_trip(cursor: Any, feeder: ThreadPoolExecutor, pipes: tuple[Path, Path],
                   loads: tuple[str, str], segments: list[LoadSegment]) -> list[SegmentOutcome]:
        """One multi-statement round trip for ``segments``; their outcomes in order."""
        statements: list[str] = []
        kinds: list[tuple[str, int]] = []  # ("other" | "load" | "warnings", segment index)
        for i, segment in enumerate(segments):
            table = quote_identifier(segment.table)
            if segment.replace:
                statements.append(f"DROP TABLE IF EXISTS {table}")
                kinds.append(("other", i))
            if segment.create_sql:
                statements.append(segment.create_sql)
                kinds.append(("other", i))
                if segment.defer_keys:
                    statements.append(f"ALTER TABLE {table} DISABLE KEYS")
                    kinds.append(("other", i))
            if len(segment.data):
                load = loads[sum(kind == "load" for kind, _ in kinds) % 2]
                statements += [load.format(table=table), "SHOW WARNINGS LIMIT 3"]
                kinds += [("load", i), ("warnings", i)]
        rows = [0] * len(segments)
        warnings = [0] * len(segments)
        messages: list[list[str]] = [[] for _ in segments]
        feeding = feeder.submit(_feed_pipes, pipes, [s.data for s in segments if len(s.data)])
        try:
            cursor.execute(";\n".join(statements))
            for n, (kind, i) in enumerate(kinds):
                if n and not cursor.nextset():
                    raise TaskError(f"MariaDB answered {n} of {len(kinds)} load statements")
                if kind == "load":
                    rows[i] = cursor.rowcount
                    warnings[i] = cursor.warning_count
                elif kind == "warnings":
                    messages[i] = [str(row[2]) for row in cursor.fetchall()]
        finally:
            _release_feeder(pipes, feeding)
        fed = feeding.exception()  # MariaDB read every load to the end: the feeder wrote it all
        if fed is not None:
            raise TaskError(f"feeding rows to MariaDB through {pipes[0].name} failed: {fed}")
        return [
            SegmentOutcome(segment.table, int(rows[i]), int(warnings[i]), messages[i] if warnings[i] else [])
            for i, segment in enumerate(segments)
        ]

    def admin(self, statements: list[str]) -> int:
        """Run whitelisted DDL statements in order; returns how many ran."""
        for statement in statements:
            if not _ALLOWED_ADMIN.match(statement):
                raise TaskError(f"statement not allowed through Admin: {statement[:60]!r}", 1227)
        with self.pool.connection() as conn:
            conn._skyshard_db = None  # type: ignore[attr-defined]  # see run_query
            cursor = conn.cursor()
            for statement in statements:
                try:
                    cursor.execute(statement)
                except pymysql.err.MySQLError as exc:
                    raise task_error(exc) from exc
        return len(statements)

    # -- status -------------------------------------------------------------
    def inventory(self) -> dict[tuple[str, str], list[int]]:
        """Chunk tables present: (database, logical table) -> chunk ids."""
        found: dict[tuple[str, str], list[int]] = {}
        with self.pool.connection() as conn:
            cursor = conn.cursor()
            cursor.execute(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA NOT IN ('mysql','information_schema','performance_schema','sys')"
                " AND TABLE_NAME REGEXP '_[0-9]+$' AND TABLE_NAME NOT LIKE '%FullOverlap\\_%'"
            )
            for schema_name, table_name in cursor.fetchall():
                base, _, chunk = table_name.rpartition("_")
                found.setdefault((schema_name, base), []).append(int(chunk))
        return {key: sorted(chunks) for key, chunks in found.items()}

    def ping(self) -> None:
        with self.pool.connection() as conn:
            conn.ping(reconnect=False)

    def close(self) -> None:
        self.pool.close()
        self.load_pool.close()


def _statements(sql: str, more_sql: Sequence[str]) -> list[str]:
    """A task's statements, each without surrounding blanks or a final semicolon."""
    return [s.strip().rstrip(";") for s in (sql, *more_sql)]


def _union_sql(statements: Sequence[str]) -> str:
    return " UNION ALL ".join(f"({statement})" for statement in statements)


def task_error(exc: pymysql.err.MySQLError) -> TaskError:
    """The task error for a MariaDB error (TaskKilled for a killed statement)."""
    errno = int(exc.args[0]) if exc.args and isinstance(exc.args[0], int) else 0
    message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    if errno in (1317, 1927):  # query execution was interrupted / connection killed
        return TaskKilled(message, errno)
    return TaskError(message, errno)


def _feed_pipes(pipes: tuple[Path, Path], pieces: list[bytes | memoryview]) -> None:
    """Write piece k into ``pipes[k % 2]`` for one reader each, in order.

    Opening blocks until MariaDB opens that pipe for the next LOAD DATA;
    closing gives that LOAD DATA its end of file.
    """
    for k, data in enumerate(pieces):
        with open(pipes[k % 2], "wb") as out:
            try:  # a larger pipe buffer: fewer wake-ups of MariaDB and the feeder per MiB
                fcntl.fcntl(out.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            except OSError:
                pass  # above /proc/sys/fs/pipe-max-size: keep the default
            out.write(data)


def _release_feeder(pipes: tuple[Path, Path], feeding: Future[None], timeout: float = 30.0) -> None:
    """Make sure the feeder thread ends, even if MariaDB never opened (or stopped reading) a pipe.

    A feeder blocked in ``open`` is released by opening the pipes for reading
    and closing it again; its write then fails with a broken pipe, which is
    ignored here: the statement's own error says what went wrong.
    """
    deadline = time.monotonic() + timeout
    while not feeding.done() and time.monotonic() < deadline:
        for pipe in pipes:
            try:
                fd = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                pass
            else:
                os.close(fd)
        try:
            feeding.exception(timeout=0.01)
        except TimeoutError:
            pass
