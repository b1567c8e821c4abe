"""A real local cluster answers like one MariaDB holding the same rows unpartitioned."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pymysql
import pytest
import sqlalchemy as sa

from integration.compare import rows_equal, run
from skyshard.cluster import ClusterLayout, LocalCluster
from tests.conftest import SAMPLE_DB

pytestmark = pytest.mark.cluster

QUERIES = [
    ("SELECT COUNT(*) FROM Object", True),
    ("SELECT COUNT(*) FROM Source", True),
    ("SELECT count(*) AS n FROM Object WHERE decl > 20 AND rFlux > 10", True),
    ("SELECT objectId, ra, decl FROM Object WHERE decl BETWEEN 10 AND 12", False),
    ("SELECT * FROM Object WHERE objectId IN (1007, 1014, 7000, 20000)", False),
    ("SELECT objectId, rFlux * 2 + 1, uFlux FROM Object WHERE uFlux IS NULL", False),
    ("SELECT MIN(ra), MAX(ra), SUM(gFlux), AVG(decl), COUNT(uFlux) FROM Object", True),
    ("SELECT extendedness, COUNT(*), AVG(rMag) FROM Object GROUP BY extendedness", False),
    ("SELECT filterId AS f, COUNT(*) AS n FROM Source GROUP BY f HAVING n > 10 ORDER BY n DESC, f", True),
    ("SELECT objectId, ra FROM Object ORDER BY ra DESC LIMIT 5", True),
    ("SELECT objectId FROM Object ORDER BY decl LIMIT 3 OFFSET 2", True),
    ("SELECT DISTINCT extendedness FROM Object", False),
    ("SELECT COUNT(DISTINCT filterId) FROM Source", True),
    ("SELECT o.objectId, COUNT(*) FROM Object o JOIN Source s ON o.objectId = s.objectId "
     "WHERE o.decl > 40 GROUP BY o.objectId", False),
    ("SELECT s.sourceId, o.ra FROM Object o, Source s WHERE o.objectId = s.objectId AND s.filterId = 2 "
     "AND o.decl < -60", False),
    ("SELECT COUNT(*) FROM Object WHERE decl > 95", True),
    ("SELECT objectId FROM Object WHERE decl > 95", False),
]


@pytest.mark.parametrize(("sql", "ordered"), QUERIES, ids=[q for q, _ in QUERIES])
def test_pymysql_matches_reference(czar: pymysql.connections.Connection,
                                   ref: pymysql.connections.Connection, sql: str, ordered: bool) -> None:
    got_names, got_rows = run(czar, sql)
    want_names, want_rows = run(ref, sql)
    assert got_names == want_names
    assert len(want_rows) > 0 or "95" in sql, "query should select rows in the sample catalog"
    difference = rows_equal(got_rows, want_rows, ordered=ordered)
    assert difference is None, difference


def test_sqlalchemy_and_pandas_style_use(cluster: LocalCluster, ref: pymysql.connections.Connection) -> None:
    engine = sa.create_engine(f"mysql+pymysql://skyshard@127.0.0.1:{cluster.layout.czar_port}/{SAMPLE_DB}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT objectId, rFlux FROM Object WHERE decl > 60")).fetchall()
            count = conn.execute(sa.text("SELECT COUNT(*) FROM Source")).scalar()
    finally:
        engine.dispose()
    _, want = run(ref, "SELECT objectId, rFlux FROM Object WHERE decl > 60")
    assert rows_equal([tuple(r) for r in rows], want, ordered=False) is None
    assert count == run(ref, "SELECT COUNT(*) FROM Source")[1][0][0]


def test_mariadb_command_line_client(cluster: LocalCluster, ref: pymysql.connections.Connection) -> None:
    sql = f"SELECT COUNT(*) FROM {SAMPLE_DB}.Object; SELECT MAX(objectId) FROM {SAMPLE_DB}.Source"
    output = subprocess.run(
        ["mariadb", "-h", "127.0.0.1", "-P", str(cluster.layout.czar_port), "-u", "skyshard", "-N", "-B", "-e", sql],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout.split()
    want = [str(run(ref, "SELECT COUNT(*) FROM Object")[1][0][0]),
            str(run(ref, "SELECT MAX(objectId) FROM Source")[1][0][0])]
    assert output == want


def test_what_clients_send_on_connect(czar: pymysql.connections.Connection) -> None:
    with czar.cursor() as cursor:
        cursor.execute("SELECT @@version, @@version_comment")
        version, comment = cursor.fetchone()
        assert "MariaDB" in version and "Skyshard" in comment
        cursor.execute("SHOW VARIABLES LIKE 'version%'")
        assert {row[0] for row in cursor.fetchall()} >= {"version", "version_comment"}
        cursor.execute("SET NAMES utf8mb4")
        cursor.execute("SET autocommit = 1")
        cursor.execute("USE testsky")
        cursor.execute("SELECT DATABASE()")
        assert cursor.fetchone()[0] == SAMPLE_DB
        cursor.execute("SHOW DATABASES")
        assert SAMPLE_DB in {row[0] for row in cursor.fetchall()}
        cursor.execute("SHOW TABLES")
        assert {row[0] for row in cursor.fetchall()} == {"Object", "Source"}
        cursor.execute("DESCRIBE Object")
        described = {row[0]: row for row in cursor.fetchall()}
        assert list(described)[:3] == ["objectId", "ra", "decl"]
        # chunkId/subChunkId can be named but are not part of SELECT *, as MariaDB shows them.
        assert described["chunkId"][5] == "INVISIBLE" and described["subChunkId"][5] == "INVISIBLE"
        cursor.execute("SELECT * FROM Object LIMIT 1")
        assert "chunkId" not in [d[0] for d in cursor.description]


@pytest.mark.parametrize(
    ("sql", "errno", "fragment"),
    [
        ("SELECT * FROM NoSuchTable", 1146, "NoSuchTable"),
        ("SELECT nosuchcolumn FROM Object", 1054, "nosuchcolumn"),
        ("SELEC objectId FROM Object", 1064, "syntax"),
        ("SELECT * FROM Object_1234567890", 1146, "chunk"),
        ("SELECT COUNT(*) FROM Object o1, Object o2 WHERE o1.ra = o2.ra", 1235, "chunk-local"),
        ("SELECT objectId FROM Object WHERE objectId IN (SELECT objectId FROM Source)", 1235, "subquer"),
        ("SELECT * FROM nosuchdb.Object", 1049, "nosuchdb"),
    ],
)
def test_clear_errors(czar: pymysql.connections.Connection, sql: str, errno: int, fragment: str) -> None:
    with pytest.raises(pymysql.MySQLError) as caught, czar.cursor() as cursor:
        cursor.execute(sql)
    assert caught.value.args[0] == errno
    assert fragment.lower() in str(caught.value.args[1]).lower()


def test_every_query_has_a_metadata_record(cluster: LocalCluster, czar: pymysql.connections.Connection) -> None:
    with czar.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM Object WHERE decl > 0")
        cursor.fetchall()
    connection = cluster.czar_db.address.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT status, chunks_total, chunks_completed, result_rows, kind FROM skyshard_qmeta.query "
                "WHERE query_text = 'SELECT COUNT(*) FROM Object WHERE decl > 0' ORDER BY query_id DESC LIMIT 1"
            )
            status, total, completed, result_rows, kind = cursor.fetchone()
    finally:
        connection.close()
    assert status == "COMPLETED" and kind == "SYNC"
    assert total > 1 and completed == total
    assert result_rows == 1


def test_status_reports_every_component(cluster: LocalCluster) -> None:
    report = cluster.status()
    names = {item["name"] for item in report}
    assert {"czar", "worker-1", "worker-2", "czar-db", "worker-1-db", "worker-2-db"} <= names
    assert all(item["ok"] for item in report)


def test_a_cluster_that_fails_to_start_leaves_nothing_running(tmp_path: Path) -> None:
    """The czar's port taken between choosing it and binding it: up() fails and stops what it started."""
    local = LocalCluster(tmp_path / "c", ClusterLayout.on_free_ports(1))
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("0.0.0.0", local.layout.czar_port))
        taken.listen()
        with pytest.raises(Exception, match="czar"):
            local.up(log=lambda *_: None)
    home = str(tmp_path / "c")
    running = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if home.encode() in cmdline.read_bytes():
                running.append(cmdline.parent.name)
        except OSError:
            pass  # the process ended meanwhile
    assert running == []
