#!/usr/bin/env bash
# The main job: set up, then start a local cluster (czar + 2 workers, each with
# its own MariaDB) with a sample catalog loaded, ready for a mysql client.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/skyshard up --workers "${WORKERS:-2}" "$@"
