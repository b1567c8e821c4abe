"""The plan cache (czar.planner.cache) and direct results (czar.direct), proven against the full paths.

Unit tests: a cached plan bound to other values is exactly the plan the full
planner makes; the cache is emptied when the catalog changes.  Cluster
tests: point lookups and cone searches of one shape with many values,
through the MySQL front end (cache hits, direct answers), give the reference
MariaDB's rows and column types, NULLs and empty results included.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pymysql
import pytest

from css import ChunkPlacement
from czar.merge import ResultVerificationError, text_rows
from czar.planner import plan
from czar.planner.cache import PlanCache, scan
from czar.planner.spatial import circle_bounds, number_sql
from skyshard.cluster import LocalCluster
from skyshard.mariadb import ServerAddress
from tests.planner_catalog import CHUNK_FAR, CHUNK_NEAR_ORIGIN, SNAPSHOT

# Each list: statements of one shape; every one is planned through the cache and in full.
SHAPES = [
    ["SELECT * FROM Object WHERE objectId = 1", "SELECT * FROM Object WHERE objectId = 99",
     "SELECT * FROM Object WHERE objectId = 123456789012"],
    ["SELECT * FROM Object WHERE objectId = -5", "SELECT * FROM Object WHERE objectId = -0"],
    ["SELECT objectId FROM Object WHERE objectId IN (5, 3, 5) AND flux > 2.5",
     "SELECT objectId FROM Object WHERE objectId IN (7, 7, 1) AND flux > 0.0"],
    ["SELECT objectId FROM Object WHERE objectId BETWEEN 10 AND 20",
     "SELECT objectId FROM Object WHERE objectId BETWEEN 30 AND 2"],
    ["SELECT objectId, ra FROM Object WHERE qserv_areaspec_circle(0.5, 0.5, 0.1)",
     "SELECT objectId, ra FROM Object WHERE qserv_areaspec_circle(180.0, 45.0, 0.2)",
     "SELECT objectId, ra FROM Object WHERE qserv_areaspec_circle(100.0, -80.0, 1.0)"],
    ["SELECT objectId FROM Object WHERE qserv_areaspec_box(0.1, 0.1, 0.9, 0.9) AND flux < 3",
     "SELECT objectId FROM Object WHERE qserv_areaspec_box(179, 44, 181, 46) AND flux < 30"],
    ["SELECT COUNT(*), SUM(flux) FROM Object WHERE flux > 1 GROUP BY objectId",
     "SELECT COUNT(*), SUM(flux) FROM Object WHERE flux > 7 GROUP BY objectId"],
    ["SELECT s.sourceId, o.ra FROM Object o JOIN Source s ON o.objectId = s.objectId WHERE s.objectId = 4",
     "SELECT s.sourceId, o.ra FROM Object o JOIN Source s ON o.objectId = s.objectId WHERE s.objectId = 8"],
    ["SELECT flux + 1 FROM Object WHERE objectId = 3 ORDER BY 1 LIMIT 2",
     "SELECT flux + 1 FROM Object WHERE objectId = 4 ORDER BY 1 LIMIT 2",
     "SELECT flux + 1 FROM Object WHERE objectId = 4 ORDER BY 1 LIMIT 3",
     "SELECT flux + 2 FROM Object WHERE objectId = 4 ORDER BY 1 LIMIT 3"],
    ["SELECT name FROM Filter WHERE filterId = 2", "SELECT name FROM Filter WHERE filterId = 3"],
    ["SELECT objectId FROM Object WHERE scisql_s2PtInCircle(ra, decl, 0.5, 0.5, 0.1) = 1",
     "SELECT objectId FROM Object WHERE scisql_s2PtInCircle(ra, decl, 180.0, 45.0, 0.1) = 1"],
]


@pytest.mark.parametrize("statements", SHAPES, ids=[s[0] for s in SHAPES])
def test_a_cached_plan_is_the_full_plan(statements: list[str]) -> None:
    cache = PlanCache()
    for sql in statements + statements:
        full = plan(sql, SNAPSHOT, "db")
        found = cache.lookup(sql, "db", SNAPSHOT)
        if found is None:
            assert cache.plan(sql, "db", SNAPSHOT, None) == full
        else:
            assert found[1] == full, sql
    assert cache.hits >= len(statements)


def test_cones_of_every_select_list_are_cached() -> None:
    """The cone's prefilter is built from parsed text: none of its constants may pass for a
    parameter of the query (the offsets of its literals once matched a literal's of the query,
    and every cone with a one-column select list was planned in full, 8-10 ms each)."""
    cache = PlanCache()
    for padding in range(0, 120, 3):
        for columns in ("objectId", "ra", "COUNT(*)", "objectId, ra, decl"):
            sql = f"SELECT {columns}{' ' * padding} FROM Object WHERE qserv_areaspec_circle(200.0, 30.0, 0.2)"
            cache.plan(sql, "db", SNAPSHOT, None)
            again = sql.replace("200.0, 30.0, 0.2", "201.5, 29.0, 0.25")
            found = cache.lookup(again, "db", SNAPSHOT)
            assert found is not None, sql
            assert found[1] == plan(again, SNAPSHOT, "db")


def test_values_change_the_chunks_and_the_index_lookups() -> None:
    cache = PlanCache()
    near = "SELECT objectId FROM Object WHERE qserv_areaspec_circle(0.5, 0.5, 0.1)"
    far = "SELECT objectId FROM Object WHERE qserv_areaspec_circle(180.0, 45.0, 0.1)"
    cache.plan(near, "db", SNAPSHOT, None)
    found = cache.lookup(far, "db", SNAPSHOT)
    assert found is not None and found[1].chunk_ids == (CHUNK_FAR,)
    assert "180.0e0, 45.0e0, 0.1e0" in found[1].chunk_sql
    # the cone's prefilter bounds are computed again for the new arguments, not kept from the first
    assert all(number_sql(bound) in found[1].chunk_sql for bound in circle_bounds(180.0, 45.0, 0.1))
    assert cache.lookup(near, "db", SNAPSHOT)[1].chunk_ids == (CHUNK_NEAR_ORIGIN,)  # type: ignore[index]
    cache.plan("SELECT * FROM Object WHERE objectId IN (1, 2)", "db", SNAPSHOT, None)
    bound = cache.lookup("SELECT * FROM Object WHERE objectId IN (9, 4)", "db", SNAPSHOT)
    assert bound is not None and bound[1].index_lookups[0].values == (4, 9)


def test_values_the_rules_read_are_part_of_the_key() -> None:
    cache = PlanCache()
    cache.plan("SELECT objectId FROM Object WHERE flux > 1 LIMIT 5", "db", SNAPSHOT, None)
    assert cache.lookup("SELECT objectId FROM Object WHERE flux > 2 LIMIT 5", "db", SNAPSHOT) is not None
    assert cache.lookup("SELECT objectId FROM Object WHERE flux > 2 LIMIT 6", "db", SNAPSHOT) is None
    # a decimal is not an integer: objectId = 5.0 is no index lookup
    cache.plan("SELECT * FROM Object WHERE objectId = 5.5", "db", SNAPSHOT, None)
    assert cache.lookup("SELECT * FROM Object WHERE objectId = 5", "db", SNAPSHOT) is None
    # another default database is another entry
    assert cache.lookup("SELECT objectId FROM Object WHERE flux > 2 LIMIT 5", None, SNAPSHOT) is None


def test_a_bad_value_goes_to_the_full_planner() -> None:
    cache = PlanCache()
    cache.plan("SELECT objectId FROM Object WHERE qserv_areaspec_circle(0.5, 0.5, 0.1)", "db", SNAPSHOT, None)
    assert cache.lookup("SELECT objectId FROM Object WHERE qserv_areaspec_circle(0.5, 95, 0.1)", "db", SNAPSHOT) is None
    assert cache.lookup("SELECT objectId FROM Object WHERE qserv_areaspec_circle(0.5, 5, 1e999)", "db", SNAPSHOT) is None


def test_a_statement_the_front_end_rewrote_gets_no_template() -> None:
    cache = PlanCache()
    sql = "SELECT objectId FROM Object WHERE flux > 1"
    rewritten = plan.__globals__["parse_select"]("SELECT objectId FROM Object WHERE flux > 2")
    assert cache.plan(sql, "db", SNAPSHOT, rewritten) == plan(sql, SNAPSHOT, "db", rewritten)
    assert cache.lookup(sql, "db", SNAPSHOT) is None


def test_another_catalog_empties_the_cache() -> None:
    cache = PlanCache()
    sql = "SELECT * FROM Object WHERE objectId = 1"
    cache.plan(sql, "db", SNAPSHOT, None)
    same = replace(SNAPSHOT)  # an equal snapshot read again: entries stay
    assert cache.lookup(sql, "db", same) is not None
    moved = replace(SNAPSHOT, placements={"db": ChunkPlacement("db", {CHUNK_FAR: ("w2",)})})
    assert cache.lookup(sql, "db", moved) is None
    assert cache.plan(sql, "db", moved, None).chunk_ids == (CHUNK_FAR,)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM Object WHERE objectId = 0x1F", "SELECT * FROM Object WHERE objectId = 1 -- x",
    "SELECT * FROM Object /* c */ WHERE objectId = 1", "SELECT * FROM Object WHERE objectId = @x",
    "SELECT * FROM Object WHERE objectId = 1; SELECT 1", "SELECT * FROM 1abc", "SELECT .5 FROM Object",
    "SELECT * FROM Object WHERE objectId = ?", "SELECT 'unterminated FROM Object",
])
def test_texts_the_cache_does_not_handle(sql: str) -> None:
    assert scan(sql) is None


def test_shapes() -> None:
    a = scan("SELECT `x1`, 'a 5' FROM t2 WHERE k = 12 AND f < 1.5e3 AND g > 2.")
    assert a is not None and a.values == ("12", "1.5e3", "2.")
    b = scan("SELECT `x1`, 'a 5' FROM t2 WHERE k = 7 AND f < 9.9e1 AND g > 3.")
    assert b is not None and a.key == b.key
    c = scan("SELECT `x1`, 'a 5' FROM t2 WHERE k = 7.0 AND f < 9.9e1 AND g > 3.")
    assert c is not None and c.key != a.key


def test_text_rows() -> None:
    assert text_rows(b"1\t\\N\n-2.5\t3\n", 2) == [(b"1", None), (b"-2.5", b"3")]
    with pytest.raises(ResultVerificationError):
        text_rows(b"1\t\\t\n", 2)
    with pytest.raises(ResultVerificationError):
        text_rows(b"1\n", 2)


# -- through the MySQL front end, against the reference ----------------------------------------------
NUMERIC = ("objectId, ra_SG, raRange, muRa_PS, canonicalFilterId, extendedness, varProb, flags, "
           "uFlux_PS, earliestObsTime")


def _answer(connection: Any, sql: str) -> tuple[list[tuple[str, int]], list[tuple[Any, ...]]]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        rows = list(cursor.fetchall())
        return [(d[0], d[1]) for d in cursor.description], rows


@pytest.mark.cluster
def test_cached_lookups_match_the_reference(cluster: LocalCluster, reference: ServerAddress, case01: str) -> None:
    plain = reference.connect(database=case01, use_unicode=False, conv={})
    engine = pymysql.connect(host="127.0.0.1", port=cluster.layout.czar_port, user="skyshard", database=case01,
                             use_unicode=False, conv={})
    try:
        keys = [row[0].decode() for row in _answer(plain, "SELECT objectId FROM Object ORDER BY objectId LIMIT 12")[1]]
        keys += ["1", "-7", "999999999999999"]  # the last two match no row
        for template in (f"SELECT {NUMERIC} FROM Object WHERE objectId = {{}}",
                         "SELECT * FROM Object WHERE objectId = {}",
                         f"SELECT {NUMERIC} FROM Object WHERE objectId IN ({{}}, 1)"):
            for key in keys + keys[:3]:
                sql = template.format(key)
                columns, rows = _answer(engine, sql)
                expected_columns, expected = _answer(plain, sql)
                assert columns == expected_columns, sql  # names and type codes
                assert sorted(rows, key=repr) == sorted(expected, key=repr), sql  # no ORDER BY: any order
        nulls = _answer(engine, f"SELECT {NUMERIC} FROM Object WHERE objectId = {keys[0]}")[1]
        assert any(v is None for row in nulls for v in row)  # NULLs went through the direct path
        for ra, decl, radius in ((1.0, -5.3, 0.05), (0.9, -5.0, 0.2), (1.1, -5.2, 0.01), (50.0, 50.0, 0.1)):
            sql = f"SELECT {NUMERIC} FROM Object WHERE qserv_areaspec_circle({ra}, {decl}, {radius})"
            reference_sql = (f"SELECT {NUMERIC} FROM Object WHERE scisql_s2PtInCircle(ra_PS, decl_PS, "
                             f"{ra}, {decl}, {radius}) = 1")
            for _ in range(2):
                columns, rows = _answer(engine, sql)
                expected_columns, expected = _answer(plain, reference_sql)
                assert columns == expected_columns and sorted(rows, key=repr) == sorted(expected, key=repr)
    finally:
        engine.close()
        plain.close()


@pytest.mark.cluster
def test_direct_results_and_the_query_record(cluster: LocalCluster, reference: ServerAddress, case01: str) -> None:
    engine = pymysql.connect(host="127.0.0.1", port=cluster.layout.czar_port, user="skyshard", database=case01)
    try:
        for key in (1, 2, 3):
            _answer(engine, f"SELECT objectId, flags FROM Object WHERE objectId = {key}")
        sql = "SELECT objectId, flags FROM Object WHERE objectId = 4"
        _answer(engine, sql)
        _, rows = _answer(engine, "SELECT STATUS, CHUNKS_TOTAL, CHUNKS_COMPLETED, RESULT_ROWS, RETURNED IS NOT NULL"
                                  f" FROM information_schema.queries WHERE QUERY = '{sql}'")
        assert rows == (("COMPLETED", 1, 1, 0, 1),) or rows == [("COMPLETED", 1, 1, 0, 1)]
    finally:
        engine.close()
