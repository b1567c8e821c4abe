"""The czar's query engine: plan, dispatch, merge and deliver one SELECT.

Owns a query's life cycle and its metadata record: it creates the record,
asks the planner for a :class:`~czar.planner.QueryPlan`, runs it through the
dispatcher into a result table, runs the merge SQL there and hands the
caller a :class:`QueryResult` whose rows stream from the czar's MariaDB.
It knows nothing of the MySQL wire protocol (see :mod:`czar.frontend`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pymysql
import pymysql.converters
import pymysql.cursors
import sqlglot
import sqlglot.errors
from sqlglot import exp

from czar.catalog import Catalog, CatalogSnapshot
from czar.direct import ColumnMemo, DirectResult
from czar.director_index import restrict_by_index, restrict_by_index_quickly
from czar.dispatch import (
    INTERACTIVE_CHUNKS,
    SMALL_CHUNK_ROWS,
    Dispatcher,
    DispatchProgress,
    WorkerChannels,
)
from czar.errors import QueryCancelled, ResultTooLarge, SkyshardError
from czar.merge import ResultTable, result_table_name, spooled_rows
from czar.planner import EMPTY_CHUNK, QueryPlan
from czar.planner.cache import PlanCache, scan
from czar.qmeta import RESULT_DATABASE, QueryKind, QueryMetadata, QueryStatus
from czar.records import RecordWriter
from czar.shadow import ShadowTables
from skyshard.mariadb import ConnectionPool, ServerAddress
from skyshard.quick import QuickError

log = logging.getLogger("skyshard.czar.engine")

FETCH_ROWS = 5000
# A sync result at least this large whose merge is a pass-through streams from the spool (see _passthrough).
PASSTHROUGH_BYTES = 1 << 20
# MySQL type codes whose LOAD DATA text is the text MariaDB sends: DECIMAL, TINY, SHORT, LONG,
# FLOAT, DOUBLE, LONGLONG, INT24, NEWDECIMAL.
NUMERIC_TYPES = frozenset({0, 1, 2, 3, 4, 5, 8, 9, 246})
_PASSTHROUGH_MERGE = re.compile(r"^SELECT ((?:`_c\d+` AS `(?:[^`]|``)*`, )*`_c\d+` AS `(?:[^`]|``)*`) FROM \S+$")


@dataclass(frozen=True)
class ColumnInfo:
    """A result column as MariaDB described it (for the column definition packets)."""

    name: str
    type_code: int
    charset: int
    length: int = 256  # display length
    flags: int = 0  # NOT_NULL, UNSIGNED, BINARY, ... (MySQL's column definition flags)
    decimals: int = 0


@dataclass
class QueryResult:
    """Result columns, and rows that stream as raw MySQL text values (bytes or None)."""

    query_id: int
    columns: list[ColumnInfo]
    rows: AsyncIterator[tuple[Any, ...]]
    # A pass-through result's rows as blocks of whole LOAD DATA text lines (numeric columns, \N for
    # NULL; see czar.wire): ``rows`` reads them; a consumer reads one or the other, not both.
    text_blocks: AsyncIterator[bytes] | None = None


class MergeError(SkyshardError):
    def __init__(self, message: str, errno: int) -> None:
        super().__init__(message)
        self.errno = errno


START_RECORD_DELAY = 0.1  # seconds a sync query's INSERT is held, to be folded into its end (_defer_start)


@dataclass(frozen=True)
class _HeldStart:
    """A sync query's record INSERT not written yet: when the query started, start()'s arguments."""

    started: float  # time.monotonic()
    args: tuple[Any, ...]  # kind, user, default_db, query text
    connection_id: int | None
    timer: asyncio.TimerHandle  # writes it at START_RECORD_DELAY


@dataclass
class EngineSettings:
    czar_db: ServerAddress
    spool_dir: Path
    tasks_per_worker: int = 4
    task_timeout: float | None = None
    max_result_bytes: int = 0  # 0: no limit
    result_ttl: float = 7 * 86400.0  # seconds an untouched async result is kept
    cleanup_interval: float = 60.0
    catalog_ttl: float = 2.0
    passthrough_bytes: int = PASSTHROUGH_BYTES  # see Engine._run_merge
    small_chunk_rows: int = SMALL_CHUNK_ROWS  # see czar.dispatch


class MergeConnections:
    """Idle connections for sync queries: each holds one query's TEMPORARY result table.

    Connections return raw MySQL text (``conv={}``, bytes) through an
    unbuffered cursor, so merge rows stream without Python conversion.  A
    connection goes back to the pool only after a query that ended cleanly
    (result read to the end, table dropped); anything else closes it.
    Reusing them saves the 20-30 ms a new connection to MariaDB costs here.
    """

    def __init__(self, address: ServerAddress, size: int = 16) -> None:
        self.address = address
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue(size)

    def get(self) -> Any:
        while True:
            try:
                connection = self._idle.get_nowait()
            except queue.Empty:
                return self.address.connect(cursorclass=pymysql.cursors.SSCursor, use_unicode=False, conv={})
            try:
                connection.ping(reconnect=False)
                return connection
            except pymysql.err.MySQLError:
                _close_quietly(connection)

    def put(self, connection: Any) -> None:
        try:
            self._idle.put_nowait(connection)
        except queue.Full:
            _close_quietly(connection)

    def close(self) -> None:
        while True:
            try:
                _close_quietly(self._idle.get_nowait())
            except queue.Empty:
                return


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except Exception:
        pass


class Engine:
    def __init__(self, settings: EngineSettings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.pool = ConnectionPool(settings.czar_db, size=16)
        self.merge_connections = MergeConnections(settings.czar_db)
        self.qmeta = QueryMetadata(self.pool)
        self.shadow = ShadowTables(self.pool)
        self.channels = WorkerChannels()
        settings.spool_dir.mkdir(parents=True, exist_ok=True)
        self.dispatcher = Dispatcher(
            self.channels,
            tasks_per_worker=settings.tasks_per_worker,
            task_timeout=settings.task_timeout,
            spool_dir=str(settings.spool_dir),
            small_chunk_rows=settings.small_chunk_rows,
        )
        # query id -> MySQL connection id of the sync queries running now (CANCEL, processlist)
        self.sync_running: dict[int, int] = {}
        self.passthrough_queries = 0  # sync results streamed from the spool (see _run_merge)
        self.plans = PlanCache()  # templates of the statement shapes seen (czar.planner.cache)
        self.direct_columns = ColumnMemo()  # result metadata of identity merges (czar.direct)
        self._plain_shapes: dict[str, bool] = {}  # _plain_columns by the chunk SQL's shape
        self.direct_queries = 0  # sync results answered without a result table (czar.direct)
        self._unsteady_merges: set[str] = set()  # merges whose chunks changed column types mid-stream
        self.quick_index_lookups = 0  # director-index lookups made from the event loop (skyshard.quick)
        self.records = RecordWriter()  # sync queries' record writes, in order, off their path
        self._writes: dict[int, concurrent.futures.Future[Any]] = {}  # the last record write of a sync query
        self._background: set[asyncio.Future[Any]] = set()  # notices sent after a query's last write
        self._starts: dict[int, _HeldStart] = {}  # sync queries' INSERTs not written yet (_defer_start)
        self._direct_totals: dict[int, int] = {}  # chunk totals of direct queries, written with their end
        self.on_status_change: Callable[[int], Awaitable[None]] | None = None

    def start(self) -> None:
        """Create the metadata schema; mark queries of a previous process ABORTED."""
        self.qmeta.create_schema()
        aborted = self.qmeta.abort_running()
        if aborted:
            log.warning("marked %d queries of a previous czar process as ABORTED", aborted)
        for query_id in self.qmeta.dangling_results():
            self.drop_result(query_id)

    def drop_result(self, query_id: int) -> None:
        """Drop a query's result table and forget its location (blocking)."""
        with self.pool.connection() as conn:
            conn.cursor().execute(f"DROP TABLE IF EXISTS `{RESULT_DATABASE}`.`{result_table_name(query_id)}`")
        self.qmeta.clear_result(query_id)

    async def keep_catalog_fresh(self) -> None:
        """Check css for changes every half ``catalog.ttl`` (runs until cancelled), so that no query
        waits for the check nor finds the snapshot stale (a stale one would also bypass the plan cache)."""
        while True:
            await asyncio.sleep(self.catalog.ttl / 2)
            try:
                await asyncio.to_thread(self.catalog.refresh)
            except Exception as exc:  # css unreachable for now: queries will say so themselves
                log.warning("catalog refresh failed: %s", exc)

    async def close(self) -> None:
        await self.channels.close()
        self._write_held_starts()
        await asyncio.to_thread(self.records.close)
        self.pool.close()
        self.merge_connections.close()

    async def execute(
        self,
        sql: str,
        *,
        user: str,
        default_db: str | None,
        statement: exp.Select | None = None,
        kind: QueryKind = QueryKind.SYNC,
        connection_id: int | None = None,
        cached: tuple[QueryPlan, CatalogSnapshot] | None = None,
        rows_as_they_arrive: bool = False,
    ) -> QueryResult:
        """Run one SELECT; raises a :class:`SkyshardError` on failure.

        The record is written while the query runs: its id is allocated here,
        and its writes (INSERT, chunk total, and for a direct result its end)
        go in order through :attr:`records`, off the query's path (see
        :meth:`_record`).  The INSERT waits up to :data:`START_RECORD_DELAY`:
        a direct result that ends sooner writes its whole record in one INSERT
        (see :meth:`_defer_start`).
        ``cached``: the plan :meth:`cached_plan` found for ``sql`` (no planning).
        ``rows_as_they_arrive``: a direct result may send its first rows before every chunk
        answered, so that a failure after them ends the rows with an error (see czar.direct);
        only for a caller whose client can tell that from a complete result.
        """
        query_id = self.qmeta.next_id()
        self._defer_start(query_id, kind, user, default_db, sql, connection_id)
        planned: BaseException | None = None
        try:
            if cached is not None:
                plan, snapshot = cached
            else:
                snapshot = await asyncio.to_thread(self.catalog.snapshot)
                plan = self.plans.plan(sql, default_db, snapshot, statement)
        except BaseException as exc:
            planned = exc
        if connection_id is not None:
            self.sync_running[query_id] = connection_id
        connection = None
        direct: DirectResult | None = None
        try:
            try:
                if planned is not None:
                    raise planned
                # The result table is TEMPORARY on a connection of our own; the merge runs there too.
                # No connection: the result may need no table (czar.direct).
                if plan.index_lookups:  # from the event loop when it can (no thread hop)
                    plan = await self._use_director_index_quickly(plan)
                if not plan.index_lookups and self._direct_possible(plan):
                    connection = None  # nothing to look up, no result table: no thread needed
                else:
                    plan, connection = await asyncio.to_thread(self._begin_sync, query_id, plan)
                if connection is None:  # a few chunks: the chunk total is written with the end
                    direct = DirectResult(lambda: self._sync_table(query_id))
                    self._direct_totals[query_id] = len(plan.chunk_ids)
                else:
                    self._record(query_id, self.qmeta.set_chunks_total, query_id, len(plan.chunk_ids), None)
            except BaseException as exc:
                await self.fail(query_id, exc, None)
                raise self._as_skyshard(query_id, exc) from exc
            if direct is not None:
                producing = asyncio.ensure_future(self.produce(query_id, plan, snapshot, result=direct))  # type: ignore[arg-type]
                try:
                    if rows_as_they_arrive:
                        direct.watch(producing)
                        early = await self._stream_early(query_id, plan, direct, producing)
                        if early is not None:
                            return early
                    await producing
                except BaseException:
                    if not producing.done():  # this query was cancelled: so is its dispatch (it records why)
                        producing.cancel()
                        await asyncio.gather(producing, return_exceptions=True)
                    raise
                finally:
                    connection = direct.connection
                metadata = None if direct.table is not None or direct.mixed else (
                    self.direct_columns.get(plan.merge_sql, direct.columns)
                )
                if metadata is not None:
                    try:
                        blocks = direct.verified_blocks()
                    except BaseException as exc:
                        await self.fail(query_id, exc, None)
                        raise
                    self.direct_queries += 1
                    text = self._stream_direct(query_id, blocks, direct, self._direct_totals.pop(query_id))
                    return QueryResult(query_id, metadata, spooled_rows(text, len(metadata)), text_blocks=text)
                try:
                    result, connection = await asyncio.to_thread(direct.materialize)
                except BaseException as exc:
                    connection = direct.connection
                    await self.fail(query_id, exc, direct)  # type: ignore[arg-type]
                    raise
                result.collected = direct.collected
                total = self._direct_totals.pop(query_id, len(plan.chunk_ids))
                self._record(query_id, self.qmeta.set_chunks_total, query_id, total, None)
            else:
                result = ResultTable(self.pool, query_id, self.settings.spool_dir, connection=connection)
                result.defer_load = _is_passthrough(plan)
                await self.produce(query_id, plan, snapshot, result=result)
            try:
                columns, cursor = await asyncio.to_thread(
                    self._run_merge, connection, plan, result
                )
                if cursor is None:
                    self.passthrough_queries += 1
                self._learn_columns(plan, result, columns)
            except BaseException as exc:
                await self.fail(query_id, exc, result)
                raise
        except BaseException:
            self.sync_running.pop(query_id, None)
            if connection is not None:
                await asyncio.to_thread(_close_quietly, connection)  # never reused after a failure
            raise
        stream = self._stream(query_id, cursor, connection, drop=result)
        if cursor is None:
            return QueryResult(query_id, columns, spooled_rows(stream, len(columns)), text_blocks=stream)
        return QueryResult(query_id, columns, stream)

    def cached_plan(self, sql: str, default_db: str | None) -> tuple[exp.Select, QueryPlan, CatalogSnapshot] | None:
        """The plan of ``sql`` from the plan cache, without parsing it (None: not cached).

        The statement returned is the parse of the template's statement (for
        grant checks only: never modify it).  Non-blocking: only while the
        catalog snapshot is fresh.
        """
        snapshot = self.catalog.fresh()
        if snapshot is None:
            return None
        found = self.plans.lookup(sql, default_db, snapshot)
        if found is None:
            return None
        template, plan = found
        return template.statement, plan, snapshot

    async def prepare(
        self, query_id: int, sql: str, default_db: str | None, statement: exp.Select | None
    ) -> tuple[QueryPlan, CatalogSnapshot]:
        """Plan a query whose record exists; a failure is recorded and raised as a SkyshardError."""
        try:
            snapshot = await asyncio.to_thread(self.catalog.snapshot)
            plan = self.plans.plan(sql, default_db, snapshot, statement)
            if plan.index_lookups:
                plan = await asyncio.to_thread(self._use_director_index, plan)
            return plan, snapshot
        except BaseException as exc:
            await self.fail(query_id, exc, None)
            raise self._as_skyshard(query_id, exc) from exc

    async def produce(
        self, query_id: int, plan: QueryPlan, snapshot: CatalogSnapshot, *, result: ResultTable | None = None
    ) -> ResultTable:
        """Dispatch a planned query into its result table (chunk rows, before the merge SQL).

        Without ``result`` a real (async) result table is made and named in the
        record; a given ``result`` (a sync query's TEMPORARY table) is not, and
        its final progress is written with the record's end (see ``collected``).
        A failure or cancellation is recorded, the table dropped and the error raised.
        """
        kept = result is None
        if result is None:
            result = ResultTable(self.pool, query_id, self.settings.spool_dir)
        try:
            if kept:  # a sync query recorded its total in _begin_sync
                await asyncio.to_thread(
                    self.qmeta.set_chunks_total, query_id, len(plan.chunk_ids),
                    f"table:{RESULT_DATABASE}.{result.name}",
                )
            loop = asyncio.get_running_loop()

            def on_progress(progress: DispatchProgress) -> None:
                if progress.chunks_completed >= progress.chunks_total or not self.qmeta.progress_due(query_id):
                    return  # the last progress is written with the end of the query (or just below)
                loop.run_in_executor(
                    None, self.qmeta.progress, query_id, progress.chunks_completed, progress.bytes, progress.rows
                )

            progress = await self.dispatcher.run(
                query_id,
                plan,
                snapshot,
                result,
                on_progress=on_progress,
                max_result_bytes=self.settings.max_result_bytes,
            )
            result.collected = (progress.chunks_completed, progress.bytes, progress.rows)
            if kept:  # a sync query's last rows are loaded with its merge (_run_merge), its progress at its end
                await asyncio.to_thread(result.flush, seal=True)
                await asyncio.to_thread(
                    self.qmeta.progress, query_id, progress.chunks_completed, progress.bytes, progress.rows
                )
            return result
        except BaseException as exc:
            await self.fail(query_id, exc, result)
            raise self._as_skyshard(query_id, exc) from exc

    @staticmethod
    def _as_skyshard(query_id: int, exc: BaseException) -> BaseException:
        if isinstance(exc, asyncio.CancelledError | SkyshardError):
            return exc
        log.error("query %s failed", query_id, exc_info=exc)
        return SkyshardError(f"internal error: {exc}")

    async def _use_director_index_quickly(self, plan: QueryPlan) -> QueryPlan:
        """:meth:`_use_director_index` from the event loop (:mod:`skyshard.quick`), on an idle pooled
        connection; the plan as it is (still to look up, in a thread) when there is no idle
        connection or it broke."""
        connection = self.pool.take_idle()
        if connection is None:
            return plan
        healthy = False
        try:
            chunk_ids = await restrict_by_index_quickly(connection, plan.chunk_ids, plan.index_lookups)
            healthy = True
        except pymysql.err.MySQLError:
            healthy = True  # an ERR reply, read whole: the query fails as in the thread
            raise
        except QuickError:
            return plan
        finally:
            self.pool.give_back(connection, healthy)
        self.quick_index_lookups += 1
        return _narrowed(plan, chunk_ids)

    def _use_director_index(self, plan: QueryPlan) -> QueryPlan:
        """Keep only the chunks the director index allows (the dummy chunk if none)."""
        with self.pool.connection() as connection:
            chunk_ids = restrict_by_index(connection, plan.chunk_ids, plan.index_lookups)
        return _narrowed(plan, chunk_ids)

    async def fail(self, query_id: int, exc: BaseException, result: ResultTable | None) -> None:
        """Record why a query ended (ABORTED / FAILED_LR / FAILED) and drop its result table."""
        if isinstance(exc, asyncio.CancelledError | QueryCancelled):
            status, text = QueryStatus.ABORTED, "query cancelled"
        elif isinstance(exc, ResultTooLarge):
            status, text = QueryStatus.FAILED_LR, str(exc)
        elif isinstance(exc, SkyshardError):
            status, text = QueryStatus.FAILED, str(exc)
        else:
            status, text = QueryStatus.FAILED, f"internal error: {exc}"

        def record() -> None:
            try:
                if result is not None:
                    result.drop()
            finally:
                self.qmeta.finish(query_id, status, error=text, clear_result=True, chunks_total=total)

        total = self._direct_totals.pop(query_id, None)
        try:
            await asyncio.shield(self._written(query_id))
            await asyncio.shield(asyncio.to_thread(record))
        except Exception:  # metadata must not hide the query's own error
            log.exception("could not record the failure of query %s", query_id)
        await self.notify(query_id)

    async def notify(self, query_id: int) -> None:
        """Status changed: tell whoever registered (see czar.asyncq); a no-op by default."""
        if self.on_status_change is not None:
            await self.on_status_change(query_id)

    def _defer_start(self, query_id: int, kind: QueryKind, user: str, default_db: str | None, sql: str,
                     connection_id: int | None) -> None:
        """Hold a sync query's INSERT for :data:`START_RECORD_DELAY` (then write it): a query that
        ends sooner writes its record once (:meth:`_record_end`), not an INSERT and an UPDATE.

        Anything else written to the record, and every reader of the records
        (:meth:`records_written`), writes a held INSERT first.
        """
        handle = asyncio.get_running_loop().call_later(START_RECORD_DELAY, self._write_start, query_id)
        self._starts[query_id] = _HeldStart(time.monotonic(), (kind, user, default_db, sql), connection_id, handle)

    def _write_start(self, query_id: int) -> None:
        held = self._starts.pop(query_id, None)
        if held is not None:
            held.timer.cancel()
            self._record(query_id, self.qmeta.start, *held.args, connection_id=held.connection_id,
                         query_id=query_id)

    def _write_held_starts(self) -> None:
        for query_id in list(self._starts):
            self._write_start(query_id)

    def _record_end(self, query_id: int, status: QueryStatus, **finish: Any) -> None:
        """Queue the end of a sync query's record (:meth:`QueryMetadata.finish` arguments), folded
        into its INSERT when that is still held."""
        held = self._starts.pop(query_id, None)
        if held is None:
            self._record(query_id, self.qmeta.finish, query_id, status, **finish)
            return
        held.timer.cancel()
        self._record(query_id, self.qmeta.start_finished, *held.args, query_id=query_id,
                     elapsed=time.monotonic() - held.started, status=status, connection_id=held.connection_id,
                     **finish)

    def _record(self, query_id: int, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Write to a sync query's record after its earlier writes (queued on :attr:`records`, not awaited)."""
        self._write_start(query_id)  # a held INSERT goes first (no-op when there is none)
        previous = self._writes.get(query_id)

        def write() -> Any:
            # the writer runs writes in order: ``previous`` is done; an INSERT that failed fails what follows
            if previous is not None and (error := previous.exception()) is not None:
                raise error
            return func(*args, **kwargs)

        self._writes[query_id] = self.records.submit(write)

    async def _written(self, query_id: int) -> None:
        """Wait for a sync query's pending record writes (before its end is written)."""
        self._write_start(query_id)
        pending = self._writes.pop(query_id, None)
        if pending is not None:
            await asyncio.wrap_future(pending)

    def _notify_after_writes(self, query_id: int) -> None:
        """Forget a finished sync query's pending writes; :meth:`notify` once they are done (not awaited)."""
        pending = self._writes.pop(query_id, None)
        if self.on_status_change is None:
            return

        async def notify() -> None:
            if pending is not None:
                try:
                    await asyncio.wrap_future(pending)
                except Exception:
                    log.exception("could not record the end of query %s", query_id)
            await self.notify(query_id)

        task = asyncio.ensure_future(notify())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def records_written(self) -> None:
        """Wait until every record write queued so far has been made (for readers of the records)."""
        self._write_held_starts()
        await asyncio.to_thread(self.records.flush)

    def _begin_sync(self, query_id: int, plan: QueryPlan) -> tuple[QueryPlan, Any]:
        """Narrow the chunks by the director index; the plan and a connection for the sync query's
        TEMPORARY result table (None when the result may go to the client directly: see czar.direct)."""
        if plan.index_lookups:
            plan = self._use_director_index(plan)
        return plan, (None if self._direct_possible(plan) else self.merge_connections.get())

    def _sync_table(self, query_id: int) -> tuple[ResultTable, Any]:
        """A sync query's TEMPORARY result table and its connection (blocking)."""
        connection = self.merge_connections.get()
        return ResultTable(self.pool, query_id, self.settings.spool_dir, connection=connection), connection

    def _direct_possible(self, plan: QueryPlan) -> bool:
        """Whether a plan's result may skip the result table (see czar.direct): few chunks, identity merge."""
        if len(plan.chunk_ids) > INTERACTIVE_CHUNKS or not _is_passthrough(plan):
            return False
        key = plan.probe_key  # a cached plan's chunk SQL shape: no scan of the SQL again
        if not key:
            shape = scan(plan.chunk_sql)
            if shape is None:
                return False
            key = shape.key
        plain = self._plain_shapes.get(key)
        if plain is None:
            plain = _plain_columns(plan)
            if len(self._plain_shapes) > 4096:
                self._plain_shapes.clear()
            self._plain_shapes[key] = plain
        return plain

    def _learn_columns(self, plan: QueryPlan, result: ResultTable, columns: list[ColumnInfo]) -> None:
        """Remember an identity merge's numeric result metadata for direct answers (czar.direct)."""
        definitions = tuple((name, definition) for name, definition in result.columns or ())
        if (
            definitions
            and len(columns) == len(definitions)
            and all(c.type_code in NUMERIC_TYPES for c in columns)
            and self._direct_possible(replace(plan, chunk_ids=plan.chunk_ids[:1]))
        ):
            self.direct_columns.put(plan.merge_sql, definitions, columns)

    async def _stream_early(
        self, query_id: int, plan: QueryPlan, direct: DirectResult, producing: asyncio.Future[Any]
    ) -> QueryResult | None:
        """The result of a direct query whose first chunk result arrived while others are still
        running, if its metadata is known: its rows go out as they arrive (see czar.direct).
        None when the dispatch ended first, or the rows must wait for all chunks."""
        await direct.first_arrival(producing)
        if producing.done() or plan.merge_sql in self._unsteady_merges:
            return None
        metadata = self.direct_columns.get(plan.merge_sql, direct.columns)
        if metadata is None or not direct.start_streaming():
            return None
        self.direct_queries += 1
        text = self._stream_direct(query_id, direct.stream(producing), direct, self._direct_totals.pop(query_id),
                                   producing=producing, merge_sql=plan.merge_sql)
        return QueryResult(query_id, metadata, spooled_rows(text, len(metadata)), text_blocks=text)

    async def _stream_direct(
        self,
        query_id: int,
        blocks: Iterable[bytes] | AsyncIterator[bytes],
        direct: DirectResult,
        chunks_total: int,
        *,
        producing: asyncio.Future[Any] | None = None,
        merge_sql: str = "",
    ) -> AsyncIterator[bytes]:
        """A direct result's text blocks (czar.direct: whole lines, as a pass-through result's);
        at the end the record is updated.  ``producing``: the dispatch, still running when the
        blocks stream as they arrive; if it fails, or is stopped here because the client went
        away, it records why itself."""
        delivered = 0
        status = QueryStatus.COMPLETED
        error: str | None = None
        recorded = False
        try:
            if isinstance(blocks, AsyncIterator):
                async for block in blocks:
                    delivered += block.count(b"\n")
                    yield block
            else:
                for block in blocks:
                    delivered += block.count(b"\n")
                    yield block
        except BaseException as exc:
            if direct.mixed:  # rows of this merge's shape no longer all have the first chunk's types
                self._unsteady_merges.add(merge_sql)
            if producing is not None and not producing.done():
                producing.cancel()
                await asyncio.gather(producing, return_exceptions=True)
            if producing is not None and (producing.cancelled() or producing.exception() is not None):
                recorded = True
            elif isinstance(exc, SkyshardError):
                status, error = QueryStatus.FAILED, str(exc)
            else:
                status, error = QueryStatus.ABORTED, f"delivery stopped: {exc!r}"
            raise
        finally:
            self.sync_running.pop(query_id, None)
            if not recorded:
                # the client has every row: it does not wait for the record
                self._record_end(query_id, status, result_rows=delivered, error=error, progress=direct.collected,
                                 returned=True, chunks_total=chunks_total)
                self._notify_after_writes(query_id)

    def _run_merge(self, connection: Any, plan: QueryPlan, result: ResultTable) -> tuple[list[ColumnInfo], Any]:
        """Load the last rows, then run the merge SELECT on a sync query's connection (rows stream).

        Pass-through: a large result whose merge only renames the chunk columns,
        every one a plain numeric column, is not loaded at all.  The merge runs
        over the empty table for the column metadata and the rows stream from
        the spool as MariaDB wrote them (cursor ``None``): LOAD DATA, the
        merge's read and the per-value parsing of the rows are skipped.
        """
        merge_sql = plan.merge_sql_for(result.qualified)
        cursor = connection.cursor()
        try:
            if (
                result.defer_load
                and result.pending_bytes >= self.settings.passthrough_bytes
                and _plain_columns(plan)
            ):
                result.seal()
                cursor.execute(merge_sql)
                columns = _columns(cursor)
                cursor.fetchall()  # no rows: the table is empty
                if all(c.type_code in NUMERIC_TYPES for c in columns) and len(columns) == len(result.columns or ()):
                    return columns, None  # every spooled field is a result column's value
            result.flush(seal=True, force=True)
            cursor.execute(merge_sql)
        except pymysql.err.MySQLError as exc:
            errno = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 1105
            raise MergeError(str(exc.args[1]) if len(exc.args) > 1 else str(exc), errno) from exc
        return _columns(cursor), cursor

    def open_merge(
        self, merge_sql: str, setup: list[tuple[str, list[tuple[Any, ...]]]] | None = None
    ) -> tuple[list[ColumnInfo], Any, Any]:
        """Run a SELECT on the czar's MariaDB (after ``setup`` statements, each with rows to insert)."""
        connection = self.settings.czar_db.connect(
            cursorclass=pymysql.cursors.SSCursor, use_unicode=False, conv={}
        )
        cursor = connection.cursor()
        try:
            for statement, rows in setup or ():
                if rows:
                    escape = pymysql.converters.escape_item
                    values = ", ".join(
                        "(" + ", ".join(escape(v, "utf8mb4", pymysql.converters.encoders) for v in row) + ")"
                        for row in rows
                    )
                    statement = statement.split(" VALUES ", 1)[0] + " VALUES " + values
                cursor.execute(statement)
            cursor.execute(merge_sql)
        except pymysql.err.MySQLError as exc:
            connection.close()
            errno = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 1105
            raise MergeError(str(exc.args[1]) if len(exc.args) > 1 else str(exc), errno) from exc
        return _columns(cursor), cursor, connection

    async def _stream(
        self, query_id: int, cursor: Any, connection: Any, *, drop: ResultTable
    ) -> AsyncIterator[Any]:
        """Rows of an open merge cursor, or with none (pass-through) blocks of the spool's text lines;
        at the end the record is updated (and a sync table dropped)."""
        delivered = 0
        status = QueryStatus.COMPLETED
        error: str | None = None
        try:
            if cursor is None:  # pass-through: the rows come from the spool (see _run_merge)
                blocks = drop.spool_blocks()
                while block := await asyncio.to_thread(next, blocks, None):
                    delivered += block.count(b"\n")
                    yield block
            else:
                while True:
                    rows = await asyncio.to_thread(cursor.fetchmany, FETCH_ROWS)
                    delivered += len(rows)
                    for row in rows:
                        yield row
                    if len(rows) < FETCH_ROWS:  # an unbuffered fetchmany returns fewer only at the end
                        break
        except BaseException as exc:
            status, error = QueryStatus.ABORTED, f"delivery stopped: {exc!r}"
            raise
        finally:
            self.sync_running.pop(query_id, None)
            await asyncio.shield(self._close_stream(query_id, connection, drop, status, delivered, error))

    async def stream_kept(self, query_id: int, merge_sql: str) -> QueryResult:
        """Rows of a kept (async) result: the merge SQL runs again over the result table."""
        columns, cursor, connection = await asyncio.to_thread(self.open_merge, merge_sql)

        async def rows() -> AsyncIterator[tuple[Any, ...]]:
            try:
                while True:
                    batch = await asyncio.to_thread(cursor.fetchmany, FETCH_ROWS)
                    if not batch:
                        break
                    for row in batch:
                        yield row
            finally:
                await asyncio.shield(asyncio.to_thread(self._close_kept, query_id, connection))

        return QueryResult(query_id, columns, rows())

    def _close_kept(self, query_id: int, connection: Any) -> None:
        try:
            connection.close()
        except Exception:
            pass
        self.qmeta.mark_returned(query_id)

    async def _close_stream(
        self,
        query_id: int,
        connection: Any,
        result: ResultTable,
        status: QueryStatus,
        delivered: int,
        error: str | None,
    ) -> None:
        """End a sync query: drop its TEMPORARY table, reuse the connection if it ended cleanly, record."""

        def close() -> None:
            reuse = status is QueryStatus.COMPLETED
            try:
                if reuse:
                    result.drop()  # the merge SELECT was read to its end
                else:
                    result.discard_spool()  # closing the connection drops the table
            except Exception:
                reuse = False
            if reuse:
                self.merge_connections.put(connection)
            else:
                _close_quietly(connection)
            self.qmeta.finish(
                query_id, status, result_rows=delivered, error=error, progress=result.collected, returned=True
            )

        await self._written(query_id)
        await asyncio.to_thread(close)
        await self.notify(query_id)


def _narrowed(plan: QueryPlan, chunk_ids: tuple[int, ...] | None) -> QueryPlan:
    """``plan`` over the chunks its director-index lookups allow (the dummy chunk if none), its
    lookups done; as it is when it had none (``chunk_ids`` None)."""
    if chunk_ids is None:
        return plan
    return replace(plan, chunk_ids=chunk_ids or (EMPTY_CHUNK,), index_lookups=())


def _is_passthrough(plan: QueryPlan) -> bool:
    """Whether the merge SQL selects the chunk columns ``_c0, _c1, ...`` in order, renamed, and nothing else."""
    match = _PASSTHROUGH_MERGE.match(plan.merge_sql)
    if match is None:
        return False
    used = re.findall(r"(?:^|, )`_c(\d+)` AS ", match.group(1))
    return used == [str(i) for i in range(len(used))]


def _plain_columns(plan: QueryPlan) -> bool:
    """Whether every chunk column is a stored column (not an expression) and there is nothing but them.

    A stored value's text is the same whether MariaDB sends it or writes it
    for LOAD DATA; an expression's text could differ from the text of the
    same value stored in the result table's column.
    """
    try:
        chunk = sqlglot.parse_one(plan.chunk_sql, read="mysql")
    except sqlglot.errors.ParseError:
        return False
    if not isinstance(chunk, exp.Select) or chunk.args.get("distinct") or chunk.args.get("group"):
        return False
    names = [f"_c{i}" for i in range(len(chunk.expressions))]
    return [e.alias for e in chunk.expressions] == names and all(
        isinstance(e, exp.Alias) and isinstance(e.this, exp.Column) and not isinstance(e.this.this, exp.Star)
        for e in chunk.expressions
    )


def _columns(cursor: Any) -> list[ColumnInfo]:
    fields = cursor._result.fields  # noqa: SLF001 - charset numbers are only here
    return [
        ColumnInfo(
            name=(f.name.decode() if isinstance(f.name, bytes) else f.name),
            type_code=f.type_code,
            charset=f.charsetnr,
            length=f.length,
            flags=f.flags,
            decimals=f.scale,
        )
        for f in fields
    ]
