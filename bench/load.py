"""Load test: N concurrent MySQL clients mixing point lookups, cone searches and scans.

Starts a throw-away cluster (2 workers) with a synthetic catalog, or uses a
running one (``--home``), then runs ``--clients`` threads for ``--seconds``;
each client loops over a random mix of

* point lookups ``SELECT * FROM Object WHERE objectId = <random existing id>``,
* cone searches ``... WHERE qserv_areaspec_circle(ra, dec, r)``,
* scans ``SELECT COUNT(*), AVG(...) FROM Object WHERE ...``,

checking every answer (lookups return exactly their object; scans the
known total).  Every ``--sample`` seconds it records the czar's RSS, its
open file descriptors and sockets, and the established client connections.  Prints a Markdown report: errors by kind, latency
percentiles by query kind, and the samples over time.

    python -m bench.load --clients 50 --seconds 180
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pymysql

from ingest.datagen import generate
from integration.catalogs import ingest_case
from skyshard.cluster import ClusterLayout, LocalCluster

DATABASE = "loadsky"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _fds(pid: int) -> tuple[int, int]:
    """Open file descriptors of a process, and how many of them are sockets."""
    names = os.listdir(f"/proc/{pid}/fd")
    sockets = 0
    for name in names:
        try:
            sockets += os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:")
        except OSError:
            pass
    return len(names), sockets


def _tcp_established(port: int) -> int:
    """Established TCP connections to ``port`` (both directions counted once, server side)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


class Load:
    def __init__(self, cluster: LocalCluster, objects: list[tuple[int, float, float]], total: int) -> None:
        self.cluster = cluster
        self.objects = objects
        self.total = total
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter[str] = Counter()
        self.wrong: Counter[str] = Counter()
        self.samples: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def connect(self) -> pymysql.Connection:
        return pymysql.connect(host="127.0.0.1", port=self.cluster.layout.czar_port, user="skyshard",
                               database=DATABASE, read_timeout=120, connect_timeout=30)

    def client(self, seed: int) -> None:
        rng = random.Random(seed)
        connection = self.connect()
        try:
            while not self.stop.is_set():
                kind = rng.choices(["point", "cone", "scan"], weights=[6, 3, 1])[0]
                started = time.monotonic()
                try:
                    ok = self.one(connection, kind, rng)
                except pymysql.MySQLError as exc:
                    with self.lock:
                        self.errors[f"{kind}: {exc.args[0]} {str(exc.args[-1])[:80]}"] += 1
                    connection.close()
                    connection = self.connect()
                    continue
                elapsed = time.monotonic() - started
                with self.lock:
                    self.latency[kind].append(elapsed)
                    if not ok:
                        self.wrong[kind] += 1
        finally:
            connection.close()

    def one(self, connection: pymysql.Connection, kind: str, rng: random.Random) -> bool:
        with connection.cursor() as cursor:
            if kind == "point":
                object_id, ra, decl = rng.choice(self.objects)
                cursor.execute(f"SELECT objectId, ra, decl FROM Object WHERE objectId = {object_id}")
                rows = cursor.fetchall()
                return len(rows) == 1 and rows[0][0] == object_id and abs(rows[0][1] - ra) < 1e-9
            if kind == "cone":
                _, ra, decl = rng.choice(self.objects)
                cursor.execute(f"SELECT objectId, ra, decl FROM Object WHERE qserv_areaspec_circle({ra}, {decl}, 0.5)")
                rows = cursor.fetchall()
                return len(rows) >= 1  # the centre object is always inside
            cursor.execute("SELECT COUNT(*), AVG(ra) FROM Object WHERE decl > -90")
            rows = cursor.fetchall()
            return int(rows[0][0]) == self.total

    def sampler(self, interval: float) -> None:
        czar_pid = self.cluster.layout.pids["czar"]
        started = time.monotonic()
        while not self.stop.wait(interval):
            fds, sockets = _fds(czar_pid)
            with self.lock:
                done = sum(len(v) for v in self.latency.values())
            self.samples.append({
                "t": round(time.monotonic() - started),
                "rss_mib": round(_rss_kib(czar_pid) / 1024, 1),
                "fds": fds,
                "sockets": sockets,
                "client_conns": _tcp_established(self.cluster.layout.czar_port),
                "queries": done,
            })

    def run(self, clients: int, seconds: float, interval: float) -> None:
        threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(clients)]
        sampler = threading.Thread(target=self.sampler, args=(interval,), daemon=True)
        sampler.start()
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        self.stop.set()
        for thread in threads:
            thread.join(180)
        sampler.join(interval + 5)

    def report(self, clients: int, seconds: float, command: str) -> str:
        lines = [f"`{command}`", "", f"{clients} clients, {seconds:.0f} s, catalog of {self.total:,} objects", ""]
        total = sum(len(v) for v in self.latency.values())
        lines.append(f"queries answered: {total:,} ({total / seconds:.1f}/s); "
                     f"errors: {sum(self.errors.values())}; wrong answers: {sum(self.wrong.values())}")
        lines += ["", "| kind | count | p50 ms | p95 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
        for kind, values in sorted(self.latency.items()):
            ordered = sorted(values)

            def pct(p: float, data: list[float] = ordered) -> float:
                return 1000 * data[min(len(data) - 1, int(p * len(data)))]

            lines.append(f"| {kind} | {len(values)} | {1000 * statistics.median(values):.1f} | {pct(0.95):.1f} |"
                         f" {pct(0.99):.1f} | {1000 * ordered[-1]:.1f} |")
        if self.errors:
            lines += ["", "errors:"] + [f"* {n} x {text}" for text, n in self.errors.most_common()]
        lines += ["", "| t s | czar RSS MiB | czar fds | czar sockets | client conns | queries done |",
                  "|---|---|---|---|---|---|"]
        for s in self.samples:
            lines.append(f"| {s['t']} | {s['rss_mib']} | {s['fds']} | {s['sockets']} | {s['client_conns']} |"
                         f" {s['queries']} |")
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--objects", type=int, default=100000)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between resource samples")
    parser.add_argument("--home", help=f"use the running cluster there (catalog {DATABASE} must be loaded)")
    args = parser.parse_args(argv)
    command = "python -m bench.load " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="skyshard-load-") as tmp:
        own = args.home is None
        cluster = LocalCluster(Path(args.home) if args.home else Path(tmp) / "home",
                               None if args.home else ClusterLayout.on_free_ports(2))
        if own:
            cluster.up(log=lambda *_: None)
        try:
            catalog = generate(Path(tmp) / "catalog", objects=args.objects, seed=5, database=DATABASE,
                               num_stripes=12, num_sub_stripes=6, overlap=0.05)
            if own:
                css = cluster.css()
                try:
                    ingest_case(css, cluster.czar_db.address, catalog)
                finally:
                    css.close()
                time.sleep(2.5)
            objects = []
            path = catalog / "data" / "Object.tsv"
            with (open(path) if path.exists() else gzip.open(f"{path}.gz", "rt")) as handle:
                for index, line in enumerate(handle):
                    if index % 97 == 0:
                        fields = line.split("\t")
                        objects.append((int(fields[0]), float(fields[1]), float(fields[2])))
            load = Load(cluster, objects, args.objects)
            load.run(args.clients, args.seconds, args.sample)
            print(load.report(args.clients, args.seconds, command))
            return 1 if load.errors or load.wrong else 0
        finally:
            if own:
                cluster.down(log=lambda *_: None)


if __name__ == "__main__":
    raise SystemExit(main())
