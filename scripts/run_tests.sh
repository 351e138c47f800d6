#!/usr/bin/env bash
# The project's test command: sets up .venv if needed (pip only when a requirements file
# changed), then runs the pytest suite on every core (pytest-xdist, one worker per core, each
# test file on one worker so that module fixtures are made once; tests/conftest.py gives each
# worker its share of the threads) and prints the 25 slowest tests.
# Extra arguments go to pytest, e.g. scripts/run_tests.sh -m "not slow" -x, or -n 0 for one process.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh requirements-dev.txt
exec .venv/bin/python -m pytest -n auto --dist loadfile --no-loadscope-reorder --durations=25 "$@"
