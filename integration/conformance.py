"""The conformance runner: a Qserv-layout corpus, run on the cluster and on a reference.

Given a case directory (``data/``, ``data/schema/``, ``data/ingest/``,
``queries/``), it loads the catalog into a cluster and into one reference
MariaDB, runs every top-level query in its engine form on the czar and in
its plain form on the reference, and compares column names (unless
``-- pragma noheader``), row counts and values (floats with a relative
tolerance of 1e-9; in order when the query orders, as a multiset under
``-- pragma sortresult`` or without ORDER BY).  It prints one line per query
and a closing line ``N passed, N failed``; the exit status is 1 when any
query failed.

``--async`` runs every query through the async path instead (``SUBMIT``,
polling ``information_schema.queries``, ``SELECT * FROM qserv_result(<id>)``,
``CALL qserv_result_delete(<id>)``).

``--unsupported FILE`` also runs the ``queries/unsupported_*`` folders and
writes a table saying, for each, whether it now runs correctly or is
refused, with the error.

Usage::

    python -m integration.conformance ../shared/datasets/qserv-case01           # own cluster
    python -m integration.conformance CASE --home ~/.skyshard                    # running cluster
    python -m integration.conformance CASE --home ~/.skyshard --no-load --only 10
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from ingest.config import load_case_directory
from integration import catalogs
from integration.compare import ordered_rows_equal, rows_equal, run, with_order_keys
from integration.corpus import QueryCase, top_level_queries, unsupported_queries
from skyshard.cluster import ClusterLayout, LocalCluster, free_port
from skyshard.mariadb import MariaDBInstance, ServerAddress

Connect = Callable[[], Any]
Run = Callable[[Any, str], tuple[list[str], list[tuple[Any, ...]]]]


@dataclass(frozen=True)
class Outcome:
    case: QueryCase
    passed: bool
    detail: str
    seconds: float


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, pymysql.MySQLError) and len(exc.args) >= 2:
        return f"ERROR {exc.args[0]}: {exc.args[1]}"
    return f"{type(exc).__name__}: {exc}"


def run_async(connection: Any, sql: str, timeout: float = 300.0) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The async path: SUBMIT, poll information_schema.queries, fetch qserv_result, delete."""
    with connection.cursor() as cursor:
        cursor.execute(f"SUBMIT {sql}")
        query_id = int(cursor.fetchone()[0])
    try:
        deadline = time.monotonic() + timeout
        while True:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT STATUS FROM information_schema.queries WHERE ID = {query_id}")
                status = cursor.fetchone()[0]
            if status != "EXECUTING":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"async query {query_id} still executing after {timeout} s")
            time.sleep(0.05)
        return run(connection, f"SELECT * FROM qserv_result({query_id})")
    finally:
        with contextlib.suppress(pymysql.MySQLError), connection.cursor() as cursor:
            cursor.execute(f"CALL qserv_result_delete({query_id})")


def compare_case(case: QueryCase, engine: Any, reference: Any, *, engine_run: Run = run) -> Outcome:
    """Run one query on both sides and compare (``engine_run``: :func:`run` or :func:`run_async`)."""
    started = time.monotonic()
    try:
        want_names, want_rows = run(reference, case.plain_sql)
    except Exception as exc:
        return Outcome(case, False, f"reference failed: {_error_text(exc)}", time.monotonic() - started)
    try:
        got_names, got_rows = engine_run(engine, case.engine_sql)
    except Exception as exc:
        return Outcome(case, False, f"engine failed: {_error_text(exc)}", time.monotonic() - started)
    seconds = time.monotonic() - started
    if not case.no_header and got_names != want_names:
        return Outcome(case, False, f"columns {got_names} != {want_names}", seconds)
    difference = rows_equal(got_rows, want_rows, ordered=case.ordered)
    keyed = with_order_keys(case.plain_sql) if case.ordered and difference is not None else None
    if keyed is not None:  # rows tying on the ORDER BY keys may come in any order
        try:
            want_keyed = run(reference, keyed[0])[1]
        except Exception as exc:
            return Outcome(case, False, f"{difference} (order keys: {_error_text(exc)})", seconds)
        difference = ordered_rows_equal(got_rows, want_keyed, keyed[1])
    if difference is not None:
        return Outcome(case, False, difference, seconds)
    return Outcome(case, True, f"{len(got_rows)} rows", seconds)


def run_cases(cases: list[QueryCase], engine_connect: Connect, reference_connect: Connect,
              *, report: Callable[[str], None] = print, async_path: bool = False) -> list[Outcome]:
    """Compare every case; ``async_path`` runs each through SUBMIT / qserv_result instead."""
    outcomes: list[Outcome] = []
    engine = engine_connect()
    reference = reference_connect()
    try:
        for case in cases:
            outcome = compare_case(case, engine, reference, engine_run=run_async if async_path else run)
            if not outcome.passed:  # a fresh connection after a failure
                with contextlib.suppress(Exception):
                    engine.close()
                engine = engine_connect()
            outcomes.append(outcome)
            verdict = "PASS" if outcome.passed else "FAIL"
            report(f"{verdict} {case.name} ({outcome.detail}, {outcome.seconds:.2f} s)")
    finally:
        with contextlib.suppress(Exception):
            engine.close()
        reference.close()
    passed = sum(o.passed for o in outcomes)
    report(f"{passed} passed, {len(outcomes) - passed} failed")
    return outcomes


def _attempt(connection: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]] | str:
    try:
        return run(connection, sql)
    except Exception as exc:
        return _error_text(exc)


def classify_unsupported(cases: list[QueryCase], engine_connect: Connect,
                         reference_connect: Connect) -> list[tuple[QueryCase, str]]:
    """For each query of the unsupported folders: runs correctly, or how it is refused."""
    verdicts: list[tuple[QueryCase, str]] = []
    for case in cases:
        engine = engine_connect()
        reference = reference_connect()
        try:
            want = _attempt(reference, case.plain_sql)
            got = _attempt(engine, case.engine_sql)
            if isinstance(got, str):
                also = f"the reference fails too: {want}" if isinstance(want, str) else "the reference answers"
                verdict = f"refused: {got} ({also})"
            elif isinstance(want, str):
                verdict = f"WRONG: the engine answered where the reference failed ({want})"
            else:
                outcome = compare_case(case, engine, reference)
                verdict = f"runs correctly ({outcome.detail})" if outcome.passed else f"WRONG: {outcome.detail}"
        finally:
            with contextlib.suppress(Exception):
                engine.close()
            reference.close()
        verdicts.append((case, verdict))
    return verdicts


def write_unsupported_table(path: Path, case_dir: Path, verdicts: list[tuple[QueryCase, str]]) -> None:
    lines = [
        f"# Qserv's unsupported queries of `{case_dir.name}` on Skyshard",
        "",
        "Written by `python -m integration.conformance "
        f"{case_dir} --unsupported {path.name}`; each query's engine form is",
        "run on the cluster and its plain form on the reference MariaDB.",
        "",
        "| query | verdict |",
        "|---|---|",
    ]
    for case, verdict in verdicts:
        folder = case.path.parent.name
        escaped = verdict.replace("|", "\\|")
        lines.append(f"| `{folder}/{case.path.name}` | {escaped} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@contextlib.contextmanager
def own_cluster(workers: int = 2) -> Iterator[tuple[LocalCluster, ServerAddress]]:
    """A throw-away local cluster and reference MariaDB on free ports."""
    with tempfile.TemporaryDirectory(prefix="skyshard-conformance-") as scratch:
        local = LocalCluster(Path(scratch) / "cluster", ClusterLayout.on_free_ports(workers))
        reference = MariaDBInstance(Path(scratch) / "reference", free_port())
        local.up(log=lambda *_: None)
        try:
            reference.start()
            try:
                yield local, reference.address
            finally:
                reference.stop()
        finally:
            local.down(log=lambda *_: None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m integration.conformance", description=__doc__.split("\n\n")[0])
    parser.add_argument("case_dir", type=Path)
    parser.add_argument("--home", type=Path, help="a running local cluster (default: start a throw-away one)")
    parser.add_argument("--reference", help="HOST:PORT or socket path of a reference MariaDB (default: start one)")
    parser.add_argument("--user", default="skyshard")
    parser.add_argument("--no-load", action="store_true", help="the catalog is loaded already")
    parser.add_argument("--only", default="", help="run queries whose name contains this text")
    parser.add_argument("--async", dest="async_path", action="store_true",
                        help="run every query through SUBMIT, polling, qserv_result and delete")
    parser.add_argument("--unsupported", type=Path, help="also classify unsupported_* queries into this file")
    args = parser.parse_args(argv)
    case_dir: Path = args.case_dir
    database = load_case_directory(case_dir)[0].name
    cases = [c for c in top_level_queries(case_dir, database) if args.only in c.name]

    def execute(local: LocalCluster, reference: ServerAddress) -> int:
        if not args.no_load:
            css = local.css()
            try:
                catalogs.ingest_case(css, local.czar_db.address, case_dir)
            finally:
                css.close()
            catalogs.load_reference(reference, case_dir)
            time.sleep(2.5)  # the czar caches css for 2 s

        def engine_connect() -> Any:
            return pymysql.connect(host="127.0.0.1", port=local.layout.czar_port, user=args.user,
                                   database=database, local_infile=False)

        def reference_connect() -> Any:
            return reference.connect(database=database)

        outcomes = run_cases(cases, engine_connect, reference_connect, async_path=args.async_path)
        if args.unsupported:
            verdicts = classify_unsupported(unsupported_queries(case_dir, database), engine_connect, reference_connect)
            write_unsupported_table(args.unsupported, case_dir, verdicts)
            print(f"wrote {args.unsupported}")
        return 0 if all(o.passed for o in outcomes) else 1

    if args.home is None:
        with own_cluster() as (local, reference):
            return execute(local, reference)
    local = LocalCluster(args.home)
    if args.reference is None:
        with tempfile.TemporaryDirectory(prefix="skyshard-reference-") as scratch:
            instance = MariaDBInstance(Path(scratch), free_port())
            instance.start()
            try:
                return execute(local, instance.address)
            finally:
                instance.stop()
    if args.reference.startswith("/"):  # a unix socket
        return execute(local, ServerAddress(socket=args.reference))
    host, _, port = args.reference.partition(":")
    return execute(local, ServerAddress(host, int(port)))


if __name__ == "__main__":
    sys.exit(main())
