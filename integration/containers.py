"""The container suite: build the image, run a cluster in containers, test it.

Drives the topology of ``docker/compose.yaml`` with plain ``docker run`` /
``docker network`` (no compose tool needed): the czar and its MariaDB, N
workers each with its MariaDB (sharing a spool volume), on a private network
of its own; only the czar's MySQL port is published, on 127.0.0.1.  Then:

1. ingests ``qserv-case01`` with the image's ``ingest`` command, in a container;
2. runs the conformance suite through the published port, sync and async,
   against a reference MariaDB (a local instance when MariaDB is installed,
   else a container of the same image);
3. fault scenario, on synthetic catalogs (``ingest.datagen``, ingested in a
   container): with replication 2, a worker container is stopped in the
   middle of a full-scan query and the query must still return the right
   answer from the replicas; with replication 1 the query must fail with an
   error naming the missing chunk(s) and the worker, and succeed again once
   the worker container is started again.

Everything it creates is named ``<prefix>-*`` and removed at the end (unless
``--keep``).  Exit status 0 when every step passed.

Usage::

    python -m integration.containers                              # build, run everything
    python -m integration.containers --base-image skyshard-base:bookworm --workers 3
    python -m integration.containers --skip-build --image skyshard:test --only fault
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CASE = REPO.parent / "shared" / "datasets" / "qserv-case01"
ENTRYPOINT = "/opt/skyshard/docker/entrypoint.py"


class SuiteFailure(RuntimeError):
    """A step of the container suite failed."""


def log(message: str) -> None:
    print(f"[containers {time.strftime('%H:%M:%S')}] {message}", flush=True)


def docker(*args: str, check: bool = True, capture: bool = True, timeout: float | None = 600) -> str:
    """Run ``docker ARGS``; its stdout (stripped).  Raises SuiteFailure with stderr on failure."""
    result = subprocess.run(["docker", *args], capture_output=capture, text=True, timeout=timeout)
    if check and result.returncode != 0:
        detail = (result.stderr or "").strip() if capture else ""
        raise SuiteFailure(f"docker {' '.join(args[:3])} ... failed ({result.returncode}): {detail[-2000:]}")
    return (result.stdout or "").strip()


def docker_available() -> str | None:
    """None when a docker daemon answers, else the reason it does not."""
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if result.returncode != 0:
        return (result.stderr or result.stdout).strip().splitlines()[-1] if (result.stderr or result.stdout) else "docker info failed"
    return None


def extra_ca_certs() -> str:
    """CA certificates this machine added locally (a TLS-intercepting proxy's), for pip in the build."""
    directory = Path(os.environ.get("SKYSHARD_EXTRA_CA_DIR", "/usr/local/share/ca-certificates"))
    if not directory.is_dir():
        return ""
    return "".join(path.read_text(errors="replace") for path in sorted(directory.rglob("*.crt")))


def build_image(image: str, base_image: str) -> None:
    log(f"building {image} from docker/Dockerfile (BASE_IMAGE={base_image})")
    started = time.monotonic()
    docker("build", "-q", "-f", str(REPO / "docker" / "Dockerfile"), "--build-arg", f"BASE_IMAGE={base_image}",
           "--build-arg", f"EXTRA_CA_CERTS={extra_ca_certs()}", "-t", image, str(REPO), timeout=3600)
    log(f"image built in {time.monotonic() - started:.0f} s")


@dataclass
class ContainerCluster:
    """The compose topology, started with ``docker run`` under a name prefix."""

    image: str
    workers: int = 2
    prefix: str = field(default_factory=lambda: f"skyshard-it-{os.getpid()}")
    czar_port: int = 0  # the published MySQL port on 127.0.0.1, known after start()
    http_port: int = 0
    started: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    tools: int = 0

    @property
    def network(self) -> str:
        return f"{self.prefix}-net"

    def name(self, service: str) -> str:
        return f"{self.prefix}-{service}"

    def worker_id(self, index: int) -> str:
        return f"worker-{index + 1}"

    # -- start ----------------------------------------------------------------
    def _volume(self, service: str) -> str:
        volume = f"{self.prefix}-{service}"
        docker("volume", "create", volume)
        self.volumes.append(volume)
        return volume

    def _run(self, service: str, role: str, env: dict[str, str], mounts: list[str],
             publish: list[str] | None = None) -> None:
        name = self.name(service)
        args = ["run", "-d", "--name", name, "--hostname", service, "--network", self.network,
                "--network-alias", service, "--health-cmd", f"python {ENTRYPOINT} health {role}",
                "--health-interval", "2s", "--health-timeout", "5s", "--health-retries", "150"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        for mount in mounts:
            args += ["-v", mount]
        for port in publish or []:
            args += ["-p", port]
        docker(*args, self.image, role)
        self.started.append(name)

    def start(self) -> None:
        log(f"network {self.network}; czar + {self.workers} workers, each with its MariaDB")
        docker("network", "create", self.network)
        self._run("czar-db", "mariadb", {}, [f"{self._volume('czar-data')}:/var/lib/skyshard/data"])
        for index in range(self.workers):
            wid = self.worker_id(index)
            spool = self._volume(f"{wid}-spool")
            self._run(f"{wid}-db", "mariadb", {"SKYSHARD_VOLATILE_DDL_LOG": "1"},
                      [f"{self._volume(f'{wid}-data')}:/var/lib/skyshard/data", f"{spool}:/var/lib/skyshard/spool"])
            self._run(wid, "worker", {"SKYSHARD_WORKER_ID": wid, "SKYSHARD_WORKER_DB": f"{wid}-db:3306"},
                      [f"{spool}:/var/lib/skyshard/spool"])
        workers = ",".join(f"{self.worker_id(i)}={self.worker_id(i)}:15010" for i in range(self.workers))
        self._run("czar", "czar", {"SKYSHARD_CZAR_DB": "czar-db:3306", "SKYSHARD_WORKERS": workers},
                  [], publish=["127.0.0.1::4040"])
        self.wait_healthy(self.started)
        mapping = docker("port", self.name("czar"), "4040/tcp").splitlines()[0]
        self.czar_port = int(mapping.rpartition(":")[2])
        log(f"cluster healthy; czar MySQL port published on 127.0.0.1:{self.czar_port}")

    def health(self, name: str) -> str:
        return docker("inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                      name, check=False)

    def wait_healthy(self, names: list[str], timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            for name in list(pending):
                state = self.health(name)
                if state.endswith("healthy") and not state.endswith("unhealthy"):
                    pending.remove(name)
                elif state.startswith("exited") or state.startswith("dead"):
                    raise SuiteFailure(f"{name} exited:\n{self.logs(name)}")
            if pending and time.monotonic() > deadline:
                raise SuiteFailure(f"not healthy after {timeout:.0f} s: {', '.join(pending)}\n"
                                   + "\n".join(self.logs(n) for n in pending))
            if pending:
                time.sleep(1)

    def logs(self, name: str, tail: int = 40, since: str | None = None) -> str:
        extra = ["--since", since] if since else []
        result = subprocess.run(["docker", "logs", "--tail", str(tail), *extra, name], capture_output=True, text=True)
        return f"--- {name} ---\n{result.stdout}{result.stderr}"

    # -- tools ----------------------------------------------------------------
    def tool(self, *args: str, mounts: list[str] | None = None) -> str:
        """Run a one-shot container of the image on the private network (ingest, datagen)."""
        self.tools += 1
        name = self.name(f"tool-{self.tools}")
        self.started.append(name)
        command = ["run", "--rm", "--name", name, "--network", self.network, "-e", "SKYSHARD_CZAR_DB=czar-db:3306"]
        for mount in mounts or []:
            command += ["-v", mount]
        return docker(*command, self.image, *args, timeout=1800)

    def connect(self, database: str | None = None) -> Any:
        return pymysql.connect(host="127.0.0.1", port=self.czar_port, user="skyshard", database=database,
                               local_infile=False, connect_timeout=10, read_timeout=600)

    def stop_worker(self, index: int) -> None:
        """``docker stop`` (SIGTERM, SIGKILL after 2 s): what ``docker compose stop`` does, without its start-up delay."""
        docker("stop", "-t", "2", self.name(self.worker_id(index)))

    def start_worker(self, index: int) -> None:
        name = self.name(self.worker_id(index))
        docker("start", name)
        self.wait_healthy([name], timeout=120)

    def containers(self) -> list[str]:
        """Every container of the cluster (for logs on failure)."""
        return list(self.started)

    # -- stop -----------------------------------------------------------------
    def remove(self) -> None:
        for name in reversed(self.started):
            docker("rm", "-f", "-v", name, check=False)
        for volume in self.volumes:
            docker("volume", "rm", "-f", volume, check=False)
        docker("network", "rm", self.network, check=False)


def compose_command() -> list[str] | None:
    """``docker compose`` (v2) or ``docker-compose`` (v1), whichever works; None if neither."""
    for command in (["docker", "compose"], ["docker-compose"]):
        try:
            if subprocess.run([*command, "version"], capture_output=True, timeout=60).returncode == 0:
                return command
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


@dataclass
class ComposeCluster(ContainerCluster):
    """``docker/compose.yaml`` itself, as a compose project (two workers), czar published on 127.0.0.1."""

    compose: list[str] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)

    def _compose(self, *args: str, check: bool = True) -> str:
        env = dict(os.environ, SKYSHARD_IMAGE=self.image, SKYSHARD_BIND="127.0.0.1",
                   SKYSHARD_MYSQL_PORT=str(self.czar_port), SKYSHARD_HTTP_PORT=str(self.http_port))
        command = [*self.compose, "-p", self.prefix, "-f", str(REPO / "docker" / "compose.yaml"), *args]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if check and result.returncode != 0:
            raise SuiteFailure(f"{' '.join(command[:2])} {' '.join(args)} failed: {result.stderr.strip()[-2000:]}")
        return result.stdout.strip()

    @property
    def network(self) -> str:
        networks = docker("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                          self.name("czar-db"))
        return networks.split()[0]

    def name(self, service: str) -> str:
        if service not in self.ids:
            found = self._compose("ps", "-q", service, check=False).splitlines()
            if not found:
                return f"{self.prefix}-{service}"  # a tool container, not a compose service
            self.ids[service] = found[0]
        return self.ids[service]

    def start(self) -> None:
        from skyshard.cluster import free_port

        self.workers = 2
        self.czar_port, self.http_port = free_port(), free_port()
        log(f"compose project {self.prefix} from docker/compose.yaml ({' '.join(self.compose)}); "
            f"czar on 127.0.0.1:{self.czar_port}")
        self._compose("up", "-d")
        services = ["czar-db", "czar"] + [f"worker-{i}{db}" for i in (1, 2) for db in ("-db", "")]
        self.wait_healthy([self.name(service) for service in services])
        log("compose services healthy")

    def containers(self) -> list[str]:
        return list(self.ids.values()) + self.started

    def remove(self) -> None:
        for name in self.started:
            docker("rm", "-f", "-v", name, check=False)
        self._compose("down", "-v", "--remove-orphans", check=False)


# -- reference ------------------------------------------------------------------
@contextlib.contextmanager
def reference_server(cluster: ContainerCluster) -> Iterator[Any]:
    """A reference MariaDB: a local private instance, else a container published on 127.0.0.1."""
    from skyshard.cluster import free_port
    from skyshard.mariadb import (
        MariaDBInstance,
        MariaDBNotInstalled,
        ServerAddress,
        check_installed,
    )

    try:
        check_installed()
        local = True
    except MariaDBNotInstalled:
        local = False
    if local:
        with tempfile.TemporaryDirectory(prefix="skyshard-containers-ref-") as scratch:
            instance = MariaDBInstance(Path(scratch), free_port())
            instance.start()
            try:
                yield instance.address
            finally:
                instance.stop()
        return
    cluster._run("reference", "mariadb", {}, [], publish=["127.0.0.1::3306"])
    cluster.wait_healthy([cluster.name("reference")])
    port = int(docker("port", cluster.name("reference"), "3306/tcp").splitlines()[0].rpartition(":")[2])
    yield ServerAddress(host="127.0.0.1", port=port, user="root")


# -- steps ------------------------------------------------------------------------
def step_ingest_case(cluster: ContainerCluster, case_dir: Path) -> None:
    log(f"ingesting {case_dir.name} with the image's ingest command")
    started = time.monotonic()
    output = cluster.tool("ingest", "/data/case", mounts=[f"{case_dir.resolve()}:/data/case:ro"])
    log(f"ingested in {time.monotonic() - started:.1f} s\n" + output)


NOT_ASYNC = {"2100_groupByChunkId", "3008_showColumns"}


def step_conformance(cluster: ContainerCluster, case_dir: Path, reference: Any) -> list[str]:
    from ingest.config import load_case_directory
    from integration import catalogs
    from integration.conformance import run_cases
    from integration.corpus import top_level_queries

    database = load_case_directory(case_dir)[0].name
    catalogs.load_reference(reference, case_dir)
    time.sleep(2.5)  # the czar caches css for 2 s
    cases = top_level_queries(case_dir, database)
    failures: list[str] = []
    for label, async_path in (("sync", False), ("async", True)):
        if async_path:  # SHOW cannot be SUBMITted; as in tests/test_conformance.py
            cases = [c for c in cases if c.name not in NOT_ASYNC]
        log(f"conformance ({label}) through 127.0.0.1:{cluster.czar_port}: {len(cases)} queries")
        outcomes = run_cases(cases, lambda: cluster.connect(database), lambda: reference.connect(database=database),
                             report=lambda line: print("  " + line, flush=True), async_path=async_path)
        failures += [f"conformance {label}: {o.case.name}: {o.detail}" for o in outcomes if not o.passed]
        if not outcomes:
            failures.append(f"conformance {label}: no queries found in {case_dir}")
    return failures


FULL_SCAN = "SELECT COUNT(*) AS n, SUM(objectId) AS s, ROUND(SUM(ra), 6) AS r FROM {db}.Object"
SLOW_SCAN = "SELECT COUNT(*) AS n, SUM(objectId) AS s, ROUND(SUM(ra), 6) AS r FROM {db}.Object WHERE SLEEP({pause}) = 0"


def _query(cluster: ContainerCluster, sql: str) -> tuple[Any, ...]:
    connection = cluster.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return tuple(cursor.fetchone())
    finally:
        connection.close()


def _query_once_back(cluster: ContainerCluster, sql: str, timeout: float,
                     ) -> tuple[tuple[Any, ...] | None, BaseException | None]:
    """(row, None) of ``sql`` once it succeeds, trying every second for ``timeout`` seconds after
    a worker restarted (the czar reconnects to it within its backoff); else (None, the last error)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _query(cluster, sql), None
        except pymysql.MySQLError as exc:
            if time.monotonic() > deadline:
                return None, exc
            time.sleep(1)


def _query_progress(cluster: ContainerCluster, marker: str) -> tuple[int, int] | None:
    """(chunks completed, chunks total) of the executing query whose text contains ``marker``."""
    connection = cluster.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT CHUNKS_COMPLETED, CHUNKS_TOTAL FROM information_schema.queries "
                           "WHERE STATUS = 'EXECUTING' AND QUERY LIKE %s ORDER BY ID DESC LIMIT 1",
                           (f"%{marker}%",))
            row = cursor.fetchone()
    finally:
        connection.close()
    return (int(row[0] or 0), int(row[1] or 0)) if row else None


def _run_with_fault(cluster: ContainerCluster, sql: str, marker: str, victim: int,
                    ) -> tuple[tuple[Any, ...] | None, BaseException | None, tuple[int, int]]:
    """Run ``sql`` in a thread; stop worker ``victim`` once some but not all chunks are done."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["row"] = _query(cluster, sql)
        except BaseException as exc:  # reported to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    progress: tuple[int, int] | None = None
    while thread.is_alive():
        progress = _query_progress(cluster, marker)
        if progress and progress[1] and 0 < progress[0] < progress[1] // 2 + 1:
            break
        if time.monotonic() > deadline:
            raise SuiteFailure("the fault query never reached the middle of its chunks")
        time.sleep(0.05)
    if not thread.is_alive() and progress is None:
        raise SuiteFailure("the fault query finished before a worker could be stopped: make it slower")
    assert progress is not None
    log(f"stopping {cluster.worker_id(victim)} at {progress[0]}/{progress[1]} chunks")
    cluster.stop_worker(victim)
    thread.join(300)
    if thread.is_alive():
        raise SuiteFailure("the fault query did not finish within 300 s of the worker stop")
    return outcome.get("row"), outcome.get("error"), progress


def step_fault(cluster: ContainerCluster, objects: int, pause: float) -> list[str]:
    from ingest.datagen import generate

    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="skyshard-containers-fault-") as scratch:
        for database, replication in (("fault_r2", 2), ("fault_r1", 1)):
            log(f"datagen {objects} objects into {database}, ingest with replication {replication}")
            generate(Path(scratch) / database, objects=objects, sources_per_object=0.0, database=database,
                     num_stripes=6, num_sub_stripes=4, overlap=0.2)
            cluster.tool("ingest", f"/data/{database}", "--replication", str(replication),
                         mounts=[f"{scratch}:/data:ro"])
    time.sleep(2.5)
    victim = cluster.workers - 1
    victim_id = cluster.worker_id(victim)

    # replication 2: the query completes from the replicas
    expected = _query(cluster, FULL_SCAN.format(db="fault_r2"))
    since = docker("exec", cluster.name("czar"), "date", "+%s")
    if int(expected[0]) != objects:
        failures.append(f"fault_r2 holds {expected[0]} objects, not {objects}")
    row, error, progress = _run_with_fault(cluster, SLOW_SCAN.format(db="fault_r2", pause=pause), "fault_r2", victim)
    if error is not None:
        failures.append(f"replication 2: the query failed after {victim_id} stopped at "
                        f"{progress[0]}/{progress[1]} chunks: {error}")
    elif row != expected:
        failures.append(f"replication 2: wrong answer after the worker stop: {row} != {expected}")
    else:
        log(f"replication 2: query completed correctly from the replicas: {row}")
    retried = [line for line in cluster.logs(cluster.name("czar"), 400, since=since).splitlines()
               if "trying another replica" in line and victim_id in line]
    if not retried:
        failures.append(f"replication 2: no chunk of the query was retried: {victim_id} stopped too late")
    else:
        log(f"replication 2: {len(retried)} task(s) of {victim_id} re-sent to a replica, e.g. {retried[0]}")
    cluster.start_worker(victim)

    # replication 1: the query fails naming the missing chunks and the worker; works after the restart
    back, failed = _query_once_back(cluster, FULL_SCAN.format(db="fault_r1"), 30)
    if back is None:
        failures.append(f"replication 1: queries still fail 30 s after {victim_id} came back: {failed}")
        return failures
    expected = back
    row, error, progress = _run_with_fault(cluster, SLOW_SCAN.format(db="fault_r1", pause=pause), "fault_r1", victim)
    if error is None:
        failures.append(f"replication 1: the query succeeded ({row}) although {victim_id} was stopped")
    else:
        text = str(error.args[1]) if isinstance(error, pymysql.MySQLError) and len(error.args) > 1 else str(error)
        log(f"replication 1: the query failed: {text}")
        if victim_id not in text or "chunk" not in text:
            failures.append(f"replication 1: the error does not name the chunks and {victim_id}: {text}")
    try:  # while the worker is down, a new query is refused the same way
        _query(cluster, FULL_SCAN.format(db="fault_r1"))
        failures.append(f"replication 1: a query succeeded while {victim_id} was down")
    except pymysql.MySQLError as exc:
        log(f"replication 1, worker still down: {exc.args[1] if len(exc.args) > 1 else exc}")
    cluster.start_worker(victim)
    row, failed = _query_once_back(cluster, FULL_SCAN.format(db="fault_r1"), 90)
    if row is None:
        failures.append(f"replication 1: queries still fail 90 s after {victim_id} came back: {failed}")
    if row is not None and row != expected:
        failures.append(f"replication 1: wrong answer after the restart: {row} != {expected}")
    elif row is not None:
        log(f"replication 1: queries succeed again after {victim_id} is back: {row}")
    return failures


def run_suite(args: argparse.Namespace) -> int:
    reason = docker_available()
    if reason is not None:
        log(f"docker is not available: {reason}")
        return 2
    if not args.skip_build:
        build_image(args.image, args.base_image)
    compose = compose_command() if args.mode in ("auto", "compose") else None
    if args.mode == "compose" and compose is None:
        log("--mode compose: neither `docker compose` nor `docker-compose` works")
        return 1
    cluster: ContainerCluster
    if compose is not None and args.workers == 2:
        cluster = ComposeCluster(args.image, compose=compose)
    else:
        log("driving the compose topology with docker run" + ("" if compose else " (no compose tool)"))
        cluster = ContainerCluster(args.image, workers=args.workers)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on SIGTERM too
    failures: list[str] = []
    timings: list[tuple[str, float]] = []

    def timed(label: str, step: Callable[[], list[str] | None]) -> None:
        started = time.monotonic()
        try:
            failures.extend(step() or [])
        except (SuiteFailure, pymysql.MySQLError, subprocess.TimeoutExpired) as exc:
            failures.append(f"{label}: {exc}")
        timings.append((label, time.monotonic() - started))

    try:
        timed("start", cluster.start)
        if not failures and args.only in ("", "conformance"):
            timed("ingest", lambda: step_ingest_case(cluster, args.case))
            if not failures:
                with reference_server(cluster) as reference:
                    timed("conformance", lambda: step_conformance(cluster, args.case, reference))
        if cluster.czar_port and args.only in ("", "fault"):
            timed("fault", lambda: step_fault(cluster, args.objects, args.pause))
    finally:
        if failures:
            for name in cluster.containers():
                print(cluster.logs(name, 30), flush=True)
        if args.keep:
            log(f"kept: containers {cluster.prefix}-*, czar on 127.0.0.1:{cluster.czar_port}")
        else:
            cluster.remove()
    log("timings: " + ", ".join(f"{label} {seconds:.0f} s" for label, seconds in timings))
    for failure in failures:
        log(f"FAILED: {failure}")
    log("container suite " + ("FAILED" if failures else "passed"))
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m integration.containers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="skyshard:test", help="image tag to build and run (default %(default)s)")
    parser.add_argument("--base-image", default=os.environ.get("SKYSHARD_BASE_IMAGE", "python:3.11-slim-bookworm"),
                        help="BASE_IMAGE build argument (default $SKYSHARD_BASE_IMAGE or %(default)s)")
    parser.add_argument("--skip-build", action="store_true", help="use --image as it is")
    parser.add_argument("--workers", type=int, default=2, help="workers (other than 2: docker run mode)")
    parser.add_argument("--mode", choices=["auto", "compose", "run"], default="auto",
                        help="compose: docker/compose.yaml itself; run: the same topology with docker run; "
                             "auto (default): compose when a compose tool works")
    parser.add_argument("--case", type=Path, default=DEFAULT_CASE, help="conformance case (default %(default)s)")
    parser.add_argument("--objects", type=int, default=4000, help="objects of the fault catalogs")
    parser.add_argument("--pause", type=float, default=0.01, help="SLEEP per row of the fault query (s)")
    parser.add_argument("--only", choices=["", "conformance", "fault"], default="")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    return run_suite(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
