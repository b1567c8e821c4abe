"""The worker's gRPC service (grpc.aio): the edge between proto/ and the executor.

Owns task admission (bounded concurrency), the registry of running tasks per
query (for cancellation), streaming spooled results in batches, and turning
executor errors into gRPC status codes with the MariaDB errno in trailing
metadata (``mysql-errno``).  SQL is run by :mod:`worker.executor`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NoReturn

import grpc
import pymysql.err

from proto import worker_pb2 as pb
from proto import worker_pb2_grpc as pb_grpc
from skyshard.quick import QuickError, finish_cancelled
from skyshard.quick import execute as quick_execute
from worker.executor import (
    Executor,
    LoadSegment,
    QuickStatement,
    SpooledResult,
    TaskError,
    TaskKilled,
    task_error,
)
from worker.fault import Fault

log = logging.getLogger("skyshard.worker")
STOP_WAIT_SECONDS = 30.0  # how long a killed quick statement may take to answer before its connection is closed

DEFAULT_BATCH_BYTES = 1 << 20


class TaskRefused(Exception):
    """Why a chunk task has no (more) result: a gRPC status code, a message and a MariaDB errno.
    A call ends with it (:func:`_abort`); a Session task's reply carries it."""

    def __init__(self, code: grpc.StatusCode, message: str, errno: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.errno = errno


@dataclass(eq=False)
class RunningTask:
    query_id: str
    chunk_id: int
    started: float = field(default_factory=time.monotonic)
    thread_id: int | None = None
    cancelled: bool = False


class WorkerService(pb_grpc.WorkerServicer):
    """Executes chunk tasks with at most ``max_tasks`` statements at a time.

    Interactive tasks (queries over few chunks) have ``interactive_tasks``
    slots of their own (default ``max(4, max_tasks)``), so a point lookup does
    not wait for a full scan's tasks.  ``max_tasks`` is best the cores the
    worker's MariaDB may use: more scan statements than cores run no faster,
    and every one of them is a thread an interactive task's statement shares
    the cores with (B5 in ``bench/``: 2 workers on 2 cores, lookups' p99
    during scans 19-24 ms with 4 scan statements per worker, 13-15 ms with 1).
    """

    def __init__(self, worker_id: str, executor: Executor, max_tasks: int = 4, fault: Fault | None = None,
                 interactive_tasks: int | None = None) -> None:
        self.worker_id = worker_id
        self.fault = fault  # tests only (worker/fault.py); None in any real deployment
        self.executor = executor
        self.max_tasks = max_tasks
        self.interactive_tasks = interactive_tasks or max(4, max_tasks)
        self._slots = asyncio.Semaphore(max_tasks)
        self._interactive_slots = asyncio.Semaphore(self.interactive_tasks)  # see ChunkTask.interactive
        self._threads = ThreadPoolExecutor(max_workers=max_tasks + self.interactive_tasks + 4,
                                           thread_name_prefix="task")
        self._tasks: dict[str, set[RunningTask]] = {}
        self._queued = 0
        self._completed = 0
        self.quick_tasks = 0  # tasks started from the event loop (skyshard.quick), for tests
        self._stopping: set[asyncio.Future[None]] = set()  # cancelled quick statements being stopped

    async def _in_thread(self, func, *args, **kwargs):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, lambda: func(*args, **kwargs))

    def running_count(self) -> int:
        return sum(len(tasks) for tasks in self._tasks.values())

    # -- Execute ------------------------------------------------------------
    async def Execute(  # noqa: N802 (gRPC method name)
        self, request: pb.ChunkTask, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ResultMessage]:
        task = self._register(request)
        result = None
        try:
            result = await self._run(request, task)
            batch_bytes = request.batch_bytes or DEFAULT_BATCH_BYTES
            if result.size <= batch_bytes:
                # One message holds it all (most chunk results): no file reads in threads, one send.
                yield pb.ResultMessage(whole=self._whole(request, result, task))
                return
            yield pb.ResultMessage(schema=_schema(result))
            checksum = 0
            sent = 0
            for path in result.paths:
                with open(path, "rb") as handle:
                    while True:
                        data = await self._in_thread(handle.read, batch_bytes)
                        if not data:
                            break
                        if task.cancelled:
                            raise TaskRefused(grpc.StatusCode.CANCELLED, "query cancelled", 1317)
                        checksum = zlib.crc32(data, checksum)
                        sent += len(data)
                        if self.fault is not None:
                            data = self.fault.mangle(request.database, data)
                            if not data:
                                continue
                        yield pb.ResultMessage(batch=pb.RowBatch(data=data))
            self._completed += 1
            yield pb.ResultMessage(end=self._end(result.row_count, sent, checksum, task))
        except (TaskKilled, TaskError) as exc:
            refused = self._refusal(request, exc)
            await _abort(context, refused.code, refused.message, refused.errno)
        except TaskRefused as exc:
            await _abort(context, exc.code, exc.message, exc.errno)
        finally:
            self._unregister(task, result)

    async def ExecuteWhole(  # noqa: N802 (gRPC method name)
        self, request: pb.ChunkTask, context: grpc.aio.ServicerContext
    ) -> pb.WholeResult:
        """Execute's task with its result in the one reply (a unary call costs both sides less)."""
        try:
            return await self._execute_whole(request)
        except TaskRefused as exc:
            await _abort(context, exc.code, exc.message, exc.errno)

    async def _execute_whole(self, request: pb.ChunkTask) -> pb.WholeResult:
        """Run a task into one WholeResult; raises :class:`TaskRefused`."""
        task = self._register(request)
        result = None
        try:
            result = await self._run(request, task)
            limit = request.batch_bytes or DEFAULT_BATCH_BYTES
            if result.size > limit:
                raise TaskRefused(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"chunk {request.chunk_id} result is {result.size} bytes, over the {limit} bytes"
                    " of one reply: run it through Execute",
                    0,
                )
            return self._whole(request, result, task)
        except (TaskKilled, TaskError) as exc:
            raise self._refusal(request, exc) from exc
        finally:
            self._unregister(task, result)

    # -- Session ------------------------------------------------------------
    async def Session(  # noqa: N802 (gRPC method name)
        self, requests: AsyncIterator[pb.SessionRequest], context: grpc.aio.ServicerContext
    ) -> None:
        """ExecuteWhole's tasks over one stream (see proto/worker.proto): each task runs as its
        own asyncio task and writes its reply when done; the stream's end stops them all."""
        running: dict[int, asyncio.Task[None]] = {}
        writing = asyncio.Lock()  # one write at a time on a gRPC stream

        async def run(tag: int, request: pb.ChunkTask) -> None:
            try:
                reply = pb.SessionReply(tag=tag, whole=await self._execute_whole(request))
            except TaskRefused as exc:
                failure = pb.TaskFailure(code=exc.code.value[0], details=exc.message, mysql_errno=exc.errno)
                reply = pb.SessionReply(tag=tag, failure=failure)
            except Exception as exc:  # a bug: the czar gets the task's failure, the stream goes on
                log.exception("session task %s of query %s failed", tag, request.query_id)
                failure = pb.TaskFailure(code=grpc.StatusCode.INTERNAL.value[0], details=f"worker {self.worker_id}: {exc}")
                reply = pb.SessionReply(tag=tag, failure=failure)
            finally:
                running.pop(tag, None)
            try:
                async with writing:
                    await context.write(reply)
            except Exception:  # the stream is gone (the czar went away): nobody waits for the reply
                log.debug("session reply %s of query %s not sent", tag, request.query_id, exc_info=True)

        try:
            async for request in requests:
                if request.HasField("task"):
                    running[request.tag] = asyncio.ensure_future(run(request.tag, request.task))
                elif (cancelled := running.get(request.tag)) is not None:
                    cancelled.cancel()
        finally:
            tasks = list(running.values())
            for left in tasks:
                left.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _register(self, request: pb.ChunkTask) -> RunningTask:
        task = RunningTask(request.query_id, request.chunk_id)
        self._tasks.setdefault(request.query_id, set()).add(task)
        return task

    def _unregister(self, task: RunningTask, result: SpooledResult | None) -> None:
        if result is not None:
            result.discard()
        tasks = self._tasks.get(task.query_id)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._tasks[task.query_id]

    async def _run(self, request: pb.ChunkTask, task: RunningTask) -> SpooledResult:
        """Admit the task (its slots), run it into spool files; raises :class:`TaskRefused` when it
        is cancelled or its result is over ``max_result_bytes``."""
        slots = self._interactive_slots if request.interactive else self._slots
        self._queued += 1
        try:
            await slots.acquire()
        finally:
            self._queued -= 1
        result = None
        try:
            if task.cancelled:
                raise TaskRefused(grpc.StatusCode.CANCELLED, "query cancelled", 1317)
            task.started = time.monotonic()
            if self.fault is not None:
                await self.fault.before_task(request.database)

            def remember(thread_id: int) -> None:
                task.thread_id = thread_id

            if len(request.more_sql) != len(request.more_chunk_ids):
                raise TaskRefused(grpc.StatusCode.INVALID_ARGUMENT, "more_sql and more_chunk_ids differ in length", 1105)
            quick = self.executor.quick_statement(request.database, request.sql, request.more_sql,
                                                  request.probe_key)
            try:
                if quick is not None:
                    result = await self._run_quick(quick, task)
                else:
                    work = self._threads.submit(
                        self.executor.run_query, request.database, request.sql, remember,
                        list(request.more_sql), lambda: task.cancelled, request.probe_key,
                    )
                    try:
                        result = await asyncio.wrap_future(work)
                    except asyncio.CancelledError:
                        work.add_done_callback(_discard_result)  # a statement that ends anyway wrote files
                        raise
            except asyncio.CancelledError:
                # The czar's call went away: stop the statement too, and the group's next ones.
                task.cancelled = True
                if task.thread_id is not None:
                    await self._in_thread(self.executor.kill, task.thread_id)
                raise
        finally:
            slots.release()
        try:
            if task.cancelled:
                raise TaskRefused(grpc.StatusCode.CANCELLED, "query cancelled", 1317)
            if request.max_result_bytes and result.size > request.max_result_bytes:
                chunks = ", ".join(str(c) for c in (request.chunk_id, *request.more_chunk_ids))
                raise TaskRefused(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"chunk {chunks} result is {result.size} bytes, over the limit of "
                    f"{request.max_result_bytes} bytes",
                    0,
                )
        except BaseException:
            result.discard()
            raise
        return result

    async def _run_quick(self, quick: QuickStatement, task: RunningTask) -> SpooledResult:
        """Run a task's one statement from the event loop (:mod:`skyshard.quick`: no thread); its
        connection goes back to the pool unless it may be in an unknown state."""
        conn = quick.connection
        healthy = False
        handed_over = False
        try:
            task.thread_id = conn.thread_id()
            if task.cancelled:
                healthy = True
                raise TaskKilled("query cancelled", 1317)
            self.quick_tasks += 1
            try:
                rows = await quick_execute(conn, quick.sql)
            except asyncio.CancelledError:
                # The statement goes on in MariaDB, and may still write its file: _stop_quick kills
                # it and keeps the connection until its reply says it is over, then removes the file.
                task.thread_id = None  # no other kill: the connection could serve another task by then
                handed_over = True
                stopping = asyncio.ensure_future(self._stop_quick(quick))
                self._stopping.add(stopping)
                stopping.add_done_callback(self._stopping.discard)
                raise
            except pymysql.err.MySQLError as exc:
                healthy = True  # an ERR reply, read whole
                raise task_error(exc) from exc
            except QuickError as exc:
                raise TaskError(f"MariaDB connection: {exc}", 2013) from exc
            healthy = True
            return SpooledResult(quick.columns, [quick.path], rows)
        except BaseException:
            if not handed_over:
                quick.path.unlink(missing_ok=True)
            raise
        finally:
            if not handed_over:
                self.executor.pool.give_back(conn, healthy)

    async def _stop_quick(self, quick: QuickStatement) -> None:
        """A cancelled quick statement: kill it, read its reply, then remove its file."""
        reusable = False
        try:
            await self._in_thread(self.executor.kill, quick.connection.thread_id())
            reusable = await asyncio.wait_for(finish_cancelled(quick.connection), STOP_WAIT_SECONDS)
        except Exception:
            log.warning("a cancelled statement did not answer after its kill: connection closed", exc_info=True)
        finally:
            self.executor.pool.give_back(quick.connection, reusable)
            quick.path.unlink(missing_ok=True)

    def _whole(self, request: pb.ChunkTask, result: SpooledResult, task: RunningTask) -> pb.WholeResult:
        """The whole (small) result in one message: schema, rows and end."""
        data = b"".join(path.read_bytes() for path in result.paths)
        checksum = zlib.crc32(data)
        sent = len(data)
        if self.fault is not None:
            data = self.fault.mangle(request.database, data)
        self._completed += 1
        return pb.WholeResult(
            schema=_schema(result),
            batch=pb.RowBatch(data=data),
            end=self._end(result.row_count, sent, checksum, task),
        )

    def _refusal(self, request: pb.ChunkTask, exc: TaskKilled | TaskError) -> TaskRefused:
        if isinstance(exc, TaskKilled):
            return TaskRefused(grpc.StatusCode.CANCELLED, f"query cancelled: {exc}", exc.errno)
        return TaskRefused(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"worker {self.worker_id}, chunk {request.chunk_id}: MariaDB error {exc.errno}: {exc}",
            exc.errno,
        )

    @staticmethod
    def _end(row_count: int, sent: int, checksum: int, task: RunningTask) -> pb.ResultEnd:
        return pb.ResultEnd(
            row_count=row_count,
            byte_count=sent,
            checksum=f"{checksum:08x}",
            elapsed_seconds=time.monotonic() - task.started,
        )

    # -- CancelQuery --------------------------------------------------------
    async def CancelQuery(  # noqa: N802
        self, request: pb.CancelRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelReply:
        tasks = list(self._tasks.get(request.query_id, ()))
        for task in tasks:
            task.cancelled = True
            if task.thread_id is not None:
                await self._in_thread(self.executor.kill, task.thread_id)
        if tasks:
            log.info("cancelled %d task(s) of query %s", len(tasks), request.query_id)
        return pb.CancelReply(cancelled_tasks=len(tasks))

    # -- Status -------------------------------------------------------------
    async def Status(  # noqa: N802
        self, request: pb.StatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.StatusReply:
        reply = pb.StatusReply(
            worker_id=self.worker_id,
            running_tasks=self.running_count() - self._queued,
            queued_tasks=self._queued,
            max_concurrent_tasks=self.max_tasks,
            tasks_completed=self._completed,
        )
        now = time.monotonic()
        for query_id, tasks in self._tasks.items():
            for task in tasks:
                reply.tasks.add(query_id=query_id, chunk_id=task.chunk_id, running_seconds=now - task.started)
        try:
            await self._in_thread(self.executor.ping)
            reply.database_ok = True
            if request.include_chunks:
                inventory = await self._in_thread(self.executor.inventory)
                for (database, table), chunks in sorted(inventory.items()):
                    reply.tables.add(database=database, table=table, chunk_ids=chunks)
        except Exception as exc:  # health is reported, not raised
            reply.database_ok = False
            reply.database_error = str(exc)
        return reply

    # -- LoadBatch ------------------------------------------------------------
    async def LoadBatch(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.LoadBatchRequest], context: grpc.aio.ServicerContext
    ) -> pb.LoadBatchReply:
        with self.executor.probe_cache.changing():  # tables may change: no probe of before is reused
            return await self._load_batch(request_iterator, context)

    async def _load_batch(
        self, request_iterator: AsyncIterator[pb.LoadBatchRequest], context: grpc.aio.ServicerContext
    ) -> pb.LoadBatchReply:
        header: pb.LoadBatchHeader | None = None
        pieces: list[bytes] = []
        checksum = 0
        started = time.monotonic()
        async for message in request_iterator:
            if message.HasField("header"):
                header = message.header
            elif header is None:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "LoadBatchHeader must come first", 0)
            else:
                checksum = zlib.crc32(message.data, checksum)
                pieces.append(message.data)
        if header is None:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "no LoadBatchHeader received", 0)
        assert header is not None
        data = b"".join(pieces)
        del pieces
        expected = sum(segment.size for segment in header.segments)
        if expected != len(data):
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT,
                f"LoadBatch: segments announce {expected} bytes, received {len(data)}", 0,
            )
        view = memoryview(data)
        segments: list[LoadSegment] = []
        offset = 0
        for segment in header.segments:
            segments.append(
                LoadSegment(segment.table, view[offset : offset + segment.size], segment.create_sql, segment.replace,
                            segment.defer_keys)
            )
            offset += segment.size
        received = time.monotonic()
        try:
            outcomes = await self._in_thread(
                self.executor.load_segments,
                header.database,
                segments,
                fields_terminated_by=header.fields_terminated_by,
                fields_enclosed_by=header.fields_enclosed_by,
                lines_terminated_by=header.lines_terminated_by,
                sql_mode=header.sql_mode or None,
                character_set=header.character_set,
            )
        except TaskError as exc:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"worker {self.worker_id}: loading into {header.database} failed: "
                f"MariaDB error {exc.errno}: {exc}",
                exc.errno,
            )
        log.info(
            "LoadBatch %s: %d segments, %d bytes: receive %.2f s, load %.2f s",
            header.database, len(segments), expected, received - started, time.monotonic() - received,
        )
        return pb.LoadBatchReply(
            segments=[
                pb.SegmentResult(
                    table=o.table, rows_loaded=o.rows_loaded, warnings=o.warnings,
                    warning_messages=o.warning_messages,
                )
                for o in outcomes
            ],
            checksum=f"{checksum:08x}",
        )

    # -- Admin --------------------------------------------------------------
    async def Admin(  # noqa: N802
        self, request: pb.AdminRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        with self.executor.probe_cache.changing():  # tables may change: no probe of before is reused
            return await self._admin(request, context)

    async def _admin(self, request: pb.AdminRequest, context: grpc.aio.ServicerContext) -> pb.AdminReply:
        try:
            executed = await self._in_thread(self.executor.admin, list(request.statements))
        except TaskError as exc:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"worker {self.worker_id}: MariaDB error {exc.errno}: {exc}",
                exc.errno,
            )
        return pb.AdminReply(executed=executed)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.executor.close()


def _discard_result(work: Future[SpooledResult]) -> None:
    """Remove the spool files of a task whose caller went away (its thread ran on to the end)."""
    if not work.cancelled() and work.exception() is None:
        work.result().discard()


def _schema(result: SpooledResult) -> pb.ResultSchema:
    return pb.ResultSchema(columns=[pb.ColumnSchema(name=c.name, definition=c.definition) for c in result.columns])


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str, errno: int) -> NoReturn:
    context.set_trailing_metadata((("mysql-errno", str(errno)),))
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises


async def serve(
    service: WorkerService, listen: str, *, ready: asyncio.Event | None = None
) -> tuple[grpc.aio.Server, int]:
    """Start a grpc.aio server for ``service`` on ``listen`` (host:port; port 0 picks one)."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.keepalive_time_ms", 30000),
        ]
    )
    pb_grpc.add_WorkerServicer_to_server(service, server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise RuntimeError(f"cannot listen on {listen}")
    await server.start()
    if ready is not None:
        ready.set()
    return server, port
