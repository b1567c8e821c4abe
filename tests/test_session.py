"""Small tasks over one stream per worker (czar.session against a real worker's ``Session``).

Replies must reach the task that asked, whatever order they come back in;
a failing task fails alone; a cancelled or timed-out task stops its
statement on the worker; and the stream goes on serving afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest

from czar.session import WorkerSession
from proto import worker_pb2 as pb
from proto import worker_pb2_grpc as pb_grpc
from skyshard.cluster import LocalCluster
from tests.test_worker_cancel import _sleeping_statements

pytestmark = pytest.mark.cluster


def _task(sql: str, query_id: str = "session-test") -> pb.ChunkTask:
    return pb.ChunkTask(query_id=query_id, chunk_id=-1, database="", sql=sql, interactive=True,
                        batch_bytes=1 << 20)


def _with_session(cluster: LocalCluster, case: Callable[[WorkerSession], Awaitable[None]]) -> None:
    async def run() -> None:
        channel = grpc.aio.insecure_channel(cluster.worker_address(0))
        session = WorkerSession(pb_grpc.WorkerStub(channel))
        try:
            await asyncio.wait_for(case(session), 60)
        finally:
            await session.close()
            await channel.close()
    asyncio.run(run())


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return True
        await asyncio.sleep(0.05)
    return False


def test_replies_reach_their_tasks_in_any_order(cluster: LocalCluster) -> None:
    async def case(session: WorkerSession) -> None:
        # later tasks sleep less: their replies overtake the earlier ones on the stream
        sql = "SELECT {0} AS v, SLEEP({1}) AS s"
        results = await asyncio.gather(*(session.execute(_task(sql.format(i, (12 - i) * 0.02))) for i in range(12)))
        assert [whole.batch.data for whole in results] == [f"{i}\t0\n".encode() for i in range(12)]
        assert all(whole.end.row_count == 1 for whole in results)
    _with_session(cluster, case)


def test_a_failing_task_fails_alone(cluster: LocalCluster) -> None:
    async def case(session: WorkerSession) -> None:
        good = asyncio.ensure_future(session.execute(_task("SELECT 1 AS v, SLEEP(0.2) AS s")))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await session.execute(_task("SELECT no_such_column FROM DUAL"))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "1054" in (caught.value.details() or "")  # MariaDB's unknown-column error
        assert (await good).batch.data == b"1\t0\n"
        assert (await session.execute(_task("SELECT 2 AS v"))).batch.data == b"2\n"
    _with_session(cluster, case)


def test_a_cancelled_task_stops_its_statement(cluster: LocalCluster) -> None:
    async def case(session: WorkerSession) -> None:
        sleeper = asyncio.ensure_future(session.execute(_task("SELECT SLEEP(30) AS s")))
        assert await _until(lambda: _sleeping_statements(cluster) == 1), "statement never started"
        sleeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeper
        assert await _until(lambda: _sleeping_statements(cluster) == 0), "statement still running"
        assert (await session.execute(_task("SELECT 3 AS v"))).batch.data == b"3\n"
    _with_session(cluster, case)


def test_a_task_over_its_deadline_is_stopped(cluster: LocalCluster) -> None:
    async def case(session: WorkerSession) -> None:
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await session.execute(_task("SELECT SLEEP(30) AS s"), timeout=1.0)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 5
        assert await _until(lambda: _sleeping_statements(cluster) == 0), "statement still running"
        assert (await session.execute(_task("SELECT 4 AS v"))).batch.data == b"4\n"
    _with_session(cluster, case)


def test_a_result_over_the_reply_size_is_refused_before_anything_is_sent(cluster: LocalCluster) -> None:
    async def case(session: WorkerSession) -> None:
        task = _task("SELECT REPEAT('x', 2000) AS v")
        task.batch_bytes = 1000
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await session.execute(task)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # the dispatcher then uses Execute
    _with_session(cluster, case)
