#!/usr/bin/env bash
# Build (or reuse) MinkowskiEngine 0.5.4 for the given Python, CPU only, with OpenBLAS.
#
# Usage: scripts/build_minkowski.sh [PYTHON]        (default: .venv/bin/python, else python3)
#
# Idempotent: 1) MinkowskiEngine already imports in PYTHON -> nothing to do;
#             2) a wheel cached for this exact torch version -> install it;
#             3) else build a wheel into the cache, then install it.
# The compiled extension is tied to the exact torch version it was built against (pip's own
# wheel cache would happily reuse a wheel built for another torch: "undefined symbol" at import),
# so the cache is keyed on torch's version:
#     ${MEDGEN_WHEEL_CACHE:-$HOME/.cache/medgen/wheels}/torch-<version>/MinkowskiEngine-0.5.4-*.whl
# The build needs numpy<2 and setuptools<60, which must not be forced on the target environment:
# the wheel is built in a throwaway venv that sees the target's packages (torch) through a .pth
# file, with its own numpy<2/setuptools<60 shadowing the target's.  numpy 2 works at run time.
# The build's thousands of compiler lines go to <cache>/torch-<version>/build.log: the terminal
# gets one line, a heartbeat a minute, and the log's tail only if the build fails.
set -euo pipefail

ME_VERSION="0.5.4"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-}"
if [[ -z "$PY" ]]; then
    if [[ -x "$here/.venv/bin/python" ]]; then PY="$here/.venv/bin/python"; else PY="$(command -v python3)"; fi
fi

# MinkowskiEngine 0.5.4 still uses collections.Sequence etc. (removed in Python 3.10).
IMPORT_CHECK='
import collections, collections.abc
for _n in ("Sequence", "Mapping", "Iterable", "MutableMapping", "Callable"):
    if not hasattr(collections, _n):
        setattr(collections, _n, getattr(collections.abc, _n))
import MinkowskiEngine as ME
print(ME.__version__)
'

if "$PY" -c "$IMPORT_CHECK" >/dev/null 2>&1; then
    echo "MinkowskiEngine already importable in $PY: $("$PY" -c "$IMPORT_CHECK" 2>/dev/null)"
    exit 0
fi

TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
CACHE_DIR="${MEDGEN_WHEEL_CACHE:-$HOME/.cache/medgen/wheels}/torch-${TORCH_VERSION}"
mkdir -p "$CACHE_DIR"

find_wheel() { ls -1 "$CACHE_DIR"/MinkowskiEngine-${ME_VERSION}-*.whl 2>/dev/null | head -n 1 || true; }

# Every step of a build (apt, the build venv, the compiler) writes to the log, not the terminal.
build_wheel() {
    if ! dpkg -s libopenblas-dev >/dev/null 2>&1; then
        apt-get update && apt-get install -y libopenblas-dev
    fi
    "$base_py" -m venv "$build_venv"
    "$build_venv/bin/python" -m pip install "numpy<2" "setuptools<60" wheel
    # Appended after the build venv's own site-packages, so its numpy/setuptools win.
    build_site="$("$build_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "$target_site" > "$build_site/zz_target_env.pth"
    "$build_venv/bin/python" -c 'import numpy, setuptools, torch; print("build env: numpy", numpy.__version__, "setuptools", setuptools.__version__, "torch", torch.__version__)'
    MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$build_venv/bin/python" -m pip wheel -v \
        --no-build-isolation --no-binary :all: --no-deps --no-cache-dir \
        "MinkowskiEngine==${ME_VERSION}" -w "$tmp_wheels" \
        --config-settings=--build-option=--cpu_only \
        --config-settings=--build-option=--blas=openblas
}

wheel="$(find_wheel)"
if [[ -z "$wheel" ]]; then
    target_site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    base_py="$("$PY" -c 'import sys; print(sys._base_executable)')"
    build_venv="$(mktemp -d /tmp/mebuild.XXXXXX)"
    tmp_wheels="$build_venv/wheels"
    trap 'rm -rf "$build_venv"' EXIT
    source "$here/scripts/run_logged.sh"
    run_logged "$CACHE_DIR/build.log" \
        "No cached MinkowskiEngine wheel for torch ${TORCH_VERSION}: building it (7-11 min on 2 cores, once per torch version)" \
        build_wheel
    built="$(ls -1 "$tmp_wheels"/MinkowskiEngine-${ME_VERSION}-*.whl | head -n 1)"
    # Copy then rename, so a half-copied wheel is never picked up by a later run.
    cp "$built" "$CACHE_DIR/.partial.whl"
    mv "$CACHE_DIR/.partial.whl" "$CACHE_DIR/$(basename "$built")"
    wheel="$(find_wheel)"
fi

echo "Installing $wheel into $PY"
"$PY" -m pip install -q --no-deps --force-reinstall "$wheel"
"$PY" -c "$IMPORT_CHECK" >/dev/null
echo "MinkowskiEngine $("$PY" -c "$IMPORT_CHECK" 2>/dev/null) ready in $PY (torch ${TORCH_VERSION})."
