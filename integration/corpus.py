"""Reading Qserv query files: the engine form, the plain form and the pragmas.

Conventions (see ``shared/datasets/README.md``): a line ending in
``-- noQserv`` belongs only to the plain (reference) form; a line starting
with ``-- withQserv `` contributes the rest of the line only to the engine
form; other ``--`` text is a comment.  ``-- pragma sortresult`` compares rows
as a multiset, ``-- pragma noheader`` ignores column names.  ``{DBTAG_A}``
stands for the database name followed by a dot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_NO_QSERV = re.compile(r"--\s*noQserv\s*$", re.IGNORECASE)
_WITH_QSERV = re.compile(r"^\s*--\s*withQserv\s+(.*)$", re.IGNORECASE)
_PRAGMA = re.compile(r"^\s*--\s*pragma\s+(.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class QueryCase:
    """One query file of a corpus."""

    name: str
    path: Path
    engine_sql: str  # what the cluster runs
    plain_sql: str  # what the reference MariaDB runs
    sort_result: bool  # compare as a multiset
    no_header: bool  # column names are not compared

    @property
    def ordered(self) -> bool:
        """Rows compare in order when the query orders them and no pragma says otherwise."""
        return not self.sort_result and re.search(r"\border\s+by\b", self.plain_sql, re.IGNORECASE) is not None


def _strip_comment(line: str) -> str:
    """The line without a trailing ``-- ...`` comment (not inside quotes)."""
    quote: str | None = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
        elif line.startswith("--", index) and (index + 2 == len(line) or line[index + 2].isspace()):
            return line[:index]
    return line


def parse_query_file(path: Path, database: str) -> QueryCase:
    engine: list[str] = []
    plain: list[str] = []
    pragmas: set[str] = set()
    for raw in path.read_text(encoding="utf-8").splitlines():
        pragma = _PRAGMA.match(raw)
        if pragma:
            pragmas.update(word.lower() for word in pragma.group(1).split())
            continue
        with_qserv = _WITH_QSERV.match(raw)
        if with_qserv:
            engine.append(with_qserv.group(1).strip())
            continue
        if _NO_QSERV.search(raw):
            plain.append(_strip_comment(raw).strip())
            continue
        if raw.lstrip().startswith("--"):
            continue  # a comment line
        text = _strip_comment(raw).strip()
        if text:
            engine.append(text)
            plain.append(text)

    def finish(lines: list[str]) -> str:
        sql = " ".join(line for line in lines if line).strip()
        sql = sql.replace("{DBTAG_A}", f"{database}.")
        return sql.rstrip(";").strip()

    return QueryCase(
        name=path.stem,
        path=path,
        engine_sql=finish(engine),
        plain_sql=finish(plain),
        sort_result="sortresult" in pragmas,
        no_header="noheader" in pragmas,
    )


def top_level_queries(case_dir: Path, database: str) -> list[QueryCase]:
    """Every ``queries/*.sql`` directly in the case directory, in name order."""
    return [parse_query_file(p, database) for p in sorted((case_dir / "queries").glob("*.sql"))]


def unsupported_queries(case_dir: Path, database: str) -> list[QueryCase]:
    """The queries of the ``queries/unsupported_*`` folders."""
    return [
        parse_query_file(p, database)
        for p in sorted((case_dir / "queries").glob("unsupported_*/*.sql"))
    ]
