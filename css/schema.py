"""The css tables (SQLAlchemy Core) and their numbered migrations.

The migrations are the source of truth for the stored schema: each one is a
list of DDL statements applied once, in order, and recorded in
``css_schema_version``.  The ``Table`` objects below mirror the latest
version and are what :mod:`css.api` queries through.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

metadata = sa.MetaData()

families = sa.Table(
    "css_family",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("num_stripes", sa.Integer, nullable=False),
    sa.Column("num_sub_stripes", sa.Integer, nullable=False),
    sa.Column("overlap", sa.Float, nullable=False),
)

databases = sa.Table(
    "css_database",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("family", sa.String(64), nullable=False),
)

tables = sa.Table(
    "css_table",
    metadata,
    sa.Column("db", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("columns_json", sa.Text, nullable=False),
    sa.Column("create_sql", sa.Text, nullable=False),
    sa.Column("director_table", sa.String(64)),
    sa.Column("director_key", sa.String(64)),
    sa.Column("director_table2", sa.String(64)),
    sa.Column("director_key2", sa.String(64)),
    sa.Column("longitude_column", sa.String(64)),
    sa.Column("latitude_column", sa.String(64)),
    sa.Column("row_count", sa.BigInteger),
)

chunk_replicas = sa.Table(
    "css_chunk_replica",
    metadata,
    sa.Column("db", sa.String(64), primary_key=True),
    sa.Column("chunk_id", sa.BigInteger, primary_key=True),
    sa.Column("worker_id", sa.String(64), primary_key=True),
)

workers = sa.Table(
    "css_worker",
    metadata,
    sa.Column("worker_id", sa.String(64), primary_key=True),
    sa.Column("address", sa.String(255), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("last_seen", sa.DateTime),
)

users = sa.Table(
    "css_user",
    metadata,
    sa.Column("name", sa.String(80), primary_key=True),
    sa.Column("auth_string", sa.String(40), nullable=False),  # hex SHA1(SHA1(password)); '' = no password
    sa.Column("is_admin", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

grants = sa.Table(
    "css_grant",
    metadata,
    sa.Column("user_name", sa.String(80), primary_key=True),
    sa.Column("db", sa.String(64), primary_key=True),  # '*' = every database
)

schema_version = sa.Table(
    "css_schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("description", sa.String(255), nullable=False),
    sa.Column("applied_at", sa.DateTime, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "families, databases, tables, chunk replicas, workers",
        (
            """CREATE TABLE IF NOT EXISTS css_family (
                name VARCHAR(64) NOT NULL PRIMARY KEY,
                num_stripes INT NOT NULL,
                num_sub_stripes INT NOT NULL,
                overlap DOUBLE NOT NULL
            ) ENGINE=InnoDB""",
            """CREATE TABLE IF NOT EXISTS css_database (
                name VARCHAR(64) NOT NULL PRIMARY KEY,
                family VARCHAR(64) NOT NULL,
                FOREIGN KEY (family) REFERENCES css_family(name)
            ) ENGINE=InnoDB""",
            """CREATE TABLE IF NOT EXISTS css_table (
                db VARCHAR(64) NOT NULL,
                name VARCHAR(64) NOT NULL,
                kind VARCHAR(16) NOT NULL,
                state VARCHAR(16) NOT NULL,
                columns_json MEDIUMTEXT NOT NULL,
                create_sql MEDIUMTEXT NOT NULL,
                director_table VARCHAR(64) NULL,
                director_key VARCHAR(64) NULL,
                director_table2 VARCHAR(64) NULL,
                director_key2 VARCHAR(64) NULL,
                longitude_column VARCHAR(64) NULL,
                latitude_column VARCHAR(64) NULL,
                row_count BIGINT NULL,
                PRIMARY KEY (db, name),
                FOREIGN KEY (db) REFERENCES css_database(name) ON DELETE CASCADE
            ) ENGINE=InnoDB""",
            """CREATE TABLE IF NOT EXISTS css_chunk_replica (
                db VARCHAR(64) NOT NULL,
                chunk_id BIGINT NOT NULL,
                worker_id VARCHAR(64) NOT NULL,
                PRIMARY KEY (db, chunk_id, worker_id),
                KEY by_worker (worker_id),
                FOREIGN KEY (db) REFERENCES css_database(name) ON DELETE CASCADE
            ) ENGINE=InnoDB""",
            """CREATE TABLE IF NOT EXISTS css_worker (
                worker_id VARCHAR(64) NOT NULL PRIMARY KEY,
                address VARCHAR(255) NOT NULL,
                state VARCHAR(16) NOT NULL,
                last_seen DATETIME NULL
            ) ENGINE=InnoDB""",
        ),
    ),
    Migration(
        2,
        "users (MySQL native password hashes) and per-database read grants",
        (
            """CREATE TABLE IF NOT EXISTS css_user (
                name VARCHAR(80) NOT NULL PRIMARY KEY,
                auth_string VARCHAR(40) NOT NULL,
                is_admin BOOLEAN NOT NULL DEFAULT FALSE,
                created_at DATETIME NOT NULL
            ) ENGINE=InnoDB""",
            """CREATE TABLE IF NOT EXISTS css_grant (
                user_name VARCHAR(80) NOT NULL,
                db VARCHAR(64) NOT NULL,
                PRIMARY KEY (user_name, db),
                FOREIGN KEY (user_name) REFERENCES css_user(name) ON DELETE CASCADE
            ) ENGINE=InnoDB""",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
