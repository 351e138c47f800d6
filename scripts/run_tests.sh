#!/usr/bin/env bash
# The project's test command: sets up .venv if needed, then runs the pytest suite.
# Extra arguments go to pytest, e.g. scripts/run_tests.sh -m "not slow" -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh requirements-dev.txt
exec .venv/bin/python -m pytest "$@"
