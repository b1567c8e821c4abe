"""Central state (css): the cluster metadata, stored in the czar's MariaDB.

Owns the tables that describe partitioning families, databases, tables,
chunk placement, workers, users and grants, their schema migrations, and the typed API
(:class:`css.api.Css`) through which every other module reads and writes
them.  No other module touches these tables directly.
"""

from css.api import Css, CssError
from css.model import (
    ChunkPlacement,
    Column,
    Database,
    Family,
    Table,
    TableKind,
    TableState,
    User,
    Worker,
    WorkerState,
)

__all__ = [
    "ChunkPlacement",
    "Column",
    "Css",
    "CssError",
    "Database",
    "Family",
    "Table",
    "TableKind",
    "TableState",
    "User",
    "Worker",
    "WorkerState",
]
