"""Process entry point of the czar: ``python -m czar --config czar.json``.

Wires css, the catalog cache, the engine and the MySQL front end together
and serves (MySQL protocol and HTTP API) until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Any

from css import Css
from css.api import DEFAULT_CSS_DATABASE
from czar.asyncq import AsyncQueries
from czar.auth import UserDirectory
from czar.catalog import Catalog
from czar.dispatch import SMALL_CHUNK_ROWS
from czar.engine import Engine, EngineSettings
from czar.frontend import make_server
from czar.http_api import start_http_api
from czar.processlist import ProcessList
from skyshard.latency import tune_for_latency
from skyshard.mariadb import ServerAddress

log = logging.getLogger("skyshard.czar")


def build_engine(config: dict[str, Any]) -> Engine:
    address = ServerAddress.from_dict(config["mariadb"])
    css_db = config.get("css_database", DEFAULT_CSS_DATABASE)
    Css.create_database_if_missing(address.sqlalchemy_url(""), css_db)
    css = Css.from_url(address.sqlalchemy_url(css_db))
    css.migrate()
    bootstrap_admin(css, config)
    settings = EngineSettings(
        czar_db=address,
        spool_dir=Path(config.get("spool_dir", "/tmp/skyshard-czar")),
        tasks_per_worker=int(config.get("tasks_per_worker", 4)),
        task_timeout=config.get("task_timeout"),
        max_result_bytes=int(config.get("max_result_bytes", 0)),
        result_ttl=float(config.get("result_ttl", 7 * 86400)),
        cleanup_interval=float(config.get("cleanup_interval", 60)),
        small_chunk_rows=int(config.get("small_chunk_rows", SMALL_CHUNK_ROWS)),
    )
    engine = Engine(settings, Catalog(css, ttl=float(config.get("catalog_ttl", 2.0))))
    engine.start()
    return engine


def bootstrap_admin(css: Css, config: dict[str, Any]) -> None:
    """A css without any user gets the admin ``admin_user`` (default skyshard; null: none) at first start."""
    name = config.get("admin_user", "skyshard")
    if name and not css.users():
        css.add_user(name, str(config.get("admin_password", "")), admin=True)
        log.warning("css had no users: created the admin %r%s", name,
                    "" if config.get("admin_password") else " with an EMPTY password (skyshard user add --replace)")


async def serve(config: dict[str, Any], stop: asyncio.Event) -> None:
    engine = await asyncio.to_thread(build_engine, config)
    host, _, port = config.get("listen", "0.0.0.0:4040").rpartition(":")
    asyncq = AsyncQueries(engine)
    asyncq.start()
    catalog_refresh = asyncio.create_task(engine.keep_catalog_fresh())
    registry = ProcessList()
    users = UserDirectory(engine.catalog.css, ttl=float(config.get("auth_cache_ttl", 1.0)))
    server = make_server(engine, asyncq, registry, users, host=host or "0.0.0.0", port=int(port))
    await server.start_server()
    log.info("czar listening on %s:%s", host, port)
    http_server = None
    if config.get("http_listen"):
        http_host, _, http_port = config["http_listen"].rpartition(":")
        http_server = await start_http_api(engine, asyncq, users, http_host or "0.0.0.0", int(http_port))
        log.info("HTTP API listening on %s:%s", http_host, http_port)
    tune_for_latency()  # see skyshard/latency.py
    await stop.wait()
    server.close()
    if http_server is not None:
        http_server.close()
    catalog_refresh.cancel()
    await asyncq.close()
    await engine.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Skyshard czar")
    parser.add_argument("--config", required=True, help="czar JSON configuration file")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
