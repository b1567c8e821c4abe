"""The czar's query engine: plan, dispatch, merge and deliver one SELECT.

Owns a query's life cycle and its metadata record: it creates the record,
asks the planner for a :class:`~czar.planner.QueryPlan`, runs it through the
dispatcher into a result table, runs the merge SQL there and hands the
caller a :class:`QueryResult` whose rows stream from the czar's MariaDB.
It knows nothing of the MySQL wire protocol (see :mod:`czar.frontend`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pymysql
import pymysql.converters
import pymysql.cursors
from sqlglot import exp

from czar.catalog import Catalog, CatalogSnapshot
from czar.director_index import restrict_by_index
from czar.dispatch import Dispatcher, DispatchProgress, WorkerChannels
from czar.errors import QueryCancelled, ResultTooLarge, SkyshardError
from czar.merge import ResultTable, result_table_name
from czar.planner import EMPTY_CHUNK, QueryPlan
from czar.planner import plan as make_plan
from czar.qmeta import RESULT_DATABASE, QueryKind, QueryMetadata, QueryStatus
from czar.shadow import ShadowTables
from skyshard.mariadb import ConnectionPool, ServerAddress

log = logging.getLogger("skyshard.czar.engine")

FETCH_ROWS = 5000


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type_code: int
    charset: int


@dataclass
class QueryResult:
    """Result columns, and rows that stream as raw MySQL text values (bytes or None)."""

    query_id: int
    columns: list[ColumnInfo]
    rows: AsyncIterator[tuple[Any, ...]]


class MergeError(SkyshardError):
    def __init__(self, message: str, errno: int) -> None:
        super().__init__(message)
        self.errno = errno


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


class Engine:
    def __init__(self, settings: EngineSettings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.pool = ConnectionPool(settings.czar_db, size=16)
        self.qmeta = QueryMetadata(self.pool)
        self.shadow = ShadowTables(self.pool)
        self.channels = WorkerChannels()
        settings.spool_dir.mkdir(parents=True, exist_ok=True)
        self.dispatcher = Dispatcher(
            self.channels,
            tasks_per_worker=settings.tasks_per_worker,
            task_timeout=settings.task_timeout,
            spool_dir=str(settings.spool_dir),
        )
        # query id -> MySQL connection id of the sync queries running now (CANCEL, processlist)
        self.sync_running: dict[int, int] = {}
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

    async def close(self) -> None:
        await self.channels.close()
        self.pool.close()

    async def execute(
        self,
        sql: str,
        *,
        user: str,
        default_db: str | None,
        statement: exp.Select | None = None,
        kind: QueryKind = QueryKind.SYNC,
        connection_id: int | None = None,
    ) -> QueryResult:
        """Run one SELECT; raises a :class:`SkyshardError` on failure."""
        query_id = await asyncio.to_thread(
            self.qmeta.start, kind, user, default_db, sql, connection_id=connection_id
        )
        if connection_id is not None:
            self.sync_running[query_id] = connection_id
        try:
            plan, snapshot = await self.prepare(query_id, sql, default_db, statement)
            result = await self.produce(query_id, plan, snapshot)
            try:
                columns, cursor, connection = await asyncio.to_thread(
                    self.open_merge, plan.merge_sql_for(result.qualified)
                )
            except BaseException as exc:
                await self.fail(query_id, exc, result)
                raise
        except BaseException:
            self.sync_running.pop(query_id, None)
            raise
        rows = self._stream(query_id, cursor, connection, drop=result)
        return QueryResult(query_id, columns, rows)

    async def prepare(
        self, query_id: int, sql: str, default_db: str | None, statement: exp.Select | None
    ) -> tuple[QueryPlan, CatalogSnapshot]:
        """Plan a query whose record exists; a failure is recorded and raised as a SkyshardError."""
        try:
            snapshot = await asyncio.to_thread(self.catalog.snapshot)
            plan = make_plan(sql, snapshot, default_db, statement)
            if plan.index_lookups:
                plan = await asyncio.to_thread(self._use_director_index, plan)
            return plan, snapshot
        except BaseException as exc:
            await self.fail(query_id, exc, None)
            raise self._as_skyshard(query_id, exc) from exc

    async def produce(self, query_id: int, plan: QueryPlan, snapshot: CatalogSnapshot) -> ResultTable:
        """Dispatch a planned query into its result table (chunk rows, before the merge SQL).

        A failure or cancellation is recorded, the table dropped and the error raised.
        """
        result = ResultTable(self.pool, query_id, self.settings.spool_dir)
        try:
            await asyncio.to_thread(
                self.qmeta.set_chunks_total, query_id, len(plan.chunk_ids), f"table:{RESULT_DATABASE}.{result.name}"
            )
            loop = asyncio.get_running_loop()

            def on_progress(progress: DispatchProgress) -> None:
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
            await asyncio.to_thread(result.flush)
            await asyncio.to_thread(
                self.qmeta.progress, query_id, progress.chunks_completed, progress.bytes, progress.rows, force=True
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

    def _use_director_index(self, plan: QueryPlan) -> QueryPlan:
        """Keep only the chunks the director index allows (the dummy chunk if none)."""
        with self.pool.connection() as connection:
            chunk_ids = restrict_by_index(connection, plan.chunk_ids, plan.index_lookups)
        if chunk_ids is None:
            return plan
        return replace(plan, chunk_ids=chunk_ids or (EMPTY_CHUNK,))

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
            if result is not None:
                result.drop()
            self.qmeta.clear_result(query_id)
            self.qmeta.finish(query_id, status, error=text)

        try:
            await asyncio.shield(asyncio.to_thread(record))
        except Exception:  # metadata must not hide the query's own error
            log.exception("could not record the failure of query %s", query_id)
        await self.notify(query_id)

    async def notify(self, query_id: int) -> None:
        """Status changed: tell whoever registered (see czar.asyncq); a no-op by default."""
        if self.on_status_change is not None:
            await self.on_status_change(query_id)

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
        fields = cursor._result.fields  # noqa: SLF001 - charset numbers are only here
        columns = [
            ColumnInfo(
                name=(f.name.decode() if isinstance(f.name, bytes) else f.name),
                type_code=f.type_code,
                charset=f.charsetnr,
            )
            for f in fields
        ]
        return columns, cursor, connection

    async def _stream(
        self, query_id: int, cursor: Any, connection: Any, *, drop: ResultTable | None
    ) -> AsyncIterator[tuple[Any, ...]]:
        """Rows of an open merge cursor; at the end the record is updated (and a sync table dropped)."""
        delivered = 0
        status = QueryStatus.COMPLETED
        error: str | None = None
        try:
            while True:
                rows = await asyncio.to_thread(cursor.fetchmany, FETCH_ROWS)
                if not rows:
                    break
                delivered += len(rows)
                for row in rows:
                    yield row
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
        result: ResultTable | None,
        status: QueryStatus,
        delivered: int,
        error: str | None,
    ) -> None:
        def close() -> None:
            try:
                connection.close()
            except Exception:
                pass
            if result is not None:
                result.drop()
                self.qmeta.clear_result(query_id)
            self.qmeta.finish(query_id, status, result_rows=delivered, error=error)
            self.qmeta.mark_returned(query_id)

        await asyncio.to_thread(close)
        await self.notify(query_id)
