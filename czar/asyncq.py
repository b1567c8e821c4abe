"""Asynchronous queries: SUBMIT, poll, fetch, delete, cancel, expiry and notifications.

Owns the czar's background query tasks.  ``submit`` records and plans a
query at once (so a query that cannot run is refused immediately), then
dispatches it in an asyncio task; the chunk rows stay in the query's result
table and the merge SQL is kept in its metadata record, so
``qserv_result(<id>)`` runs the same merge as a sync query would, as often
as asked until the result is deleted or expires.  Errors are never lost:
they are in the record and ``fetch`` raises them.  A periodic task drops
results nobody touched for ``result_ttl`` seconds.  Queries submitted with
a callback URL get an HTTP POST of their status record on each status
change.  Front ends (:mod:`czar.frontend`, :mod:`czar.http_api`) call this.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.request
from typing import Any

from sqlglot import exp

from czar.catalog import CatalogSnapshot
from czar.engine import Engine, QueryResult
from czar.errors import QueryCancelled, QueryFailed, ResultTooLarge, SkyshardError, UnknownQuery
from czar.merge import result_table_name
from czar.planner import QueryPlan
from czar.qmeta import RESULT_DATABASE, QueryKind, QueryRecord, QueryStatus

log = logging.getLogger("skyshard.czar.asyncq")


class QueryNotReady(SkyshardError):
    """The query is still running (or its result is gone)."""

    errno = 1105


def result_location(query_id: int) -> str:
    return f"table:{RESULT_DATABASE}.{result_table_name(query_id)}"


class AsyncQueries:
    """Background queries of one czar process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.callbacks: dict[int, str] = {}
        self._notifications: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._background: list[asyncio.Task[None]] = []
        engine.on_status_change = self._status_changed

    # -- life cycle -----------------------------------------------------------
    def start(self) -> None:
        self._background = [
            asyncio.create_task(self._cleanup_loop()),
            asyncio.create_task(self._notify_loop()),
        ]

    async def close(self) -> None:
        for task in list(self.tasks.values()) + self._background:
            task.cancel()
        await asyncio.gather(*self.tasks.values(), *self._background, return_exceptions=True)

    # -- commands -------------------------------------------------------------
    async def submit(
        self,
        sql: str,
        *,
        user: str,
        default_db: str | None,
        statement: exp.Select | None = None,
        connection_id: int | None = None,
        callback_url: str | None = None,
    ) -> tuple[int, str]:
        """Record and plan a query, run it in the background; returns (id, result location)."""
        qmeta = self.engine.qmeta
        query_id = await asyncio.to_thread(
            qmeta.start, QueryKind.ASYNC, user, default_db, sql,
            connection_id=connection_id, callback_url=callback_url,
        )
        if callback_url:
            self.callbacks[query_id] = callback_url
        plan, snapshot = await self.engine.prepare(query_id, sql, default_db, statement)
        task = asyncio.create_task(self._run(query_id, plan, snapshot), name=f"query-{query_id}")
        self.tasks[query_id] = task
        task.add_done_callback(lambda _: self.tasks.pop(query_id, None))
        await self._status_changed(query_id)
        return query_id, result_location(query_id)

    async def _run(self, query_id: int, plan: QueryPlan, snapshot: CatalogSnapshot) -> None:
        try:
            result = await self.engine.produce(query_id, plan, snapshot)
        except BaseException:  # recorded by produce
            return
        merge_sql = plan.merge_sql_for(result.qualified)
        try:
            rows = await asyncio.to_thread(self._count_rows, merge_sql)

            def complete() -> None:
                self.engine.qmeta.set_merge_sql(query_id, merge_sql)
                self.engine.qmeta.finish(query_id, QueryStatus.COMPLETED, result_rows=rows)

            await asyncio.shield(asyncio.to_thread(complete))
        except BaseException as exc:
            await self.engine.fail(query_id, exc, result)
            return
        await self._status_changed(query_id)

    def _count_rows(self, merge_sql: str) -> int:
        """Run the merge once to learn the final row count (rows are read and dropped)."""
        _, cursor, connection = self.engine.open_merge(merge_sql)
        try:
            count = 0
            while batch := cursor.fetchmany(5000):
                count += len(batch)
            return count
        finally:
            with contextlib.suppress(Exception):
                connection.close()

    async def record(self, query_id: int) -> QueryRecord:
        await self.engine.records_written()  # a sync query's end may still be queued
        rec = await asyncio.to_thread(self.engine.qmeta.get, query_id)
        if rec is None:
            raise UnknownQuery(f"Unknown query id: {query_id}")
        return rec

    async def fetch(self, query_id: int) -> QueryResult:
        """The rows of a completed async query; its error if it failed."""
        rec = await self.record(query_id)
        if rec.kind != QueryKind.ASYNC:
            raise QueryNotReady(f"query {query_id} is not an async query; its rows went to its client")
        if rec.status == QueryStatus.EXECUTING:
            raise QueryNotReady(
                f"query {query_id} is still executing ({rec.chunks_completed} of {rec.chunks_total} chunks done)"
            )
        if rec.status == QueryStatus.FAILED_LR:
            raise ResultTooLarge(f"query {query_id} failed: {rec.error}")
        if rec.status == QueryStatus.ABORTED:
            raise QueryCancelled(f"query {query_id} was aborted: {rec.error}")
        if rec.status != QueryStatus.COMPLETED:
            raise QueryFailed(f"query {query_id} failed: {rec.error}")
        if rec.result_location is None or rec.merge_sql is None:
            raise QueryNotReady(f"the result of query {query_id} was deleted or has expired")
        return await self.engine.stream_kept(query_id, rec.merge_sql)

    async def delete(self, query_id: int) -> None:
        """Drop the kept result of an async query."""
        rec = await self.record(query_id)
        if rec.kind != QueryKind.ASYNC:
            raise QueryNotReady(f"query {query_id} is not an async query")
        if rec.status == QueryStatus.EXECUTING:
            raise QueryNotReady(f"query {query_id} is still executing; cancel it first")
        if rec.result_location is None:
            raise QueryNotReady(f"query {query_id} has no result to delete (deleted, expired or failed)")
        await asyncio.to_thread(self.engine.drop_result, query_id)

    async def cancel(self, query_id: int) -> int | None:
        """Cancel a running query on every worker.

        Returns the MySQL connection id to kill when it is a sync query of this
        czar (the front end does that), None when an async query was cancelled.
        """
        task = self.tasks.get(query_id)
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=30)
            return None
        connection_id = self.engine.sync_running.get(query_id)
        if connection_id is not None:
            return connection_id
        rec = await self.record(query_id)
        raise QueryNotReady(f"query {query_id} is not running (status {rec.status.value})")

    # -- expiry ---------------------------------------------------------------
    async def expire_once(self) -> list[int]:
        ids = await asyncio.to_thread(self.engine.qmeta.expired_results, self.engine.settings.result_ttl)
        for query_id in ids:
            log.info("result of query %s expired", query_id)
            await asyncio.to_thread(self.engine.drop_result, query_id)
        return ids

    async def _cleanup_loop(self) -> None:
        while True:
            try:
                await self.expire_once()
            except Exception:
                log.exception("result cleanup failed")
            await asyncio.sleep(self.engine.settings.cleanup_interval)

    # -- notifications --------------------------------------------------------
    async def _status_changed(self, query_id: int) -> None:
        url = self.callbacks.get(query_id)
        if url is None:
            return
        rec = await asyncio.to_thread(self.engine.qmeta.get, query_id)
        if rec is None:
            return
        if rec.status != QueryStatus.EXECUTING:
            self.callbacks.pop(query_id, None)
        self._notifications.put_nowait((url, rec.as_json()))

    async def _notify_loop(self) -> None:
        while True:
            url, body = await self._notifications.get()
            try:
                await asyncio.to_thread(_post_json, url, body)
            except Exception as exc:
                log.warning("notification of query %s to %s failed: %s", body.get("query_id"), url, exc)


def _post_json(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - user-given callback
        response.read()
