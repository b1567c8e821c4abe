"""Ingest failures leave nothing visible; the director index and replicas are right; Parquet input.

Runs against the real session cluster (two workers, MariaDB, gRPC), each
test in a database of its own so it does not disturb the sample catalog.
Malformed input must fail with the file and line named, leave no css
record, no chunk table on any worker and no director index, and the same
ingest must then succeed once the input is fixed.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pymysql
import pytest

from css import Column, Css, Table, TableKind
from ingest.config import DatabaseConfig, TableConfig, load_case_directory
from ingest.datagen import generate
from ingest.loader import (
    INDEX_DATABASE,
    DirectorIndexBuilder,
    Ingester,
    IngestError,
    IngestSummary,
    index_table_name,
)
from skyshard.cluster import LocalCluster
from skyshard.mariadb import ServerAddress
from tests.conftest import SAMPLE_DB

pytestmark = pytest.mark.cluster

CSS_CACHE_SECONDS = 2.5  # the czar caches css for 2 s


@dataclasses.dataclass
class Catalog:
    database: DatabaseConfig
    tables: dict[str, TableConfig]
    files: dict[str, list[Path]]


def _catalog(out: Path, database: str, objects: int = 400) -> Catalog:
    generate(out, objects=objects, sources_per_object=2.0, seed=11, database=database,
             num_stripes=6, num_sub_stripes=4, overlap=0.2)
    db, tables, files = load_case_directory(out)
    return Catalog(db, {t.name: t for t in tables}, files)


@pytest.fixture
def css(cluster: LocalCluster) -> Iterator[Css]:
    handle = cluster.css()
    try:
        yield handle
    finally:
        handle.close()


def _ingester(cluster: LocalCluster, css: Css, **kwargs: int) -> Ingester:
    return Ingester(css, cluster.czar_db.address, **kwargs)


def _worker_addresses(cluster: LocalCluster) -> dict[str, ServerAddress]:
    return {cluster.worker_id(i): cluster.worker_db(i).address for i in range(cluster.layout.workers)}


def _worker_tables(cluster: LocalCluster, database: str, prefix: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for worker_id, address in _worker_addresses(cluster).items():
        connection = address.connect()
        try:
            cursor = connection.cursor()
            cursor.execute(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME LIKE %s",
                (database, prefix.replace("_", "\\_") + "%"),
            )
            found[worker_id] = sorted(row[0] for row in cursor.fetchall())
        finally:
            connection.close()
    return found


def _index_exists(cluster: LocalCluster, database: str, table: str) -> bool:
    connection = cluster.czar_db.address.connect()
    try:
        cursor = connection.cursor()
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (INDEX_DATABASE, index_table_name(database, table)),
        )
        return int(cursor.fetchone()[0]) > 0
    finally:
        connection.close()


def _czar(cluster: LocalCluster, database: str) -> pymysql.connections.Connection:
    return pymysql.connect(host="127.0.0.1", port=cluster.layout.czar_port, user="skyshard", database=database)


def _czar_rows(cluster: LocalCluster, database: str, sql: str) -> list[tuple[object, ...]]:
    connection = _czar(cluster, database)
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        connection.close()


def _assert_nothing_visible(cluster: LocalCluster, css: Css, database: str, table: str) -> None:
    assert css.table(database, table, include_unpublished=True) is None
    assert _worker_tables(cluster, database, table) == {w: [] for w in _worker_addresses(cluster)}
    assert not _index_exists(cluster, database, table)
    time.sleep(CSS_CACHE_SECONDS)
    with pytest.raises(pymysql.err.MySQLError):
        _czar_rows(cluster, database, f"SELECT COUNT(*) FROM {table}")


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# -- malformed input ----------------------------------------------------------

BAD_LINE = 250  # past the first block (block_bytes below), so earlier blocks were already loaded


def _ingest_small_blocks(
    cluster: LocalCluster, css: Css, config: TableConfig, path: Path
) -> IngestSummary:
    """Ingest ``path`` in 8 KiB blocks (so a late bad row comes after earlier blocks loaded)."""
    ingester = _ingester(cluster, css, block_bytes=8 << 10)
    try:
        return ingester.ingest_table(config, [path])
    finally:
        ingester.close()


def _fails_then_recovers(cluster: LocalCluster, css: Css, catalog: Catalog, table: str,
                         good: bytes, bad: bytes, path: Path, expected: str) -> None:
    config = catalog.tables[table]
    path.write_bytes(bad)
    with pytest.raises(IngestError) as failure:
        _ingest_small_blocks(cluster, css, config, path)
    message = str(failure.value)
    assert str(path) in message and f"line {BAD_LINE}" in message, message
    assert expected in message, message
    _assert_nothing_visible(cluster, css, config.database, table)

    path.write_bytes(good)
    summary = _ingest_small_blocks(cluster, css, config, path)
    assert summary.rows == len(good.splitlines())
    time.sleep(CSS_CACHE_SECONDS)
    assert _czar_rows(cluster, config.database, f"SELECT COUNT(*) FROM {table}") == [(summary.rows,)]


@pytest.fixture
def fresh(cluster: LocalCluster, css: Css, tmp_path: Path, request: pytest.FixtureRequest) -> Catalog:
    name = "t_" + request.node.name.replace("test_", "")[:40]
    catalog = _catalog(tmp_path / "catalog", name)
    ingester = _ingester(cluster, css)
    try:
        ingester.create_database(catalog.database)
    finally:
        ingester.close()
    return catalog


def test_wrong_column_count_fails_cleanly_and_rerun_works(
    cluster: LocalCluster, css: Css, fresh: Catalog, tmp_path: Path
) -> None:
    good = _lines(fresh.files["Object"][0])
    bad = list(good)
    bad[BAD_LINE - 1] = bad[BAD_LINE - 1].rstrip(b"\n") + b"\t42\n"
    _fails_then_recovers(cluster, css, fresh, "Object", b"".join(good), b"".join(bad),
                         tmp_path / "Object.tsv", "expected 11 fields, found 12")


def test_bad_escape_in_a_value_fails_cleanly_and_rerun_works(
    cluster: LocalCluster, css: Css, fresh: Catalog, tmp_path: Path
) -> None:
    good = _lines(fresh.files["Object"][0])
    bad = list(good)
    fields = bad[BAD_LINE - 1].split(b"\t")
    fields[4] = fields[4] + b"\\q"  # gFlux (a DOUBLE): "\q" is no number; MariaDB warns
    bad[BAD_LINE - 1] = b"\t".join(fields)
    _fails_then_recovers(cluster, css, fresh, "Object", b"".join(good), b"".join(bad),
                         tmp_path / "Object.tsv", "gFlux")


def test_stray_escape_at_end_of_file_fails_cleanly(
    cluster: LocalCluster, css: Css, fresh: Catalog, tmp_path: Path
) -> None:
    good = _lines(fresh.files["Object"][0])[:BAD_LINE]
    bad = b"".join(good).rstrip(b"\n") + b"\\"  # a lone escape character as the last byte
    _fails_then_recovers(cluster, css, fresh, "Object", b"".join(good), bad,
                         tmp_path / "Object.tsv", "lone escape character")


def test_duplicate_director_key_fails_cleanly_and_rerun_works(
    cluster: LocalCluster, css: Css, fresh: Catalog, tmp_path: Path
) -> None:
    good = _lines(fresh.files["Object"][0])
    bad = list(good)
    key = good[3].split(b"\t")[0]
    fields = bad[BAD_LINE - 1].split(b"\t")
    bad[BAD_LINE - 1] = b"\t".join([key, *fields[1:]])  # a later block repeats an earlier key
    config = fresh.tables["Object"]
    path = tmp_path / "Object.tsv"
    path.write_bytes(b"".join(bad))
    with pytest.raises(IngestError) as failure:
        _ingest_small_blocks(cluster, css, config, path)
    assert f"= {int(key)} appears 2 times" in str(failure.value), str(failure.value)
    _assert_nothing_visible(cluster, css, config.database, "Object")
    path.write_bytes(b"".join(good))
    summary = _ingest_small_blocks(cluster, css, config, path)
    assert summary.rows == len(good)


def test_unknown_director_key_without_position_fails_cleanly_and_rerun_works(
    cluster: LocalCluster, css: Css, fresh: Catalog, tmp_path: Path
) -> None:
    ingester = _ingester(cluster, css)
    try:
        ingester.ingest_table(fresh.tables["Object"], fresh.files["Object"])
    finally:
        ingester.close()
    # A child table without position columns: an unknown director key cannot be placed.
    fresh.tables["Source"] = dataclasses.replace(fresh.tables["Source"], longitude_key=None, latitude_key=None)
    good = _lines(fresh.files["Source"][0])
    bad = list(good)
    fields = bad[BAD_LINE - 1].split(b"\t")
    fields[1] = b"999999999"  # objectId of no Object
    bad[BAD_LINE - 1] = b"\t".join(fields)
    _fails_then_recovers(cluster, css, fresh, "Source", b"".join(good), b"".join(bad),
                         tmp_path / "Source.tsv", "not in Object")


# -- director index -------------------------------------------------------------


def test_objectid_lookup_matches_the_reference(cluster: LocalCluster, reference: ServerAddress) -> None:
    ref = reference.connect(database=SAMPLE_DB)
    try:
        cursor = ref.cursor()
        cursor.execute("SELECT objectId FROM Object ORDER BY objectId LIMIT 5")
        ids = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT MAX(objectId) FROM Object")
        ids.append(cursor.fetchone()[0])
        for object_id in ids:
            sql = f"SELECT * FROM Object WHERE objectId = {object_id}"
            cursor.execute(sql)
            want = list(cursor.fetchall())
            assert len(want) == 1
            assert _czar_rows(cluster, SAMPLE_DB, sql) == want
        sql = f"SELECT * FROM Source WHERE objectId = {ids[0]} ORDER BY sourceId"
        cursor.execute(sql)
        assert _czar_rows(cluster, SAMPLE_DB, sql) == list(cursor.fetchall())
    finally:
        ref.close()


def test_chunk_tables_have_their_keys_after_ingest(cluster: LocalCluster) -> None:
    """Ingest loads chunk tables with their keys disabled and builds them at the end: none is left off."""
    for worker_id, address in _worker_addresses(cluster).items():
        names = _worker_tables(cluster, SAMPLE_DB, "Object")[worker_id]
        assert names, f"no chunk tables on {worker_id}"
        worker = address.connect(database=SAMPLE_DB)
        try:
            cursor = worker.cursor()
            for name in names:
                cursor.execute(f"SHOW INDEX FROM `{name}`")
                keys = {(row[2], row[11]) for row in cursor.fetchall()}  # Key_name, Comment
                assert {k for k, _ in keys} >= {"objectId", "subChunkId"}, (name, keys)
                assert all(comment != "disabled" for _, comment in keys), (name, keys)
        finally:
            worker.close()


def test_director_index_maps_every_object_to_its_chunk(cluster: LocalCluster, css: Css,
                                                       reference: ServerAddress) -> None:
    connection = cluster.czar_db.address.connect()
    try:
        cursor = connection.cursor()
        cursor.execute(
            f"SELECT `key`, chunkId, subChunkId FROM {INDEX_DATABASE}.{index_table_name(SAMPLE_DB, 'Object')}"
        )
        index = {int(k): (int(c), int(s)) for k, c, s in cursor.fetchall()}
    finally:
        connection.close()
    placed: dict[int, tuple[int, int]] = {}
    for worker_id, address in _worker_addresses(cluster).items():
        tables = _worker_tables(cluster, SAMPLE_DB, "Object_")[worker_id]
        worker = address.connect(database=SAMPLE_DB)
        try:
            cursor = worker.cursor()
            for name in tables:
                cursor.execute(f"SELECT objectId, chunkId, subChunkId FROM `{name}`")
                for key, chunk, sub in cursor.fetchall():
                    assert name == f"Object_{chunk}"
                    assert int(key) not in placed, f"objectId {key} is in two chunk tables"
                    placed[int(key)] = (int(chunk), int(sub))
        finally:
            worker.close()
    ref = reference.connect(database=SAMPLE_DB)
    try:
        cursor = ref.cursor()
        cursor.execute("SELECT COUNT(*) FROM Object")
        total = int(cursor.fetchone()[0])
    finally:
        ref.close()
    assert len(index) == total > 0
    assert index == placed


# -- replication ------------------------------------------------------------------


def _table_digest(address: ServerAddress, database: str, table: str) -> tuple[int, int]:
    """(rows, order-independent CRC of the rows) of one table."""
    connection = address.connect(database=database)
    try:
        cursor = connection.cursor()
        cursor.execute(f"SELECT * FROM `{table}`")
        rows = cursor.fetchall()
    finally:
        connection.close()
    digest = 0
    for row in rows:
        digest ^= zlib.crc32(repr(row).encode())
    return len(rows), digest


def test_replication_factor_two_loads_identical_replicas(cluster: LocalCluster, css: Css, tmp_path: Path) -> None:
    catalog = _catalog(tmp_path / "catalog", "t_replicated2", objects=600)
    ingester = _ingester(cluster, css, replication=2, block_bytes=16 << 10)
    try:
        ingester.create_database(catalog.database)
        summaries = [ingester.ingest_table(catalog.tables[name], catalog.files[name]) for name in ("Object", "Source")]
    finally:
        ingester.close()
    workers = _worker_addresses(cluster)
    placement = css.chunk_placement("t_replicated2").replicas
    assert placement and all(sorted(replicas) == sorted(workers) for replicas in placement.values())
    for summary in summaries:
        # every row is on both workers
        assert summary.rows_per_worker == {w: summary.rows for w in workers}
    total = {"Object": 0, "Source": 0}
    for chunk_id in placement:
        for table in ("Object", "Source", "ObjectFullOverlap"):
            digests = {w: _table_digest(address, "t_replicated2", f"{table}_{chunk_id}")
                       for w, address in workers.items()}
            assert len(set(digests.values())) == 1, f"{table}_{chunk_id} differs between replicas: {digests}"
            if table in total:
                total[table] += next(iter(digests.values()))[0]
    assert total == {"Object": 600, "Source": summaries[1].rows}


# -- Parquet --------------------------------------------------------------------


_ARROW_TYPES = {"bigint": "int64", "double": "float64", "float": "float32", "smallint": "int16",
                "int": "int32", "tinyint": "int8"}


def _to_parquet(config: TableConfig, tsv: Path, out: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    from pyarrow import csv as pacsv
    from pyarrow import parquet as pq

    types = {name: getattr(pa, _ARROW_TYPES[definition.split("(")[0].split()[0].lower()])()
             for name, definition in config.columns}
    table = pacsv.read_csv(
        tsv,
        read_options=pacsv.ReadOptions(column_names=config.column_names),
        parse_options=pacsv.ParseOptions(delimiter="\t"),
        convert_options=pacsv.ConvertOptions(column_types=types, null_values=["\\N"]),
    )
    pq.write_table(table, out, row_group_size=700)


def test_parquet_ingests_like_its_tsv(cluster: LocalCluster, css: Css, tmp_path: Path) -> None:
    text = _catalog(tmp_path / "text", "t_from_tsv", objects=1500)
    parquet = _catalog(tmp_path / "parquet", "t_from_parquet", objects=1500)
    for name in ("Object", "Source"):
        source = parquet.files[name][0]
        target = source.with_suffix(".parquet")
        _to_parquet(parquet.tables[name], source, target)
        source.unlink()
        parquet.files[name] = [target]
    ingester = _ingester(cluster, css, block_bytes=64 << 10)
    try:
        for catalog in (text, parquet):
            ingester.create_database(catalog.database)
            for name in ("Object", "Source"):
                summary = ingester.ingest_table(catalog.tables[name], catalog.files[name])
                assert summary.rows > 0
    finally:
        ingester.close()
    time.sleep(CSS_CACHE_SECONDS)
    for sql in ("SELECT * FROM Object ORDER BY objectId", "SELECT * FROM Source ORDER BY sourceId",
                "SELECT objectId, chunkId, subChunkId FROM Object ORDER BY objectId"):
        from_text = _czar_rows(cluster, "t_from_tsv", sql)
        assert len(from_text) > 1000
        assert _czar_rows(cluster, "t_from_parquet", sql) == from_text


@pytest.mark.parametrize("server_files", [True, False], ids=["server-file", "local"])
def test_director_index_loads_by_server_file_or_local(cluster: LocalCluster, server_files: bool) -> None:
    """The index goes in from a file the czar's MariaDB reads itself when it can see this process's
    files (a local cluster), else by LOAD DATA LOCAL; both give the same entries, and a duplicate
    key fails either way."""
    table = Table("t_index_paths", "Thing", TableKind.DIRECTOR, (Column("id", "BIGINT"),), "",
                  director_key="id")
    keys = np.arange(50_000, dtype=np.int64) * 3 + 11
    chunks = keys % 997
    subs = keys % 89
    builder = DirectorIndexBuilder(cluster.czar_db.address, table)
    try:
        assert builder.server_dir is not None  # the local cluster's MariaDB reads this process's files
        if not server_files:
            builder.server_dir = None
        builder.add(keys[:30_000], chunks[:30_000], subs[:30_000])
        builder.add(keys[30_000:], chunks[30_000:], subs[30_000:])
        builder.finish()
    finally:
        builder.close()
    connection = cluster.czar_db.address.connect()
    try:
        cursor = connection.cursor()
        cursor.execute(f"SELECT `key`, chunkId, subChunkId FROM {INDEX_DATABASE}.{index_table_name(table.database, 'Thing')}"
                       " ORDER BY `key`")
        assert [tuple(map(int, row)) for row in cursor.fetchall()] == list(zip(keys.tolist(), chunks.tolist(),
                                                                               subs.tolist(), strict=True))
    finally:
        connection.close()
    duplicate = DirectorIndexBuilder(cluster.czar_db.address, table)
    try:
        if not server_files:
            duplicate.server_dir = None
        duplicate.add(np.array([5, 6, 5], dtype=np.int64), np.array([1, 2, 3]), np.array([0, 0, 0]))
        with pytest.raises(IngestError, match="director key id = 5 appears 2 times"):
            duplicate.finish()
    finally:
        duplicate.close()
