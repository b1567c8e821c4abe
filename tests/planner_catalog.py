"""A fixed css snapshot for planner unit tests (no I/O)."""

import numpy as np

from css import ChunkPlacement, Column, Database, Family, Table, TableKind
from czar.catalog import CatalogSnapshot
from ingest.partitioner import Chunker

FAMILY = Family("f", 85, 12, 0.01667)
OBJECT = Table("db", "Object", TableKind.DIRECTOR,
               (Column("objectId", "BIGINT"), Column("ra", "DOUBLE"), Column("decl", "DOUBLE"), Column("flux", "DOUBLE")),
               "", director_table="Object", director_key="objectId", longitude_column="ra", latitude_column="decl")
SOURCE = Table("db", "Source", TableKind.CHILD,
               (Column("sourceId", "BIGINT"), Column("objectId", "BIGINT"), Column("flux", "DOUBLE"), Column("filterId", "INT")),
               "", director_table="Object", director_key="objectId")
REF_OBJECT = Table("db", "RefObject", TableKind.DIRECTOR,
                   (Column("refObjectId", "BIGINT"), Column("ra", "DOUBLE"), Column("decl", "DOUBLE")),
                   "", director_table="RefObject", director_key="refObjectId", longitude_column="ra", latitude_column="decl")
REF_MATCH = Table("db", "RefMatch", TableKind.REF_MATCH,
                  (Column("objectId", "BIGINT"), Column("refObjectId", "BIGINT"), Column("flags", "INT")),
                  "", director_table="Object", director_key="objectId",
                  director_table2="RefObject", director_key2="refObjectId")
FILTER = Table("db", "Filter", TableKind.REPLICATED, (Column("filterId", "INT"), Column("name", "CHAR(3)")), "")




def _chunk_at(lon: float, lat: float) -> int:
    chunker = Chunker(FAMILY.num_stripes, FAMILY.num_sub_stripes, FAMILY.overlap)
    chunk_ids, _ = chunker.locate(np.array([lon]), np.array([lat]))
    return int(chunk_ids[0])


# Populated chunks: near (0.5, 0.5), near (359.5, 0.5) across the RA seam, and far away.
CHUNK_NEAR_ORIGIN = _chunk_at(0.5, 0.5)
CHUNK_ACROSS_SEAM = _chunk_at(359.5, 0.5)
CHUNK_FAR = _chunk_at(180.0, 45.0)

SNAPSHOT = CatalogSnapshot(
    {"db": Database("db", FAMILY)},
    {("db", "Object"): OBJECT, ("db", "Source"): SOURCE, ("db", "Filter"): FILTER,
     ("db", "RefObject"): REF_OBJECT, ("db", "RefMatch"): REF_MATCH},
    {"db": ChunkPlacement("db", {CHUNK_NEAR_ORIGIN: ("w1",), CHUNK_ACROSS_SEAM: ("w2",), CHUNK_FAR: ("w1",)})},
    {},
)
