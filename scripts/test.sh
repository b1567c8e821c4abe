#!/usr/bin/env bash
# Set up and run the checks: ruff, mypy, the stale-proto check and the test suite
# (which starts real MariaDB instances, workers and a czar).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy czar css worker skyshard ingest proto integration bench
.venv/bin/python -m pytest -q "$@"
