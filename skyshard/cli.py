"""The ``skyshard`` command: up, status, down, ingest, datagen.

Owns argument parsing and human-readable output only; the work is done by
:mod:`skyshard.cluster`, :mod:`ingest.loader` and :mod:`ingest.datagen`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from skyshard.cluster import DEFAULT_HOME, ClusterError, ClusterLayout, LocalCluster
from skyshard.mariadb import MariaDBNotInstalled

SAMPLE_OBJECTS = 20000


class ProgressLine:
    """A one-line progress display: rows, bytes and chunks per table."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.bytes = 0

    def __call__(self, table: str, rows: int, nbytes: int, chunks: int) -> None:
        self.bytes += nbytes
        elapsed = max(time.monotonic() - self.started, 1e-6)
        sys.stderr.write(
            f"\r  {table:<24} {rows:>12,} rows  {self.bytes / 1e6:>9.1f} MB  {chunks:>6} chunks"
            f"  {rows / elapsed:>10,.0f} rows/s"
        )
        sys.stderr.flush()


def ingest_directory(cluster: LocalCluster, case_dir: Path, replication: int) -> None:
    from ingest.config import load_case_directory
    from ingest.loader import Ingester

    database, tables, files = load_case_directory(case_dir)
    css = cluster.css()
    ingester = Ingester(css, cluster.czar_db.address, replication=replication)
    try:
        ingester.create_database(database)
        print(f"ingesting {database.name} from {case_dir}")
        summaries = []
        for table in tables:
            ingester.progress = ProgressLine()
            summary = ingester.ingest_table(table, files.get(table.name, []))
            sys.stderr.write("\n")
            summaries.append(summary)
        print(f"\n{'table':<24} {'kind':<11} {'rows':>12} {'chunks':>7} {'seconds':>8}  rows per worker")
        for s in summaries:
            per_worker = ", ".join(f"{w}={n:,}" for w, n in sorted(s.rows_per_worker.items()))
            print(f"{s.table:<24} {s.kind.value:<11} {s.rows:>12,} {s.chunks:>7} {s.seconds:>8.2f}  {per_worker}")
            if s.orphan_rows:
                print(f"  note: {s.orphan_rows:,} {s.table} row(s) have a director key not in the director table; "
                      f"placed by their own position (first lines: {', '.join(map(str, s.orphan_lines))})")
    finally:
        ingester.close()
        css.close()


def cmd_up(args: argparse.Namespace) -> int:
    layout = ClusterLayout.standard(args.workers)
    layout.czar_port = args.port
    cluster = LocalCluster(Path(args.home), layout)
    if cluster.state_file.exists():
        previous = LocalCluster(Path(args.home))
        if any(item["ok"] for item in previous.status()):
            print("a cluster is already running here; `skyshard down` first", file=sys.stderr)
            return 1
    cluster.up()
    if not args.no_sample:
        css = cluster.css()
        try:
            loaded = css.database("sample") is not None and css.table("sample", "Object") is not None
        finally:
            css.close()
        if not loaded:
            from ingest.datagen import generate

            sample_dir = cluster.home / "sample-catalog"
            print(f"generating a sample catalog of {args.sample_objects:,} objects in {sample_dir}")
            generate(sample_dir, objects=args.sample_objects, num_stripes=12, num_sub_stripes=6, overlap=0.05)
            ingest_directory(cluster, sample_dir, replication=1)
    print(
        "\nSkyshard is up. Connect with:\n"
        f"    mysql -h 127.0.0.1 -P {cluster.layout.czar_port} -u skyshard\n"
        f"    e.g.  mysql -h 127.0.0.1 -P {cluster.layout.czar_port} -u skyshard "
        "-e 'SELECT COUNT(*) FROM sample.Object'\n"
        "Stop it with: skyshard down"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cluster = LocalCluster(Path(args.home))
    if not cluster.state_file.exists():
        print(f"no cluster in {cluster.home}")
        return 1
    report = cluster.status()
    for item in report:
        state = "ok" if item["ok"] else "DOWN"
        pid = f"pid {item['pid']}" if item.get("pid") else ""
        print(f"{item['name']:<16} {item['kind']:<8} port {item['port']:<6} {state:<5} {pid:<12} {item.get('detail', '')}")
    return 0 if all(item["ok"] for item in report) else 1


def cmd_down(args: argparse.Namespace) -> int:
    cluster = LocalCluster(Path(args.home))
    if not cluster.state_file.exists():
        print(f"no cluster in {cluster.home}")
        return 0
    cluster.down()
    print("stopped")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    cluster = LocalCluster(Path(args.home))
    ingest_directory(cluster, Path(args.directory), replication=args.replication)
    return 0


def cmd_datagen(args: argparse.Namespace) -> int:
    from ingest.datagen import generate

    started = time.monotonic()
    generate(Path(args.out), objects=args.objects, sources_per_object=args.sources_per_object,
             database=args.database, seed=args.seed)
    print(f"wrote {args.objects:,} objects to {args.out} in {time.monotonic() - started:.1f}s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skyshard", description="Skyshard distributed query engine")
    parser.add_argument("--home", default=str(DEFAULT_HOME), help="cluster directory (default %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a local cluster (MariaDB instances, workers, czar)")
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--port", type=int, default=4040, help="MySQL port of the czar")
    up.add_argument("--no-sample", action="store_true", help="do not load the sample catalog")
    up.add_argument("--sample-objects", type=int, default=SAMPLE_OBJECTS)
    up.set_defaults(func=cmd_up)
    sub.add_parser("status", help="health of every component").set_defaults(func=cmd_status)
    sub.add_parser("down", help="stop everything `up` started").set_defaults(func=cmd_down)
    ingest = sub.add_parser("ingest", help="load a catalog directory in Qserv's layout")
    ingest.add_argument("directory")
    ingest.add_argument("--replication", type=int, default=1)
    ingest.set_defaults(func=cmd_ingest)
    datagen = sub.add_parser("datagen", help="write a synthetic Object/Source catalog")
    datagen.add_argument("out")
    datagen.add_argument("--objects", type=int, default=100000)
    datagen.add_argument("--sources-per-object", type=float, default=2.0)
    datagen.add_argument("--database", default="sample")
    datagen.add_argument("--seed", type=int, default=42)
    datagen.set_defaults(func=cmd_datagen)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MariaDBNotInstalled as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # top-level: one clear line, not a traceback
        from ingest.loader import IngestError

        if isinstance(exc, IngestError):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
