"""The czar's error tree: every error a client can see carries a MySQL errno and SQLSTATE.

Internal code raises these; only the front ends translate them to wire form
(a MySQL error packet, an HTTP problem document).
"""

from __future__ import annotations


class SkyshardError(Exception):
    """Base class: ``errno`` and ``sqlstate`` are what a MySQL client sees."""

    errno = 1105  # ER_UNKNOWN_ERROR
    sqlstate = "HY000"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ParseError(SkyshardError):
    errno = 1064  # ER_PARSE_ERROR
    sqlstate = "42000"


class UnsupportedQuery(SkyshardError):
    """The engine cannot evaluate this construct correctly, so it refuses it."""

    errno = 1235  # ER_NOT_SUPPORTED_YET
    sqlstate = "42000"


class UnknownDatabase(SkyshardError):
    errno = 1049  # ER_BAD_DB_ERROR
    sqlstate = "42000"


class NoDatabaseSelected(SkyshardError):
    errno = 1046  # ER_NO_DB_ERROR
    sqlstate = "3D000"


class UnknownTable(SkyshardError):
    errno = 1146  # ER_NO_SUCH_TABLE
    sqlstate = "42S02"


class UnknownColumn(SkyshardError):
    errno = 1054  # ER_BAD_FIELD_ERROR
    sqlstate = "42S22"


class AmbiguousColumn(SkyshardError):
    errno = 1052  # ER_NON_UNIQ_ERROR
    sqlstate = "23000"


class AccessDenied(SkyshardError):
    errno = 1142  # ER_TABLEACCESS_DENIED_ERROR
    sqlstate = "42000"


class DatabaseAccessDenied(SkyshardError):
    errno = 1044  # ER_DBACCESS_DENIED_ERROR
    sqlstate = "42000"


class BadCredentials(SkyshardError):
    errno = 1045  # ER_ACCESS_DENIED_ERROR
    sqlstate = "28000"


class NotOwner(SkyshardError):
    errno = 1095  # ER_KILL_DENIED_ERROR
    sqlstate = "HY000"


class QueryFailed(SkyshardError):
    """A chunk task failed on a worker (the message names chunk, worker and cause)."""

    errno = 1105


class QueryCancelled(SkyshardError):
    errno = 1317  # ER_QUERY_INTERRUPTED
    sqlstate = "70100"


class ResultTooLarge(SkyshardError):
    errno = 1105


class UnknownQuery(SkyshardError):
    errno = 1094  # ER_NO_SUCH_THREAD
    sqlstate = "HY000"
