#!/usr/bin/env bash
# Quick-start demo: sets up .venv if needed, runs process.py on the test/ sample.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh requirements-train.txt
exec .venv/bin/python -m evaluation.demo "$@"
