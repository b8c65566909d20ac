#!/usr/bin/env bash
# The whole GPU check in one call, for a session that is lent a GPU (the device tool) or any CUDA machine with nvcc.
# What it runs: benchmarks/gpu_check.py (gsplat's CUDA build, torch-vs-gsplat parity, speed, a lift with gsplat's
# DefaultStrategy), then the suite's GPU tests. Results land in $OUT (gpu_check.json, *.log).
#
# Prepare on the CPU machine (the GPU machine reaches no package index; it has torch, timm, torchmetrics, scipy,
# scikit-image, pytest, ninja, jaxtyping and rich, but not gsplat nor the scene generator's embreex/trimesh):
#   echo /.whl/ >> .git/info/exclude     # already in .gitignore
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl gsplat==1.5.3
#   bash scripts/course.sh --only 01     # generates data/synthetic (the lift step needs one scene)
# Then one device call: command "bash scripts/device_check.sh", carry [".whl", "data/synthetic"], timeout_s 600.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${CUDA_HOME:-}" ] && command -v nvcc >/dev/null 2>&1; then
  CUDA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"
  export CUDA_HOME  # torch's extension builder needs it; gsplat 1.5.3 compiles its kernels on first use
fi
# one architecture (the lent H200 is sm_90) and every core: gsplat's JIT build is the slow part of this check
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}" PYTHONUNBUFFERED=1
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-/tmp/torch_extensions}" FIT3D_NO_PROGRESS=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$OUT/nvidia-smi.log"
echo "CUDA_HOME=${CUDA_HOME:-unset}; nvcc: $(nvcc --version 2>/dev/null | tail -1)"
"$PY" benchmarks/gpu_check.py --out "$OUT" --budget-s "${BUDGET_S:-420}" 2>&1 | tee "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}
# the suite's tests that need CUDA or gsplat but no generated scenes (the lift test of test_strategy needs embreex)
"$PY" -m pytest -q -p no:cacheprovider tests/test_render.py::test_torch_backend_matches_gsplat tests/test_gsplat_reference.py \
  2>&1 | tee "$OUT/pytest.log"
rc_tests=${PIPESTATUS[0]}
echo "[device_check] gpu_check rc=$rc, GPU tests rc=$rc_tests"
exit $(( rc != 0 || rc_tests != 0 ))
