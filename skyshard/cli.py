"""The ``skyshard`` command: up, status, down, ingest, datagen, user.

Owns argument parsing and human-readable output only; the work is done by
:mod:`skyshard.cluster`, :mod:`ingest.loader` and :mod:`ingest.datagen`.
"""

from __future__ import annotations

import argparse
import os
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
    cluster.up(admin_password=args.password)
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
    user = cluster.layout.admin_user
    password = " -p" if args.password else ""
    print(
        "\nSkyshard is up. Connect with:\n"
        f"    mysql -h 127.0.0.1 -P {cluster.layout.czar_port} -u {user}{password}\n"
        f"    e.g.  mysql -h 127.0.0.1 -P {cluster.layout.czar_port} -u {user}{password} "
        "-e 'SELECT COUNT(*) FROM sample.Object'\n"
        f"({user} is an admin{'' if args.password else ' with an empty password: set one with --password or `skyshard user add`'})\n"
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


def require_admin(cluster: LocalCluster, name: str, password: str) -> None:
    """Ingest and user management need the credentials of an admin user."""
    from css.api import password_hash

    css = cluster.css()
    try:
        user = css.user(name)
    finally:
        css.close()
    if user is None or password_hash(password) != user.auth_string:
        raise ClusterError(f"access denied for user {name!r} (wrong user or password; see --user/--password)")
    if not user.is_admin:
        raise ClusterError(f"user {name!r} is not an admin")


def cmd_ingest(args: argparse.Namespace) -> int:
    cluster = LocalCluster(Path(args.home))
    require_admin(cluster, args.user, args.password)
    ingest_directory(cluster, Path(args.directory), replication=args.replication)
    return 0


def cmd_datagen(args: argparse.Namespace) -> int:
    from ingest.datagen import generate

    started = time.monotonic()
    generate(Path(args.out), objects=args.objects, sources_per_object=args.sources_per_object,
             database=args.database, seed=args.seed)
    print(f"wrote {args.objects:,} objects to {args.out} in {time.monotonic() - started:.1f}s")
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    from css import CssError

    cluster = LocalCluster(Path(args.home))
    require_admin(cluster, args.user, args.password)
    css = cluster.css()
    try:
        if args.action == "add":
            secret = args.new_password if args.new_password is not None else os.environ.get("SKYSHARD_NEW_PASSWORD", "")
            css.add_user(args.name, secret, admin=args.admin, replace=args.replace)
            for database in args.grant or []:
                css.grant(args.name, database)
            print(f"user {args.name} {'(admin) ' if args.admin else ''}saved")
        elif args.action == "remove":
            if args.name == args.user:
                raise ClusterError("refusing to remove the user running this command")
            css.remove_user(args.name)
            print(f"user {args.name} removed")
        elif args.action == "grant":
            for database in args.databases:
                css.grant(args.name, database)
            print(f"{args.name} may read {', '.join(args.databases)}")
        elif args.action == "revoke":
            for database in args.databases:
                css.revoke(args.name, database)
            print(f"{args.name} may no longer read {', '.join(args.databases)}")
        else:
            for user in css.users():
                grants = "*" if user.is_admin else ", ".join(sorted(user.grants)) or "-"
                print(f"{user.name:<24} {'admin' if user.is_admin else 'user':<6} {grants}")
    except CssError as exc:
        raise ClusterError(str(exc)) from exc
    finally:
        css.close()
    return 0


def add_credentials(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", default=os.environ.get("SKYSHARD_USER", "skyshard"),
                        help="admin user running the command (default $SKYSHARD_USER or skyshard)")
    parser.add_argument("--password", default=os.environ.get("SKYSHARD_PASSWORD", ""),
                        help="its password (default $SKYSHARD_PASSWORD or empty)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skyshard", description="Skyshard distributed query engine")
    parser.add_argument("--home", default=str(DEFAULT_HOME), help="cluster directory (default %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a local cluster (MariaDB instances, workers, czar)")
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--port", type=int, default=4040, help="MySQL port of the czar")
    up.add_argument("--no-sample", action="store_true", help="do not load the sample catalog")
    up.add_argument("--sample-objects", type=int, default=SAMPLE_OBJECTS)
    up.add_argument("--password", default=None,
                    help="password of the admin user `skyshard` (default: empty, or unchanged if it exists)")
    up.set_defaults(func=cmd_up)
    sub.add_parser("status", help="health of every component").set_defaults(func=cmd_status)
    sub.add_parser("down", help="stop everything `up` started").set_defaults(func=cmd_down)
    ingest = sub.add_parser("ingest", help="load a catalog directory in Qserv's layout")
    ingest.add_argument("directory")
    ingest.add_argument("--replication", type=int, default=1)
    add_credentials(ingest)
    ingest.set_defaults(func=cmd_ingest)
    datagen = sub.add_parser("datagen", help="write a synthetic Object/Source catalog")
    datagen.add_argument("out")
    datagen.add_argument("--objects", type=int, default=100000)
    datagen.add_argument("--sources-per-object", type=float, default=2.0)
    datagen.add_argument("--database", default="sample")
    datagen.add_argument("--seed", type=int, default=42)
    datagen.set_defaults(func=cmd_datagen)
    user = sub.add_parser("user", help="users and grants (needs an admin's --user/--password)")
    user_sub = user.add_subparsers(dest="action", required=True)
    add = user_sub.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--new-password", default=None, help="the new user's password (or $SKYSHARD_NEW_PASSWORD)")
    add.add_argument("--admin", action="store_true", help="admin role: every database, every query, ingest")
    add.add_argument("--grant", action="append", metavar="DATABASE", help="database it may read (repeatable)")
    add.add_argument("--replace", action="store_true", help="update an existing user's password and role")
    remove = user_sub.add_parser("remove", help="delete a user and its grants")
    remove.add_argument("name")
    for action in ("grant", "revoke"):
        grant = user_sub.add_parser(action, help=f"{action} read access to databases ('*' = all)")
        grant.add_argument("name")
        grant.add_argument("databases", nargs="+")
    user_sub.add_parser("list", help="users, roles and grants")
    for parser_ in user_sub.choices.values():
        add_credentials(parser_)
    user.set_defaults(func=cmd_user)
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
