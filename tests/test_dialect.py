"""The Qserv dialect on a real cluster: pruning really happens, and answers equal the reference.

Pruning is observed through the query's metadata record (chunks_total):
area restrictors and director-key lookups must visit fewer chunks than a
scan, and still answer exactly like the reference MariaDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from integration.compare import rows_equal, run
from skyshard.cluster import LocalCluster
from skyshard.mariadb import ServerAddress

pytestmark = pytest.mark.cluster


@pytest.fixture
def engine(cluster: LocalCluster, case01: str) -> Iterator[Any]:
    connection = pymysql.connect(host="127.0.0.1", port=cluster.layout.czar_port, user="skyshard", database=case01)
    yield connection
    connection.close()


@pytest.fixture
def plain(reference: ServerAddress, case01: str) -> Iterator[Any]:
    connection = reference.connect(database=case01)
    yield connection
    connection.close()


def _chunks_visited(cluster: LocalCluster, sql: str) -> int:
    """The chunk total of the last record of ``sql``, read through the czar (which first writes
    every record still queued: a direct result's end is recorded after the client has its rows)."""
    connection = pymysql.connect(host="127.0.0.1", port=cluster.layout.czar_port, user="skyshard")
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT CHUNKS_TOTAL FROM information_schema.queries WHERE QUERY = %s ORDER BY ID DESC LIMIT 1",
                (sql,),
            )
            row = cursor.fetchone()
            assert row is not None, f"no query record for {sql}"
            return int(row[0])
    finally:
        connection.close()


def _total_chunks(cluster: LocalCluster, engine: Any) -> int:
    sql = "SELECT COUNT(*) FROM Object WHERE ra_PS > -1000"
    run(engine, sql)
    return _chunks_visited(cluster, sql)


def _same(engine: Any, plain: Any, engine_sql: str, plain_sql: str | None = None) -> list[tuple[Any, ...]]:
    got_names, got = run(engine, engine_sql)
    want_names, want = run(plain, plain_sql or engine_sql)
    assert got_names == want_names
    assert rows_equal(got, want, ordered=False) is None
    return got


def test_area_restrictor_prunes_and_answers_like_the_plain_query(cluster: LocalCluster, engine: Any, plain: Any) -> None:
    total = _total_chunks(cluster, engine)
    sql = "SELECT objectId, ra_PS FROM Object WHERE qserv_areaspec_circle(0.5, 0.5, 2)"
    rows = _same(engine, plain, sql, "SELECT objectId, ra_PS FROM Object WHERE scisql_s2PtInCircle(ra_PS, decl_PS, 0.5, 0.5, 2) = 1")
    assert rows, "the circle should hold some objects of case01"
    assert 0 < _chunks_visited(cluster, sql) < total


def test_area_restrictor_under_or_is_evaluated_per_row(engine: Any, plain: Any) -> None:
    _same(
        engine, plain,
        "SELECT objectId FROM Object WHERE qserv_areaspec_box(0, 0, 1, 1) OR objectId = 430213989148129",
        "SELECT objectId FROM Object WHERE (ra_PS BETWEEN 0 AND 1 AND decl_PS BETWEEN 0 AND 1) OR objectId = 430213989148129",
    )


def test_director_key_lookup_visits_one_chunk(cluster: LocalCluster, engine: Any, plain: Any) -> None:
    object_id = run(plain, "SELECT objectId FROM Object ORDER BY objectId LIMIT 1 OFFSET 7")[1][0][0]
    for sql in (
        f"SELECT objectId, ra_PS FROM Object WHERE objectId = {object_id}",
        f"SELECT sourceId FROM Source WHERE objectId IN ({object_id})",
        f"SELECT COUNT(*) FROM Source WHERE objectId BETWEEN {object_id} AND {object_id}",
    ):
        _same(engine, plain, sql)
        assert _chunks_visited(cluster, sql) == 1, sql


def test_unknown_key_visits_no_data_chunk_and_answers_empty(cluster: LocalCluster, engine: Any, plain: Any) -> None:
    sql = "SELECT COUNT(*) AS n, MAX(ra_PS) FROM Object WHERE objectId = 12345"
    rows = _same(engine, plain, sql)
    assert rows == [(0, None)]
    assert _chunks_visited(cluster, sql) == 1  # the empty dummy chunk, for the schema


def test_child_rows_without_a_director_are_found_by_key(engine: Any, plain: Any) -> None:
    orphans = run(plain, "SELECT DISTINCT s.objectId FROM Source s LEFT JOIN Object o USING (objectId) "
                         "WHERE o.objectId IS NULL AND s.objectId IS NOT NULL ORDER BY 1 LIMIT 3")[1]
    assert orphans, "case01 has Source rows whose Object is absent"
    for (object_id,) in orphans:
        rows = _same(engine, plain, f"SELECT sourceId, objectId FROM Source WHERE objectId = {object_id}")
        assert rows


def test_near_neighbour_count_matches_the_monolithic_join(engine: Any, plain: Any) -> None:
    sql = ("SELECT COUNT(*) AS pairs FROM Object o1, Object o2 WHERE "
           "scisql_angSep(o1.ra_PS, o1.decl_PS, o2.ra_PS, o2.decl_PS) < 0.0166 AND o1.objectId <> o2.objectId")
    _same(engine, plain, sql)


def test_near_neighbour_beyond_the_overlap_is_refused(engine: Any) -> None:
    with pytest.raises(pymysql.err.MySQLError) as error:
        run(engine, "SELECT COUNT(*) FROM Object o1, Object o2 WHERE scisql_angSep(o1.ra_PS, o1.decl_PS, o2.ra_PS, o2.decl_PS) < 0.5")
    assert error.value.args[0] == 1235
    assert "exceeds the overlap" in error.value.args[1]


def test_show_columns_and_create_table_describe_the_user_table(engine: Any, plain: Any) -> None:
    for sql in ("SHOW COLUMNS FROM Object", "DESCRIBE Source", "SHOW FULL COLUMNS FROM Filter LIKE 'filter%'"):
        _same(engine, plain, sql)
    got = run(engine, "SHOW CREATE TABLE Object")[1][0]
    want = run(plain, "SHOW CREATE TABLE Object")[1][0]
    assert got == want


@pytest.mark.parametrize("sql", [
    "SELECT COUNT(*) AS n FROM Source GROUP BY objectId % 7",
    "SELECT objectId % 7 AS g, COUNT(*), SUM(psfFlux) FROM Source GROUP BY g",
    "SELECT filterId DIV 2 AS f, MAX(taiMidPoint) FROM Source GROUP BY 1 HAVING COUNT(*) > 10",
])
def test_group_by_expressions(engine: Any, plain: Any, sql: str) -> None:
    _same(engine, plain, sql)
