"""Near-neighbour pair count over a 1 x 1 degree area: the cluster against one MariaDB.

Uses the cached synthetic catalog of :mod:`bench.ingest` (``--objects``,
default 1,000,000 over the whole sky with a denser galactic band), loads its
Object table into a 2-worker local cluster (Qserv's 85 stripes x 12
sub-stripes, overlap 0.01667 deg) and into one standalone MariaDB with the
scisql functions, then times::

    engine:  SELECT COUNT(*) FROM Object o1, Object o2
             WHERE qserv_areaspec_box(ra0, dec0, ra0+1, dec0+1)
               AND scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < r AND o1.objectId <> o2.objectId
    plain:   the same with o1.ra BETWEEN ... AND o1.decl BETWEEN ... instead of the areaspec

and checks that both counts agree.  Usage::

    .venv/bin/python -m bench.near_neighbour --objects 1000000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pymysql

from bench.ingest import DEFAULT_CACHE, catalog
from ingest.config import DatabaseConfig, load_case_directory
from ingest.loader import Ingester
from integration.catalogs import load_reference
from integration.compare import run
from skyshard.cluster import ClusterLayout, LocalCluster, free_port
from skyshard.mariadb import MariaDBInstance

DATABASE = "bench"


def _timed(connection: object, sql: str, repeat: int) -> tuple[int, float]:
    """(count, best seconds of ``repeat`` runs)."""
    best = float("inf")
    count = -1
    for _ in range(repeat):
        started = time.monotonic()
        count = int(run(connection, sql)[1][0][0])
        best = min(best, time.monotonic() - started)
    return count, best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.near_neighbour", description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--ra", type=float, default=4.0, help="lower-left corner of the 1x1 deg box")
    parser.add_argument("--decl", type=float, default=8.0)
    parser.add_argument("--radius", type=float, default=0.0166, help="pair distance in degrees")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    case_dir = catalog(args.cache, args.objects, args.seed)
    _, tables, files = load_case_directory(case_dir)
    config = next(t for t in tables if t.name == "Object")
    work = Path(tempfile.mkdtemp(prefix="skyshard-bench-nn-", dir=args.cache))
    plain_db = MariaDBInstance(work / "plain-db", free_port())
    cluster = LocalCluster(work / "cluster", ClusterLayout.on_free_ports(2))
    box = (args.ra, args.decl, args.ra + 1.0, args.decl + 1.0)
    pairs = f"scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < {args.radius} AND o1.objectId <> o2.objectId"
    engine_sql = f"SELECT COUNT(*) FROM Object o1, Object o2 WHERE qserv_areaspec_box{box} AND {pairs}"
    plain_sql = (f"SELECT COUNT(*) FROM Object o1, Object o2 WHERE o1.ra BETWEEN {box[0]} AND {box[2]} "
                 f"AND o1.decl BETWEEN {box[1]} AND {box[3]} AND {pairs}")
    try:
        print("loading the catalog into a standalone MariaDB and a 2-worker cluster ...", flush=True)
        plain_db.start()
        load_reference(plain_db.address, case_dir)  # with the scisql functions
        cluster.up(log=lambda *_: None)
        css = cluster.css()
        ingester = Ingester(css, cluster.czar_db.address)
        try:
            ingester.create_database(DatabaseConfig(DATABASE, 85, 12, 0.01667))
            ingester.ingest_table(config, files["Object"])
        finally:
            ingester.close()
            css.close()
        time.sleep(2.5)
        engine = pymysql.connect(host="127.0.0.1", port=cluster.layout.czar_port, user="skyshard", database=DATABASE)
        plain = plain_db.address.connect(database=DATABASE)
        engine_count, engine_seconds = _timed(engine, engine_sql, args.repeat)
        plain_count, plain_seconds = _timed(plain, plain_sql, args.repeat)
        in_box = run(plain, f"SELECT COUNT(*) FROM Object WHERE ra BETWEEN {box[0]} AND {box[2]} "
                            f"AND decl BETWEEN {box[1]} AND {box[3]}")[1][0][0]
        engine.close()
        plain.close()
    finally:
        plain_db.stop()
        cluster.down(log=lambda *_: None)
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"data: {args.objects:,} objects, box {box} ({in_box} objects in it), radius {args.radius} deg")
    print(f"{'':<24} {'pairs':>8} {'seconds (best of ' + str(args.repeat) + ')':>24}")
    print(f"{'skyshard (2 workers)':<24} {engine_count:>8} {engine_seconds:>24.3f}")
    print(f"{'monolithic MariaDB':<24} {plain_count:>8} {plain_seconds:>24.3f}")
    print(f"speed-up monolithic / skyshard: {plain_seconds / engine_seconds:.1f}x")
    if engine_count != plain_count:
        print("MISMATCH: the counts differ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
