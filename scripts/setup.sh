#!/usr/bin/env bash
# Install exactcomp and everything its tests and benchmarks need into a virtual environment in the
# checkout (.venv), on a fresh machine. Nothing outside the checkout is changed, so this works on a
# system Python that refuses global installs (PEP 668) as well as anywhere else.
#
# torch is pinned to 2.13.0 here first: that is a CPU build available offline on our machines,
# while an open range with no torch installed would pull a CUDA build of several GB.
# (pyproject.toml itself keeps torch>=2.0, so users elsewhere are free.)
#
# A second run is quick: the install is skipped while pyproject.toml and this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.exactcomp-setup"
pipq() { "$VENV/bin/python" -m pip --quiet --disable-pip-version-check "$@"; }

if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PY" -m venv "$VENV" 2>/dev/null; then
        # Debian without python3-venv: a venv without pip, then pip brought in by the system's pip
        rm -rf "$VENV"
        "$PY" -m venv --without-pip "$VENV" || {
            echo "setup.sh: cannot create a virtual environment with $PY (install python3-venv)" >&2
            exit 2
        }
        "$PY" -m pip --quiet --python "$VENV/bin/python" install pip || {
            echo "setup.sh: cannot install pip into $VENV (install python3-venv or python3-pip)" >&2
            exit 2
        }
    fi
fi

want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    pipq install "torch==2.13.0"
fi
# the cluster extra (Dask distributed) too, so that tests/test_cluster.py runs rather than skips
pipq install -e ".[test,cluster]"
echo "$want" >"$STAMP"
