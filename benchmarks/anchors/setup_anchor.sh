#!/usr/bin/env bash
# Idempotent setup of the anchor venv benchmarks/anchors/.venv-tno (TNO DGK secure comparison).
#
# Creates the venv with python3.11 (override with PYTHON=...) and installs the pinned
# requirements-tno.txt from PyPI. Does nothing if the venv exists and was built from the
# current requirements file (sha256 kept in .venv-tno/.requirements.sha256); rebuilds it
# from scratch if the file changed or a previous install was incomplete.
#
# Then measure with:  benchmarks/anchors/.venv-tno/bin/python benchmarks/anchors/tno_dgk.py
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-tno"
REQ="$HERE/requirements-tno.txt"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3.11}"

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    echo "setup_anchor: $VENV is up to date" >&2
    exit 0
fi

command -v "$PYTHON" >/dev/null || { echo "setup_anchor: $PYTHON not found" >&2; exit 1; }
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "setup_anchor: $PYTHON is not Python 3.11" >&2; exit 1; }

echo "setup_anchor: (re)creating $VENV from $(basename "$REQ")" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --no-input --disable-pip-version-check -q -r "$REQ"
# Smoke test: the packages import and gmpy2 acceleration is active.
"$VENV/bin/python" - <<'EOF'
import tno.mpc.protocols.secure_comparison as sc
from tno.mpc.encryption_schemes.utils.utils import USE_GMPY2
assert sc.__version__ == "4.4.0" and USE_GMPY2, (sc.__version__, USE_GMPY2)
EOF
echo "$want" > "$STAMP"
echo "setup_anchor: done" >&2
