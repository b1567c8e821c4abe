"""Entrypoint of the Skyshard image: one image, the role is the first argument.

Roles (configured through environment variables, see ``docker/compose.yaml``):

``mariadb``
    A MariaDB server for the czar or a worker.  Data in
    ``/var/lib/skyshard/data`` (a volume), LOAD DATA / INTO OUTFILE spool in
    ``/var/lib/skyshard/spool`` (a volume a worker shares with its MariaDB).
    At start it lets ``root`` connect from the private network
    (``SKYSHARD_DB_PASSWORD``, empty by default) and registers the scisql
    functions (the library is built into the image).  ``SKYSHARD_VOLATILE_DDL_LOG=1``
    (worker MariaDBs) leaves DDL unsynced (``--debug-no-sync``), as local worker
    MariaDBs do: their chunk tables are MyISAM and re-loadable by ingest.
``czar``
    Creates and migrates css in ``SKYSHARD_CZAR_DB`` (host:port), registers
    ``SKYSHARD_WORKERS`` (``id=host:port,...``: the addresses the czar and
    the ingest tool dial), then runs the czar on 4040 (MySQL) and 4048 (HTTP).
``worker``
    Runs worker ``SKYSHARD_WORKER_ID`` on gRPC port 15010 over the MariaDB at
    ``SKYSHARD_WORKER_DB`` (host:port) whose spool volume it shares.
``ingest DIR [--replication N]``
    ``skyshard ingest`` against the cluster whose czar MariaDB is
    ``SKYSHARD_CZAR_DB``; workers are found in css.
``skyshard ...``
    Any ``skyshard`` command (e.g. ``skyshard datagen /data/cat``).
``health ROLE``
    Exit 0 when the role in this container answers (compose health checks).

Anything else is executed as a command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BASE = Path(os.environ.get("SKYSHARD_BASE", "/var/lib/skyshard"))
SPOOL = BASE / "spool"
READY_MARKER = BASE / "ready"


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        sys.exit(f"entrypoint: environment variable {name} is required")
    return value


def db_address(name: str) -> Any:
    """The ServerAddress of the MariaDB named by env var ``name`` (host:port)."""
    from skyshard.mariadb import ServerAddress

    host, _, port = env(name).rpartition(":")
    return ServerAddress(host=host, port=int(port), user="root", password=env("SKYSHARD_DB_PASSWORD", ""))


def wait_for_db(address: Any, timeout: float = 300.0) -> None:
    """Wait until the MariaDB answers and has finished its own start-up (ready marker via a table)."""
    import pymysql

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            connection = address.connect(connect_timeout=3)
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT COUNT(*) FROM mysql.func WHERE name = 'scisql_angSep'")
                    if cursor.fetchone()[0]:
                        return
            finally:
                connection.close()
        except pymysql.MySQLError as exc:
            last = exc
        time.sleep(1)
    sys.exit(f"entrypoint: MariaDB at {address.host}:{address.port} not ready after {timeout:.0f}s: {last}")


def run_child(command: list[str]) -> int:
    """Run ``command`` as our child, forwarding SIGTERM/SIGINT; its exit status."""
    child = subprocess.Popen(command)

    def forward(signum: int, _frame: Any) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child.wait()


# -- roles --------------------------------------------------------------------
def role_mariadb() -> int:
    from skyshard.mariadb import MariaDBInstance, ServerAddress
    from worker import scisql

    READY_MARKER.unlink(missing_ok=True)
    port = int(env("SKYSHARD_DB_PORT", "3306"))
    volatile = env("SKYSHARD_VOLATILE_DDL_LOG", "0") == "1"
    instance = MariaDBInstance(BASE, port, bind_address="0.0.0.0", volatile_ddl=volatile)
    instance.initialise()
    SPOOL.mkdir(parents=True, exist_ok=True)
    command = instance.command()
    child = subprocess.Popen(command)
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    local = ServerAddress(user="root", socket=instance.socket)
    deadline = time.monotonic() + 120
    while True:
        if child.poll() is not None:
            print(instance.log_tail(40), file=sys.stderr)
            return child.returncode or 1
        try:
            connection = local.connect(connect_timeout=2)
            break
        except Exception:
            if time.monotonic() > deadline:
                print(instance.log_tail(40), file=sys.stderr)
                child.kill()
                return 1
            time.sleep(0.2)
    try:
        password = env("SKYSHARD_DB_PASSWORD", "")
        with connection.cursor() as cursor:
            cursor.execute("CREATE USER IF NOT EXISTS 'root'@'%%' IDENTIFIED BY %s", (password,))
            cursor.execute("ALTER USER 'root'@'%%' IDENTIFIED BY %s", (password,))
            cursor.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION")
        scisql.ensure_installed(connection)
    finally:
        connection.close()
    READY_MARKER.write_text(str(child.pid))
    print(f"mariadb ready on port {port}", flush=True)
    code = child.wait()
    READY_MARKER.unlink(missing_ok=True)
    if code and not stopping:
        print(instance.log_tail(40), file=sys.stderr)
    return code


def write_config(name: str, config: dict[str, Any]) -> Path:
    path = BASE / f"{name}.json"
    BASE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return path


def parse_workers(text: str) -> list[tuple[str, str]]:
    workers = []
    for item in text.split(","):
        item = item.strip()
        if item:
            worker_id, _, address = item.partition("=")
            workers.append((worker_id.strip(), address.strip()))
    return workers


def ensure_admin(css: Any) -> None:
    """Create the admin user (``SKYSHARD_ADMIN_USER``, default ``skyshard``) as ``skyshard up`` does.

    Empty password unless ``SKYSHARD_ADMIN_PASSWORD`` is set (then it is (re)set at every start).
    Does nothing with a css that has no users.
    """
    if not hasattr(css, "add_user"):
        return
    name = env("SKYSHARD_ADMIN_USER", "skyshard")
    password = os.environ.get("SKYSHARD_ADMIN_PASSWORD")
    if password is not None or css.user(name) is None:
        css.add_user(name, password or "", admin=True, replace=True)


def role_czar() -> int:
    from css import Css
    from css.api import DEFAULT_CSS_DATABASE

    address = db_address("SKYSHARD_CZAR_DB")
    wait_for_db(address)
    Css.create_database_if_missing(address.sqlalchemy_url(""), DEFAULT_CSS_DATABASE)
    css = Css.from_url(address.sqlalchemy_url(DEFAULT_CSS_DATABASE))
    try:
        css.migrate()
        ensure_admin(css)
        for worker_id, worker_address in parse_workers(env("SKYSHARD_WORKERS", "")):
            css.register_worker(worker_id, worker_address)
            print(f"registered {worker_id} at {worker_address}", flush=True)
    finally:
        css.close()
    SPOOL.mkdir(parents=True, exist_ok=True)
    config = {
        "listen": f"0.0.0.0:{env('SKYSHARD_CZAR_PORT', '4040')}",
        "http_listen": f"0.0.0.0:{env('SKYSHARD_HTTP_PORT', '4048')}",
        "mariadb": address.as_dict(),
        "spool_dir": str(SPOOL),
        "max_result_bytes": int(env("SKYSHARD_MAX_RESULT_BYTES", "0")),
    }
    if os.environ.get("SKYSHARD_TASK_TIMEOUT"):
        config["task_timeout"] = float(env("SKYSHARD_TASK_TIMEOUT"))
    path = write_config("czar", config)
    return run_child([sys.executable, "-m", "czar", "--config", str(path)])


def role_worker() -> int:
    address = db_address("SKYSHARD_WORKER_DB")
    wait_for_db(address)
    SPOOL.mkdir(parents=True, exist_ok=True)
    path = write_config(
        "worker",
        {
            "worker_id": env("SKYSHARD_WORKER_ID"),
            "listen": f"0.0.0.0:{env('SKYSHARD_WORKER_PORT', '15010')}",
            "mariadb": address.as_dict(),
            "spool_dir": str(SPOOL),
            "max_tasks": int(env("SKYSHARD_MAX_TASKS", "0")),  # 0: the container's cores
        },
    )
    return run_child([sys.executable, "-m", "worker", "--config", str(path)])


def remote_cluster(address: Any) -> Any:
    """A LocalCluster whose czar MariaDB is the remote server at ``address`` (for ``skyshard ingest``)."""
    from skyshard.cluster import LocalCluster
    from skyshard.mariadb import MariaDBInstance, ServerAddress

    class RemoteDb(MariaDBInstance):
        @property
        def address(self) -> ServerAddress:
            return address  # type: ignore[no-any-return]

    class RemoteCluster(LocalCluster):
        @property
        def czar_db(self) -> MariaDBInstance:
            return RemoteDb(BASE / "czar-db", address.port)

    return RemoteCluster(BASE / "ingest")


def role_ingest(args: list[str]) -> int:
    import argparse

    from skyshard.cli import ingest_directory

    parser = argparse.ArgumentParser(prog="ingest")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--replication", type=int, default=1)
    options = parser.parse_args(args)
    address = db_address("SKYSHARD_CZAR_DB")
    wait_for_db(address)
    ingest_directory(remote_cluster(address), options.directory, replication=options.replication)
    return 0


def role_health(role: str) -> int:
    if role == "mariadb":
        from skyshard.mariadb import ServerAddress

        if not READY_MARKER.exists():
            return 1
        ServerAddress(user="root", socket=str(BASE / "mysqld.sock")).connect(connect_timeout=2).close()
        return 0
    if role == "worker":
        import grpc

        from proto import worker_pb2 as pb
        from proto import worker_pb2_grpc as pb_grpc

        with grpc.insecure_channel(f"127.0.0.1:{env('SKYSHARD_WORKER_PORT', '15010')}") as channel:
            reply = pb_grpc.WorkerStub(channel).Status(pb.StatusRequest(), timeout=3)
        return 0 if reply.database_ok else 1
    if role == "czar":  # a MySQL server greeting (protocol 10): alive, no credentials needed
        import socket

        with socket.create_connection(("127.0.0.1", int(env("SKYSHARD_CZAR_PORT", "4040"))), timeout=3) as sock:
            head = sock.recv(5)
        return 0 if len(head) == 5 and head[4] == 10 else 1
    print(f"unknown role {role!r}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    role, rest = argv[0], argv[1:]
    if role == "mariadb":
        return role_mariadb()
    if role == "czar":
        return role_czar()
    if role == "worker":
        return role_worker()
    if role == "ingest":
        return role_ingest(rest)
    if role == "health":
        try:
            return role_health(rest[0] if rest else "")
        except Exception as exc:
            print(f"unhealthy: {exc}", file=sys.stderr)
            return 1
    if role == "skyshard":
        from skyshard.cli import main as cli_main

        return cli_main(rest)
    os.execvp(role, argv)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
