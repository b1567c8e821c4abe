"""Ingest throughput against a plain ``LOAD DATA INFILE`` of the same file.

Generates (or reuses, cached under ``--cache``) a synthetic catalog with
:func:`ingest.datagen.generate`, starts a local cluster (2 workers, free
ports, its own home directory, no sample catalog) and one standalone
MariaDB, then measures:

(a) ``LOAD DATA INFILE`` of ``Object.tsv`` into one MyISAM table created
    with the same ``CREATE TABLE`` (the schema file's), on the standalone
    MariaDB;
(b) :meth:`ingest.loader.Ingester.ingest_table` of the same Object file:
    partition + load of chunk and overlap tables on the workers + director
    index in the czar's MariaDB + publication in css.

Usage::

    .venv/bin/python -m bench.ingest --objects 1000000

Prints rows, bytes, seconds and rows/s of both and their ratio.  With
``--profile FILE`` the ingest runs under cProfile and the stats are dumped.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ingest.config import DatabaseConfig, load_case_directory
from ingest.datagen import generate
from ingest.loader import Ingester
from skyshard.cluster import ClusterLayout, LocalCluster, free_port
from skyshard.mariadb import MariaDBInstance

DEFAULT_CACHE = Path(tempfile.gettempdir()) / "skyshard-bench"
DATABASE = "bench"


def catalog(cache: Path, objects: int, seed: int) -> Path:
    """The cached catalog directory for ``objects`` objects, generated on first use."""
    out = cache / f"catalog-{objects}-s{seed}"
    done = out / ".complete"
    if not done.exists():
        if out.exists():
            shutil.rmtree(out)
        started = time.monotonic()
        print(f"generating {objects:,} objects in {out} ...", flush=True)
        generate(out, objects=objects, sources_per_object=0.0, seed=seed, database=DATABASE)
        done.write_text("ok\n")
        print(f"  generated in {time.monotonic() - started:.1f}s", flush=True)
    return out


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds a process has used so far (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    return sum(cpu_times(pid))


def own_cpu_times() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def cpu_steal() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs so far, from /proc/stat (None where there is none)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields[:8]]
    return (values[7], sum(values)) if len(values) == 8 else None


def cpu_steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def cpu_gauge_ms(rounds: int = 5) -> float:
    """Milliseconds one core takes for a fixed piece of pure Python (the best of ``rounds``).

    A gauge of how fast the machine runs right now: on a virtual machine the
    host's other guests can slow every core without any time showing as
    stolen (here: 1.5x for an hour, with 0% steal). Printed next to every
    result, so that runs on a slower or faster machine can be told apart.
    """
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for value in range(300_000):
            total += value * value % 7
        best = min(best, time.perf_counter() - started)
    return best * 1000.0


def _minus(after: tuple[float, float], before: tuple[float, float]) -> tuple[float, float]:
    return after[0] - before[0], after[1] - before[1]


def plain_load(instance: MariaDBInstance, create_sql: str, path: Path, clause: str) -> tuple[int, float]:
    """LOAD DATA INFILE ``path`` into one new table; (rows, seconds)."""
    spool_copy = instance.spool_dir / path.name  # LOAD DATA INFILE reads below secure-file-priv
    shutil.copyfile(path, spool_copy)
    connection = instance.address.connect()
    try:
        cursor = connection.cursor()
        cursor.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")
        cursor.execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
        cursor.execute(f"CREATE DATABASE `{DATABASE}`")
        cursor.execute(f"USE `{DATABASE}`")
        cursor.execute(create_sql)
        started = time.monotonic()
        rows = cursor.execute(
            f"LOAD DATA INFILE %s INTO TABLE `Object` CHARACTER SET binary {clause}", (str(spool_copy),)
        )
        seconds = time.monotonic() - started
    finally:
        connection.close()
        spool_copy.unlink(missing_ok=True)
    return int(rows), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="catalog cache (default %(default)s)")
    parser.add_argument("--stripes", type=int, default=30, help="num_stripes (default %(default)s)")
    parser.add_argument("--sub-stripes", type=int, default=10, help="num_sub_stripes (default %(default)s)")
    parser.add_argument("--overlap", type=float, default=0.01667, help="overlap in degrees (default %(default)s)")
    parser.add_argument("--replication", type=int, default=1)
    parser.add_argument("--block-mb", type=int, default=64, help="input block size in MiB (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="workers in the local cluster (default %(default)s)")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the ingest here")
    parser.add_argument("--keep", action="store_true", help="leave the cluster home directory behind")
    args = parser.parse_args(argv)

    steal_before = cpu_steal()
    case_dir = catalog(args.cache, args.objects, args.seed)
    _, tables, files = load_case_directory(case_dir)
    config = next(t for t in tables if t.name == "Object")
    object_file = files["Object"][0]
    nbytes = object_file.stat().st_size
    database = DatabaseConfig(DATABASE, args.stripes, args.sub_stripes, args.overlap)

    work = Path(tempfile.mkdtemp(prefix="skyshard-bench-", dir=args.cache))
    standalone = MariaDBInstance(work / "plain-db", free_port())
    cluster = LocalCluster(work / "cluster", ClusterLayout.on_free_ports(args.workers))
    try:
        print(f"starting a standalone MariaDB and a {args.workers}-worker cluster ...", flush=True)
        standalone_pid = standalone.start()
        cluster.up(log=lambda *_: None)

        plain_cpu = cpu_seconds(standalone_pid)
        plain_rows, plain_seconds = plain_load(
            standalone, config.create_sql, object_file, config.text_format.sql_clause()
        )
        plain_cpu = cpu_seconds(standalone_pid) - plain_cpu
        standalone.stop()  # leave the machine to the cluster for (b)

        css = cluster.css()
        ingester = Ingester(css, cluster.czar_db.address, replication=args.replication,
                            block_bytes=args.block_mb << 20)
        try:
            ingester.create_database(database)
            profiler = cProfile.Profile() if args.profile else None
            processes = dict(cluster.layout.pids)
            cpu_before = {name: cpu_times(pid) for name, pid in processes.items()}
            own_before = own_cpu_times()
            started = time.monotonic()
            if profiler is not None:
                profiler.enable()
            summary = ingester.ingest_table(config, [object_file])
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(args.profile))
            ingest_seconds = time.monotonic() - started
            cpu = {"partitioner (this process)": _minus(own_cpu_times(), own_before)}
            cpu.update({name: _minus(cpu_times(pid), cpu_before[name]) for name, pid in processes.items()})
        finally:
            ingester.close()
            css.close()
    finally:
        standalone.stop()
        cluster.down(log=lambda *_: None)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    plain_rate = plain_rows / plain_seconds
    ingest_rate = summary.rows / ingest_seconds
    print()
    print(f"data: {object_file} ({nbytes:,} bytes, {plain_rows:,} rows)")
    print(f"partitioning: {args.stripes} stripes x {args.sub_stripes} sub-stripes, overlap {args.overlap} deg;"
          f" {summary.chunks} chunks, {summary.overlap_rows:,} overlap rows, replication {args.replication}")
    print(f"{'':<28} {'rows':>10} {'bytes':>13} {'seconds':>8} {'rows/s':>10}")
    print(f"{'plain LOAD DATA INFILE':<28} {plain_rows:>10,} {nbytes:>13,} {plain_seconds:>8.2f} {plain_rate:>10,.0f}")
    print(f"{'skyshard ingest (Object)':<28} {summary.rows:>10,} {nbytes:>13,} {ingest_seconds:>8.2f} {ingest_rate:>10,.0f}")
    print(f"ratio ingest / plain: {ingest_rate / plain_rate:.2f}")
    steal = cpu_steal_share(steal_before, cpu_steal())
    if steal is not None:
        print(f"CPU time stolen by the hypervisor during the run: {steal:.0%}")
    per_worker = ", ".join(f"{w}={n:,}" for w, n in sorted(summary.rows_per_worker.items()))
    print(f"rows per worker: {per_worker}")
    total_user = sum(user for user, _ in cpu.values())
    total_system = sum(system for _, system in cpu.values())
    print(f"CPU seconds: plain LOAD DATA (its mariadbd) {plain_cpu:.2f}; ingest "
          f"{total_user + total_system:.2f} ({total_user:.2f} user, {total_system:.2f} system) "
          f"on {os.cpu_count()} cores:")
    for name, (user, system) in sorted(cpu.items(), key=lambda item: -sum(item[1])):
        print(f"  {name:<28} {user + system:6.2f}  ({user:.2f} user, {system:.2f} system)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
