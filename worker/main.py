"""Process entry point of a worker: ``python -m worker --config worker.json``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from pathlib import Path

from skyshard.latency import tune_for_latency
from skyshard.mariadb import ServerAddress
from skyshard.memory import keep_freed_memory
from worker.executor import Executor, clear_spool
from worker.fault import Fault
from worker.service import WorkerService, serve


async def run(config: dict) -> None:
    address = ServerAddress.from_dict(config["mariadb"])
    keep_freed_memory()  # ingest batches of tens of MiB: reuse, don't re-fault (skyshard/memory.py)
    log = logging.getLogger("skyshard.worker")
    spool_dir = Path(config["spool_dir"])
    if removed := clear_spool(spool_dir):
        log.warning("removed %d result file(s) and pipe(s) a previous run left in %s", removed, spool_dir)
    executor = Executor(address, spool_dir, pool_size=int(config.get("pool_size", 16)))
    service = WorkerService(
        config["worker_id"], executor,
        max_tasks=int(config.get("max_tasks") or os.cpu_count() or 1),  # scan statements: one per core
        interactive_tasks=int(config["interactive_tasks"]) if config.get("interactive_tasks") else None,
        fault=Fault.from_config(config.get("fault")),
    )
    server, port = await serve(service, config.get("listen", "0.0.0.0:5012"))
    log.info("worker %s listening on port %d", config["worker_id"], port)
    tune_for_latency()  # see skyshard/latency.py
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=2)
    service.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Skyshard worker")
    parser.add_argument("--config", required=True, help="worker JSON configuration file")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(run(config))


if __name__ == "__main__":
    main()
