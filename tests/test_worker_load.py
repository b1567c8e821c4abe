"""The worker's batched load: rows reach MariaDB through a named pipe.

Checks the rows arrive byte for byte, that a statement failing before or
while MariaDB reads the pipe raises a clear error without leaving the
feeder thread hanging, and that no pipe is left in the spool directory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from skyshard.cluster import LocalCluster
from worker.executor import LOAD_STATEMENTS_PER_TRIP, Executor, LoadSegment, TaskError

DATABASE = "skyshard_load_test"
DDL = (f"CREATE TABLE IF NOT EXISTS `{DATABASE}`.`{{name}}` (id BIGINT NOT NULL, payload VARBINARY(64)) "
       "ENGINE=MyISAM")
FORMAT = dict(fields_terminated_by="\t", fields_enclosed_by="", lines_terminated_by="\n",
              character_set="binary")


@pytest.fixture
def executor(cluster: LocalCluster) -> Iterator[Executor]:
    db = cluster.worker_db(0)
    executor = Executor(db.address, db.spool_dir)
    executor.admin([f"DROP DATABASE IF EXISTS `{DATABASE}`", f"CREATE DATABASE `{DATABASE}`"])
    yield executor
    executor.admin([f"DROP DATABASE IF EXISTS `{DATABASE}`"])
    executor.close()


def _pipes(executor: Executor) -> list[str]:
    return sorted(p.name for p in executor.spool_dir.glob("load-*.fifo"))


def test_segments_load_byte_for_byte(executor: Executor) -> None:
    rows = [(i, bytes([i % 256, 9 if i % 3 else 65, 10 if i % 5 else 66, 92, 0])) for i in range(3000)]

    def escape(value: bytes) -> bytes:
        return (value.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n")
                .replace(b"\0", b"\\0"))

    text = b"".join(b"%d\t%b\n" % (i, escape(v)) for i, v in rows)
    half = text.index(b"\n1500\t") + 1
    outcomes = executor.load_segments(
        DATABASE,
        [LoadSegment("a", memoryview(text)[:half], DDL.format(name="a"), True),
         LoadSegment("b", b"", DDL.format(name="b"), True),
         LoadSegment("a", memoryview(text)[half:])],
        sql_mode="NO_ENGINE_SUBSTITUTION", **FORMAT)
    assert [(o.table, o.rows_loaded, o.warnings) for o in outcomes] == [("a", 1500, 0), ("b", 0, 0),
                                                                       ("a", 1500, 0)]
    with executor.pool.connection() as conn:
        cursor = conn.cursor()
        cursor.execute(f"SELECT id, payload FROM `{DATABASE}`.a ORDER BY id")
        assert [(int(i), bytes(v)) for i, v in cursor.fetchall()] == rows
        cursor.execute(f"SELECT COUNT(*) FROM `{DATABASE}`.b")
        assert cursor.fetchone()[0] == 0
    assert _pipes(executor) == []


def test_many_small_segments_in_several_round_trips(executor: Executor) -> None:
    """Each load gets exactly its own rows, however quickly the feeder moves on."""
    count = 2 * LOAD_STATEMENTS_PER_TRIP + 37
    segments = [LoadSegment(f"t{i}", b"".join(b"%d\tv%d\n" % (i, j) for j in range(i % 4 + 1)),
                            DDL.format(name=f"t{i}"), True) for i in range(count)]
    outcomes = executor.load_segments(DATABASE, segments, sql_mode=None, **FORMAT)
    assert [o.rows_loaded for o in outcomes] == [i % 4 + 1 for i in range(count)]
    assert sum(o.warnings for o in outcomes) == 0
    with executor.pool.connection() as conn:
        cursor = conn.cursor()
        for i in (0, 1, LOAD_STATEMENTS_PER_TRIP, count - 1):
            cursor.execute(f"SELECT id, payload FROM `{DATABASE}`.t{i} ORDER BY payload")
            assert cursor.fetchall() == tuple((i, b"v%d" % j) for j in range(i % 4 + 1))
    assert _pipes(executor) == []


def test_warnings_stay_with_their_segment(executor: Executor) -> None:
    segments = [LoadSegment("w0", b"1\tok\n", DDL.format(name="w0"), True),
                LoadSegment("w1", b"2\tok\nthree\tbad\n", DDL.format(name="w1"), True),
                LoadSegment("w2", b"4\tok\n", DDL.format(name="w2"), True)]
    outcomes = executor.load_segments(DATABASE, segments, sql_mode="NO_ENGINE_SUBSTITUTION", **FORMAT)
    assert [o.warnings for o in outcomes] == [0, 1, 0]
    assert "row 2" in outcomes[1].warning_messages[0]
    assert outcomes[0].warning_messages == [] and outcomes[2].warning_messages == []


def test_a_statement_that_never_opens_the_pipe_fails_cleanly(executor: Executor) -> None:
    started = time.monotonic()
    threads = threading.active_count()
    with pytest.raises(TaskError) as info:
        executor.load_segments(DATABASE, [LoadSegment("missing", b"1\tx\n")],
                               sql_mode=None, **FORMAT)
    assert info.value.errno == 1146  # table doesn't exist: MariaDB never opened the pipe
    assert time.monotonic() - started < 10
    assert threading.active_count() <= threads
    assert _pipes(executor) == []


def test_a_statement_that_stops_reading_fails_cleanly(executor: Executor) -> None:
    big = b"".join(b"%d\tx\n" % i for i in range(200_000)) + b"oops\tx\n" + b"1\tx\n" * 200_000
    with pytest.raises(TaskError) as info:
        executor.load_segments(DATABASE, [LoadSegment("c", big, DDL.format(name="c"), True)],
                               sql_mode="STRICT_ALL_TABLES", **FORMAT)
    assert "oops" in str(info.value) or info.value.errno in (1366, 1264, 1265)
    assert _pipes(executor) == []
    # The executor still works afterwards.
    outcomes = executor.load_segments(DATABASE, [LoadSegment("c", b"7\ty\n", DDL.format(name="c"), True)],
                                      sql_mode=None, **FORMAT)
    assert outcomes[0].rows_loaded == 1


def test_deferred_keys_are_disabled_until_enabled(executor: Executor) -> None:
    """A segment with defer_keys creates its table with the key disabled; ENABLE KEYS builds it, and the
    rows loaded meanwhile are all found through it."""
    ddl = (f"CREATE TABLE IF NOT EXISTS `{DATABASE}`.`{{name}}` (id BIGINT NOT NULL, payload VARBINARY(64),"
           " KEY (id)) ENGINE=MyISAM")
    first = b"".join(b"%d\tv\n" % i for i in range(0, 4000, 2))
    second = b"".join(b"%d\tw\n" % i for i in range(1, 4000, 2))
    executor.load_segments(DATABASE, [LoadSegment("k", first, ddl.format(name="k"), True, defer_keys=True),
                                      LoadSegment("plain", first, ddl.format(name="plain"), True)],
                           sql_mode="NO_ENGINE_SUBSTITUTION", **FORMAT)
    executor.load_segments(DATABASE, [LoadSegment("k", second)], sql_mode="NO_ENGINE_SUBSTITUTION", **FORMAT)

    def key_comment(table: str) -> str:
        with executor.pool.connection() as conn:
            cursor = conn.cursor()
            cursor.execute(f"SHOW INDEX FROM `{DATABASE}`.`{table}`")
            return str(cursor.fetchone()[11])  # Comment: 'disabled' while the key is off

    assert key_comment("k") == "disabled"
    assert key_comment("plain") == ""
    executor.admin([f"ALTER TABLE `{DATABASE}`.`k` ENABLE KEYS"])
    assert key_comment("k") == ""
    with executor.pool.connection() as conn:
        cursor = conn.cursor()
        cursor.execute(f"EXPLAIN SELECT payload FROM `{DATABASE}`.k WHERE id = 3001")
        assert cursor.fetchone()[5] == "id"  # the lookup uses the rebuilt key
        cursor.execute(f"SELECT payload FROM `{DATABASE}`.k WHERE id IN (0, 3001, 3998)")
        assert sorted(bytes(v) for (v,) in cursor.fetchall()) == [b"v", b"v", b"w"]
        cursor.execute(f"SELECT COUNT(*) FROM `{DATABASE}`.k FORCE INDEX (id) WHERE id >= 0")
        assert cursor.fetchone()[0] == 4000
