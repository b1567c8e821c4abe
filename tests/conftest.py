"""Shared fixtures: a real local cluster and a reference MariaDB, started once per run.

``cluster`` starts MariaDB instances, two workers and the czar on free ports
(as ``skyshard up`` does) and, at teardown, checks that no process is left
and that sync queries left no result table behind.  ``reference`` is one
MariaDB holding the same rows unpartitioned: the answer every query is
compared with.  ``catalog_dir`` is a small synthetic catalog loaded into both.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from ingest.config import load_case_directory
from ingest.datagen import generate
from ingest.loader import Ingester
from skyshard.cluster import ClusterLayout, LocalCluster, free_port
from skyshard.mariadb import MariaDBInstance, ServerAddress, process_alive

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SAMPLE_DB = "testsky"


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


def load_reference(address: ServerAddress, case_dir: Path) -> str:
    """Load a case directory unpartitioned into one MariaDB; returns the database name."""
    database, tables, files = load_case_directory(case_dir)
    connection = address.connect(local_infile=True)
    try:
        cursor = connection.cursor()
        cursor.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")
        cursor.execute(f"DROP DATABASE IF EXISTS `{database.name}`")
        cursor.execute(f"CREATE DATABASE `{database.name}`")
        cursor.execute(f"USE `{database.name}`")
        for table in tables:
            cursor.execute(table.create_sql)
            for path in files.get(table.name, []):
                local = path
                if str(path).endswith(".gz"):
                    import gzip

                    local = Path(str(path)[:-3] + ".reference")
                    with gzip.open(path, "rb") as src, open(local, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                cursor.execute(
                    f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table.name}` CHARACTER SET binary "
                    f"{table.text_format.sql_clause()}",
                    (str(local),),
                )
    finally:
        connection.close()
    return database.name


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
    database, tables, files = load_case_directory(case_dir)
    css = local.css()
    ingester = Ingester(css, local.czar_db.address)
    try:
        ingester.create_database(database)
        for table in tables:
            ingester.ingest_table(table, files.get(table.name, []))
    finally:
        ingester.close()
        css.close()
    return database.name


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
