"""Fault injection for tests: off unless a worker's config has a ``fault`` entry.

``{"fault": {"mode": "truncate" | "empty" | "corrupt" | "delay", "seconds": 5,
"databases": [...]}}``: the worker computes byte count and checksum of the
true result as always, then sends only half of each batch (truncate), no
batch at all (empty) or a batch with one byte changed (corrupt), or only
waits (delay).  With ``seconds`` every mode first waits that long before
running each task (a slow worker that then sends damage).  ``databases``
limits the fault to those databases.  Used only by the test suite to prove that the
czar never merges a damaged chunk result.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

MODES = ("truncate", "empty", "corrupt", "delay")


@dataclass(frozen=True)
class Fault:
    mode: str
    seconds: float = 0.0
    databases: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> Fault | None:
        if not config:
            return None
        if config.get("mode") not in MODES:
            raise ValueError(f"fault mode must be one of {MODES}")
        return cls(str(config["mode"]), float(config.get("seconds", 0)), tuple(config.get("databases", ())))

    def applies(self, database: str) -> bool:
        return not self.databases or database in self.databases

    async def before_task(self, database: str) -> None:
        if self.seconds and self.applies(database):
            await asyncio.sleep(self.seconds)

    def mangle(self, database: str, data: bytes) -> bytes:
        """The bytes actually sent for one batch."""
        if not self.applies(database):
            return data
        if self.mode == "truncate":
            return data[: len(data) // 2]
        if self.mode == "empty":
            return b""
        if self.mode == "corrupt" and data:
            return bytes([data[0] ^ 0x01]) + data[1:]
        return data
