"""Loading a Qserv-layout case directory: into a cluster, and into a reference MariaDB.

The reference is one MariaDB holding every table unpartitioned, with the
scisql functions installed: the answer every engine query is compared with.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

from css import Css
from ingest.config import load_case_directory
from ingest.loader import Ingester
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
    finally:
        connection.close()
    return database.name


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
