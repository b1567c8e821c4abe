"""Shared fixtures: a real local cluster and a reference MariaDB, started once per run.

``cluster`` starts MariaDB instances, two workers and the czar on free ports
(as ``skyshard up`` does) and, at teardown, checks that no process is left
and that sync queries left no result table behind.  ``reference`` is one
MariaDB holding the same rows unpartitioned: the answer every query is
compared with.  ``catalog_dir`` is a small synthetic catalog loaded into both.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from ingest.datagen import generate
from integration import catalogs
from integration.catalogs import load_reference
from skyshard.cluster import ClusterLayout, LocalCluster, free_port
from skyshard.mariadb import MariaDBInstance, ServerAddress, process_alive

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SAMPLE_DB = "testsky"
CASE01 = DATASETS / "qserv-case01"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if shutil.which("mariadbd") is None and not Path("/usr/sbin/mariadbd").exists():
        skip = pytest.mark.skip(reason="MariaDB server is not installed (apt-get install mariadb-server)")
        for item in items:
            if "cluster" in item.keywords or "reference" in getattr(item, "fixturenames", ()):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def catalog_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic Object/Source catalog (few chunks, so the suite stays fast)."""
    out = tmp_path_factory.mktemp("catalog")
    return generate(out, objects=3000, sources_per_object=2.0, seed=7, database=SAMPLE_DB,
                    num_stripes=6, num_sub_stripes=4, overlap=0.2)


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, catalog_dir: Path) -> Iterator[ServerAddress]:
    """One MariaDB with the sample catalog unpartitioned (and scisql functions)."""
    instance = MariaDBInstance(tmp_path_factory.mktemp("reference"), free_port())
    instance.start()
    try:
        load_reference(instance.address, catalog_dir)
        yield instance.address
    finally:
        instance.stop()


def ingest_case(local: LocalCluster, case_dir: Path) -> str:
    """Load a case directory into the cluster through the ingest path; returns the database."""
    css = local.css()
    try:
        return catalogs.ingest_case(css, local.czar_db.address, case_dir)
    finally:
        css.close()


def load_both(local: LocalCluster, reference: ServerAddress, case_dir: Path) -> str:
    """Load a case directory into the reference and (through ingest) into the cluster.

    Waits until the czar's css cache (2 s) sees the new tables; returns the database.
    """
    load_reference(reference, case_dir)
    name = ingest_case(local, case_dir)
    time.sleep(2.5)
    return name


def sides_of(local: LocalCluster, reference: ServerAddress, database: str) -> Iterator[tuple[Any, Any]]:
    """(czar connection, reference connection) on ``database``; both closed afterwards."""
    engine = pymysql.connect(host="127.0.0.1", port=local.layout.czar_port, user="skyshard", database=database)
    plain = reference.connect(database=database)
    try:
        yield engine, plain
    finally:
        engine.close()
        plain.close()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, catalog_dir: Path) -> Iterator[LocalCluster]:
    home = tmp_path_factory.mktemp("cluster")
    local = LocalCluster(home, ClusterLayout.on_free_ports(2))
    local.up(log=lambda *_: None)
    try:
        ingest_case(local, catalog_dir)
        yield local
        leftover = _leftover_result_tables(local)
        assert leftover == [], f"sync queries left result tables behind: {leftover}"
    finally:
        pids = dict(local.layout.pids)
        local.down(log=lambda *_: None)
        alive = [name for name, pid in pids.items() if process_alive(pid)]
        assert alive == [], f"processes still running after down: {alive}"


def _leftover_result_tables(local: LocalCluster) -> list[str]:
    connection = local.czar_db.address.connect()
    try:
        cursor = connection.cursor()
        cursor.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'skyshard_results'"
        )
        return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


@pytest.fixture(scope="session")
def case01(cluster: LocalCluster, reference: ServerAddress) -> str:
    """Qserv's case01 catalog, ingested into the cluster and loaded into the reference."""
    if not CASE01.is_dir():
        pytest.skip(f"{CASE01} is absent (shared datasets not beside the checkout)")
    return load_both(cluster, reference, CASE01)


@pytest.fixture
def czar(cluster: LocalCluster) -> Iterator[pymysql.connections.Connection]:
    """A PyMySQL connection to the czar, default database set to the sample catalog."""
    connection = pymysql.connect(
        host="127.0.0.1", port=cluster.layout.czar_port, user="skyshard", database=SAMPLE_DB
    )
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def ref(reference: ServerAddress) -> Iterator[pymysql.connections.Connection]:
    connection = reference.connect(database=SAMPLE_DB)
    try:
        yield connection
    finally:
        connection.close()
