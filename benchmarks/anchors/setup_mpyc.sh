#!/usr/bin/env bash
# Idempotent setup of the anchor venv benchmarks/anchors/.venv-mpyc (MPyC k-means peer anchor).
#
# Creates the venv with python3.11 (override with PYTHON=...) and installs the pinned
# requirements-mpyc.txt from PyPI. Does nothing if the venv exists and was built from the
# current requirements file (sha256 kept in .venv-mpyc/.requirements.sha256); rebuilds it
# from scratch if the file changed or a previous install was incomplete.
#
# Then measure with:  benchmarks/anchors/.venv-mpyc/bin/python benchmarks/anchors/mpyc_kmeans.py \
#                         --points 10000 --features 12 --k 5 --iterations 2
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-mpyc"
REQ="$HERE/requirements-mpyc.txt"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3.11}"

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    echo "setup_mpyc: $VENV is up to date" >&2
    exit 0
fi

command -v "$PYTHON" >/dev/null || { echo "setup_mpyc: $PYTHON not found" >&2; exit 1; }
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "setup_mpyc: $PYTHON is not Python 3.11" >&2; exit 1; }

echo "setup_mpyc: (re)creating $VENV from $(basename "$REQ")" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --no-input --disable-pip-version-check -q -r "$REQ"
# Smoke test: MPyC imports (single party, no network) with its numpy and gmpy2 back ends active.
"$VENV/bin/python" - <<'PYEOF'
import sys
sys.argv = [sys.argv[0]]          # mpyc.runtime parses sys.argv on import
import gmpy2, numpy, mpyc, mpyc.gmpy
from mpyc.runtime import mpc
assert mpyc.__version__ == "0.11", mpyc.__version__
assert mpyc.gmpy.powmod is gmpy2.powmod, "MPyC fell back to its pure-Python gmpy2 stubs"
x = mpc.SecInt(32).array(numpy.array([[3, 1, 2]]))
assert mpc.run(mpc.output(mpc.np_argmin(x, axis=1)))[0] == 1
PYEOF
echo "$want" > "$STAMP"
echo "setup_mpyc: done" >&2
