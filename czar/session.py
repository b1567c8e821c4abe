"""One long-lived gRPC stream per worker for small chunk tasks (the worker's ``Session`` call).

A query over few chunks (a point lookup, a cone search) sends each worker a
task whose whole result comes back in one reply (``ExecuteWhole``).  As a
unary call every task pays for a call of its own on both sides: HTTP/2
stream set-up, headers, trailers, and the servicer's per-call machinery (in
a grpc.aio microbenchmark with 30 KB replies, a round trip took 0.56-0.64
ms as a call and 0.36-0.38 ms as a message each way on an open stream, and
the server's CPU per task fell from 0.35-0.41 to 0.20-0.21 ms).  A
:class:`WorkerSession` keeps one ``Session`` stream open to its worker and
multiplexes tasks over it by tag.

It behaves as the unary call would for the dispatcher: :meth:`execute`
returns the ``WholeResult`` or raises ``grpc.aio.AioRpcError`` with the code
and details the worker's ``ExecuteWhole`` would have ended with; a task over
its deadline raises DEADLINE_EXCEEDED, and a cancelled or timed-out task is
cancelled on the worker by a message on the stream.  A stream that breaks
(the worker went away) fails every task waiting on it with UNAVAILABLE, so
the dispatcher retries them on another replica, and the next task opens a
new stream.

Replies share their stream: one of the largest (4 MiB, see
:data:`czar.dispatch.WHOLE_REPLY_BYTES`) holds the replies behind it for its
transfer time, a few milliseconds.  Full scans' tasks do not use a session
(they stream their results through ``Execute``), so a point lookup never
waits behind a scan's results.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import grpc

from proto import worker_pb2 as pb
from proto import worker_pb2_grpc as pb_grpc

log = logging.getLogger("skyshard.czar.session")

_CODES = {code.value[0]: code for code in grpc.StatusCode}


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    """The error a unary call that ended with ``code`` and ``details`` raises."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


class _Stream:
    """One open ``Session`` call, the tasks waiting for its replies, and the task reading them."""

    def __init__(self, stub: pb_grpc.WorkerStub) -> None:
        self.call: Any = stub.Session()
        self.waiting: dict[int, asyncio.Future[pb.WholeResult]] = {}
        self.broken = False
        self.writing = asyncio.Lock()  # one write at a time on a gRPC stream
        self.reader = asyncio.ensure_future(self._read())

    async def write(self, request: pb.SessionRequest) -> None:
        async with self.writing:
            if self.broken:
                raise rpc_error(grpc.StatusCode.UNAVAILABLE, "the task stream to the worker broke")
            try:
                await self.call.write(request)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as exc:
                self.broken = True
                raise rpc_error(grpc.StatusCode.UNAVAILABLE, f"the task stream to the worker broke: {exc}") from exc

    async def _read(self) -> None:
        why = "the worker ended the task stream"
        try:
            async for reply in self.call:
                waiter = self.waiting.get(reply.tag)
                if waiter is None or waiter.done():
                    continue  # a task cancelled here meanwhile
                if reply.HasField("whole"):
                    waiter.set_result(reply.whole)
                else:
                    code = _CODES.get(reply.failure.code, grpc.StatusCode.UNKNOWN)
                    waiter.set_exception(rpc_error(code, reply.failure.details))
        except grpc.aio.AioRpcError as exc:
            why = f"the task stream to the worker broke: {exc.details() or exc.code().name}"
        except asyncio.CancelledError:
            why = "the task stream was closed"
            raise
        finally:
            self.broken = True
            for waiter in self.waiting.values():
                if not waiter.done():
                    waiter.set_exception(rpc_error(grpc.StatusCode.UNAVAILABLE, why))

    async def close(self) -> None:
        self.broken = True
        self.call.cancel()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


class WorkerSession:
    """Tasks to one worker over one ``Session`` stream, opened on first use and after a break."""

    def __init__(self, stub: pb_grpc.WorkerStub) -> None:
        self.stub = stub
        self._stream: _Stream | None = None
        self._tags = itertools.count(1)
        self._cancels: set[asyncio.Future[None]] = set()

    def _open(self) -> _Stream:
        if self._stream is None or self._stream.broken:
            self._stream = _Stream(self.stub)
        return self._stream

    async def execute(self, task: pb.ChunkTask, timeout: float | None = None) -> pb.WholeResult:
        """The task's WholeResult; raises ``grpc.aio.AioRpcError`` as ``ExecuteWhole`` would."""
        stream = self._open()
        tag = next(self._tags)
        reply: asyncio.Future[pb.WholeResult] = asyncio.get_running_loop().create_future()
        stream.waiting[tag] = reply
        sent = False
        try:
            await stream.write(pb.SessionRequest(tag=tag, task=task))
            sent = True
            done, _ = await asyncio.wait((reply,), timeout=timeout)
            if not done:
                raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            return reply.result()
        finally:
            del stream.waiting[tag]
            if not reply.done():  # timed out, or this task was cancelled: so is the worker's
                reply.cancel()
                if sent and not stream.broken:
                    cancel = asyncio.ensure_future(self._cancel(stream, tag))
                    self._cancels.add(cancel)
                    cancel.add_done_callback(self._cancels.discard)

    @staticmethod
    async def _cancel(stream: _Stream, tag: int) -> None:
        try:
            await stream.write(pb.SessionRequest(tag=tag))
        except grpc.aio.AioRpcError:
            pass  # the stream broke: the worker stops the stream's tasks itself

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.close()
            self._stream = None
