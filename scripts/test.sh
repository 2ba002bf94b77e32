#!/usr/bin/env bash
# Command 2 of the README (and what CI runs): set up, then run the unit and integration tests
# against real peers (curl, PostgreSQL on 127.0.0.1:5432 when it runs), then the demo once.
set -euo pipefail
cd "$(dirname "$0")/.."
SEKIMORI_TEST_PEERS=1 bash scripts/setup.sh
.venv/bin/python -m pytest "$@"
.venv/bin/sekimori demo --once
