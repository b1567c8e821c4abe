"""The worker stops its MariaDB statement when a query is cancelled or the czar goes away."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from proto import worker_pb2 as pb
from proto import worker_pb2_grpc as pb_grpc
from skyshard.cluster import LocalCluster

pytestmark = pytest.mark.cluster


def _sleeping_statements(cluster: LocalCluster) -> int:
    connection = cluster.worker_db(0).address.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%SLEEP(30)%'"
                " AND INFO NOT LIKE '%PROCESSLIST%'"
            )
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


def _wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_stream_going_away_kills_the_statement(cluster: LocalCluster) -> None:
    with grpc.insecure_channel(cluster.worker_address(0)) as channel:
        call = pb_grpc.WorkerStub(channel).Execute(
            pb.ChunkTask(query_id="cancel-test-1", chunk_id=-1, database="", sql="SELECT SLEEP(30) AS s")
        )
        reader = threading.Thread(target=lambda: list(_drain(call)), daemon=True)
        reader.start()
        assert _wait_for(lambda: _sleeping_statements(cluster) == 1), "statement never started"
        call.cancel()
        assert _wait_for(lambda: _sleeping_statements(cluster) == 0), "statement still running"


def test_cancel_query_kills_the_statement(cluster: LocalCluster) -> None:
    with grpc.insecure_channel(cluster.worker_address(0)) as channel:
        stub = pb_grpc.WorkerStub(channel)
        call = stub.Execute(pb.ChunkTask(query_id="cancel-test-2", chunk_id=-1, database="", sql="SELECT SLEEP(30) AS s"))
        errors: list[grpc.StatusCode] = []
        reader = threading.Thread(target=lambda: errors.extend(_drain(call)), daemon=True)
        reader.start()
        assert _wait_for(lambda: _sleeping_statements(cluster) == 1), "statement never started"
        reply = stub.CancelQuery(pb.CancelRequest(query_id="cancel-test-2"))
        assert reply.cancelled_tasks == 1
        assert _wait_for(lambda: _sleeping_statements(cluster) == 0), "statement still running"
        reader.join(10)
        assert errors == [grpc.StatusCode.CANCELLED]


def _drain(call) -> list[grpc.StatusCode]:  # type: ignore[no-untyped-def]
    try:
        for _ in call:
            pass
    except grpc.RpcError as exc:
        return [exc.code()]
    return []
