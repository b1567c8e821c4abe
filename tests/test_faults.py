"""Damaged chunk results and failing components, on a private cluster this module may break.

Two catalogs are loaded: ``rep2`` with every chunk on both workers and
``rep1`` with one replica per chunk, and both into the reference MariaDB.
Faults are injected into worker-1 (``worker/fault.py``, enabled only
through the worker's config) or by killing real processes.  For every
fault: a query either answers exactly like the reference or fails with an
error that says what broke, within a bounded time; and once the component
is back, queries answer correctly again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pymysql
import pytest

from czar.session import WorkerSession
from ingest.datagen import generate
from integration.catalogs import ingest_case, load_reference
from proto import worker_pb2 as pb
from proto import worker_pb2_grpc as pb_grpc
from skyshard.cluster import ClusterLayout, LocalCluster
from skyshard.mariadb import ServerAddress, process_alive

pytestmark = pytest.mark.cluster

REP1, REP2, LATE = "faults_rep1", "faults_rep2", "faults_late"
QUERIES = (
    "SELECT objectId, ra, decl FROM Object ORDER BY objectId",
    "SELECT COUNT(*), SUM(objectId) FROM Object",
    "SELECT COUNT(*), SUM(sourceId) FROM Source WHERE psfFlux > 0",
)
TASK_TIMEOUT = 4.0
BOUND = 45.0  # no query may take longer than this, whatever breaks


def _catalog(root: Path, name: str, seed: int, objects: int = 1500) -> Path:
    return generate(root / name, objects=objects, sources_per_object=2.0, seed=seed, database=name,
                    num_stripes=6, num_sub_stripes=4, overlap=0.2)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, reference: ServerAddress) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("faults")
    layout = ClusterLayout.on_free_ports(2)
    layout.task_timeout = TASK_TIMEOUT
    cluster = LocalCluster(root / "home", layout)
    cluster.up(log=lambda *_: None)
    try:
        css = cluster.css()
        try:
            for name, replication, seed in ((REP1, 1, 11), (REP2, 2, 12)):
                directory = _catalog(root, name, seed)
                ingest_case(css, cluster.czar_db.address, directory, replication=replication)
                load_reference(reference, directory)
        finally:
            css.close()
        time.sleep(2.5)  # the czar caches css for 2 s
        yield cluster
    finally:
        pids = dict(cluster.layout.pids)
        cluster.down(log=lambda *_: None)
        assert not [name for name, pid in pids.items() if process_alive(pid)]


def connect(cluster: LocalCluster, database: str) -> pymysql.Connection:
    return pymysql.connect(host="127.0.0.1", port=cluster.layout.czar_port, user="skyshard", database=database,
                           connect_timeout=10, read_timeout=BOUND)


def run(cluster: LocalCluster, database: str, sql: str) -> list[tuple[Any, ...]]:
    connection = connect(cluster, database)
    try:
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute(sql)
            rows = list(cursor.fetchall())
        assert time.monotonic() - started < BOUND
        return rows
    finally:
        connection.close()


def expected(reference: ServerAddress, database: str, sql: str) -> list[tuple[Any, ...]]:
    connection = reference.connect(database=database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    finally:
        connection.close()


def assert_correct(cluster: LocalCluster, reference: ServerAddress, database: str) -> None:
    for sql in QUERIES:
        assert run(cluster, database, sql) == expected(reference, database, sql), sql


def assert_fails(cluster: LocalCluster, database: str, sql: str, *fragments: str) -> str:
    started = time.monotonic()
    with pytest.raises(pymysql.MySQLError) as caught:
        run(cluster, database, sql)
    assert time.monotonic() - started < BOUND
    message = str(caught.value.args[-1])
    assert any(f in message for f in fragments), message
    return message


def reconfigure_worker(cluster: LocalCluster, fault: dict[str, Any] | None) -> None:
    cluster.layout.worker_config = {"worker-1": {"fault": fault}} if fault else {}
    cluster.stop_worker(0)
    cluster.start_worker(0)


def eventually(check: Callable[[], None], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except (pymysql.MySQLError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


# -- result integrity -------------------------------------------------------------
@pytest.mark.parametrize("mode", ["truncate", "empty", "corrupt"])
def test_damaged_chunk_results_are_never_merged(local: LocalCluster, reference: ServerAddress, mode: str) -> None:
    reconfigure_worker(local, {"mode": mode})
    try:
        # a replica holds every chunk: the damaged results are retried there, the answer is exact
        assert_correct(local, reference, REP2)
        # no other replica: the query fails, saying why, rather than answering short
        for sql in QUERIES:
            message = assert_fails(local, REP1, sql, "failed verification")
            assert "worker-1" in message
    finally:
        reconfigure_worker(local, None)
    assert_correct(local, reference, REP1)


# -- rows that go out before the last chunk answered (czar.direct) ------------------
BOX = "SELECT objectId, ra, decl FROM Object WHERE qserv_areaspec_box(0, -20, 90, 20)"  # ~6 chunks, both workers
BOX_REFERENCE = "SELECT objectId, ra, decl FROM Object WHERE ra BETWEEN 0 AND 90 AND decl BETWEEN -20 AND 20"
SLOW_CHUNKS = 2.5  # worker-1's delay: under TASK_TIMEOUT


def _record(cluster: LocalCluster, sql: str) -> tuple[Any, ...]:
    """STATUS, ERROR and RESULT_ROWS of the last query with text ``sql``."""
    (row,) = run(cluster, REP1, "SELECT STATUS, ERROR, RESULT_ROWS FROM information_schema.queries"
                               f" WHERE QUERY = '{sql}' ORDER BY ID DESC LIMIT 1")
    return tuple(row)


def _first_rows_early(local: LocalCluster, reference: ServerAddress, fault: dict[str, Any]) -> tuple[
        list[tuple[Any, ...]], list[tuple[Any, ...]], float, BaseException | None]:
    """Run BOX with ``fault`` on worker-1 (its result's metadata learned first), reading its rows
    one by one: (the reference's rows, the rows read, seconds to the first row, the error that ended them)."""
    want = expected(reference, REP1, BOX_REFERENCE)
    assert sorted(run(local, REP1, BOX)) == sorted(want)  # the full merge runs once: metadata known
    reconfigure_worker(local, fault)
    try:
        connection = connect(local, REP1)
        got: list[tuple[Any, ...]] = []
        error: BaseException | None = None
        try:
            with connection.cursor(pymysql.cursors.SSCursor) as cursor:
                started = time.monotonic()
                cursor.execute(BOX)
                first = cursor.fetchone()
                first_after = time.monotonic() - started
                assert first is not None
                got.append(first)
                try:
                    while (row := cursor.fetchone()) is not None:
                        got.append(row)
                except pymysql.MySQLError as exc:
                    error = exc
        finally:
            connection.close()
    finally:
        reconfigure_worker(local, None)
    return want, got, first_after, error


def test_a_direct_result_streams_before_its_slowest_chunk(local: LocalCluster, reference: ServerAddress) -> None:
    want, got, first_after, error = _first_rows_early(local, reference, {"mode": "delay", "seconds": SLOW_CHUNKS})
    assert error is None
    assert first_after < SLOW_CHUNKS / 2  # worker-2's chunks went out while worker-1 waited
    assert sorted(got) == sorted(want)
    assert _record(local, BOX) == ("COMPLETED", None, len(want))


def test_a_chunk_failing_after_the_first_rows_ends_them_with_an_error(
        local: LocalCluster, reference: ServerAddress) -> None:
    want, got, first_after, error = _first_rows_early(local, reference, {"mode": "truncate", "seconds": SLOW_CHUNKS})
    assert first_after < SLOW_CHUNKS / 2
    assert 0 < len(got) < len(want)  # some rows went out, then ...
    assert isinstance(error, pymysql.MySQLError)  # ... the client is told the result is not whole
    message = str(error.args[-1])
    assert "failed verification" in message and "worker-1" in message, message
    status, record_error, _ = _record(local, BOX)
    assert status == "FAILED" and "failed verification" in record_error


def test_a_query_killed_while_its_rows_stream_stops_its_slow_chunks(local: LocalCluster) -> None:
    run(local, REP1, BOX)
    reconfigure_worker(local, {"mode": "delay", "seconds": 3 * TASK_TIMEOUT})  # would hit the deadline
    try:
        client, admin = connect(local, REP1), connect(local, REP1)
        try:
            with client.cursor(pymysql.cursors.SSCursor) as cursor:
                cursor.execute(BOX)
                assert cursor.fetchone() is not None
                started = time.monotonic()
                with admin.cursor() as killer:
                    killer.execute(f"KILL QUERY {client.thread_id()}")
                with pytest.raises(pymysql.MySQLError) as caught:
                    cursor.fetchall()
            assert caught.value.args[0] in (1317, 3169)
            assert time.monotonic() - started < TASK_TIMEOUT / 2  # not when worker-1's task ends
            # the dispatch was stopped and recorded so, not left to fail on its own later
            eventually(lambda: _assert_status(local, ("ABORTED", "query cancelled")), timeout=TASK_TIMEOUT / 2)
        finally:
            client.close()
            admin.close()
    finally:
        reconfigure_worker(local, None)


def _assert_status(local: LocalCluster, status_and_error: tuple[str, str]) -> None:
    assert _record(local, BOX)[:2] == status_and_error


# -- faults -------------------------------------------------------------------------
def test_slow_worker_hits_the_task_deadline(local: LocalCluster, reference: ServerAddress) -> None:
    reconfigure_worker(local, {"mode": "delay", "seconds": 3 * TASK_TIMEOUT})
    try:
        started = time.monotonic()
        assert_correct(local, reference, REP2)  # the replica answers for the slow worker
        assert_fails(local, REP1, QUERIES[1], "DEADLINE_EXCEEDED", "Deadline Exceeded", "deadline")
        assert time.monotonic() - started < 6 * TASK_TIMEOUT + 30
    finally:
        reconfigure_worker(local, None)
    assert_correct(local, reference, REP1)


def test_worker_process_killed_and_restarted(local: LocalCluster, reference: ServerAddress) -> None:
    box = {name: sorted(expected(reference, name, BOX_REFERENCE)) for name in (REP1, REP2)}
    assert sorted(run(local, REP1, BOX)) == box[REP1]  # the czar's task stream to worker-1 is open
    local.stop_worker(0, sig=signal.SIGKILL)
    # What a worker killed mid-task leaves in its spool: the restarted worker removes it.
    spool = local.worker_db(0).spool_dir
    leftovers = [spool / "result-0123456789abcdef.tsv", spool / "load-stray-a.fifo"]
    leftovers[0].write_bytes(b"1\t2\n")
    os.mkfifo(leftovers[1])
    kept = spool / "notes.txt"
    kept.write_text("not the worker's")
    try:
        assert_correct(local, reference, REP2)
        assert sorted(run(local, REP2, BOX)) == box[REP2]  # its small tasks go to the replica
        message = assert_fails(local, REP1, QUERIES[1], "worker-1")
        assert "replica" in message or "unavailable" in message.lower() or "connect" in message.lower()
        assert_fails(local, REP1, BOX, "worker-1")
    finally:
        local.start_worker(0)
    eventually(lambda: assert_correct(local, reference, REP1))
    assert sorted(run(local, REP1, BOX)) == box[REP1]  # over a new task stream
    assert [path.name for path in leftovers if path.exists()] == []
    assert kept.exists()
    kept.unlink()


def test_a_task_stream_fails_its_tasks_when_its_worker_dies(local: LocalCluster) -> None:
    async def case() -> None:
        channel = grpc.aio.insecure_channel(local.worker_address(0))
        session = WorkerSession(pb_grpc.WorkerStub(channel))
        task = pb.ChunkTask(query_id="stream-break", chunk_id=-1, database="", sql="SELECT SLEEP(20) AS s",
                            interactive=True, batch_bytes=1 << 20)
        try:
            waiting = asyncio.ensure_future(session.execute(task))
            await asyncio.sleep(1.0)
            await asyncio.to_thread(local.stop_worker, 0, sig=signal.SIGKILL)
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await asyncio.wait_for(waiting, 10)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # the dispatcher retries elsewhere
            assert time.monotonic() - started < 5
            await asyncio.to_thread(local.start_worker, 0)
            task.sql = "SELECT 5 AS v"
            assert (await session.execute(task, timeout=30)).batch.data == b"5\n"
        finally:
            await session.close()
            await channel.close()

    try:
        asyncio.run(case())
    finally:
        if local.worker_id(0) not in local.layout.pids:
            local.start_worker(0)


SLOW = "SELECT COUNT(*) FROM Object WHERE SLEEP(0.01) = 0"


def test_worker_mariadb_killed_mid_query(local: LocalCluster, reference: ServerAddress) -> None:
    outcome: list[Any] = []

    def scan() -> None:
        try:
            outcome.append(run(local, REP1, SLOW))
        except pymysql.MySQLError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=scan)
    thread.start()
    time.sleep(1.5)
    db = local.worker_db(0)
    pid = db.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    thread.join(BOUND + 5)
    assert not thread.is_alive(), "the query hung"
    try:
        (result,) = outcome
        if isinstance(result, pymysql.MySQLError):
            assert "worker-1" in str(result.args[-1]), result
        else:  # it finished before the kill: then it must be exact
            assert result == expected(reference, REP1, "SELECT COUNT(*) FROM Object")
        assert_correct(local, reference, REP2)
    finally:
        db.start()
    eventually(lambda: assert_correct(local, reference, REP1))


def test_czar_mariadb_restarted(local: LocalCluster, reference: ServerAddress) -> None:
    db = local.czar_db
    pid = db.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    try:
        started = time.monotonic()
        with pytest.raises(pymysql.MySQLError):
            run(local, REP2, QUERIES[1])
        assert time.monotonic() - started < BOUND
    finally:
        db.start()
    eventually(lambda: assert_correct(local, reference, REP2))
    eventually(lambda: assert_correct(local, reference, REP1))


def _ingest(local: LocalCluster, directory: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "skyshard", "--home", str(local.home), "ingest", str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(Path(__file__).resolve().parents[1]),
    )


def _visible_tables(local: LocalCluster) -> set[str]:
    try:
        return {row[0] for row in run(local, "information_schema",
                                      f"SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{LATE}'")}
    except pymysql.MySQLError:
        return set()


def test_czar_killed_during_ingest(local: LocalCluster, reference: ServerAddress, tmp_path: Path) -> None:
    directory = _catalog(tmp_path, LATE, 13, objects=20000)
    load_reference(reference, directory)
    # 1. the czar crashes while an ingest runs: the ingest does not depend on it and completes
    ingest = _ingest(local, directory)
    time.sleep(1.0)
    czar_pid = local.layout.pids["czar"]
    os.killpg(czar_pid, signal.SIGKILL)
    out, _ = ingest.communicate(timeout=300)
    assert ingest.returncode == 0, out.decode()
    local.restart_czar()
    time.sleep(2.5)
    eventually(lambda: assert_correct(local, reference, LATE))

    # 2. czar and ingest both killed mid-way: nothing half-published is visible, a re-run completes it
    css = local.css()
    try:
        css.drop_table(LATE, "Source")
        css.drop_table(LATE, "Object")
    finally:
        css.close()
    ingest = _ingest(local, directory)
    deadline = time.monotonic() + 120
    css = local.css()
    try:
        while time.monotonic() < deadline and not any(
            t.name == "Object" for t in css.tables(LATE, include_unpublished=True)
        ):
            time.sleep(0.05)
        loading = [t for t in css.tables(LATE, include_unpublished=True) if t.state.value == "LOADING"]
    finally:
        css.close()
    ingest.kill()
    if process_alive(local.layout.pids["czar"]):
        os.killpg(local.layout.pids["czar"], signal.SIGKILL)
    ingest.wait(30)
    local.restart_czar()
    time.sleep(2.5)
    css = local.css()
    try:
        states = {t.name: t.state.value for t in css.tables(LATE, include_unpublished=True)}
        unpublished = {name for name, state in states.items() if state != "PUBLISHED"}
        assert loading == [] or unpublished, states
        visible = _visible_tables(local)
        assert not unpublished & visible, (states, visible)  # LOADING is never visible
        for name in unpublished:
            with pytest.raises(pymysql.MySQLError) as caught:
                run(local, LATE, f"SELECT COUNT(*) FROM {name}")
            assert caught.value.args[0] in (1146, 1049)
        for name, state in states.items():  # published before the kill: complete (checked below), re-load it
            if state == "PUBLISHED" and unpublished:
                css.drop_table(LATE, name)
    finally:
        css.close()
    rerun = _ingest(local, directory)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out.decode()
    time.sleep(2.5)
    eventually(lambda: assert_correct(local, reference, LATE))
