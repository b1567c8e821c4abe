"""A complete local cluster on one machine: MariaDB instances, workers and the czar.

Owns the layout of a cluster home directory (one sub-directory per MariaDB
instance, configs, logs, ``cluster.json`` with ports and pids), starting the
processes detached, health checks, and stopping everything it started.  Used
by ``skyshard up / status / down`` and by the test suite's cluster fixture.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from css import Css
from css.api import DEFAULT_CSS_DATABASE
from proto import worker_pb2 as pb
from proto import worker_pb2_grpc as pb_grpc
from skyshard.mariadb import (
    MariaDBInstance,
    ServerAddress,
    check_installed,
    process_alive,
    wait_for_exit,
)

DEFAULT_HOME = Path(os.environ.get("SKYSHARD_HOME", Path.home() / ".skyshard"))


class ClusterError(RuntimeError):
    pass


def czar_greets(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    """True when a MySQL server greeting (protocol 10) arrives: alive, without needing credentials."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        head = sock.recv(5)
    return len(head) == 5 and head[4] == 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ClusterLayout:
    """Ports of every component; saved as cluster.json in the home directory."""

    workers: int = 2
    czar_port: int = 4040
    http_port: int = 4048
    czar_db_port: int = 13306
    worker_grpc_ports: list[int] = field(default_factory=list)
    worker_db_ports: list[int] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    max_result_bytes: int = 0
    result_ttl: float = 7 * 86400.0  # seconds an untouched async result is kept
    cleanup_interval: float = 60.0
    admin_user: str = "skyshard"  # created by `up` (admin role, empty password unless given)
    task_timeout: float | None = None  # seconds a chunk task may take on a worker (None: no limit)
    # extra keys of worker configs, by worker id ("*": every worker), e.g. a test's {"fault": {...}}
    worker_config: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def standard(cls, workers: int) -> ClusterLayout:
        return cls(
            workers=workers,
            worker_grpc_ports=[15010 + i for i in range(workers)],
            worker_db_ports=[13310 + i for i in range(workers)],
        )

    @classmethod
    def on_free_ports(cls, workers: int) -> ClusterLayout:
        return cls(
            workers=workers,
            czar_port=free_port(),
            http_port=free_port(),
            czar_db_port=free_port(),
            worker_grpc_ports=[free_port() for _ in range(workers)],
            worker_db_ports=[free_port() for _ in range(workers)],
        )


def _stop_process_group(pid: int | None, sig: int) -> None:
    """Send ``sig`` to a process group we started and wait for it (SIGKILL after 15 s)."""
    if not pid or not process_alive(pid):
        return
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    if not wait_for_exit(pid, 15):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        wait_for_exit(pid, 5)


class LocalCluster:
    """Start, inspect and stop a local cluster rooted at ``home``."""

    def __init__(self, home: Path = DEFAULT_HOME, layout: ClusterLayout | None = None) -> None:
        self.home = Path(home).resolve()
        self.state_file = self.home / "cluster.json"
        if layout is None and self.state_file.exists():
            layout = ClusterLayout(**json.loads(self.state_file.read_text()))
        self.layout = layout or ClusterLayout.standard(2)

    # -- parts ----------------------------------------------------------------
    @property
    def czar_db(self) -> MariaDBInstance:
        return MariaDBInstance(self.home / "czar-db", self.layout.czar_db_port)

    def worker_db(self, index: int) -> MariaDBInstance:
        return MariaDBInstance(
            self.home / f"worker-{index + 1}-db", self.layout.worker_db_ports[index], volatile_ddl=True
        )

    def worker_id(self, index: int) -> str:
        return f"worker-{index + 1}"

    def worker_address(self, index: int) -> str:
        return f"127.0.0.1:{self.layout.worker_grpc_ports[index]}"

    def css(self) -> Css:
        return Css.from_url(self.czar_db.address.sqlalchemy_url(DEFAULT_CSS_DATABASE))

    def save(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(asdict(self.layout), indent=2))

    # -- start ----------------------------------------------------------------
    def up(self, *, log: Any = print, admin_password: str | None = None) -> None:
        """Start everything; the admin user is created (empty password) if absent, or given ``admin_password``.

        If any part fails to start (e.g. a port taken meanwhile), what was started is stopped again.
        """
        check_installed()
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        self.save()
        try:
            self._up(log, admin_password)
        except BaseException:
            self.down(log=log)
            raise

    def _up(self, log: Any, admin_password: str | None) -> None:
        instances = [self.czar_db] + [self.worker_db(i) for i in range(self.layout.workers)]
        for instance in instances:
            log(f"starting MariaDB in {instance.base_dir} (port {instance.port})")
            self.layout.pids[instance.base_dir.name] = instance.start()
        self._install_functions(instances)
        czar_address = self.czar_db.address
        Css.create_database_if_missing(czar_address.sqlalchemy_url(""), DEFAULT_CSS_DATABASE)
        css = self.css()
        try:
            css.migrate()
            if admin_password is not None or css.user(self.layout.admin_user) is None:
                css.add_user(self.layout.admin_user, admin_password or "", admin=True, replace=True)
            for index in range(self.layout.workers):
                css.register_worker(self.worker_id(index), self.worker_address(index))
        finally:
            css.close()
        for index in range(self.layout.workers):
            self._start_worker(index)
        self._start_czar()
        self.save()
        self.wait_ready()

    def _install_functions(self, instances: list[MariaDBInstance]) -> None:
        try:
            from worker import scisql
        except ImportError:
            return
        for instance in instances:
            connection = instance.address.connect()
            try:
                scisql.ensure_installed(connection)
            finally:
                connection.close()

    def _spawn(self, name: str, module: str, config: dict[str, Any]) -> None:
        config_path = self.home / f"{name}.json"
        config_path.write_text(json.dumps(config, indent=2))
        pid = self.layout.pids.get(name)
        if pid and process_alive(pid):
            return
        log_path = self.home / "logs" / f"{name}.log"
        with open(log_path, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", module, "--config", str(config_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(Path(__file__).resolve().parents[1]),
            )
        self.layout.pids[name] = process.pid

    def _start_worker(self, index: int) -> None:
        db = self.worker_db(index)
        self._spawn(
            self.worker_id(index),
            "worker",
            {
                "worker_id": self.worker_id(index),
                "listen": f"127.0.0.1:{self.layout.worker_grpc_ports[index]}",
                "mariadb": db.address.as_dict(),
                "spool_dir": str(db.spool_dir),
                # the workers share this machine's cores: scan statements of all of them, one per core
                "max_tasks": max(1, (os.cpu_count() or 1) // len(self.layout.worker_grpc_ports)),
                **self.layout.worker_config.get("*", {}),
                **self.layout.worker_config.get(self.worker_id(index), {}),
            },
        )

    def _start_czar(self) -> None:
        self._spawn(
            "czar",
            "czar",
            {
                "listen": f"0.0.0.0:{self.layout.czar_port}",
                "http_listen": f"0.0.0.0:{self.layout.http_port}",
                "mariadb": self.czar_db.address.as_dict(),
                "spool_dir": str(self.czar_db.spool_dir),
                "max_result_bytes": self.layout.max_result_bytes,
                "result_ttl": self.layout.result_ttl,
                "cleanup_interval": self.layout.cleanup_interval,
                "task_timeout": self.layout.task_timeout,
            },
        )

    def restart_czar(self, *, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        """Stop the czar (SIGTERM, or e.g. SIGKILL for a crash) and start it again with the layout's config."""
        _stop_process_group(self.layout.pids.pop("czar", None), sig)
        self._start_czar()
        self.save()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            report = self.status()
            if all(item["ok"] for item in report):
                return
            for item in report:
                if item["kind"] == "process" and not item["ok"] and item.get("exited"):
                    raise ClusterError(f"{item['name']} exited; see {self.home / 'logs' / (item['name'] + '.log')}")
            time.sleep(0.2)
        failing = [item["name"] for item in self.status() if not item["ok"]]
        raise ClusterError(f"cluster not ready after {timeout}s: {', '.join(failing)}")

    # -- status ---------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        report: list[dict[str, Any]] = []
        instances = [self.czar_db] + [self.worker_db(i) for i in range(self.layout.workers)]
        for instance in instances:
            report.append(
                {"name": instance.base_dir.name, "kind": "mariadb", "port": instance.port, "ok": instance.is_running()}
            )
        for index in range(self.layout.workers):
            name = self.worker_id(index)
            pid = self.layout.pids.get(name)
            alive = bool(pid and process_alive(pid))
            detail = ""
            ok = False
            if alive:
                try:
                    with grpc.insecure_channel(self.worker_address(index)) as channel:
                        reply = pb_grpc.WorkerStub(channel).Status(pb.StatusRequest(), timeout=2)
                    ok = reply.database_ok
                    detail = f"{reply.running_tasks} running, {reply.tasks_completed} completed"
                    if not reply.database_ok:
                        detail = reply.database_error
                except grpc.RpcError as exc:
                    detail = str(exc.code())  # type: ignore[attr-defined]
            report.append(
                {"name": name, "kind": "process", "port": self.layout.worker_grpc_ports[index], "pid": pid,
                 "ok": ok, "exited": not alive, "detail": detail}
            )
        pid = self.layout.pids.get("czar")
        alive = bool(pid and process_alive(pid))
        ok = False
        detail = ""
        if alive:
            try:
                ok = czar_greets(self.layout.czar_port)
                detail = "" if ok else "no MySQL greeting"
            except OSError as exc:
                detail = str(exc)
        report.append({"name": "czar", "kind": "process", "port": self.layout.czar_port, "pid": pid, "ok": ok,
                       "exited": not alive, "detail": detail})
        return report

    # -- stop -----------------------------------------------------------------
    def down(self, *, log: Any = print) -> None:
        names = ["czar"] + [self.worker_id(i) for i in range(self.layout.workers)]
        for name in names:
            pid = self.layout.pids.get(name)
            if pid and process_alive(pid):
                log(f"stopping {name} (pid {pid})")
                try:
                    os.killpg(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for name in names:
            pid = self.layout.pids.get(name)
            if pid and not wait_for_exit(pid, 10):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                wait_for_exit(pid, 5)
        for instance in [self.czar_db] + [self.worker_db(i) for i in range(self.layout.workers)]:
            if instance.pid() is not None:
                log(f"stopping MariaDB in {instance.base_dir}")
            instance.stop()
        self.layout.pids = {}
        if self.home.exists():
            self.save()

    def stop_worker(self, index: int, *, sig: int = signal.SIGTERM) -> None:
        """Stop one worker process (SIGKILL for a crash) and wait until it is gone."""
        name = self.worker_id(index)
        _stop_process_group(self.layout.pids.pop(name, None), sig)
        self.save()

    def start_worker(self, index: int, *, timeout: float = 60.0) -> None:
        """(Re)start one worker process with the layout's config, e.g. after it was killed."""
        pid = self.layout.pids.get(self.worker_id(index))
        if pid and not process_alive(pid):
            self.layout.pids.pop(self.worker_id(index), None)
        self._start_worker(index)
        self.save()
        self.wait_ready(timeout)

    def czar_address(self) -> ServerAddress:
        return ServerAddress(host="127.0.0.1", port=self.layout.czar_port, user="skyshard")
