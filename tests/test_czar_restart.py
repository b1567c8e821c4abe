"""Czar restarts, the result size limit and result expiry, each with its own czar configuration.

Every test restarts the session's czar with a changed layout and restores
the default configuration afterwards.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pymysql
import pytest

from skyshard.cluster import LocalCluster
from tests.test_async import (
    SLOW,
    connect,
    fetch,
    record,
    submit,
    wait_done,
    wait_for,
    worker_statements,
)

pytestmark = pytest.mark.cluster


@pytest.fixture
def restorable(cluster: LocalCluster) -> Iterator[LocalCluster]:
    saved = (cluster.layout.max_result_bytes, cluster.layout.result_ttl, cluster.layout.cleanup_interval)
    try:
        yield cluster
    finally:
        cluster.layout.max_result_bytes, cluster.layout.result_ttl, cluster.layout.cleanup_interval = saved
        cluster.restart_czar()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["crash", "stop"])
def test_restart_in_the_middle_of_a_query(restorable: LocalCluster, ref: pymysql.connections.Connection,
                                          sig: int) -> None:
    cluster = restorable
    czar = connect(cluster)
    sql = "SELECT objectId, ra FROM Object WHERE decl > 0 ORDER BY objectId LIMIT 30"
    done_id, _ = submit(czar, sql)
    assert wait_done(czar, done_id)["STATUS"] == "COMPLETED"
    running_id, _ = submit(czar, SLOW)
    wait_for(lambda: worker_statements(cluster, "SLEEP(0.05)") > 0, what="the scan to start")
    czar.close()
    cluster.restart_czar(sig=sig)
    czar = connect(cluster)
    try:
        rec = record(czar, running_id)
        assert rec["STATUS"] == "ABORTED" and rec["ERROR"] and rec["RESULT_LOCATION"] is None
        wait_for(lambda: worker_statements(cluster, "SLEEP(0.05)") == 0, 15, "the workers to stop")
        with pytest.raises(pymysql.MySQLError) as caught:
            fetch(czar, f"SELECT * FROM qserv_result({running_id})")
        assert caught.value.args[0] == 1317
        # the completed result survived the restart
        with ref.cursor() as cursor:
            cursor.execute(sql)
            want = list(cursor.fetchall())
        assert fetch(czar, f"SELECT * FROM qserv_result({done_id})")[1] == want
        fetch(czar, f"CALL qserv_result_delete({done_id})")
    finally:
        czar.close()


def test_result_size_limit(restorable: LocalCluster) -> None:
    cluster = restorable
    cluster.layout.max_result_bytes = 20000
    cluster.restart_czar()
    czar = connect(cluster)
    try:
        assert fetch(czar, "SELECT COUNT(*) FROM Object")[1] == [(3000,)]  # small results still pass
        with pytest.raises(pymysql.MySQLError) as caught:
            fetch(czar, "SELECT * FROM Source")
        message = caught.value.args[1]
        assert "20000 bytes" in message and "limit" in message, message
        _, rows = fetch(czar, "SELECT STATUS, ERROR FROM information_schema.queries"
                              " WHERE QUERY = 'SELECT * FROM Source' ORDER BY ID DESC LIMIT 1")
        assert rows[0][0] == "FAILED_LR" and "20000 bytes" in rows[0][1]
        query_id, _ = submit(czar, "SELECT * FROM Source")
        rec = wait_done(czar, query_id)
        assert rec["STATUS"] == "FAILED_LR"
        with pytest.raises(pymysql.MySQLError) as caught:
            fetch(czar, f"SELECT * FROM qserv_result({query_id})")
        assert "20000 bytes" in caught.value.args[1]
        wait_for(lambda: worker_statements(cluster, "Source") == 0, 10, "the workers to stop")
    finally:
        czar.close()


def test_unfetched_results_expire(restorable: LocalCluster) -> None:
    cluster = restorable
    cluster.layout.result_ttl = 2.0
    cluster.layout.cleanup_interval = 0.5
    cluster.restart_czar()
    czar = connect(cluster)
    try:
        query_id, _ = submit(czar, "SELECT COUNT(*) FROM Object")
        assert wait_done(czar, query_id)["STATUS"] == "COMPLETED"
        assert fetch(czar, f"SELECT * FROM qserv_result({query_id})")[1] == [(3000,)]
        wait_for(lambda: record(czar, query_id)["RESULT_LOCATION"] is None, 15, "the result to expire")
        with pytest.raises(pymysql.MySQLError) as caught:
            fetch(czar, f"SELECT * FROM qserv_result({query_id})")
        assert "expired" in caught.value.args[1]
        with cluster.czar_db.address.connect() as connection, connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'skyshard_results'"
                           f" AND TABLE_NAME = 'result_{query_id}'")
            assert cursor.fetchone()[0] == 0
    finally:
        czar.close()
