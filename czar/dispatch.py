"""Dispatch: send a plan's chunk tasks to the workers and collect their results.

Owns the czar's side of the gRPC contract: one channel per worker, bounded
in-flight tasks per worker, replica choice and retry on another replica when
a worker fails before any of a chunk's rows were merged, verification of
each chunk result (byte count and CRC-32), early stop for a satisfied LIMIT,
and cancellation of a query on every worker.  Rows go to a
:class:`czar.merge.ResultTable`; this module never interprets them.

A query over many chunks sends them in groups (one task carries up to
``MAX_GROUP`` chunks of one worker, which runs their SELECTs as one
``UNION ALL`` statement, or one after the other, on one connection and
streams one result): a chunk's own cost is then a part of one statement on
the worker, not a gRPC call, a schema probe, a file and a merge step each.
Every task slot of every worker gets about ``GROUPS_PER_SLOT`` groups
(1M rows over 1070 chunks: 16 chunks a group 0.29 s, about 67 a group
0.13 s).  A query over few chunks (at most ``INTERACTIVE_CHUNKS``) sends
one task per chunk, so a worker's MariaDB scans them at the same time,
unless its tables are small (``small_chunk_rows``, from the catalog's row
counts): a chunk of a few thousand rows costs less to scan than its task's
own fixed cost (the gRPC call on both sides, thread hops, the statement), so
its worker's chunks go in one task (B4 in ``bench/``, a cone over 3 chunks of
about 4,700 rows: about 1 ms less).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from czar.catalog import CatalogSnapshot
from czar.errors import QueryCancelled, QueryFailed, ResultTooLarge, SkyshardError
from czar.merge import ResultTable
from czar.planner import EMPTY_CHUNK, REPLICATED_CHUNK, QueryPlan
from czar.session import WorkerSession, rpc_error
from proto import worker_pb2 as pb
from proto import worker_pb2_grpc as pb_grpc

log = logging.getLogger("skyshard.czar.dispatch")

RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.DATA_LOSS,
}
SPILL_BYTES = 16 << 20
RECONNECT_BACKOFF_MS = (250, 2000)  # first and longest wait before reconnecting to a lost worker
MAX_GROUP = 128  # chunks per task at most
INTERACTIVE_CHUNKS = 8  # a query over at most this many chunks runs in the workers' interactive slots
ENQUEUE_SLICE = 256  # chunks queued between two yields to the event loop (a scan of 100,000 chunks
# queued in one go would hold every other query's callbacks for its whole length)
SMALL_CHUNK_ROWS = 20_000  # a chunk scan of up to this many rows costs about what its task's fixed costs do
GROUPS_PER_SLOT = 2  # aim for this many groups per in-flight task slot, so the load stays balanced


WHOLE_REPLY_BYTES = 4 << 20  # a session task's largest reply (a larger result is streamed by Execute)


async def _one_message(call: asyncio.Task[pb.WholeResult]) -> AsyncIterator[pb.ResultMessage]:
    """A session task read like Execute's stream: one message holding the whole result.  The task
    cancelled by the dispatcher (not by a cancellation of this one) ends as a call would."""
    try:
        whole = await call
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if call.cancelled() and not (current is not None and current.cancelling()):
            raise rpc_error(grpc.StatusCode.CANCELLED, "task cancelled") from None
        raise
    yield pb.ResultMessage(whole=whole)


def _label(chunk_ids: list[int]) -> str:
    if len(chunk_ids) == 1:
        return f"chunk {chunk_ids[0]}"
    return "chunks " + ", ".join(map(str, chunk_ids))


class WorkerChannels:
    """One gRPC channel, stub and task session (czar.session) per worker address, created on first use."""

    def __init__(self) -> None:
        self._stubs: dict[str, pb_grpc.WorkerStub] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._sessions: dict[str, WorkerSession] = {}

    def session(self, address: str) -> WorkerSession:
        session = self._sessions.get(address)
        if session is None:
            session = self._sessions[address] = WorkerSession(self.stub(address))
        return session

    def stub(self, address: str) -> pb_grpc.WorkerStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = grpc.aio.insecure_channel(
                address,
                options=[
                    ("grpc.max_receive_message_length", 64 << 20),
                    ("grpc.max_send_message_length", 64 << 20),
                    # A channel that lost its worker retries the connection after a backoff, and
                    # calls fail at once until it succeeds: gRPC's default backoff grows to 120 s,
                    # so a worker back after 20 s could stay unreachable for seconds more.
                    ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
                    ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
                    ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[1]),
                ],
            )
            self._channels[address] = channel
            stub = self._stubs[address] = pb_grpc.WorkerStub(channel)
        return stub

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        for channel in self._channels.values():
            await channel.close()
        self._sessions.clear()
        self._channels.clear()
        self._stubs.clear()


@dataclass
class DispatchProgress:
    chunks_total: int
    chunks_completed: int = 0
    rows: int = 0
    bytes: int = 0
    failed_workers: set[str] = field(default_factory=set)


class _ChunkError(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Dispatcher:
    """Runs the chunk tasks of one query at a time per call to :meth:`run`."""

    def __init__(
        self,
        channels: WorkerChannels,
        *,
        tasks_per_worker: int = 4,
        task_timeout: float | None = None,
        spool_dir: str | None = None,
        small_chunk_rows: int = SMALL_CHUNK_ROWS,
    ) -> None:
        self.channels = channels
        self.tasks_per_worker = tasks_per_worker
        self.small_chunk_rows = small_chunk_rows
        self.task_timeout = task_timeout
        self.spool_dir = spool_dir or tempfile.gettempdir()
        self.streamed_instead = 0  # session tasks that came back too large and went through Execute

    def group_size(self, chunks: int, workers: int, rows_per_chunk: int | None = None) -> int:
        """Chunks per task for a query over ``chunks`` chunks (of ``rows_per_chunk`` rows on
        average, None: unknown) on ``workers`` workers."""
        if chunks <= INTERACTIVE_CHUNKS:
            small = rows_per_chunk is not None and rows_per_chunk <= self.small_chunk_rows
            return chunks if small else 1
        slots = max(1, workers) * self.tasks_per_worker * GROUPS_PER_SLOT
        return max(1, min(MAX_GROUP, chunks // slots))

    @staticmethod
    def active_workers(snapshot: CatalogSnapshot) -> frozenset[str]:
        return frozenset(w.worker_id for w in snapshot.workers.values() if w.state == "ACTIVE")

    @staticmethod
    def replicas_for(chunk_id: int, plan: QueryPlan, snapshot: CatalogSnapshot, active: frozenset[str]) -> list[str]:
        """The workers of ``active`` (:meth:`active_workers`, once per query) holding ``chunk_id``,
        in the order to try them."""
        if chunk_id in (REPLICATED_CHUNK, EMPTY_CHUNK):
            replicas = sorted(active)
        else:
            placement = snapshot.placements.get(plan.database)
            replicas = [w for w in placement.replicas.get(chunk_id, ()) if w in active] if placement else []
        if not replicas:
            return []
        shift = chunk_id % len(replicas) if chunk_id >= 0 else 0
        return replicas[shift:] + replicas[:shift]

    async def cancel_everywhere(self, query_id: int, snapshot: CatalogSnapshot) -> None:
        """Ask every worker to stop the tasks of ``query_id`` (best effort)."""

        async def cancel(address: str) -> None:
            try:
                await self.channels.stub(address).CancelQuery(
                    pb.CancelRequest(query_id=str(query_id)), timeout=5
                )
            except grpc.aio.AioRpcError:
                pass

        await asyncio.gather(*(cancel(w.address) for w in snapshot.workers.values()))

    async def run(
        self,
        query_id: int,
        plan: QueryPlan,
        snapshot: CatalogSnapshot,
        result: ResultTable,
        *,
        on_progress: Callable[[DispatchProgress], None] | None = None,
        max_result_bytes: int = 0,
    ) -> DispatchProgress:
        progress = DispatchProgress(chunks_total=len(plan.chunk_ids))
        queues: dict[str, asyncio.Queue[int | None]] = {}
        tried: dict[int, set[str]] = {}
        completed: set[int] = set()
        remaining = len(plan.chunk_ids)
        done = asyncio.Event()
        failure: list[BaseException] = []
        in_flight: set[Any] = set()  # Execute calls and session tasks: each can be cancelled
        consumers: list[asyncio.Task[None]] = []
        enqueued: dict[str, int] = {}  # chunks queued for each worker so far
        started: dict[str, int] = {}  # consumers started for each worker
        group_size = self.group_size(len(plan.chunk_ids), len(snapshot.workers), plan.rows_per_chunk)
        active = self.active_workers(snapshot)

        def finish_with(exc: BaseException | None) -> None:
            if exc is not None and not failure:
                failure.append(exc)
            done.set()
            for call in list(in_flight):
                call.cancel()
            for q in queues.values():
                for _ in range(self.tasks_per_worker):
                    q.put_nowait(None)

        def enqueue(chunk_id: int) -> bool:
            for worker_id in self.replicas_for(chunk_id, plan, snapshot, active):
                if worker_id in tried.get(chunk_id, ()) or worker_id in progress.failed_workers:
                    continue
                if worker_id not in queues:
                    queues[worker_id] = asyncio.Queue()
                    enqueued[worker_id] = started[worker_id] = 0
                queues[worker_id].put_nowait(chunk_id)
                enqueued[worker_id] += 1
                # a consumer per group queued, at most tasks_per_worker: a point lookup starts one
                if started[worker_id] < min(self.tasks_per_worker, -(-enqueued[worker_id] // group_size)):
                    started[worker_id] += 1
                    consumers.append(asyncio.create_task(consume(worker_id)))
                return True
            return False

        def unreachable(worker_id: str) -> str:
            """The error tail naming every chunk left without a replica once ``worker_id`` failed."""
            missing = [
                c for c in dict.fromkeys(plan.chunk_ids) if c not in completed
                and all(w in progress.failed_workers or w in tried.get(c, ()) for w in self.replicas_for(c, plan, snapshot, active))
            ]
            shown = ", ".join(map(str, missing[:50])) + (f" and {len(missing) - 50} more" if len(missing) > 50 else "")
            return f"no other replica of chunk{'s' if len(missing) > 1 else ''} {shown} is available (worker {worker_id} failed)"

        async def run_chunk(worker_id: str, chunk_ids: list[int], whole_reply: bool = True) -> None:
            worker = snapshot.workers[worker_id]
            chunk_id = chunk_ids[0]
            label = _label(chunk_ids)
            task = pb.ChunkTask(
                query_id=str(query_id),
                chunk_id=chunk_id,
                database=plan.database,
                sql=plan.chunk_sql_for(chunk_id),
                max_result_bytes=max_result_bytes,
                attempt=len(tried.get(chunk_id, ())),
                more_chunk_ids=chunk_ids[1:],
                more_sql=[plan.chunk_sql_for(c) for c in chunk_ids[1:]],
                interactive=len(plan.chunk_ids) <= INTERACTIVE_CHUNKS,
                probe_key=plan.shape,
            )
            # A result kept in memory (czar.direct) comes back in one reply, over the worker's session
            # stream (czar.session): no call of its own, no result stream on either side.
            whole_reply = whole_reply and getattr(result, "takes_inline", None) is not None
            call: Any
            if whole_reply:
                task.batch_bytes = WHOLE_REPLY_BYTES
                call = asyncio.ensure_future(self.channels.session(worker.address).execute(task, self.task_timeout))
                messages = _one_message(call)
            else:
                call = messages = self.channels.stub(worker.address).Execute(task, timeout=self.task_timeout)
            in_flight.add(call)
            stream_instead = False
            buffer = bytearray()
            spill: tuple[int, str] | None = None
            checksum = 0
            received = 0
            end: pb.ResultEnd | None = None
            whole: pb.WholeResult | None = None
            try:
                async for message in messages:
                    kind = message.WhichOneof("payload")
                    if kind == "whole":  # schema, rows and end in one message: merged below
                        whole = message.whole
                        checksum = zlib.crc32(whole.batch.data)
                        received = len(whole.batch.data)
                        end = whole.end
                        if max_result_bytes and progress.bytes + received > max_result_bytes:
                            raise ResultTooLarge(
                                f"result size reached {progress.bytes + received} bytes, over the "
                                f"limit of {max_result_bytes} bytes"
                            )
                    elif kind == "schema":
                        columns = [(c.name, c.definition) for c in message.schema.columns]
                        await asyncio.to_thread(result.create, columns)
                    elif kind == "batch":
                        data = message.batch.data
                        checksum = zlib.crc32(data, checksum)
                        received += len(data)
                        if spill is None and len(buffer) + len(data) > SPILL_BYTES:
                            spill = tempfile.mkstemp(prefix="chunk-", dir=self.spool_dir)
                            os.write(spill[0], bytes(buffer))
                            buffer.clear()
                        if spill is not None:
                            os.write(spill[0], data)
                        else:
                            buffer.extend(data)
                        if max_result_bytes and progress.bytes + received > max_result_bytes:
                            raise ResultTooLarge(
                                f"result size reached {progress.bytes + received} bytes, over the "
                                f"limit of {max_result_bytes} bytes"
                            )
                    elif kind == "end":
                        end = message.end
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.CANCELLED and done.is_set():
                    return
                if whole_reply and code == grpc.StatusCode.FAILED_PRECONDITION:
                    # over one reply's size: nothing was received, stream it
                    self.streamed_instead += 1
                    stream_instead = True
                elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise ResultTooLarge(f"{exc.details()}") from exc
                else:
                    text = f"{label} on worker {worker_id} ({worker.address}): {exc.details() or code.name}"
                    # CANCELLED that we did not ask for: the worker went away (its shutdown cancelled the call)
                    raise _ChunkError(text, code in RETRYABLE or code == grpc.StatusCode.CANCELLED) from exc
            finally:
                in_flight.discard(call)
                if spill is not None:
                    os.close(spill[0])
            if stream_instead:
                await run_chunk(worker_id, chunk_ids, whole_reply=False)
                return
            try:
                if end is None:
                    raise _ChunkError(f"{label} on worker {worker_id}: result stream ended early", True)
                if end.byte_count != received or end.checksum != f"{checksum:08x}":
                    raise _ChunkError(
                        f"{label} on worker {worker_id}: result failed verification "
                        f"({received} of {end.byte_count} bytes, checksum {checksum:08x} vs {end.checksum})",
                        True,
                    )
                if done.is_set():
                    return
                room = getattr(result, "room", None)  # czar.direct while it streams: the client is behind
                if room is not None and spill is None:
                    await room(len(whole.batch.data) if whole is not None else len(buffer))
                if whole is not None:
                    columns = [(c.name, c.definition) for c in whole.schema.columns]
                    inline = getattr(result, "takes_inline", None)  # czar.direct keeps it in memory
                    if inline is not None and inline(len(whole.batch.data)):  # no thread hop
                        result.create_and_append(columns, whole.batch.data, end.row_count)
                    else:
                        await asyncio.to_thread(result.create_and_append, columns, whole.batch.data, end.row_count)
                elif spill is not None:
                    await asyncio.to_thread(result.append_file, Path(spill[1]), end.row_count)
                else:
                    await asyncio.to_thread(result.append, bytes(buffer), end.row_count)
            finally:
                if spill is not None:
                    os.unlink(spill[1])
            completed.update(chunk_ids)
            progress.chunks_completed += len(chunk_ids)
            progress.rows += end.row_count
            progress.bytes += received
            if on_progress is not None:
                on_progress(progress)
            if plan.early_stop_rows is not None and progress.rows >= plan.early_stop_rows:
                finish_with(None)

        async def consume(worker_id: str) -> None:
            nonlocal remaining
            queue = queues[worker_id]
            while not done.is_set():
                chunk_id = await queue.get()
                if chunk_id is None or done.is_set():
                    return
                group = [chunk_id]
                while len(group) < group_size:
                    try:
                        more = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if more is None:  # stop sentinel: leave it for this loop's next get
                        queue.put_nowait(None)
                        break
                    group.append(more)
                if worker_id in progress.failed_workers:  # failed earlier in this query: skip it
                    if all(enqueue(c) for c in group):
                        continue
                    finish_with(QueryFailed(f"{_label(group)}: {unreachable(worker_id)}"))
                    return
                try:
                    await run_chunk(worker_id, group)
                except _ChunkError as exc:
                    for c in group:
                        tried.setdefault(c, set()).add(worker_id)
                    if exc.retryable:
                        log.warning("query %s: %s; trying another replica", query_id, exc)
                        progress.failed_workers.add(worker_id)
                        if all(enqueue(c) for c in group):
                            continue
                        finish_with(QueryFailed(f"{exc}; {unreachable(worker_id)}"))
                    else:
                        finish_with(QueryFailed(str(exc)))
                    return
                except SkyshardError as exc:
                    finish_with(exc)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # unexpected: fail the query, keep the czar alive
                    log.exception("query %s: %s failed", query_id, _label(group))
                    finish_with(QueryFailed(f"{_label(group)} on worker {worker_id}: {exc}"))
                    return
                remaining -= len(group)
                if remaining == 0:
                    finish_with(None)
                    return

        try:
            if not plan.chunk_ids:
                return progress
            for position, chunk_id in enumerate(plan.chunk_ids, 1):
                if position % ENQUEUE_SLICE == 0:
                    await asyncio.sleep(0)  # let other queries' callbacks run, and this one's tasks start
                    if done.is_set():
                        break
                if not enqueue(chunk_id):
                    placement = snapshot.placements.get(plan.database)
                    holders = ", ".join(placement.replicas.get(chunk_id, ())) if placement else ""
                    raise QueryFailed(
                        f"chunk {chunk_id} has no active worker (placed on: {holders or 'none'})"
                    )
            await done.wait()
        except asyncio.CancelledError:
            finish_with(QueryCancelled("Query execution was interrupted"))
            await asyncio.shield(self.cancel_everywhere(query_id, snapshot))
            raise
        finally:
            for consumer in consumers:
                consumer.cancel()
            await asyncio.gather(*consumers, return_exceptions=True)
        if failure or (plan.early_stop_rows is not None and remaining > 0):
            await self.cancel_everywhere(query_id, snapshot)
        if failure:
            raise failure[0]
        return progress
