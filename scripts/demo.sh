#!/usr/bin/env bash
# Command 1 of the README: set up, then run the demo (broker + demo municipality + enrolled
# agent + local origins, on loopback, offline). Extra arguments go to `sekimori demo` (--once).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/sekimori demo "$@"
