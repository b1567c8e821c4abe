"""Spherical geometry the tests place points with (plain math, independent of sphgeom and scisql)."""

from __future__ import annotations

import math


def destination(ra: float, dec: float, bearing: float, distance: float) -> tuple[float, float]:
    """The point ``distance`` degrees from (ra, dec) towards ``bearing`` (degrees from north)."""
    lat1, lon1 = math.radians(dec), math.radians(ra)
    b, d = math.radians(bearing), math.radians(distance)
    lat2 = math.asin(max(-1.0, min(1.0, math.sin(lat1) * math.cos(d) + math.cos(lat1) * math.sin(d) * math.cos(b))))
    lon2 = lon1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(lat1), math.cos(d) - math.sin(lat1) * math.sin(lat2))
    return math.degrees(lon2) % 360.0, math.degrees(lat2)
