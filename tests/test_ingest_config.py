"""Tests for ingest.config: Qserv's ingest json, .schema files, partitioner json, case layouts.

The Qserv examples in ``shared/datasets`` are read where present (tests skip
without them); the error cases use small configurations written here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from ingest.config import (
    ConfigError,
    DatabaseConfig,
    TableConfig,
    load_case_directory,
    load_database_config,
    load_partition_config,
    load_table_config,
    parse_create_table,
)
from ingest.loaddata import TextFormat, field_bounds, iter_blocks

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CASE01 = DATASETS / "qserv-case01"
TEST101 = DATASETS / "qserv-test101"
needs_case01 = pytest.mark.skipif(
    not CASE01.is_dir(), reason=f"Qserv test data not found at {CASE01} (shared/datasets absent)")
needs_test101 = pytest.mark.skipif(
    not TEST101.is_dir(), reason=f"Qserv test data not found at {TEST101} (shared/datasets absent)")

CASE01_REPLICATED = ["Filter", "LeapSeconds", "Logs", "RefSrcMatch", "Science_Ccd_Exposure",
                     "SimRefObject", "sdqa_Metric"]


def column_names(create_sql: str) -> list[str]:
    tree = sqlglot.parse_one(create_sql, read="mysql")
    return [c.name for c in tree.find_all(exp.ColumnDef)]


# ---------------------------------------------------------------------------
# Real configurations
# ---------------------------------------------------------------------------


@needs_case01
def test_case01_database_and_table_kinds() -> None:
    database, tables, files = load_case_directory(CASE01)
    assert database == DatabaseConfig("qcase01", 85, 12, 0.01667, database.source_path)
    by_name = {t.name: t for t in tables}
    assert sorted(by_name) == sorted(["Object", "Source", *CASE01_REPLICATED])
    assert [t.name for t in tables[:2]] == ["Object", "Source"]  # directors, then children

    obj = by_name["Object"]
    assert (obj.kind, obj.director_table, obj.director_key) == ("director", None, "objectId")
    assert (obj.longitude_key, obj.latitude_key) == ("ra_PS", "decl_PS")
    src = by_name["Source"]
    assert (src.kind, src.director_table, src.director_key) == ("child", "Object", "objectId")
    assert (src.longitude_key, src.latitude_key) == ("raObject", "declObject")
    for name in CASE01_REPLICATED:
        t = by_name[name]
        assert t.kind == "replicated" and not t.is_partitioned
        assert t.director_table is t.director_key is t.longitude_key is None
    for t in tables:
        assert t.database == "qcase01"
        assert t.text_format == TextFormat()
        assert t.director_table2 is t.director_key2 is t.flag is t.ang_sep is None
        assert files[t.name] == [CASE01 / "data" / f"{t.name}.tsv.gz"]


@needs_case01
def test_case01_columns_and_create_sql() -> None:
    _, tables, _ = load_case_directory(CASE01)
    by_name = {t.name: t for t in tables}
    obj = by_name["Object"]
    assert len(obj.columns) == 228 and obj.field_count == 228
    assert obj.columns[0] == ("objectId", "bigint(20) NOT NULL")
    assert obj.columns[-1] == ("varBinaryField", "varbinary(100) DEFAULT NULL")
    assert obj.column_index("RA_ps") == 2
    # The json's schema adds Qserv's chunk columns, which the raw data lacks.
    assert [n for n, _ in obj.qserv_columns[-2:]] == ["chunkId", "subChunkId"]
    assert not obj.has_chunk_columns
    partition = load_partition_config(CASE01 / "data" / "partition" / "Object.json")
    assert partition.fields == obj.column_names
    logs = by_name["Logs"]
    assert logs.columns[0] == ("id", "int(11) NOT NULL AUTO_INCREMENT")
    assert ("timereceived", "timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP") in logs.columns
    for t in tables:
        assert t.schema_path == str(CASE01 / "data" / "schema" / f"{t.name}.schema")
        assert t.create_sql.startswith(f"CREATE TABLE `{t.name}` (")
        assert "ENGINE=MyISAM" in t.create_sql and "CHARSET=latin1" in t.create_sql
        assert not t.create_sql.rstrip().endswith(";")
        assert column_names(t.create_sql) == t.column_names
        chunk_sql = t.create_table_sql(f"{t.name}_6630", add_chunk_columns=True,
                                       if_not_exists=True)
        assert chunk_sql.startswith(f"CREATE TABLE IF NOT EXISTS `{t.name}_6630` (")
        assert column_names(chunk_sql) == [*t.column_names, "chunkId", "subChunkId"]
    sdqa = by_name["sdqa_Metric"].create_table_sql("x", add_chunk_columns=True)
    assert sdqa.index("`subChunkId`") < sdqa.index("PRIMARY KEY")  # columns before keys


@needs_case01
def test_case01_data_files_have_the_configured_field_count() -> None:
    _, tables, files = load_case_directory(CASE01)
    for t in tables:
        rows = 0
        for block in iter_blocks(files[t.name][0], t.text_format):
            field_bounds(block, t.text_format, t.field_count)
            rows += block.nrows
        assert rows > 0


@needs_test101
def test_test101_layout() -> None:
    database, tables, files = load_case_directory(TEST101)
    assert (database.name, database.num_stripes, database.num_sub_stripes) == ("test101", 85, 12)
    by_name = {t.name: t for t in tables}
    assert {n: t.kind for n, t in by_name.items()} == {
        "Object": "director", "Source": "child", "Filter": "replicated"}
    comma = TextFormat.from_mysql_literals(",")
    assert by_name["Object"].text_format == comma == by_name["Source"].text_format
    assert by_name["Filter"].text_format == TextFormat()
    assert by_name["Object"].has_chunk_columns and by_name["Object"].schema_path is None
    assert column_names(by_name["Object"].create_sql) == by_name["Object"].column_names
    assert [p.name for p in files["Object"]] == [
        "chunk_7310_overlap.txt", "chunk_7480.txt", "chunk_7480_overlap.txt"]
    assert [p.name for p in files["Filter"]] == ["Filter.csv"]
    for t in tables:
        for path in files[t.name]:
            for block in iter_blocks(path, t.text_format):
                field_bounds(block, t.text_format, t.field_count)
    # Already carries its chunk columns: nothing added twice.
    sql = by_name["Object"].create_table_sql("Object_7480", add_chunk_columns=True)
    assert column_names(sql) == by_name["Object"].column_names


# ---------------------------------------------------------------------------
# Small configurations: kinds, keys, errors
# ---------------------------------------------------------------------------


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path


def table_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 12, "auth_key": "", "database": "db", "table": "T", "is_partitioned": 1,
        "director_table": "", "director_key": "id", "longitude_key": "ra",
        "latitude_key": "decl",
        "schema": [{"name": "id", "type": "bigint NOT NULL"},
                   {"name": "ra", "type": "double NOT NULL"},
                   {"name": "decl", "type": "double NOT NULL"},
                   {"name": "other_id", "type": "bigint"},
                   {"name": "flags", "type": "int"}],
    }
    doc.update(overrides)
    return doc


def test_kinds(tmp_path: Path) -> None:
    director = load_table_config(write_json(tmp_path / "a.json", table_doc()))
    assert director.kind == "director" and director.director_table is None
    itself = load_table_config(write_json(tmp_path / "b.json", table_doc(director_table="T")))
    assert itself.kind == "director"
    child = load_table_config(write_json(tmp_path / "c.json", table_doc(director_table="Obj")))
    assert (child.kind, child.director_table) == ("child", "Obj")
    match = load_table_config(write_json(tmp_path / "d.json", table_doc(
        director_table="Obj", director_key="id", director_table2="Other.DeepSource",
        director_key2="other_id", flag="flags", ang_sep=0.01667)))
    assert (match.kind, match.director_table2, match.director_key2, match.flag,
            match.ang_sep) == ("ref-match", "Other.DeepSource", "other_id", "flags", 0.01667)
    replicated = load_table_config(write_json(tmp_path / "e.json", table_doc(
        is_partitioned=0)))
    assert replicated.kind == "replicated" and replicated.director_key is None
    assert load_table_config(write_json(tmp_path / "f.json", table_doc(
        is_partitioned="false"))).kind == "replicated"


def test_json_only_create_sql(tmp_path: Path) -> None:
    config = load_table_config(write_json(tmp_path / "T.json", table_doc(
        charset_name="latin1", fields_terminated_by=",", fields_enclosed_by='"',
        lines_terminated_by="\\r\\n")))
    assert config.columns == config.qserv_columns
    assert config.create_sql == (
        "CREATE TABLE `T` (\n  `id` bigint NOT NULL,\n  `ra` double NOT NULL,\n"
        "  `decl` double NOT NULL,\n  `other_id` bigint,\n  `flags` int\n"
        ") ENGINE=MyISAM DEFAULT CHARSET=latin1")
    assert config.text_format == TextFormat(b",", b'"', b"\\", b"\r\n")


@pytest.mark.parametrize(("overrides", "problem"), [
    ({"table": None}, "'table' must be a string"),
    ({"schema": []}, "'schema' must be a non-empty list"),
    ({"schema": [{"name": "id"}]}, "has no 'type'"),
    ({"is_partitioned": 2}, "'is_partitioned' must be 0 or 1"),
    ({"director_key": ""}, "a director table needs 'director_key'"),
    ({"director_key": "nope"}, "director_key 'nope' is not a column"),
    ({"latitude_key": "nope"}, "latitude_key 'nope' is not a column"),
    ({"director_table2": "X", "director_table": "Obj", "director_key2": "other_id",
      "flag": "flags"}, "ang_sep"),
    ({"director_table2": "X", "director_table": "Obj", "ang_sep": 1.0, "flag": "flags"},
     "needs 'director_key2'"),
    ({"fields_enclosed_by": "ab"}, "bad text format"),
    ({"schema": [{"name": "id", "type": "int"}, {"name": "ID", "type": "int"}]}, "duplicate"),
])
def test_table_config_errors_name_file_and_problem(tmp_path: Path, overrides: dict[str, Any],
                                                   problem: str) -> None:
    doc = table_doc(**overrides)
    if overrides.get("table", "") is None:
        del doc["table"]
        problem = "missing key 'table'"
    path = write_json(tmp_path / "Bad.json", doc)
    with pytest.raises(ConfigError) as info:
        load_table_config(path)
    assert info.value.path == str(path)
    assert problem in str(info.value)
    assert str(path) in str(info.value)


def test_unreadable_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_table_config(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_table_config(tmp_path / "broken.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_database_config(tmp_path / "list.json")


@pytest.mark.parametrize(("doc", "problem"), [
    ({"database": "d", "num_stripes": 0, "num_sub_stripes": 1, "overlap": 0.1}, "at least 1"),
    ({"database": "d", "num_stripes": "x", "num_sub_stripes": 1, "overlap": 0.1}, "integer"),
    ({"database": "d", "num_stripes": 85, "overlap": 0.1}, "missing key 'num_sub_stripes'"),
    ({"database": "d", "num_stripes": 85, "num_sub_stripes": 12, "overlap": -1}, "overlap"),
    ({"num_stripes": 85, "num_sub_stripes": 12, "overlap": 0.1}, "missing key 'database'"),
])
def test_database_config_errors(tmp_path: Path, doc: dict[str, Any], problem: str) -> None:
    path = write_json(tmp_path / "database.json", doc)
    with pytest.raises(ConfigError, match=problem) as info:
        load_database_config(path)
    assert info.value.path == str(path)


def test_database_config_from_partitioner_common_json(tmp_path: Path) -> None:
    path = write_json(tmp_path / "common.json", {
        "dirDb": "qcase01", "part": {"num-stripes": 85, "num-sub-stripes": 12,
                                     "default-overlap": 0.01667}})
    assert load_database_config(path) == DatabaseConfig("qcase01", 85, 12, 0.01667, str(path))


# ---------------------------------------------------------------------------
# .schema files
# ---------------------------------------------------------------------------

MYSQLDUMP = """-- MySQL dump 10.13
/*!40101 SET @saved_cs_client     = @@character_set_client */;
DROP TABLE IF EXISTS `T`;
/*!40101 SET character_set_client = utf8 */;
CREATE TABLE `T` (
  `id` bigint(20) NOT NULL,
  `ra` double NOT NULL COMMENT 'right ascension, deg',
  `decl` double NOT NULL,
  `other_id` bigint(20) DEFAULT NULL,
  `flags` int(11) DEFAULT '0',
  PRIMARY KEY (`id`),
  KEY `idx_ra` (`ra`,`decl`)
) ENGINE=MyISAM DEFAULT CHARSET=latin1;
/*!40101 SET character_set_client = @saved_cs_client */;
"""


def test_schema_file_from_mysqldump(tmp_path: Path) -> None:
    (tmp_path / "T.schema").write_text(MYSQLDUMP)
    config = load_table_config(write_json(tmp_path / "T.json", table_doc()), tmp_path)
    assert config.schema_path == str(tmp_path / "T.schema")
    assert config.create_sql.startswith("CREATE TABLE `T` (")
    assert config.create_sql.endswith("ENGINE=MyISAM DEFAULT CHARSET=latin1")
    assert config.columns[1] == ("ra", "double NOT NULL COMMENT 'right ascension, deg'")
    assert config.column_names == ["id", "ra", "decl", "other_id", "flags"]


def test_schema_file_disagreeing_with_json(tmp_path: Path) -> None:
    (tmp_path / "T.schema").write_text(MYSQLDUMP.replace("`flags`", "`flagz`"))
    path = write_json(tmp_path / "T.json", table_doc())
    with pytest.raises(ConfigError, match="differ from T.schema") as info:
        load_table_config(path, tmp_path)
    assert info.value.path == str(path)


def test_broken_schema_file(tmp_path: Path) -> None:
    (tmp_path / "T.schema").write_text("SELECT 1;")
    with pytest.raises(ConfigError, match="no CREATE TABLE") as info:
        load_table_config(write_json(tmp_path / "T.json", table_doc()), tmp_path)
    assert info.value.path == str(tmp_path / "T.schema")


def test_parse_create_table_keeps_text() -> None:
    sql, columns = parse_create_table(
        "create table if not exists db.`Weird Name` (`KEY` int, a varchar(10) "
        "CHARACTER SET latin1, UNIQUE KEY u (a), CHECK (`KEY` > 0)) ENGINE=InnoDB;\nSELECT 1;")
    assert sql.endswith("ENGINE=InnoDB")
    assert columns == [("KEY", "int"), ("a", "varchar(10) CHARACTER SET latin1")]
    table = TableConfig("db", "Weird Name", "replicated", None, None, None, None, None, None,
                        None, None, columns, sql)
    renamed = table.create_table_sql("W_1", add_chunk_columns=True)
    assert renamed.startswith("create table if not exists `W_1` (")
    assert column_names(renamed) == ["KEY", "a", "chunkId", "subChunkId"]


# ---------------------------------------------------------------------------
# Case directories
# ---------------------------------------------------------------------------


def make_case(root: Path, **object_overrides: Any) -> Path:
    ingest = root / "data" / "ingest"
    ingest.mkdir(parents=True)
    write_json(ingest / "database.json", {"database": "db", "num_stripes": 18,
                                          "num_sub_stripes": 4, "overlap": 0.5})
    write_json(ingest / "metadata.json", {"version": 12, "tables": []})
    write_json(ingest / "Obj.json", table_doc(table="Obj", **object_overrides))
    write_json(ingest / "Src.json", table_doc(table="Src", director_table="Obj",
                                              director_key="other_id"))
    write_json(ingest / "Ref.json", table_doc(table="Ref", is_partitioned=0))
    data = root / "data"
    (data / "Obj.tsv.gz").write_bytes(b"")
    (data / "Src").mkdir()
    (data / "Src" / "part2.csv").write_bytes(b"")
    (data / "Src" / "part1.csv").write_bytes(b"")
    (data / "Src" / "notes.md").write_bytes(b"")
    (data / "Ref.tsv").write_bytes(b"")
    (data / "Reference.tsv").write_bytes(b"")
    return root


def test_case_directory_layout(tmp_path: Path) -> None:
    database, tables, files = load_case_directory(make_case(tmp_path))
    assert database.name == "db" and database.num_stripes == 18
    assert [(t.name, t.kind) for t in tables] == [
        ("Obj", "director"), ("Src", "child"), ("Ref", "replicated")]
    data = tmp_path / "data"
    assert files == {"Obj": [data / "Obj.tsv.gz"],
                     "Src": [data / "Src" / "part1.csv", data / "Src" / "part2.csv"],
                     "Ref": [data / "Ref.tsv"]}
    # The data directory itself works too.
    assert load_case_directory(data)[0] == database


def test_case_directory_director_needs_position(tmp_path: Path) -> None:
    make_case(tmp_path, longitude_key="")
    with pytest.raises(ConfigError, match="needs 'longitude_key'") as info:
        load_case_directory(tmp_path)
    assert info.value.path.endswith("Obj.json")


def test_case_directory_fills_and_checks_partition_json(tmp_path: Path) -> None:
    make_case(tmp_path, longitude_key="", latitude_key="")
    partition = tmp_path / "data" / "partition"
    partition.mkdir()
    write_json(partition / "Obj.json", {"part": {"pos": "ra, decl", "overlap": 0.5},
                                        "dirColName": "id"})
    _, tables, _ = load_case_directory(tmp_path)
    obj = tables[0]
    assert (obj.longitude_key, obj.latitude_key) == ("ra", "decl")
    write_json(partition / "Obj.json", {"part": {"pos": "decl, ra"}})
    write_json(tmp_path / "data" / "ingest" / "Obj.json", table_doc(table="Obj"))
    with pytest.raises(ConfigError, match="longitude_key is 'ra' but"):
        load_case_directory(tmp_path)


def test_case_directory_unknown_director(tmp_path: Path) -> None:
    make_case(tmp_path)
    write_json(tmp_path / "data" / "ingest" / "Src.json",
               table_doc(table="Src", director_table="Nope"))
    with pytest.raises(ConfigError, match="director table 'Nope' is not configured"):
        load_case_directory(tmp_path)


def test_case_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        load_case_directory(tmp_path / "absent")
    with pytest.raises(ConfigError, match="database_"):
        load_case_directory(tmp_path)
    make_case(tmp_path / "c")
    write_json(tmp_path / "c" / "data" / "ingest" / "Ref.json",
               table_doc(table="Ref", database="other", is_partitioned=0))
    with pytest.raises(ConfigError, match="database 'other' is not 'db'"):
        load_case_directory(tmp_path / "c")
