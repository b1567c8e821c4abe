"""The worker's probe cache (worker.executor.ProbeCache), proven against the uncached path.

A worker probes the result columns of a chunk SQL *shape* (``ChunkTask.probe_key``)
once and reuses them for the shape's other statements (other chunks, other
WHERE numbers) until a ``LoadBatch`` or ``Admin`` call may have changed a
table.  Every result below is compared, columns and bytes, with the result
of an executor that has never seen the shape (so it probes).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest

from czar.planner.cache import PlanCache
from proto import worker_pb2 as pb
from skyshard.cluster import LocalCluster
from tests.planner_catalog import SNAPSHOT
from worker.executor import ColumnDef, Executor, ProbeCache, SpooledResult, shape_pattern
from worker.service import WorkerService

DB = "skyshard_probe_cache_test"
SHAPE = ("SELECT `T`.`a` AS `_c0`, `T`.`b` + 1 AS `_c1`, `T`.`c` AS `_c2` FROM "
         f"`{DB}`.`T___SKYSHARD_CHUNK__` AS `T` WHERE `T`.`a` > __SKYSHARD_P0__ ORDER BY `T`.`a`")


def _sql(shape: str, chunk: int, *values: str) -> str:
    sql = shape.replace("__SKYSHARD_CHUNK__", str(chunk))
    for i, value in enumerate(values):
        sql = sql.replace(f"__SKYSHARD_P{i}__", value)
    return sql


def _ddl(table: str, a_type: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS `{DB}`.`{table}` (a {a_type}, b DOUBLE, c VARCHAR(10), "
            "chunkId INT, subChunkId INT) ENGINE=MyISAM")


class _Aborted(Exception):
    pass


class _Context:
    """What the service's handlers use of a grpc.aio context."""

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    async def abort(self, code: Any, message: str) -> None:
        raise _Aborted(message)


@pytest.fixture
def worker(cluster: LocalCluster) -> Iterator[tuple[WorkerService, Executor]]:
    """An in-process worker service on worker 0's MariaDB, and an executor that never caches."""
    db = cluster.worker_db(0)
    service = WorkerService("probe-test", Executor(db.address, db.spool_dir))
    uncached = Executor(db.address, db.spool_dir)
    try:
        yield service, uncached
    finally:
        asyncio.run(_admin(service, [f"DROP DATABASE IF EXISTS `{DB}`"]))
        service.close()
        uncached.close()


async def _admin(service: WorkerService, statements: list[str]) -> pb.AdminReply:
    return await service.Admin(pb.AdminRequest(statements=statements), _Context())  # type: ignore[arg-type]


def _load(service: WorkerService, a_type: str, chunks: range, replace: bool = False) -> None:
    """Create ``T_<c>`` for each chunk through LoadBatch, with rows whose ``a`` is a ``a_type``."""
    segments = []
    data = []
    for chunk in chunks:
        text = "".join(f"{chunk * 10 + i}{'.5' if 'DOUBLE' in a_type else ''}\t{i}.25\tr{i}\t{chunk}\t{i}\n"
                       for i in range(4)).encode()
        segments.append(pb.LoadSegment(table=f"T_{chunk}", create_sql=_ddl(f"T_{chunk}", a_type),
                                       replace=replace, size=len(text), rows=4))
        data.append(text)

    async def requests() -> AsyncIterator[pb.LoadBatchRequest]:
        yield pb.LoadBatchRequest(header=pb.LoadBatchHeader(database=DB, segments=segments))
        for piece in data:
            yield pb.LoadBatchRequest(data=piece)

    async def go() -> None:
        await _admin(service, [f"CREATE DATABASE IF NOT EXISTS `{DB}`"])
        reply = await service.LoadBatch(requests(), _Context())  # type: ignore[arg-type]
        assert [s.rows_loaded for s in reply.segments] == [4] * len(segments)

    asyncio.run(go())


def _run(executor: Executor, statements: list[str], shape: str = "") -> SpooledResult:
    return executor.run_query(DB, statements[0], lambda _: None, statements[1:], shape=shape)


def _same(cached: SpooledResult, uncached: SpooledResult) -> None:
    try:
        assert cached.columns == uncached.columns
        assert cached.row_count == uncached.row_count
        assert b"".join(p.read_bytes() for p in cached.paths) == b"".join(p.read_bytes() for p in uncached.paths)
    finally:
        cached.discard()
        uncached.discard()


def _column(result: SpooledResult, name: str) -> ColumnDef:
    return next(c for c in result.columns if c.name == name)


def test_a_shape_on_other_chunks_uses_the_cache_and_writes_the_same_bytes(
    worker: tuple[WorkerService, Executor],
) -> None:
    service, uncached = worker
    _load(service, "INT", range(1, 7))
    executor = service.executor
    cache = executor.probe_cache
    assert len(cache) == 0
    groups = [[_sql(SHAPE, 1, "0")], [_sql(SHAPE, 2, "11")], [_sql(SHAPE, c, "-5") for c in (3, 4)],
              [_sql(SHAPE, c, "2.5e1") for c in (5, 6)], [_sql(SHAPE, c, "0") for c in (1, 2, 3)],
              [_sql(SHAPE, 6, "61")]]
    for n, statements in enumerate(groups):
        cached = _run(executor, statements, SHAPE)
        if len(statements) > 1:
            assert len(cached.paths) == 1  # one UNION ALL, as when probed
        _same(cached, _run(uncached, statements))
        assert (cache.hits, cache.misses) == (n, 1)
    assert len(cache) == 1
    again = _run(executor, groups[0], SHAPE)
    assert _column(again, "_c0").definition.lower().startswith("int")
    again.discard()
    assert uncached.probe_cache.hits == 0


def test_a_table_replaced_with_another_type_is_probed_again(worker: tuple[WorkerService, Executor]) -> None:
    service, uncached = worker
    executor = service.executor
    _load(service, "INT", range(1, 4))
    first = _run(executor, [_sql(SHAPE, 1, "0")], SHAPE)
    assert _column(first, "_c0").definition.lower().startswith("int")
    first.discard()

    # dropped and ingested again with another type under the same names (LoadBatch)
    asyncio.run(_admin(service, [f"DROP TABLE `{DB}`.`T_{c}`" for c in range(1, 4)]))
    _load(service, "DOUBLE", range(1, 4))
    for statements in ([_sql(SHAPE, 2, "0")], [_sql(SHAPE, c, "0") for c in (1, 2, 3)]):
        cached = _run(executor, statements, SHAPE)
        assert _column(cached, "_c0").definition.lower().startswith("double")
        assert b".5\t" in cached.paths[0].read_bytes()
        _same(cached, _run(uncached, statements))

    # replaced by Admin alone
    asyncio.run(_admin(service, [f"DROP TABLE `{DB}`.`T_{c}`" for c in range(1, 4)]
                       + [_ddl(f"T_{c}", "VARCHAR(7)") for c in range(1, 4)]))
    cached = _run(executor, [_sql(SHAPE, 3, "0")], SHAPE)
    assert _column(cached, "_c0").definition.lower().startswith("varchar(7)")
    _same(cached, _run(uncached, [_sql(SHAPE, 3, "0")]))

    # a failed Admin call (or LoadBatch) empties the cache too
    _run(executor, [_sql(SHAPE, 3, "0")], SHAPE).discard()
    assert len(executor.probe_cache) == 1
    with pytest.raises(_Aborted):
        asyncio.run(_admin(service, ["DELETE FROM x"]))
    assert len(executor.probe_cache) == 0
    _run(executor, [_sql(SHAPE, 3, "0")], SHAPE).discard()
    assert len(executor.probe_cache) == 1

    async def bad_load() -> AsyncIterator[pb.LoadBatchRequest]:
        yield pb.LoadBatchRequest(data=b"no header")

    with pytest.raises(_Aborted):
        asyncio.run(service.LoadBatch(bad_load(), _Context()))  # type: ignore[arg-type]
    assert len(executor.probe_cache) == 0


def test_shapes_do_not_collide(worker: tuple[WorkerService, Executor]) -> None:
    service, uncached = worker
    executor = service.executor
    _load(service, "INT", range(1, 3))
    other = SHAPE.replace("`T`.`a` AS `_c0`", "`T`.`c` AS `_c0`")
    literal_99 = f"SELECT 99 AS `x`, `a` FROM `{DB}`.`T___SKYSHARD_CHUNK__`"
    literal_100 = f"SELECT 100 AS `x`, `a` FROM `{DB}`.`T___SKYSHARD_CHUNK__`"
    cases = [
        (SHAPE, [_sql(SHAPE, 1, "0")]),
        (other, [_sql(other, 2, "0")]),
        (literal_99, [_sql(literal_99, 1)]),
        (literal_100, [_sql(literal_100, 2)]),
        (SHAPE, [_sql(other, 1, "0")]),  # not an instance of the shape it claims: probed, not reused
        (literal_99, [_sql(literal_100, 1)]),
        (SHAPE, [_sql(SHAPE, 2, "0")]),
        (other, [_sql(other, 1, "0"), _sql(other, 2, "0")]),
    ]
    for _ in range(2):
        for shape, statements in cases:
            _same(_run(executor, statements, shape), _run(uncached, statements))
    assert executor.probe_cache.hits > 0
    assert len(executor.probe_cache) == 4
    x99 = _run(executor, [_sql(literal_99, 2)], literal_99)
    x100 = _run(executor, [_sql(literal_100, 1)], literal_100)
    assert _column(x99, "x") != _column(x100, "x")  # int(2) and int(3)
    x99.discard()
    x100.discard()


def test_changes_in_progress_keep_the_cache_unused() -> None:
    cache = ProbeCache(max_entries=2)
    columns = [ColumnDef("a", "int(11) DEFAULT NULL")]
    statement = ["SELECT a FROM `T_5` WHERE a > 3"]
    shape = "SELECT a FROM `T___SKYSHARD_CHUNK__` WHERE a > __SKYSHARD_P0__"
    generation = cache.generation()
    with cache.changing():
        assert cache.store("db", shape, generation, statement, columns) is None
        assert cache.store("db", shape, cache.generation(), statement, columns) is None
    assert cache.store("db", shape, generation, statement, columns) is None  # probed before the change
    assert cache.store("db", shape, cache.generation(), statement, columns) is not None
    assert cache.lookup("db", shape, ["SELECT a FROM `T_77` WHERE a > -1.5e3"]) is not None
    assert cache.lookup("other", shape, statement) is None
    assert cache.lookup("db", shape, ["SELECT b FROM `T_77` WHERE a > 1"]) is None
    assert cache.lookup("db", shape, ["SELECT a FROM `T_x` WHERE a > 1"]) is None
    assert cache.lookup("db", shape, ["SELECT a FROM `T_7` WHERE a > 1 OR 1"]) is None
    assert cache.store("db", shape, cache.generation(), ["SELECT b FROM `T_5` WHERE a > 3"], columns) is None
    assert cache.lookup("db", "", statement) is None
    for n in range(3):  # bounded: least recently used first out
        cache.store("db", f"SELECT {n}", cache.generation(), [f"SELECT {n}"], columns)
    assert len(cache) == 2 and cache.lookup("db", "SELECT 0", ["SELECT 0"]) is None
    with cache.changing():
        assert cache.lookup("db", "SELECT 2", ["SELECT 2"]) is None
    assert len(cache) == 0


SAME_SHAPE = [
    ["SELECT * FROM Object WHERE objectId = 1", "SELECT * FROM Object WHERE objectId = 99"],
    ["SELECT objectId, ra FROM Object WHERE qserv_areaspec_circle(0.5, 0.5, 0.1)",
     "SELECT objectId, ra FROM Object WHERE qserv_areaspec_circle(180.0, -45.0, 0.2)"],
    ["SELECT COUNT(*), SUM(flux) FROM Object WHERE flux > 1", "SELECT COUNT(*), SUM(flux) FROM Object WHERE flux > 7.5"],
]


@pytest.mark.parametrize("statements", SAME_SHAPE, ids=[s[0] for s in SAME_SHAPE])
def test_the_czar_sends_one_shape_for_statements_differing_in_where_numbers(statements: list[str]) -> None:
    cache = PlanCache()
    plans = []
    for sql in statements:
        cache.plan(sql, "db", SNAPSHOT, None)
        found = cache.lookup(sql, "db", SNAPSHOT)
        assert found is not None
        plans.append(found[1])
    assert len({p.shape for p in plans}) == 1
    shape = plans[0].shape
    assert "__SKYSHARD_P" in shape or "__SKYSHARD_A" in shape
    assert all(hole > shape.index(" WHERE ") for hole in (shape.find("__SKYSHARD_P"), shape.find("__SKYSHARD_A"))
               if hole >= 0)
    for p in plans:
        for chunk in p.chunk_ids:
            assert shape_pattern(shape).fullmatch(p.chunk_sql_for(chunk))


def test_a_shape_stands_for_either_form_of_the_sub_chunk_term() -> None:
    cache = PlanCache()
    sql = "SELECT objectId, ra FROM Object WHERE qserv_areaspec_circle(0.5, 0.5, 0.1)"
    cache.plan(sql, "db", SNAPSHOT, None)
    found = cache.lookup(sql, "db", SNAPSHOT)
    assert found is not None
    query_plan = found[1]
    assert query_plan.sub_chunks and "__SKYSHARD_SUBCHUNKS__" in query_plan.shape
    pattern = shape_pattern(query_plan.shape)
    chunk_id = query_plan.sub_chunks[0][0]
    restricted = query_plan.chunk_sql_for(chunk_id)
    assert "`Object`.`subChunkId` IN (" in restricted and pattern.fullmatch(restricted)
    whole = replace(query_plan, sub_chunks=()).chunk_sql_for(chunk_id)
    assert whole.endswith(" AND TRUE") and pattern.fullmatch(whole)
    assert not pattern.fullmatch(whole.replace(" AND TRUE", " AND FALSE"))
    assert not pattern.fullmatch(restricted.replace(" IN (", " NOT IN ("))


def test_numbers_outside_where_are_part_of_the_shape() -> None:
    cache = PlanCache()
    shapes = set()
    for sql in ("SELECT flux + 1 FROM Object WHERE objectId = 3", "SELECT flux + 2 FROM Object WHERE objectId = 3",
                "SELECT flux FROM Object WHERE objectId = 3 LIMIT 4", "SELECT flux FROM Object WHERE objectId = 3 LIMIT 5"):
        cache.plan(sql, "db", SNAPSHOT, None)
        found = cache.lookup(sql, "db", SNAPSHOT)
        assert found is not None
        shapes.add(found[1].shape)
    assert len(shapes) == 4


# -- the event-loop path (skyshard.quick): a task of a probed shape runs without a thread ----------
def _task(shape: str, statements: list[str], query_id: str = "quick-test") -> pb.ChunkTask:
    return pb.ChunkTask(query_id=query_id, chunk_id=1, database=DB, sql=statements[0],
                        more_chunk_ids=list(range(2, len(statements) + 1)), more_sql=statements[1:],
                        probe_key=shape, interactive=True, batch_bytes=1 << 20)


def _whole(service: WorkerService, task: pb.ChunkTask) -> pb.WholeResult:
    return asyncio.run(service.ExecuteWhole(task, _Context()))  # type: ignore[arg-type]


def _spool_files(service: WorkerService) -> set[str]:
    """Result files in the spool (the directory of the cluster's worker 0, which other tests use too)."""
    return {p.name for p in service.executor.spool_dir.glob("result-*")}


def test_a_probed_shape_runs_from_the_event_loop_with_the_same_bytes(
    worker: tuple[WorkerService, Executor],
) -> None:
    service, uncached = worker
    _load(service, "INT", range(1, 4))
    spooled = _spool_files(service)
    for statements in ([_sql(SHAPE, 1, "0")], [_sql(SHAPE, c, "1") for c in (2, 3)]):
        first = _whole(service, _task(SHAPE, statements))  # probed, in a thread
        before = service.quick_tasks
        again = _whole(service, _task(SHAPE, statements))
        assert service.quick_tasks == before + 1
        reference = _run(uncached, statements)
        try:
            expected = b"".join(p.read_bytes() for p in reference.paths)
        finally:
            reference.discard()
        assert again.batch.data == first.batch.data == expected
        assert again.end.row_count == first.end.row_count == reference.row_count > 0
        assert [c.definition for c in again.schema.columns] == [c.definition for c in reference.columns]
    assert _spool_files(service) <= spooled  # every spool file of these tasks went


def test_a_failing_quick_task_names_the_error_and_the_connection_stays_usable(
    worker: tuple[WorkerService, Executor],
) -> None:
    service, _ = worker
    _load(service, "INT", range(1, 3))
    _whole(service, _task(SHAPE, [_sql(SHAPE, 1, "0")]))  # probed
    spooled = _spool_files(service)
    dropper = service.executor.address.connect()
    try:
        dropper.cursor().execute(f"DROP TABLE `{DB}`.`T_2`")  # behind the worker's back: the cache stays
    finally:
        dropper.close()
    before = service.quick_tasks
    with pytest.raises(_Aborted, match="1146"):
        _whole(service, _task(SHAPE, [_sql(SHAPE, 2, "0")]))
    for _ in range(3):  # the pooled connection that got the error answers the next tasks
        assert _whole(service, _task(SHAPE, [_sql(SHAPE, 1, "0")])).end.row_count == 4
    assert service.quick_tasks == before + 4  # the failed one too
    assert _spool_files(service) <= spooled


SLEEPY = f"SELECT `a` AS `_c0` FROM `{DB}`.`T___SKYSHARD_CHUNK__` WHERE SLEEP(__SKYSHARD_P0__) = 0 AND `a` > -1"


def _sleeping(service: WorkerService) -> int:
    connection = service.executor.address.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%SLEEP(7.5)%'"
                           " AND INFO NOT LIKE '%PROCESSLIST%'")
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


@pytest.mark.parametrize("how", ["CancelQuery", "call gone"])
def test_a_quick_task_is_stopped_when_cancelled(worker: tuple[WorkerService, Executor], how: str) -> None:
    service, _ = worker
    _load(service, "INT", range(1, 2))
    _whole(service, _task(SLEEPY, [_sql(SLEEPY, 1, "0")]))  # probed
    spooled = _spool_files(service)

    async def go() -> float:
        started = asyncio.get_running_loop().time()
        call = asyncio.ensure_future(service.ExecuteWhole(_task(SLEEPY, [_sql(SLEEPY, 1, "7.5")], "quick-sleep"),
                                                          _Context()))  # type: ignore[arg-type]
        for _ in range(100):
            await asyncio.sleep(0.05)
            if await asyncio.to_thread(_sleeping, service):
                break
        assert service.quick_tasks >= 1 and not call.done()
        if how == "CancelQuery":
            reply = await service.CancelQuery(pb.CancelRequest(query_id="quick-sleep"), _Context())  # type: ignore[arg-type]
            assert reply.cancelled_tasks == 1
            with pytest.raises(_Aborted, match="cancelled"):
                await call
        else:
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            for _ in range(100):  # the statement is stopped in the background
                if not service._stopping:
                    break
                await asyncio.sleep(0.05)
        return asyncio.get_running_loop().time() - started

    elapsed = asyncio.run(go())
    assert elapsed < 5.0  # not the statement's 7.5 s (SLEEP counts each of the 4 rows)
    for _ in range(100):
        if _sleeping(service) == 0:
            break
        asyncio.run(asyncio.sleep(0.05))
    assert _sleeping(service) == 0
    assert _whole(service, _task(SHAPE, [_sql(SHAPE, 1, "0")])).end.row_count == 4  # the worker goes on
    assert _spool_files(service) <= spooled


def test_cancelled_quick_tasks_leave_no_file_and_no_statement(worker: tuple[WorkerService, Executor]) -> None:
    """A czar's call going away at any moment (a satisfied LIMIT cancels the calls still running):
    a statement that ended just before its kill wrote its file whole, and that file goes too."""
    service, _ = worker
    _load(service, "INT", range(1, 4))
    statements = [_sql(SHAPE, c, "0") for c in (1, 2, 3)]
    _whole(service, _task(SHAPE, statements))  # probed
    spooled = _spool_files(service)

    async def go() -> None:
        for attempt in range(40):
            call = asyncio.ensure_future(service.ExecuteWhole(_task(SHAPE, statements, f"quick-race-{attempt}"),
                                                              _Context()))  # type: ignore[arg-type]
            for _ in range(attempt % 8):  # cancelled at a different moment each time
                await asyncio.sleep(0)
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
        for _ in range(200):  # the statements' replies are read in the background
            if not service._stopping:
                break
            await asyncio.sleep(0.01)

    before = service.quick_tasks
    asyncio.run(go())
    assert service.quick_tasks > before  # some of them got as far as their statement
    assert not service._stopping
    assert _spool_files(service) <= spooled
    assert _whole(service, _task(SHAPE, statements)).end.row_count == 12  # the pool's connections still answer
