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
# The PythonQt host (Slicer's Python binding on Qt 5.15) runs the Qt-facing tests of the Slicer layer. Its Qt
# runtime comes from apt when we are root and online; otherwise those tests skip and say why.
host=../shared/tools/pythonqt/bin/pythonqt-host
if [ -z "${PYTHONQT_HOST:-}" ] && [ -x "$host" ]; then
  if [ "$(id -u)" -eq 0 ] && [ -x ../shared/tools/pythonqt/runtime-deps.sh ]; then
    timeout 600 ../shared/tools/pythonqt/runtime-deps.sh >/dev/null 2>&1 \
      || echo "tools/test.sh: Qt runtime for the PythonQt host not installed; its tests will skip" >&2
  fi
  PYTHONQT_HOST=$(cd "$(dirname "$host")" && pwd)/pythonqt-host
  export PYTHONQT_HOST
fi
export QT_QPA_PLATFORM=offscreen
"$PY" -m pytest -q -p no:cacheprovider "$@"
