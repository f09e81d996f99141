#!/usr/bin/env bash
# The whole test suite from a fresh clone: installs what it needs, lints, checks the Slicer layer, runs pytest.
# torch goes first and pinned: an unpinned torch pulls several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q --disable-pip-version-check torch==2.13.0
"$PY" -m pip install -q --disable-pip-version-check -e ".[test]"
"$PY" -m ruff check .
if [ -f ../shared/tools/slicer_api_check.py ] && [ -d MultimodalSeg ] && ls MultimodalSeg/*.py >/dev/null 2>&1; then
  "$PY" ../shared/tools/slicer_api_check.py .
fi
export QT_QPA_PLATFORM=offscreen
"$PY" -m pytest -q -p no:cacheprovider "$@"
