"""A fixed css snapshot for planner unit tests (no I/O)."""

from css import ChunkPlacement, Column, Database, Family, Table, TableKind
from czar.catalog import CatalogSnapshot

FAMILY = Family("f", 85, 12, 0.01667)
OBJECT = Table("db", "Object", TableKind.DIRECTOR,
               (Column("objectId", "BIGINT"), Column("ra", "DOUBLE"), Column("decl", "DOUBLE"), Column("flux", "DOUBLE")),
               "", director_table="Object", director_key="objectId", longitude_column="ra", latitude_column="decl")
SOURCE = Table("db", "Source", TableKind.CHILD,
               (Column("sourceId", "BIGINT"), Column("objectId", "BIGINT"), Column("flux", "DOUBLE"), Column("filterId", "INT")),
               "", director_table="Object", director_key="objectId")
FILTER = Table("db", "Filter", TableKind.REPLICATED, (Column("filterId", "INT"), Column("name", "CHAR(3)")), "")

SNAPSHOT = CatalogSnapshot(
    {"db": Database("db", FAMILY)},
    {("db", "Object"): OBJECT, ("db", "Source"): SOURCE, ("db", "Filter"): FILTER},
    {"db": ChunkPlacement("db", {100: ("w1",), 101: ("w2",)})},
    {},
)
