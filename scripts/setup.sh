#!/usr/bin/env bash
# Install exactcomp and everything its tests and benchmarks need, on a fresh machine.
# torch is pinned to 2.13.0 here first: that is a CPU build available offline on our machines,
# while an open range with no torch installed would pull a CUDA build of several GB.
# (pyproject.toml itself keeps torch>=2.0, so users elsewhere are free.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
fi
# the cluster extra (Dask distributed) too, so that tests/test_cluster.py runs rather than skips
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[test,cluster]"
