"""The hot path of issue 9, proven against the reference MariaDB.

An engine runs in-process against the test cluster's czar MariaDB and
workers, with settings that force the paths a small catalog would not take:
one task slot per worker (so chunks travel in groups of several per task)
and a pass-through threshold of 0 bytes (so every eligible result streams
from the spool instead of being loaded into the result table).  Every answer
is compared, byte for byte as MariaDB's text, with the reference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from czar import dispatch
from czar.catalog import Catalog
from czar.engine import Engine, EngineSettings
from czar.merge import ResultTable, ResultVerificationError
from czar.planner import parse_select
from proto import worker_pb2 as pb
from proto import worker_pb2_grpc as pb_grpc
from skyshard.cluster import LocalCluster
from skyshard.mariadb import ConnectionPool, ServerAddress
from tests.conftest import SAMPLE_DB
from worker.executor import Executor

pytestmark = pytest.mark.cluster


@pytest.fixture
def engine(cluster: LocalCluster, tmp_path: Path) -> Iterator[Engine]:
    css = cluster.css()
    settings = EngineSettings(czar_db=cluster.czar_db.address, spool_dir=tmp_path / "spool",
                              tasks_per_worker=1, passthrough_bytes=0)
    eng = Engine(settings, Catalog(css))
    try:
        yield eng
    finally:
        asyncio.run(eng.close())
        css.close()


def _engine_rows(engine: Engine, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    return _run(engine, sql)[1:]


def _run(engine: Engine, sql: str) -> tuple[int, list[str], list[tuple[Any, ...]]]:
    async def go() -> tuple[int, list[str], list[tuple[Any, ...]]]:
        try:
            result = await engine.execute(sql, user="test", default_db=SAMPLE_DB, statement=parse_select(sql))
            rows = [row async for row in result.rows]
            return result.query_id, [c.name for c in result.columns], rows
        finally:
            await engine.channels.close()  # gRPC channels belong to this event loop

    return asyncio.run(go())


def _reference_rows(reference: ServerAddress, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    connection = reference.connect(database=SAMPLE_DB, use_unicode=False, conv={})
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            names = [d[0].decode() if isinstance(d[0], bytes) else d[0] for d in cursor.description]
            return names, list(cursor.fetchall())
    finally:
        connection.close()


def _key(row: tuple[Any, ...]) -> tuple[bytes, ...]:
    return tuple(b"" if v is None else v for v in row)


PASSTHROUGH = [
    "SELECT * FROM Object",
    "SELECT objectId AS `id``x`, rMag, extendedness, flags FROM Object WHERE decl > 0",
    "SELECT s.sourceId, s.psfFlux, o.ra FROM Object o JOIN Source s ON o.objectId = s.objectId",
]
LOADED = [  # not eligible: an expression, an ORDER BY, an aggregate, DISTINCT
    "SELECT objectId, ra + 1, rMag * 2 FROM Object",
    "SELECT objectId, ra FROM Object ORDER BY ra LIMIT 50",
    "SELECT COUNT(*), SUM(flags), MIN(decl), MAX(rMag) FROM Object WHERE rMag < 22",  # exact sums only
    "SELECT DISTINCT extendedness FROM Object",
    "SELECT filterId, COUNT(*), MAX(psfFlux), SUM(sourceId) FROM Source GROUP BY filterId",
]


@pytest.mark.parametrize("sql", PASSTHROUGH + LOADED)
def test_answers_match_the_reference_with_groups_and_passthrough(
    engine: Engine, reference: ServerAddress, sql: str
) -> None:
    before = engine.passthrough_queries
    names, rows = _engine_rows(engine, sql)
    ref_names, ref_rows = _reference_rows(reference, sql)
    assert names == ref_names
    if "ORDER BY" in sql:
        assert [r[0] for r in rows] == [r[0] for r in ref_rows]
    assert sorted(rows, key=_key) == sorted(ref_rows, key=_key)
    assert len(rows) > 0
    assert engine.passthrough_queries == before + (1 if sql in PASSTHROUGH else 0)


def test_full_scan_runs_in_groups(engine: Engine, cluster: LocalCluster) -> None:
    """With one slot per worker the sample's chunks travel several to a task (the answers above)."""
    css = cluster.css()
    try:
        chunks = len(css.chunk_placement(SAMPLE_DB).replicas)
        workers = len(css.workers())
    finally:
        css.close()
    assert engine.dispatcher.group_size(chunks, workers) >= 2, f"{chunks} chunks: groups of 1"


def test_sync_result_tables_are_temporary(engine: Engine, cluster: LocalCluster) -> None:
    """A sync query leaves no table in skyshard_results, and its connection is reused."""
    _engine_rows(engine, "SELECT objectId FROM Object WHERE objectId < 2000")
    idle = engine.merge_connections._idle.qsize()  # noqa: SLF001
    _engine_rows(engine, "SELECT objectId FROM Object WHERE objectId < 3000")
    assert engine.merge_connections._idle.qsize() == idle >= 1  # noqa: SLF001
    connection = cluster.czar_db.address.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'skyshard_results'")
            assert cursor.fetchone()[0] == 0
    finally:
        connection.close()


def test_spool_rows_reads_nulls_and_refuses_escapes(tmp_path: Path, cluster: LocalCluster) -> None:
    table = ResultTable(ConnectionPool(cluster.czar_db.address, 1), 0, tmp_path)
    table.defer_load = True
    table.append(b"1\t\\N\t-2.5\n3\t4e-05\t\\N\n", 2)
    assert [row for batch in table.spool_rows(3) for row in batch] == [
        (b"1", None, b"-2.5"), (b"3", b"4e-05", None)
    ]
    table.append(b"5\ta\\tb\t6\n", 1)
    with pytest.raises(RuntimeError):
        list(table.spool_rows(3))
    table.discard_spool()


def test_row_counts_are_verified(tmp_path: Path, cluster: LocalCluster) -> None:
    """Rows loaded or spooled must add up to what the workers announced: never a short answer."""
    pool = ConnectionPool(cluster.czar_db.address, 1)
    table = ResultTable(pool, 990001, tmp_path)
    try:
        table.create([("a", "INT"), ("b", "DOUBLE")])
        table.append(b"1\t2.5\n2\t3.5\n", 2)
        table.flush()
        table.append(b"3\t4.5\n", 2)  # one row short of what was announced
        with pytest.raises(ResultVerificationError, match="1 rows loaded, the workers sent 2"):
            table.flush()
    finally:
        table.drop()
    spooled = ResultTable(pool, 990002, tmp_path)
    spooled.defer_load = True
    spooled.append(b"1\t2\n", 2)
    with pytest.raises(ResultVerificationError):
        list(spooled.spool_rows(2))
    spooled.discard_spool()


def test_a_spilled_chunk_result_is_appended_whole(tmp_path: Path, cluster: LocalCluster) -> None:
    """A big chunk result goes into the spool in one piece: no other chunk's rows inside it."""
    pool = ConnectionPool(cluster.czar_db.address, 1)
    table = ResultTable(pool, 990003, tmp_path)
    table.defer_load = True
    spill = tmp_path / "spill.tsv"
    rows = 200_000
    spill.write_bytes(b"".join(b"%d\t%d\n" % (i, i * 3) for i in range(rows)))
    import threading

    other = threading.Thread(target=lambda: [table.append(b"-1\t-1\n", 1) for _ in range(200)])
    other.start()
    table.append_file(spill, rows)
    other.join()
    seen = [row for batch in table.spool_rows(2) for row in batch]
    table.discard_spool()
    assert len(seen) == rows + 200
    mine = [r for r in seen if r != (b"-1", b"-1")]
    assert mine == [(b"%d" % i, b"%d" % (i * 3)) for i in range(rows)]  # contiguous and intact


def test_point_lookup_runs_on_one_chunk(engine: Engine, reference: ServerAddress) -> None:
    sql = "SELECT * FROM Object WHERE objectId = 1007"
    query_id, names, rows = _run(engine, sql)
    assert (names, rows) == _reference_rows(reference, sql)
    assert len(rows) == 1
    engine.records.flush()  # the end of a direct result is recorded after its rows went out
    record = engine.qmeta.get(query_id)
    assert record is not None
    assert (record.status.value, record.chunks_total, record.chunks_completed, record.result_rows) == (
        "COMPLETED", 1, 1, 1)
    assert record.returned is not None and record.completed is not None and record.result_location is None


def test_a_result_over_one_reply_is_streamed_instead(
    engine: Engine, reference: ServerAddress, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few-chunk result comes back in one session reply; one too large for it, through Execute."""
    sql = "SELECT * FROM Object WHERE objectId IN (1007, 1014, 1021)"
    want = _reference_rows(reference, sql)
    assert want[1], "the sample catalog should hold these objects"
    before = engine.dispatcher.streamed_instead
    names, rows = _engine_rows(engine, sql)
    assert (names, sorted(rows)) == (want[0], sorted(want[1]))
    assert engine.dispatcher.streamed_instead == before  # every chunk result fitted in its reply
    monkeypatch.setattr(dispatch, "WHOLE_REPLY_BYTES", 16)  # every row is longer than this
    names, rows = _engine_rows(engine, sql)
    assert (names, sorted(rows)) == (want[0], sorted(want[1]))
    assert engine.dispatcher.streamed_instead > before


def test_worker_runs_a_group_as_one_union_only_when_types_agree(cluster: LocalCluster) -> None:
    css = cluster.css()
    try:
        placement = css.chunk_placement(SAMPLE_DB)
    finally:
        css.close()
    chunks = sorted(c for c, holders in placement.replicas.items() if cluster.worker_id(0) in holders)[:4]
    assert len(chunks) >= 3
    db = cluster.worker_db(0)
    executor = Executor(db.address, db.spool_dir)
    sqls = [f"SELECT Object.objectId AS `_c0`, Object.rMag AS `_c1`, Object.decl AS `_c2` "
            f"FROM {SAMPLE_DB}.`Object_{c}` AS Object WHERE Object.rMag < 25 ORDER BY Object.decl LIMIT 7"
            for c in chunks]
    results = []
    try:
        grouped = executor.run_query(SAMPLE_DB, sqls[0], lambda _: None, sqls[1:])
        results.append(grouped)
        assert len(grouped.paths) == 1  # one UNION ALL statement, one file
        separate = [executor.run_query(SAMPLE_DB, sql, lambda _: None) for sql in sqls]
        results.extend(separate)
        assert grouped.columns == separate[0].columns
        assert grouped.row_count == sum(r.row_count for r in separate) > 0
        assert grouped.paths[0].read_bytes() == b"".join(r.paths[0].read_bytes() for r in separate)

        # columns of different types would be converted by a union: statement by statement then
        mixed = [sqls[0], sqls[1].replace("Object.objectId AS `_c0`", "Object.ra AS `_c0`")]
        apart = executor.run_query(SAMPLE_DB, mixed[0], lambda _: None, mixed[1:])
        results.append(apart)
        assert len(apart.paths) == 2
        assert apart.paths[0].read_bytes() == separate[0].paths[0].read_bytes()
    finally:
        for result in results:
            result.discard()
        executor.close()


def _tasks_completed(cluster: LocalCluster) -> int:
    total = 0
    for index in range(len(cluster.layout.worker_grpc_ports)):
        with grpc.insecure_channel(cluster.worker_address(index)) as channel:
            total += pb_grpc.WorkerStub(channel).Status(pb.StatusRequest(), timeout=5).tasks_completed
    return total


def _small_cone(engine: Engine) -> tuple[str, tuple[int, ...], int]:
    """A cone over 2-8 chunks, some worker holding at least two of them; its SQL, chunks and workers."""
    snapshot = engine.catalog.snapshot()
    replicas = snapshot.placements[SAMPLE_DB].replicas
    for ra in (10, 60, 100, 200, 300):
        for radius in (10, 20, 30, 45):
            sql = f"SELECT objectId, ra, decl FROM Object WHERE qserv_areaspec_circle({ra}, 0, {radius})"
            plan = engine.plans.plan(sql, SAMPLE_DB, snapshot, None)
            first = [replicas[c][0] for c in plan.chunk_ids]  # one replica each (the sample has one)
            if 2 <= len(plan.chunk_ids) <= dispatch.INTERACTIVE_CHUNKS and len(set(first)) < len(first):
                return sql, plan.chunk_ids, len(set(first))
    raise AssertionError("no cone of the sample covers 2-8 chunks with two on one worker")


@pytest.mark.parametrize("small_chunk_rows", [0, 10**9])
def test_a_small_query_over_small_chunks_runs_one_task_per_worker(
    cluster: LocalCluster, reference: ServerAddress, tmp_path: Path, small_chunk_rows: int
) -> None:
    """The sample's chunks hold about 20 rows: one task per worker; with the limit at 0, one per chunk."""
    css = cluster.css()
    settings = EngineSettings(czar_db=cluster.czar_db.address, spool_dir=tmp_path / "spool",
                              small_chunk_rows=small_chunk_rows)
    eng = Engine(settings, Catalog(css))
    try:
        sql, chunks, workers = _small_cone(eng)
        before = _tasks_completed(cluster)
        names, rows = _engine_rows(eng, sql)
        tasks = _tasks_completed(cluster) - before
        assert tasks == (workers if small_chunk_rows else len(chunks)), (sql, chunks)
        ref_names, ref_rows = _reference_rows(reference, sql.replace(
            "qserv_areaspec_circle(", "scisql_s2PtInCircle(ra, decl, ").replace(")", ") = 1"))
        assert names == ref_names
        assert len(rows) > 0 and sorted(rows, key=_key) == sorted(ref_rows, key=_key)
    finally:
        asyncio.run(eng.close())
        css.close()


def test_a_quick_query_writes_its_record_once(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A direct result ending within START_RECORD_DELAY: one INSERT of the whole record, no UPDATE."""
    _run(engine, "SELECT objectId, ra FROM Object WHERE objectId = 1008")  # its merge teaches the columns
    calls: list[str] = []
    for name in ("start", "finish", "start_finished"):
        original = getattr(engine.qmeta, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(engine.qmeta, name, counted)
    query_id, _, rows = _run(engine, "SELECT objectId, ra FROM Object WHERE objectId = 1007")
    engine.records.flush()
    assert calls == ["start_finished"] and len(rows) == 1
    record = engine.qmeta.get(query_id)
    assert record is not None and record.status.value == "COMPLETED" and record.result_rows == 1
    assert record.chunks_total == record.chunks_completed == 1
    assert record.submitted <= record.completed <= record.returned  # type: ignore[operator]


def test_a_quick_query_over_several_chunks_leaves_no_progress_throttle(engine: Engine) -> None:
    """Its first chunk starts the progress interval; its folded record ends it (no entry left per query)."""
    sql, chunks, workers = _small_cone(engine)
    assert workers >= 2  # one task per worker: progress is asked for after the first of them
    _run(engine, sql)  # its merge teaches the columns
    direct = engine.direct_queries
    query_id, _, rows = _run(engine, sql)
    engine.records.flush()
    record = engine.qmeta.get(query_id)
    assert engine.direct_queries == direct + 1  # the record was folded into one INSERT
    assert record is not None and record.chunks_total == len(chunks) > 1 and record.status.value == "COMPLETED"
    assert query_id not in engine.qmeta._last_progress  # noqa: SLF001


def test_a_held_record_is_written_before_anyone_reads_the_records(engine: Engine) -> None:
    """A running query's record shows while its INSERT would still be held."""
    from czar.qmeta import QueryKind

    async def go() -> Any:
        query_id = engine.qmeta.next_id()
        engine._defer_start(query_id, QueryKind.SYNC, "test", SAMPLE_DB, "SELECT 1", None)  # noqa: SLF001
        await engine.records_written()
        return engine.qmeta.get(query_id)

    record = asyncio.run(go())
    assert record is not None and record.status.value == "EXECUTING" and record.completed is None
    engine.qmeta.finish(record.query_id, record.status.__class__("ABORTED"))


KEY_LOOKUPS = [
    "SELECT * FROM Object WHERE objectId = 1007",
    "SELECT objectId, ra FROM Object WHERE objectId IN (1007, 1014, 99999999, 1021)",
    "SELECT objectId, decl FROM Object WHERE objectId BETWEEN 1000 AND 1100",
    "SELECT sourceId, psfFlux FROM Source WHERE objectId = 1007",  # a child table: its orphans too
    "SELECT objectId FROM Object WHERE objectId = -5",  # no such key: no chunk at all
]


def test_director_index_lookups_run_from_the_event_loop(engine: Engine, reference: ServerAddress) -> None:
    _run(engine, KEY_LOOKUPS[0])  # the pool's first connection is made (in a thread) and kept
    before = engine.quick_index_lookups
    for sql in KEY_LOOKUPS:
        _, names, rows = _run(engine, sql)
        expected_names, expected = _reference_rows(reference, sql)
        assert names == expected_names
        assert sorted(rows, key=_key) == sorted(expected, key=_key), sql
    assert engine.quick_index_lookups == before + len(KEY_LOOKUPS)
