#!/usr/bin/env bash
# Open the course in JupyterLab from .venv (set up first if needed): widgets work and the plotly figures are
# interactive; saving a notebook also writes its .py source (jupytext). Extra options go to `jupyter lab`, e.g.
#   bash scripts/lab.sh --no-browser --port 8890
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
root=(); [ "$(id -u)" = 0 ] && root=(--allow-root)  # containers run as root
exec .venv/bin/jupyter lab --ServerApp.root_dir="$PWD" "${root[@]}" "$@" notebooks/01_data.ipynb
