#!/usr/bin/env bash
# Create .venv (once) and install the course into it. Idempotent: a second run only checks.
# CPU machines get the torch/torchvision pins of requirements/cpu-pins.txt (timm needs a torchvision that imports);
# on Colab do not run this: use the one pip cell at the top of each notebook, which keeps Colab's torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.fit3d-installed
want="$(cat pyproject.toml requirements/cpu-pins.txt | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing fit3d-course and its dependencies (about 2 minutes the first time)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -c requirements/cpu-pins.txt -e ".[dev]"
  echo "$want" > "$stamp"
fi
.venv/bin/python -c "import torch, torchvision, timm; print(f'[setup] torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}, CUDA {torch.cuda.is_available()}')"
