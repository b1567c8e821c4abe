"""Synthetic Object/Source catalogs in Qserv's case-directory layout.

Writes ``data/Object.tsv(.gz)``, ``data/Source.tsv(.gz)``, their ``.schema``
files and Qserv ingest JSON, so a generated catalog loads through exactly
the same path as a real one (``skyshard ingest <dir>``).  Positions follow a
realistic sky distribution: uniform on the sphere plus a denser band along
the galactic plane; photometry is a handful of fluxes and magnitudes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

OBJECT_COLUMNS = [
    ("objectId", "bigint(20) NOT NULL"),
    ("ra", "double NOT NULL"),
    ("decl", "double NOT NULL"),
    ("uFlux", "double DEFAULT NULL"),
    ("gFlux", "double DEFAULT NULL"),
    ("rFlux", "double DEFAULT NULL"),
    ("iFlux", "double DEFAULT NULL"),
    ("zFlux", "double DEFAULT NULL"),
    ("rMag", "float DEFAULT NULL"),
    ("extendedness", "smallint(6) DEFAULT NULL"),
    ("flags", "int(11) NOT NULL"),
]
SOURCE_COLUMNS = [
    ("sourceId", "bigint(20) NOT NULL"),
    ("objectId", "bigint(20) NOT NULL"),
    ("ra", "double NOT NULL"),
    ("decl", "double NOT NULL"),
    ("filterId", "tinyint(4) NOT NULL"),
    ("taiMidPoint", "double NOT NULL"),
    ("psfFlux", "double DEFAULT NULL"),
    ("psfFluxSigma", "float DEFAULT NULL"),
]


def sky_positions(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(ra, decl) in degrees: 70% uniform on the sphere, 30% in a galactic-plane band."""
    uniform = int(count * 0.7)
    ra = rng.uniform(0.0, 360.0, count)
    decl = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, count)))
    band = count - uniform
    # a band of +-10 deg around a great circle inclined by 62.9 deg (the galactic plane)
    lon = rng.uniform(0.0, 2 * np.pi, band)
    lat = np.radians(rng.normal(0.0, 5.0, band))
    x = np.cos(lat) * np.cos(lon)
    y = np.cos(lat) * np.sin(lon)
    z = np.sin(lat)
    tilt = np.radians(62.9)
    y2 = y * np.cos(tilt) - z * np.sin(tilt)
    z2 = y * np.sin(tilt) + z * np.cos(tilt)
    ra[uniform:] = np.degrees(np.arctan2(y2, x)) % 360.0
    decl[uniform:] = np.degrees(np.arcsin(np.clip(z2, -1.0, 1.0)))
    return ra, decl


def _format(columns: list[np.ndarray], formats: list[str]) -> bytes:
    """Rows in LOAD DATA text; NaN becomes \\N."""
    parts = []
    for values, fmt in zip(columns, formats, strict=True):
        if values.dtype.kind == "f":
            text = np.char.mod(fmt, values).astype(object)
            text[np.isnan(values)] = "\\N"
            parts.append(text.astype(str))
        else:
            parts.append(np.char.mod(fmt, values))
    lines = parts[0]
    for part in parts[1:]:
        lines = np.char.add(np.char.add(lines, "\t"), part)
    return ("\n".join(lines.tolist()) + "\n").encode() if len(lines) else b""


def _schema(name: str, columns: list[tuple[str, str]], key: str) -> str:
    body = ",\n".join(f"  `{n}` {t}" for n, t in columns)
    return f"CREATE TABLE `{name}` (\n{body},\n  PRIMARY KEY (`{key}`)\n) ENGINE=MyISAM DEFAULT CHARSET=latin1;\n"


def generate(
    out_dir: Path,
    *,
    objects: int,
    sources_per_object: float = 2.0,
    seed: int = 42,
    database: str = "sample",
    num_stripes: int = 85,
    num_sub_stripes: int = 12,
    overlap: float = 0.01667,
    block_rows: int = 1_000_000,
    positions: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Write a catalog of ``objects`` objects (and their sources) into ``out_dir``.

    ``positions`` (ra, decl arrays of length ``objects``) replaces the random
    sky, for tests that place objects on purpose (e.g. across chunk borders).
    """
    if positions is not None and len(positions[0]) != objects:
        raise ValueError(f"{len(positions[0])} positions for {objects} objects")
    rng = np.random.default_rng(seed)
    data = out_dir / "data"
    (data / "schema").mkdir(parents=True, exist_ok=True)
    (data / "ingest").mkdir(parents=True, exist_ok=True)
    (out_dir / "queries").mkdir(exist_ok=True)
    source_id = 0
    with open(data / "Object.tsv", "wb") as obj_out, open(data / "Source.tsv", "wb") as src_out:
        for start in range(0, objects, block_rows):
            n = min(block_rows, objects - start)
            ids = np.arange(start + 1, start + n + 1, dtype=np.int64) * 7 + 1000
            ra, decl = sky_positions(rng, n)
            if positions is not None:
                ra, decl = positions[0][start : start + n], positions[1][start : start + n]
            fluxes = [rng.lognormal(3.0, 1.5, n) for _ in range(5)]
            fluxes[0][rng.random(n) < 0.02] = np.nan
            rmag = (-2.5 * np.log10(fluxes[2] * 1e-9) - 48.6).astype(np.float32)
            ext = rng.integers(0, 2, n)
            flags = rng.integers(0, 1 << 16, n)
            obj_out.write(
                _format(
                    [ids, ra, decl, *fluxes, rmag.astype(np.float64), ext, flags],
                    ["%d", "%.10f", "%.10f", "%.6g", "%.6g", "%.6g", "%.6g", "%.6g", "%.5f", "%d", "%d"],
                )
            )
            counts = rng.poisson(sources_per_object, n)
            owner = np.repeat(np.arange(n), counts)
            m = owner.size
            src_ids = np.arange(source_id + 1, source_id + m + 1, dtype=np.int64)
            source_id += m
            jitter = rng.normal(0.0, 0.3 / 3600.0, (2, m))
            s_decl = np.clip(decl[owner] + jitter[1], -90.0, 90.0)
            s_ra = (ra[owner] + jitter[0] / np.maximum(np.cos(np.radians(s_decl)), 1e-6)) % 360.0
            src_out.write(
                _format(
                    [src_ids, ids[owner], s_ra, s_decl, rng.integers(0, 6, m), rng.uniform(50000, 60000, m),
                     rng.lognormal(3.0, 1.5, m), rng.uniform(0.01, 1.0, m)],
                    ["%d", "%d", "%.10f", "%.10f", "%d", "%.8f", "%.6g", "%.4g"],
                )
            )
    (data / "schema" / "Object.schema").write_text(_schema("Object", OBJECT_COLUMNS, "objectId"))
    (data / "schema" / "Source.schema").write_text(_schema("Source", SOURCE_COLUMNS, "sourceId"))
    (data / "ingest" / "database.json").write_text(
        json.dumps({"database": database, "num_stripes": num_stripes, "num_sub_stripes": num_sub_stripes,
                    "overlap": overlap}, indent=2)
    )
    common = {"database": database, "is_partitioned": 1}
    (data / "ingest" / "Object.json").write_text(json.dumps({
        **common, "table": "Object", "director_table": "", "director_key": "objectId",
        "latitude_key": "decl", "longitude_key": "ra",
        "schema": [{"name": n, "type": t} for n, t in OBJECT_COLUMNS],
    }, indent=2))
    (data / "ingest" / "Source.json").write_text(json.dumps({
        **common, "table": "Source", "director_table": "Object", "director_key": "objectId",
        "latitude_key": "decl", "longitude_key": "ra",
        "schema": [{"name": n, "type": t} for n, t in SOURCE_COLUMNS],
    }, indent=2))
    return out_dir
