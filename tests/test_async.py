"""Async queries, cancellation and the query tables, through PyMySQL against the real cluster.

SUBMIT / poll / qserv_result / qserv_result_delete answer like the reference;
errors of async queries are never lost; CANCEL, KILL QUERY and KILL stop a
long scan on every worker (checked in each worker MariaDB's own processlist);
information_schema.processlist / queries and SHOW PROCESSLIST honour WHERE.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from skyshard.cluster import LocalCluster
from tests.conftest import SAMPLE_DB

pytestmark = pytest.mark.cluster

SLOW = "SELECT COUNT(*) FROM Object WHERE SLEEP(0.05) = 0"


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def connect(cluster: LocalCluster) -> pymysql.connections.Connection:
    return pymysql.connect(host="127.0.0.1", port=cluster.layout.czar_port, user="skyshard", database=SAMPLE_DB)


def fetch(connection: pymysql.connections.Connection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        names = [d[0] for d in cursor.description or ()]
        return names, list(cursor.fetchall())


def record(connection: pymysql.connections.Connection, query_id: int) -> dict[str, Any]:
    names, rows = fetch(connection, f"SELECT * FROM information_schema.queries WHERE ID = {query_id}")
    assert len(rows) == 1, rows
    return dict(zip(names, rows[0], strict=True))


def wait_done(connection: pymysql.connections.Connection, query_id: int, timeout: float = 60.0) -> dict[str, Any]:
    return wait_for(
        lambda: (lambda r: r if r["STATUS"] != "EXECUTING" else None)(record(connection, query_id)),
        timeout, f"query {query_id} to finish",
    )


def worker_statements(cluster: LocalCluster, fragment: str) -> int:
    """Statements containing ``fragment`` running now on every worker's MariaDB."""
    total = 0
    for index in range(cluster.layout.workers):
        connection = cluster.worker_db(index).address.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE %s"
                    " AND INFO NOT LIKE '%%PROCESSLIST%%'",
                    (f"%{fragment}%",),
                )
                total += int(cursor.fetchone()[0])
        finally:
            connection.close()
    return total


def submit(connection: pymysql.connections.Connection, sql: str) -> tuple[int, str]:
    names, rows = fetch(connection, f"SUBMIT {sql}")
    assert names == ["jobId", "resultLocation"] and len(rows) == 1
    return int(rows[0][0]), str(rows[0][1])


def test_submit_poll_fetch_delete(czar: pymysql.connections.Connection, ref: pymysql.connections.Connection) -> None:
    sql = "SELECT objectId, ra, decl FROM Object WHERE decl > 0 ORDER BY objectId LIMIT 50"
    query_id, location = submit(czar, sql)
    assert location == f"table:skyshard_results.result_{query_id}"
    rec = wait_done(czar, query_id)
    want = fetch(ref, sql)
    assert rec["STATUS"] == "COMPLETED", rec
    assert rec["TYPE"] == "ASYNC" and rec["USER"] == "skyshard" and rec["QUERY"] == sql and rec["DB"] == SAMPLE_DB
    assert rec["RESULT_ROWS"] == len(want[1]) == 50
    assert rec["CHUNKS_TOTAL"] > 1 and rec["CHUNKS_COMPLETED"] == rec["CHUNKS_TOTAL"]
    assert rec["ROWS_COLLECTED"] >= 50 and rec["BYTES_COLLECTED"] > 0
    assert rec["SUBMITTED"] <= rec["COMPLETED"] and rec["RETURNED"] is None and rec["ERROR"] is None
    # repeatable until deleted
    assert fetch(czar, f"SELECT * FROM qserv_result({query_id})") == want
    assert fetch(czar, f"select * from QSERV_RESULT( {query_id} );") == want
    assert record(czar, query_id)["RETURNED"] is not None
    fetch(czar, f"CALL qserv_result_delete({query_id})")
    assert record(czar, query_id)["RESULT_LOCATION"] is None
    for statement in (f"SELECT * FROM qserv_result({query_id})", f"CALL qserv_result_delete({query_id})"):
        with pytest.raises(pymysql.MySQLError) as caught:
            fetch(czar, statement)
        assert "deleted" in caught.value.args[1] or "no result" in caught.value.args[1]


def test_async_aggregate_and_group_match_reference(czar: pymysql.connections.Connection,
                                                    ref: pymysql.connections.Connection) -> None:
    sql = "SELECT objectId, COUNT(*) AS n, AVG(ra) AS a FROM Source GROUP BY objectId ORDER BY n DESC, objectId LIMIT 20"
    query_id, _ = submit(czar, sql)
    try:
        assert wait_done(czar, query_id)["STATUS"] == "COMPLETED"
        names, rows = fetch(czar, f"SELECT * FROM qserv_result({query_id})")
        want_names, want_rows = fetch(ref, sql)
        assert names == want_names and len(rows) == len(want_rows) == 20
        for got, want in zip(rows, want_rows, strict=True):
            assert got[:2] == want[:2] and abs(float(got[2]) - float(want[2])) < 1e-9
    finally:
        fetch(czar, f"CALL qserv_result_delete({query_id})")


def test_errors_of_async_queries_are_never_lost(czar: pymysql.connections.Connection) -> None:
    # refused at once: the query cannot be planned
    with pytest.raises(pymysql.MySQLError) as caught:
        fetch(czar, "SUBMIT SELECT nosuchcolumn FROM Object")
    assert caught.value.args[0] == 1054
    with pytest.raises(pymysql.MySQLError) as caught:
        fetch(czar, "SUBMIT SELEC 1")
    assert caught.value.args[0] == 1064
    # fails on the workers: the record and qserv_result say which chunk, which worker, and MariaDB's error
    query_id, _ = submit(czar, "SELECT nosuch_function(ra) FROM Object")
    rec = wait_done(czar, query_id)
    assert rec["STATUS"] == "FAILED"
    assert "chunk" in rec["ERROR"] and "worker-" in rec["ERROR"] and "nosuch_function" in rec["ERROR"].lower()
    with pytest.raises(pymysql.MySQLError) as caught:
        fetch(czar, f"SELECT * FROM qserv_result({query_id})")
    assert rec["ERROR"] in caught.value.args[1]
    _, rows = fetch(czar, f"SELECT ID, ERROR FROM information_schema.queries WHERE STATUS = 'FAILED' AND ID = {query_id}")
    assert rows == [(query_id, rec["ERROR"])]
    with pytest.raises(pymysql.MySQLError) as caught:
        fetch(czar, "SELECT * FROM qserv_result(987654321)")
    assert caught.value.args[0] == 1094
    with pytest.raises(pymysql.MySQLError) as caught:
        fetch(czar, f"SELECT objectId FROM qserv_result({query_id})")
    assert caught.value.args[0] == 1235


def test_cancel_a_running_async_query(cluster: LocalCluster, czar: pymysql.connections.Connection) -> None:
    query_id, _ = submit(czar, SLOW)
    wait_for(lambda: worker_statements(cluster, "SLEEP(0.05)") > 0, what="the scan to start on the workers")
    with pytest.raises(pymysql.MySQLError) as caught:
        fetch(czar, f"SELECT * FROM qserv_result({query_id})")
    assert "still executing" in caught.value.args[1]
    fetch(czar, f"CANCEL {query_id}")
    assert record(czar, query_id)["STATUS"] == "ABORTED"
    wait_for(lambda: worker_statements(cluster, "SLEEP(0.05)") == 0, 10, "the workers to stop")
    with pytest.raises(pymysql.MySQLError) as caught:
        fetch(czar, f"SELECT * FROM qserv_result({query_id})")
    assert caught.value.args[0] == 1317
    with pytest.raises(pymysql.MySQLError):
        fetch(czar, f"CANCEL {query_id}")  # not running any more


@pytest.mark.parametrize("kind", ["QUERY", ""])
def test_kill_stops_the_query_on_every_worker(cluster: LocalCluster, czar: pymysql.connections.Connection,
                                              kind: str) -> None:
    victim = connect(cluster)
    outcome: list[BaseException] = []

    def scan() -> None:
        try:
            fetch(victim, SLOW)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    thread = threading.Thread(target=scan, daemon=True)
    thread.start()
    try:
        wait_for(lambda: worker_statements(cluster, "SLEEP(0.05)") > 0, what="the scan to start on the workers")
        # the czar's own processlist, filtered with WHERE, finds the victim's connection
        _, rows = fetch(czar, "SELECT ID, COMMAND, STATE, QUERY_ID FROM information_schema.processlist"
                              " WHERE INFO LIKE '%SLEEP(0.05)%' AND ID <> CONNECTION_ID()")
        assert len(rows) == 1 and rows[0][1] == "Query" and rows[0][3] is not None, rows
        connection_id, _, _, query_id = rows[0]
        assert connection_id == victim.thread_id()
        _, shown = fetch(czar, "SHOW FULL PROCESSLIST")
        assert any(row[0] == connection_id and row[7] == SLOW for row in shown)
        fetch(czar, f"KILL {kind} {connection_id}")
        thread.join(15)
        assert not thread.is_alive() and len(outcome) == 1
        wait_for(lambda: worker_statements(cluster, "SLEEP(0.05)") == 0, 10, "the workers to stop")
        assert wait_done(czar, int(query_id), 10)["STATUS"] == "ABORTED"
        if kind == "QUERY":  # the connection survives
            assert fetch(victim, "SELECT COUNT(*) FROM Object")[1] == [(3000,)]
        else:
            with pytest.raises(pymysql.MySQLError):
                fetch(victim, "SELECT COUNT(*) FROM Object")
            _, rows = fetch(czar, f"SELECT ID FROM information_schema.processlist WHERE ID = {connection_id}")
            assert rows == []
    finally:
        victim.close()


def test_kill_of_an_unknown_connection_is_an_error(czar: pymysql.connections.Connection) -> None:
    with pytest.raises(pymysql.MySQLError) as caught:
        fetch(czar, "KILL QUERY 12345")
    assert caught.value.args[0] == 1094


def test_query_tables_filter_like_mysql(czar: pymysql.connections.Connection) -> None:
    fetch(czar, "SELECT COUNT(*) FROM Object WHERE ra > 10")
    names, rows = fetch(
        czar,
        "SELECT ID, TYPE, STATUS, RESULT_ROWS FROM information_schema.queries"
        " WHERE QUERY = 'SELECT COUNT(*) FROM Object WHERE ra > 10' ORDER BY ID DESC LIMIT 1",
    )
    assert names == ["ID", "TYPE", "STATUS", "RESULT_ROWS"]
    assert rows and rows[0][1:] == ("SYNC", "COMPLETED", 1)
    _, rows = fetch(czar, "SELECT COUNT(*) FROM information_schema.queries WHERE STATUS = 'NO SUCH STATUS'")
    assert rows == [(0,)]
    _, rows = fetch(czar, "SELECT p.ID, p.USER, p.DB FROM information_schema.processlist AS p WHERE p.ID = CONNECTION_ID()")
    assert rows == [(czar.thread_id(), "skyshard", SAMPLE_DB)]
    names, rows = fetch(czar, "SHOW PROCESSLIST")
    assert names[:3] == ["Id", "User", "Host"] and any(row[0] == czar.thread_id() for row in rows)
    with pytest.raises(pymysql.MySQLError) as caught:
        fetch(czar, "SELECT * FROM information_schema.queries q JOIN Object o ON o.objectId = q.ID")
    assert caught.value.args[0] == 1235


def test_progress_is_written_once_an_interval_has_passed() -> None:
    """No progress write for a query that ends within one interval; then one per interval."""
    from czar.qmeta import QueryMetadata

    qmeta = QueryMetadata(pool=None, progress_interval=0.2)  # type: ignore[arg-type]  # progress_due reads no table
    assert not qmeta.progress_due(7)  # the first chunk done: the interval starts
    assert not qmeta.progress_due(7)
    time.sleep(0.25)
    assert qmeta.progress_due(7)
    assert not qmeta.progress_due(7)
    assert not qmeta.progress_due(8)  # every query has its own interval
