"""Dispatch when a worker is gone: replicas answer, or the error names the chunks and the worker.

A cluster of its own (two workers, real MariaDB instances and gRPC servers):
one synthetic catalog ingested with replication 2, one with replication 1.
Worker 2 is killed; the first must still answer exactly what it answered
before, the second must fail with an error naming every chunk that only
worker 2 held, and answer again once worker 2 is started again.  (Stopping
a worker container in the middle of a query is in the container suite,
``integration/containers.py``.)
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from ingest.datagen import generate
from integration import catalogs
from skyshard.cluster import ClusterLayout, LocalCluster
from skyshard.mariadb import wait_for_exit

pytestmark = pytest.mark.cluster

SCAN = "SELECT COUNT(*), SUM(objectId), ROUND(SUM(ra), 6) FROM {db}.Object"


@pytest.fixture(scope="module")
def two_catalogs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    home = tmp_path_factory.mktemp("failover")
    local = LocalCluster(home / "cluster", ClusterLayout.on_free_ports(2))
    local.up(log=lambda *_: None)
    try:
        for database, replication in (("fo_r2", 2), ("fo_r1", 1)):
            directory = generate(home / database, objects=1500, sources_per_object=0.0, seed=3, database=database,
                                 num_stripes=6, num_sub_stripes=4, overlap=0.2)
            css = local.css()
            try:
                catalogs.ingest_case(css, local.czar_db.address, Path(directory), replication=replication)
            finally:
                css.close()
        time.sleep(2.5)  # the czar caches css for 2 s
        yield local
    finally:
        local.down(log=lambda *_: None)


def scan(local: LocalCluster, database: str) -> tuple[object, ...]:
    connection = pymysql.connect(host="127.0.0.1", port=local.layout.czar_port, user="skyshard")
    try:
        with connection.cursor() as cursor:
            cursor.execute(SCAN.format(db=database))
            return tuple(cursor.fetchone())
    finally:
        connection.close()


def kill_worker(local: LocalCluster, index: int) -> None:
    pid = local.layout.pids[local.worker_id(index)]
    os.killpg(pid, signal.SIGKILL)
    assert wait_for_exit(pid, 10)


def test_replicas_answer_and_missing_chunks_are_named(two_catalogs: LocalCluster) -> None:
    local = two_catalogs
    before_r2 = scan(local, "fo_r2")
    before_r1 = scan(local, "fo_r1")
    assert before_r2[0] == before_r1[0] == 1500
    css = local.css()
    try:
        placement = css.chunk_placement("fo_r1")
    finally:
        css.close()
    only_on_2 = sorted(c for c, holders in placement.replicas.items() if set(holders) == {"worker-2"})
    assert len(only_on_2) >= 2, f"worker-2 alone holds too few chunks of fo_r1: {only_on_2}"

    kill_worker(local, 1)
    try:
        assert scan(local, "fo_r2") == before_r2  # every chunk of worker 2 answered by its replica
        assert scan(local, "fo_r2") == before_r2  # and again, with the failed channel cached
        with pytest.raises(pymysql.MySQLError) as failure:
            scan(local, "fo_r1")
        message = str(failure.value.args[1])
        assert "worker-2" in message
        named = message.rpartition("no other replica of chunk")[2]
        for chunk in only_on_2:
            assert f" {chunk}," in named or f" {chunk} " in named, f"chunk {chunk} not named in: {message}"
    finally:
        local.layout.pids.pop(local.worker_id(1), None)
        local._start_worker(1)
        local.save()
        local.wait_ready()
    deadline = time.monotonic() + 60
    while True:
        try:
            assert scan(local, "fo_r1") == before_r1
            break
        except pymysql.MySQLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_worker_back_after_a_long_absence_is_reached_within_seconds(two_catalogs: LocalCluster) -> None:
    """The czar retries a lost worker's connection at most RECONNECT_BACKOFF_MS apart (gRPC's
    default backoff grows towards 120 s: after 20 s away a worker could stay unreachable ~10 s more)."""
    from czar.dispatch import RECONNECT_BACKOFF_MS

    local = two_catalogs
    before = scan(local, "fo_r1")
    kill_worker(local, 1)
    try:
        away_until = time.monotonic() + 20
        while time.monotonic() < away_until:  # queries fail all along; the channel's backoff grows
            with pytest.raises(pymysql.MySQLError):
                scan(local, "fo_r1")
            time.sleep(1)
    finally:
        local.layout.pids.pop(local.worker_id(1), None)
        local._start_worker(1)
        local.save()
        local.wait_ready()
    back = time.monotonic()
    while True:
        try:
            assert scan(local, "fo_r1") == before
            break
        except pymysql.MySQLError:
            assert time.monotonic() - back < RECONNECT_BACKOFF_MS[1] / 1000 * 1.5 + 1.0, "worker-2 unreachable"
            time.sleep(0.1)
