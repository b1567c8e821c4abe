"""css against a real MariaDB: migrations, tables, placement, workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from css import Column, Css, CssError, Family, Table, TableKind, TableState
from css.schema import LATEST_VERSION
from skyshard.cluster import free_port
from skyshard.mariadb import MariaDBInstance, ServerAddress


@pytest.fixture(scope="module")
def css(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Css]:
    instance = MariaDBInstance(tmp_path_factory.mktemp("cssdb"), free_port())
    instance.start()
    try:
        Css.create_database_if_missing(instance.address.sqlalchemy_url(""), "css_test")
        store = Css.from_url(instance.address.sqlalchemy_url("css_test"))
        yield store
        store.close()
    finally:
        instance.stop()


def test_migrations_are_numbered_and_idempotent(css: Css) -> None:
    assert css.migrate() == LATEST_VERSION
    assert css.migrate() == LATEST_VERSION  # second run applies nothing
    assert css.schema_version() == LATEST_VERSION


def test_tables_are_invisible_until_published(css: Css) -> None:
    css.migrate()
    family = Family("f85", 85, 12, 0.01667)
    css.create_database("db1", family)
    assert css.database("db1") == css.database("db1")
    assert css.database("db1").family == family  # type: ignore[union-attr]
    with pytest.raises(CssError):
        css.create_database("db1", Family("f85", 85, 10, 0.01667))
    table = Table("db1", "Object", TableKind.DIRECTOR, (Column("objectId", "BIGINT"), Column("ra", "DOUBLE")),
                  "CREATE TABLE Object (objectId BIGINT, ra DOUBLE)", state=TableState.LOADING,
                  director_key="objectId", longitude_column="ra", latitude_column="decl")
    css.add_table(table)
    assert css.table("db1", "Object") is None
    assert css.table("db1", "Object", include_unpublished=True) is not None
    css.register_worker("w1", "127.0.0.1:1")
    css.register_worker("w2", "127.0.0.1:2")
    css.publish_table("db1", "Object", row_count=10, new_replicas={100: ["w1", "w2"], 101: ["w2"]})
    published = css.table("db1", "Object")
    assert published is not None and published.state is TableState.PUBLISHED and published.row_count == 10
    assert published.columns == table.columns
    assert css.chunk_placement("db1").replicas == {100: ("w1", "w2"), 101: ("w2",)}
    with pytest.raises(CssError):
        css.add_table(table)  # a published table cannot be redefined
    assert [w.worker_id for w in css.workers()] == ["w1", "w2"]
    css.drop_database("db1")
    assert css.database("db1") is None
    assert css.chunk_placement("db1").replicas == {}


def test_connections_build_no_tls_context(css: Css) -> None:
    """Our MariaDB servers offer no TLS: a connection must not build a TLS context first (PyMySQL
    >= 2.2 does by default: about 30 ms per connection, holding the GIL, e.g. for every fetch of
    an async result)."""
    with css.engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert getattr(raw, "ctx", None) is None
    url = css.engine.url
    socket = url.query.get("unix_socket")
    direct = ServerAddress(host=url.host or "127.0.0.1", port=int(url.port or 3306), user=url.username or "root",
                           password=url.password or "", socket=socket if isinstance(socket, str) else None).connect()
    try:
        assert getattr(direct, "ctx", None) is None
    finally:
        direct.close()
