"""Loading a Qserv-layout case directory: into a cluster, and into a reference MariaDB.

The reference is one MariaDB holding every table unpartitioned, with the
scisql functions installed: the answer every engine query is compared with.
Its partitioned tables get ``chunkId`` and ``subChunkId`` as INVISIBLE
columns (not in ``SELECT *``, but nameable), filled with the chunk each row
lives in, as Qserv's own harness does: queries such as ``GROUP BY chunkId``
then have a reference answer.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from css import Css, TableKind
from ingest.config import DatabaseConfig, TableConfig, load_case_directory
from ingest.loader import Ingester
from ingest.partitioner import Chunker
from skyshard.mariadb import ServerAddress


def load_reference(address: ServerAddress, case_dir: Path, *, install_scisql: bool = True) -> str:
    """Load a case directory unpartitioned into one MariaDB; returns the database name."""
    database, tables, files = load_case_directory(case_dir)
    connection = address.connect(local_infile=True)
    try:
        if install_scisql:
            from worker import scisql

            scisql.ensure_installed(connection)
        cursor = connection.cursor()
        cursor.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")
        cursor.execute(f"DROP DATABASE IF EXISTS `{database.name}`")
        cursor.execute(f"CREATE DATABASE `{database.name}`")
        cursor.execute(f"USE `{database.name}`")
        with tempfile.TemporaryDirectory(prefix="skyshard-reference-") as scratch:
            for table in tables:
                cursor.execute(table.create_sql)
                for path in files.get(table.name, []):
                    local = path
                    if str(path).endswith(".gz"):
                        local = Path(scratch) / (path.name[:-3])
                        with gzip.open(path, "rb") as src, open(local, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                    cursor.execute(
                        f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table.name}` CHARACTER SET binary "
                        f"{table.text_format.sql_clause()}",
                        (str(local),),
                    )
            for table in tables:
                if table.kind is not TableKind.REPLICATED:
                    _add_partition_columns(cursor, database, table, tables, Path(scratch))
    finally:
        connection.close()
    return database.name


def _q(name: str | None) -> str:
    return "`" + (name or "").replace("`", "``") + "`"


def _locate_into(cursor: Any, chunker: Chunker, rows: list[tuple[Any, ...]], table_sql: str, scratch: Path) -> None:
    """Load ``(a, b, lon, lat)`` rows into ``table_sql`` as ``(a, b, chunkId, subChunkId)``."""
    cursor.execute(f"CREATE TEMPORARY TABLE {table_sql} (a DOUBLE, b DOUBLE, chunkId INT, subChunkId INT, KEY (a, b))")
    if not rows:
        return
    data = np.array([(r[0], r[1], r[2], r[3]) for r in rows], dtype=np.float64)
    chunks, subs = chunker.locate(data[:, 2], data[:, 3])
    path = scratch / "chunks.tsv"
    with open(path, "w", encoding="ascii") as out:
        for (a, b, _, _), chunk, sub in zip(rows, chunks.tolist(), subs.tolist(), strict=True):
            out.write(f"{a!r}\t{b!r}\t{chunk}\t{sub}\n")
    cursor.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE {table_sql}", (str(path),))


def _add_partition_columns(cursor: Any, database: DatabaseConfig, table: TableConfig,
                           tables: list[TableConfig], scratch: Path) -> None:
    chunker = Chunker(database.num_stripes, database.num_sub_stripes, database.overlap)
    name = _q(table.name)
    cursor.execute(f"ALTER TABLE {name} ADD COLUMN chunkId INT NULL INVISIBLE, ADD COLUMN subChunkId INT NULL INVISIBLE")
    if table.kind is not TableKind.DIRECTOR and table.director_table and table.director_key:
        director = next((t for t in tables if t.name == table.director_table), None)
        director_key = _q(director.director_key if director else table.director_key)
        cursor.execute(
            f"UPDATE {name} c JOIN {_q(table.director_table)} d ON c.{_q(table.director_key)} = d.{director_key} "
            "SET c.chunkId = d.chunkId, c.subChunkId = d.subChunkId"
        )
    if not (table.longitude_key and table.latitude_key):
        return
    lon, lat = _q(table.longitude_key), _q(table.latitude_key)
    # Directors by their own position; child rows without a director by theirs too.
    cursor.execute(f"SELECT DISTINCT {lon}, {lat}, {lon}, {lat} FROM {name} WHERE chunkId IS NULL AND {lon} IS NOT NULL AND {lat} IS NOT NULL")
    positions = list(cursor.fetchall())
    temp = _q(f"_chunks_{table.name}")
    _locate_into(cursor, chunker, positions, temp, scratch)
    cursor.execute(
        f"UPDATE {name} t JOIN {temp} p ON t.{lon} = p.a AND t.{lat} = p.b "
        "SET t.chunkId = p.chunkId, t.subChunkId = p.subChunkId WHERE t.chunkId IS NULL"
    )
    cursor.execute(f"DROP TEMPORARY TABLE {temp}")
    cursor.execute(f"SELECT COUNT(*) FROM {name} WHERE chunkId IS NULL AND {lon} IS NOT NULL AND {lat} IS NOT NULL")
    unplaced = int(cursor.fetchone()[0])
    if unplaced:
        raise RuntimeError(f"reference {table.name}: {unplaced} row(s) got no chunkId")


def ingest_case(css: Css, czar_db: ServerAddress, case_dir: Path, *, replication: int = 1) -> str:
    """Load a case directory into a cluster through the ingest path; returns the database."""
    database, tables, files = load_case_directory(case_dir)
    ingester = Ingester(css, czar_db, replication=replication)
    try:
        ingester.create_database(database)
        for table in tables:
            ingester.ingest_table(table, files.get(table.name, []))
    finally:
        ingester.close()
    return database.name
