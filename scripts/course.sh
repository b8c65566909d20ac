#!/usr/bin/env bash
# Set up, then run the whole course (notebooks 01-05) with papermill and build report/index.html.
# Usage: bash scripts/course.sh [--profile smoke|paper] [--only 01,02] [--set key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m fit3d_helpers run "$@"
