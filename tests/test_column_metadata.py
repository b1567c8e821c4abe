"""Result column metadata: what a JDBC or DB-API client reads besides the values.

The czar's column definition packets carry the display length, decimals
and flags MariaDB gave for the result (the merge's, learned once for a
direct result), as the reference MariaDB does for the same query: a JDBC
client's precision, scale and signedness come from them.  Compared here
column by column with the reference, for results through the result table
and direct ones, numeric and text: type, display length, decimals and the
NOT NULL, UNSIGNED and BINARY flags (not the key flags: a result has no keys,
though the reference reports its table's).
"""

from __future__ import annotations

from typing import Any

import pymysql
import pytest

from skyshard.cluster import LocalCluster
from skyshard.mariadb import ServerAddress

pytestmark = pytest.mark.cluster

UNSIGNED, BINARY, NOT_NULL = 32, 128, 1

QUERIES = (
    "SELECT objectId, ra_PS, decl_PS, uFlux_PS FROM Object WHERE objectId = 433327840428745",  # direct
    "SELECT objectId, ra_PS, decl_PS FROM Object WHERE objectId IN (433327840428745, 433327840428746)",
    "SELECT objectId, ra_PS, decl_PS FROM Object ORDER BY objectId LIMIT 5",  # through the result table
    "SELECT objectId, iauId FROM Object WHERE objectId = 433327840428745",  # text: through the table
    "SELECT filterId, filterName, photClam FROM Filter ORDER BY filterId",  # a replicated table
    "SELECT sourceId, objectId, raSigmaForWcs FROM Source ORDER BY sourceId LIMIT 3",
)


def _columns(connection: Any, sql: str) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        cursor.fetchall()
        return [(f.name, f.type_code, f.length, f.scale, f.flags & (UNSIGNED | BINARY | NOT_NULL))
                for f in cursor._result.fields]  # noqa: SLF001 - the packets' fields


def test_column_definitions_match_the_reference(cluster: LocalCluster, reference: ServerAddress, case01: str) -> None:
    plain = reference.connect(database=case01)
    engine = pymysql.connect(host="127.0.0.1", port=cluster.layout.czar_port, user="skyshard", database=case01)
    try:
        for sql in QUERIES:
            for _ in range(2):  # the second run of the first two is a direct result
                assert _columns(engine, sql) == _columns(plain, sql), sql
    finally:
        engine.close()
        plain.close()
