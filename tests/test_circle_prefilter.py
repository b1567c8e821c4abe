"""The cheap prefilter put before a top-level cone's scisql filter never drops a row the filter keeps.

``czar.planner.spatial._circle_prefilter`` narrows a cone search by latitude
band and longitude range before ``scisql_s2PtInCircle`` runs: it is only
right if every point the exact filter accepts passes it.  Checked on the
reference MariaDB (whose scisql functions the workers run too) for circles
anywhere (around the poles, across longitude 0/360, centres given outside
[0, 360), radii from 0.36 arcsec to 120 deg) against points on and just
inside each circle's edge, stored as given and with their longitude moved
by +-360 deg, as ingest keeps such values.
"""

from __future__ import annotations

import math
import random

import pytest
from sqlglot import exp

from czar.planner.spatial import _circle_prefilter
from skyshard.mariadb import ServerAddress
from tests.sky import destination

pytestmark = pytest.mark.cluster


def _circles() -> list[tuple[float, float, float]]:
    rng = random.Random(11)
    circles = [(200.0, 30.0, 2.0396), (0.0, 0.0, 1.0), (359.9, 10.0, 0.5), (0.05, -20.0, 3.0),
               (10.0, 89.5, 0.2), (10.0, 88.0, 2.0), (190.0, -89.99, 1.0), (45.0, 60.0, 30.0),
               (-10.0, 5.0, 2.0), (370.0, -5.0, 2.0), (120.0, 0.0, 120.0), (80.0, 45.0, 1e-4)]
    for _ in range(40):
        circles.append((rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1))), 10 ** rng.uniform(-3, 1.5)))
    return circles


def _points(circle: tuple[float, float, float]) -> list[tuple[float, float]]:
    ra, dec, radius = circle
    points = []
    for bearing in range(0, 360, 5):
        for distance in (radius, radius * (1 - 1e-9), radius * 0.5):
            lon, lat = destination(ra, dec, bearing + 0.5, distance)
            points += [(lon, lat), (lon + 360.0, lat), (lon - 360.0, lat)]
    return points


def _sql(node: exp.Expression) -> str:
    return node.sql(dialect="mysql")


def test_no_point_of_a_circle_is_dropped_by_its_prefilter(reference: ServerAddress) -> None:
    connection = reference.connect()
    try:
        cursor = connection.cursor()
        cursor.execute("CREATE DATABASE IF NOT EXISTS prefilter_test")
        cursor.execute("CREATE OR REPLACE TABLE prefilter_test.points (circle INT, ra DOUBLE, decl DOUBLE)")
        circles = _circles()
        rows = [(i, lon, lat) for i, circle in enumerate(circles) for lon, lat in _points(circle)]
        cursor.executemany("INSERT INTO prefilter_test.points VALUES (%s, %s, %s)", rows)
        kept = dropped = narrowed = 0
        for i, (ra, dec, radius) in enumerate(circles):
            prefilter = _sql(_circle_prefilter(exp.column("ra"), exp.column("decl"), (ra, dec, radius)))
            exact = f"scisql_s2PtInCircle(ra, decl, {ra!r}, {dec!r}, {radius!r}) = 1"
            cursor.execute(
                f"SELECT SUM({exact}), SUM({exact} AND NOT ({prefilter})), SUM(NOT ({prefilter}))"
                f" FROM prefilter_test.points WHERE circle = %s", (i,))
            in_circle, missed, outside = (int(v or 0) for v in cursor.fetchone())
            assert missed == 0, f"circle {(ra, dec, radius)}: {missed} points dropped by the prefilter"
            kept += in_circle
            dropped += missed
            narrowed += outside
        # the points are on and inside the edges: scisql keeps most, and the check is not vacuous
        assert kept > len(rows) // 3
        # a whole-sky scan of the cone in B4: the prefilter lets through far fewer rows than exist
        cursor.execute(
            "SELECT SUM(" + _sql(_circle_prefilter(exp.column("ra"), exp.column("decl"), (200.0, 30.0, 2.0))) + ")"
            " FROM prefilter_test.points")
        assert int(cursor.fetchone()[0]) < len(rows) // 4
        cursor.execute("DROP DATABASE prefilter_test")
    finally:
        connection.close()
