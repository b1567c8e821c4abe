"""The conformance runner on Qserv's case01 corpus: every top-level query answers like the reference.

That includes 2100_groupByChunkId and 3008_showColumns, the two Qserv's own
harness skips: ``chunkId`` is a nameable (not ``SELECT *``) column of
partitioned tables, and SHOW COLUMNS describes the table as defined.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pymysql
import pytest

from integration import conformance
from integration.conformance import classify_unsupported, run_cases
from integration.corpus import top_level_queries, unsupported_queries
from skyshard.cluster import LocalCluster
from skyshard.mariadb import ServerAddress
from tests.conftest import CASE01

pytestmark = pytest.mark.cluster
SKIPPED_BY_QSERV = {"2100_groupByChunkId", "3008_showColumns"}


def _connectors(cluster: LocalCluster, reference: ServerAddress, database: str) -> tuple[Any, Any]:
    def engine() -> Any:
        return pymysql.connect(host="127.0.0.1", port=cluster.layout.czar_port, user="skyshard", database=database)

    def ref() -> Any:
        return reference.connect(database=database)

    return engine, ref


def test_every_top_level_query_passes(case01: str, cluster: LocalCluster, reference: ServerAddress) -> None:
    cases = top_level_queries(CASE01, case01)
    assert len(cases) >= 78 and {c.name for c in cases} >= SKIPPED_BY_QSERV
    lines: list[str] = []
    outcomes = run_cases(cases, *_connectors(cluster, reference, case01), report=lines.append)
    failed = [line for line in lines if line.startswith("FAIL")]
    assert failed == [], "\n".join(failed)
    assert lines[-1] == f"{len(outcomes)} passed, 0 failed"


def test_every_top_level_query_passes_through_the_async_path(case01: str, cluster: LocalCluster,
                                                             reference: ServerAddress) -> None:
    cases = [c for c in top_level_queries(CASE01, case01) if c.name not in SKIPPED_BY_QSERV]
    lines: list[str] = []
    outcomes = run_cases(cases, *_connectors(cluster, reference, case01), report=lines.append, async_path=True)
    failed = [line for line in lines if line.startswith("FAIL")]
    assert failed == [], "\n".join(failed)
    assert len(outcomes) == len(cases) >= 70


def test_unsupported_queries_run_correctly_or_are_refused(case01: str, cluster: LocalCluster, reference: ServerAddress) -> None:
    verdicts = classify_unsupported(unsupported_queries(CASE01, case01), *_connectors(cluster, reference, case01))
    assert len(verdicts) >= 25
    wrong = [f"{case.name}: {verdict}" for case, verdict in verdicts if verdict.startswith("WRONG")]
    assert wrong == []
    # Qserv's documented restrictions no longer apply: ORDER BY expressions run and are correct.
    by_name = {case.name: verdict for case, verdict in verdicts}
    for name in ("1012_orderByClause", "1013_orderByClauseRounded", "3015_orderByFunction"):
        assert by_name[name].startswith("runs correctly"), by_name[name]


def _write_queries(case_dir: Path, queries: dict[str, str]) -> None:
    folder = case_dir / "queries"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.sql"):
        old.unlink()
    for name, text in queries.items():
        (folder / f"{name}.sql").write_text(text)


def test_runner_works_on_any_case_directory(
    cluster: LocalCluster, reference: ServerAddress, catalog_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The command line on another catalog in Qserv's layout (the synthetic one), passing and failing."""
    case_dir = tmp_path / "case"
    shutil.copytree(catalog_dir, case_dir)
    _write_queries(case_dir, {
        "0001_count": "-- pragma sortresult\nSELECT COUNT(*) AS n FROM Object\n",
        "0002_area": (
            "SELECT objectId FROM Object\n"
            "WHERE ra BETWEEN 10 AND 40 -- noQserv\n"
            "  AND decl BETWEEN -10 AND 10 -- noQserv\n"
            "-- withQserv WHERE qserv_areaspec_box(10, -10, 40, 10)\n"
            "ORDER BY objectId\n"
        ),
    })
    common = [str(case_dir), "--home", str(cluster.home), "--reference", str(reference.socket), "--no-load"]
    assert conformance.main(common) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "2 passed, 0 failed" and out[0].startswith("PASS 0001_count")
    # A query whose two forms differ must fail, with a line naming it.
    _write_queries(case_dir, {"0003_wrong": "SELECT COUNT(*) FROM Object WHERE decl > 0 -- noQserv\n"
                                            "-- withQserv WHERE decl > 1\n"})
    assert conformance.main(common) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("FAIL 0003_wrong") and out[-1] == "0 passed, 1 failed"
