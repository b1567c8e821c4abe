"""Qserv's case01 catalog (all nine tables) ingests and answers like the reference."""

from __future__ import annotations

from pathlib import Path

import pymysql
import pytest

from ingest.config import load_case_directory
from integration.compare import rows_equal, run
from skyshard.cluster import LocalCluster
from skyshard.mariadb import ServerAddress
from tests.conftest import CASE01

pytestmark = pytest.mark.cluster


def _tables(case_dir: Path) -> list[str]:
    return [t.name for t in load_case_directory(case_dir)[1]] if case_dir.is_dir() else []


@pytest.mark.parametrize("table", _tables(CASE01) or ["(dataset absent)"])
def test_row_counts_equal_the_input(case01: str, cluster: LocalCluster, reference: ServerAddress, table: str) -> None:
    czar = pymysql.connect(host="127.0.0.1", port=cluster.layout.czar_port, user="skyshard", database=case01)
    ref = reference.connect(database=case01)
    try:
        got = run(czar, f"SELECT COUNT(*) FROM {table}")[1]
        want = run(ref, f"SELECT COUNT(*) FROM {table}")[1]
        assert got == want and want[0][0] > 0
        sql = f"SELECT * FROM {table}"
        got_names, got_rows = run(czar, sql)
        want_names, want_rows = run(ref, sql)
        assert got_names == want_names
        assert rows_equal(got_rows, want_rows, ordered=False) is None
    finally:
        czar.close()
        ref.close()
