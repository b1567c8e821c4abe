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
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors
from sqlglot import exp

from czar.catalog import Catalog
from czar.director_index import restrict_by_index
from czar.dispatch import Dispatcher, DispatchProgress, WorkerChannels
from czar.errors import QueryCancelled, ResultTooLarge, SkyshardError
from czar.merge import ResultTable
from czar.planner import EMPTY_CHUNK, QueryPlan
from czar.planner import plan as make_plan
from czar.qmeta import QueryKind, QueryMetadata, QueryStatus
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

    def start(self) -> None:
        """Create the metadata schema; mark queries of a previous process ABORTED."""
        self.qmeta.create_schema()
        aborted = self.qmeta.abort_running()
        if aborted:
            log.warning("marked %d queries of a previous czar process as ABORTED", aborted)

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
    ) -> QueryResult:
        """Run one SELECT; raises a :class:`SkyshardError` on failure."""
        query_id = await asyncio.to_thread(self.qmeta.start, kind, user, default_db, sql)
        result: ResultTable | None = None
        try:
            snapshot = await asyncio.to_thread(self.catalog.snapshot)
            plan = make_plan(sql, snapshot, default_db, statement)
            if plan.index_lookups:
                plan = await asyncio.to_thread(self._use_director_index, plan)
            result = ResultTable(self.pool, query_id, self.settings.spool_dir)
            await asyncio.to_thread(
                self.qmeta.set_chunks_total, query_id, len(plan.chunk_ids), f"table:{result.name}"
            )

            def on_progress(progress: DispatchProgress) -> None:
                asyncio.get_running_loop().run_in_executor(
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
            columns, cursor, connection = await asyncio.to_thread(
                self._open_merge, plan.merge_sql_for(result.qualified)
            )
        except BaseException as exc:
            await self._fail(query_id, exc)
            if result is not None:
                await asyncio.to_thread(result.drop)
            if isinstance(exc, asyncio.CancelledError):
                raise
            if isinstance(exc, SkyshardError):
                raise
            log.exception("query %s failed", query_id)
            raise SkyshardError(f"internal error: {exc}") from exc
        return QueryResult(query_id, columns, self._stream(query_id, cursor, connection, result))

    def _use_director_index(self, plan: QueryPlan) -> QueryPlan:
        """Keep only the chunks the director index allows (the dummy chunk if none)."""
        with self.pool.connection() as connection:
            chunk_ids = restrict_by_index(connection, plan.chunk_ids, plan.index_lookups)
        if chunk_ids is None:
            return plan
        return replace(plan, chunk_ids=chunk_ids or (EMPTY_CHUNK,))

    async def _fail(self, query_id: int, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError | QueryCancelled):
            status, text = QueryStatus.ABORTED, "query cancelled"
        elif isinstance(exc, ResultTooLarge):
            status, text = QueryStatus.FAILED_LR, str(exc)
        else:
            status, text = QueryStatus.FAILED, str(exc)
        try:
            await asyncio.shield(asyncio.to_thread(self.qmeta.finish, query_id, status, error=text))
        except Exception:  # metadata must not hide the query's own error
            log.exception("could not record the failure of query %s", query_id)

    def _open_merge(self, merge_sql: str) -> tuple[list[ColumnInfo], Any, Any]:
        connection = self.settings.czar_db.connect(
            cursorclass=pymysql.cursors.SSCursor, use_unicode=False, conv={}
        )
        cursor = connection.cursor()
        try:
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
        self, query_id: int, cursor: Any, connection: Any, result: ResultTable
    ) -> AsyncIterator[tuple[Any, ...]]:
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
            await asyncio.shield(self._close_stream(query_id, cursor, connection, result, status, delivered, error))

    async def _close_stream(
        self,
        query_id: int,
        cursor: Any,
        connection: Any,
        result: ResultTable,
        status: QueryStatus,
        delivered: int,
        error: str | None,
    ) -> None:
        def close() -> None:
            try:
                connection.close()
            except Exception:
                pass
            result.drop()
            self.qmeta.finish(query_id, status, result_rows=delivered, error=error)
            self.qmeta.mark_returned(query_id)

        await asyncio.to_thread(close)
