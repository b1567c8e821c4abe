"""Private MariaDB server instances: initialise, start, stop, connect.

Owns the life cycle of the MariaDB servers that a local cluster (and the test
suite) runs: each instance lives in a directory of its own (data, socket, pid
file, log, spool directory for LOAD DATA / INTO OUTFILE), listens on its own
port, and needs no system service.  It does not know what the databases are
used for; css, the worker and the czar connect through :class:`ServerAddress`.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

MARIADB_MISSING_HELP = (
    "MariaDB server binaries were not found ({missing}). Install them with:\n"
    "    sudo apt-get update && sudo apt-get install -y mariadb-server mariadb-client\n"
    "(Skyshard runs its own private MariaDB instances; no system service is needed.)"
)

_SERVER_CANDIDATES = ("/usr/sbin/mariadbd", "/usr/sbin/mysqld", "/usr/bin/mariadbd")
_INSTALL_DB_CANDIDATES = ("/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db")


class MariaDBNotInstalled(RuntimeError):
    """MariaDB server binaries are missing on this machine."""


class MariaDBStartError(RuntimeError):
    """A MariaDB instance did not come up; the message carries its log tail."""


@dataclass(frozen=True)
class ServerAddress:
    """How to reach one MariaDB server (a unix socket wins over host/port)."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""
    socket: str | None = None

    def connect(self, database: str | None = None, **kwargs: Any) -> pymysql.connections.Connection:
        """A new PyMySQL connection (autocommit, utf8mb4, LOAD DATA LOCAL allowed)."""
        params: dict[str, Any] = {
            "user": self.user,
            "password": self.password,
            "database": database,
            "autocommit": True,
            "charset": "utf8mb4",
            "local_infile": True,
            "connect_timeout": 10,
            # Our MariaDB servers run without TLS (loopback, or the cluster's own network). Left to
            # itself PyMySQL >= 2.2 builds a TLS context with the system's CA certificates for every
            # connection (about 30 ms, holding the GIL), only to find the server offers none.
            "ssl_disabled": True,
        }
        if self.socket:
            params["unix_socket"] = self.socket
        else:
            params["host"] = self.host
            params["port"] = self.port
        params.update(kwargs)
        return pymysql.connect(**params)

    def sqlalchemy_url(self, database: str) -> str:
        """A SQLAlchemy URL for the pymysql driver."""
        from urllib.parse import quote_plus

        auth = self.user + (":" + quote_plus(self.password) if self.password else "")
        if self.socket:
            return f"mysql+pymysql://{auth}@localhost/{database}?unix_socket={self.socket}&charset=utf8mb4&local_infile=1"
        return f"mysql+pymysql://{auth}@{self.host}:{self.port}/{database}?charset=utf8mb4&local_infile=1"

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "socket": self.socket,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerAddress:
        return cls(
            host=str(data.get("host", "127.0.0.1")),
            port=int(data.get("port", 3306)),
            user=str(data.get("user", "root")),
            password=str(data.get("password", "")),
            socket=data.get("socket") or None,
        )


class ConnectionPool:
    """A bounded pool of autocommit PyMySQL connections to one server."""

    def __init__(self, address: ServerAddress, size: int, **connect_args: Any) -> None:
        self.address = address
        self.connect_args = connect_args  # extra PyMySQL arguments (e.g. client_flag)
        self._idle: queue.LifoQueue[pymysql.connections.Connection] = queue.LifoQueue(size)

    @contextmanager
    def connection(self) -> Iterator[pymysql.connections.Connection]:
        conn = self.take_idle() or self.address.connect(**self.connect_args)
        healthy = True
        try:
            yield conn
        except BaseException:
            healthy = False
            raise
        finally:
            self.give_back(conn, healthy)

    def take_idle(self) -> pymysql.connections.Connection | None:
        """An idle connection, or None when there is none (never connects, never blocks); give it
        back with :meth:`give_back`."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return None

    def give_back(self, conn: pymysql.connections.Connection, healthy: bool = True) -> None:
        """Return a connection from :meth:`take_idle` (closed instead when not ``healthy``)."""
        if healthy:
            try:
                self._idle.put_nowait(conn)
                return
            except queue.Full:
                pass
        try:
            conn.close()
        except Exception:
            pass  # already gone

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def find_binary(candidates: tuple[str, ...], name: str) -> str:
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return found
    raise MariaDBNotInstalled(MARIADB_MISSING_HELP.format(missing=name))


def check_installed() -> None:
    """Raise :class:`MariaDBNotInstalled` with the fix when binaries are missing."""
    find_binary(_SERVER_CANDIDATES, "mariadbd")
    find_binary(_INSTALL_DB_CANDIDATES, "mariadb-install-db")


def _template_dir() -> Path:
    """A freshly initialised data directory, made once per machine and copied."""
    server = find_binary(_SERVER_CANDIDATES, "mariadbd")
    version = subprocess.run(
        [server, "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[2]
    template = Path(tempfile.gettempdir()) / f"skyshard-mariadb-template-{version}"
    if (template / "mysql").is_dir() and (template / ".complete").exists():
        return template
    install_db = find_binary(_INSTALL_DB_CANDIDATES, "mariadb-install-db")
    staging = Path(tempfile.mkdtemp(prefix="skyshard-template-"))
    result = subprocess.run(
        [
            install_db,
            "--no-defaults",
            f"--datadir={staging}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise MariaDBStartError(f"mariadb-install-db failed:\n{result.stdout}\n{result.stderr}")
    (staging / ".complete").touch()
    try:
        staging.rename(template)
    except OSError:  # another process won the race
        shutil.rmtree(staging, ignore_errors=True)
    return template


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (reaping it first if it is our own exited child)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to end; True if it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.05)
    return not process_alive(pid)


class MariaDBInstance:
    """One private MariaDB server in ``base_dir`` listening on ``port``."""

    def __init__(
        self, base_dir: Path, port: int, *, bind_address: str = "127.0.0.1", volatile_ddl: bool = False
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.port = port
        self.bind_address = bind_address
        # A worker's chunk tables are created only by ingest, which is atomic at
        # the css level (a failed or interrupted ingest is dropped and re-run), and
        # are MyISAM, whose data files MariaDB never syncs anyway: so on a worker
        # its DDL is not synced to disk either: --debug-no-sync turns MariaDB's own
        # my_sync calls (DDL recovery log, .frm files, directories) into no-ops.
        # Each CREATE TABLE otherwise costs about six fdatasyncs: 2-5 ms alone, up
        # to 8 ms while the other workers load, and an ingest creates thousands.
        self.volatile_ddl = volatile_ddl
        self.data_dir = self.base_dir / "data"
        self.spool_dir = self.base_dir / "spool"
        self.socket = str(self.base_dir / "mysqld.sock")
        self.pid_file = self.base_dir / "mysqld.pid"
        self.log_file = self.base_dir / "mysqld.log"

    @property
    def address(self) -> ServerAddress:
        return ServerAddress(host="127.0.0.1", port=self.port, user="root", socket=self.socket)

    def initialise(self) -> None:
        """Create the data directory (copied from a template) if it does not exist."""
        if (self.data_dir / "mysql").is_dir():
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(_template_dir(), self.data_dir, dirs_exist_ok=True)
        (self.data_dir / ".complete").unlink(missing_ok=True)
        self.spool_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        server = find_binary(_SERVER_CANDIDATES, "mariadbd")
        return [
            server,
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            f"--bind-address={self.bind_address}",
            f"--pid-file={self.pid_file}",
            f"--log-error={self.log_file}",
            f"--secure-file-priv={self.spool_dir}",
            "--user=root",
            "--skip-name-resolve",
            "--local-infile=1",
            "--max-connections=1000",
            "--max-allowed-packet=256M",
            "--innodb-buffer-pool-size=256M",
            "--innodb-flush-log-at-trx-commit=2",
            # MyISAM's key cache: the director index of 5M objects (about 70 MB) and a worker's
            # chunk-table keys did not fit in 64 MB, so lookups of random keys read their blocks
            # from the page cache; a plain load's unique primary key is kept up to date through it
            # too (5M rows: 13-14 s with 64 MB, 9.7-10.5 s with 512 MB). Allocated as it is used.
            "--key-buffer-size=512M",
            # a worker holds two tables per chunk; with the default 400 definitions a full scan
            # over 1000+ chunks re-reads every .frm (1M rows, 1070 chunks: 1.0 s -> 0.6 s)
            "--table-definition-cache=4096",
            "--table-open-cache=4096",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            "--skip-log-bin",
            "--plugin-maturity=unknown",
            *self._sync_options(),
        ]

    def _sync_options(self) -> list[str]:
        return ["--debug-no-sync"] if self.volatile_ddl else []

    def start(self, timeout: float = 60.0) -> int:
        """Start the server in the background and wait until it answers; returns its pid."""
        self.initialise()
        if self.is_running():
            return self.pid() or 0
        with open(self.base_dir / "mysqld.stdout", "ab") as out:
            process = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise MariaDBStartError(
                    f"MariaDB in {self.base_dir} exited with {process.returncode}:\n{self.log_tail()}"
                )
            try:
                self.address.connect().close()
                return process.pid
            except pymysql.err.OperationalError:
                time.sleep(0.1)
        process.kill()
        raise MariaDBStartError(f"MariaDB in {self.base_dir} did not answer in {timeout}s:\n{self.log_tail()}")

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def is_running(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        if not process_alive(pid):
            return False
        try:
            self.address.connect().close()
            return True
        except pymysql.err.OperationalError:
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the server down cleanly (SIGTERM), then SIGKILL if it hangs."""
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            return
        if not wait_for_exit(pid, timeout):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
            wait_for_exit(pid, 5.0)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
