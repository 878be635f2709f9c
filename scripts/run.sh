#!/usr/bin/env bash
# medgen's two commands on a fresh machine that has Python 3.11 (and bash):
#   bash scripts/run.sh demo   create .venv, install medgen, run the end-to-end demo
#   bash scripts/run.sh test   create .venv, install medgen + test tools + MinkowskiEngine, run all tests
# Also: setup | minkowski | test-fast. The Makefile's targets call this script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.medgen-installed"

setup() {
    local base="${PYTHON:-$(command -v python3.11 || command -v python3)}"
    [[ -x "$PY" ]] || "$base" -m venv "$VENV"
    # Reinstall only when pyproject.toml or constraints.txt changed since the last install.
    # pyproject.toml declares ranges; constraints.txt fixes the exact versions CI runs with.
    if [[ ! -f "$STAMP" || pyproject.toml -nt "$STAMP" || constraints.txt -nt "$STAMP" ]]; then
        "$PY" -m pip install -q --upgrade pip
        "$PY" -m pip install -q -c constraints.txt -e '.[test]'
        # Packages whose own requirements medgen does not need (pyproject's [tool.medgen]).
        "$PY" -m pip install -q -c constraints.txt --no-deps $("$PY" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["tool"]["medgen"]["no-deps-dependencies"]))')
        touch "$STAMP"
    fi
}

minkowski() { bash scripts/build_minkowski.sh "$PY"; }

case "${1:-}" in
    setup) setup ;;
    demo) setup; "$VENV/bin/medgen" demo --overwrite "${@:2}" ;;
    minkowski) setup; minkowski ;;
    # The sparse backend is checked against MinkowskiEngine: a broken build fails, never skips.
    test) setup; minkowski; MEDGEN_REQUIRE_MINKOWSKI=1 OMP_NUM_THREADS=1 "$PY" -m pytest -q "${@:2}" ;;
    test-fast) setup; OMP_NUM_THREADS=1 "$PY" -m pytest -q "${@:2}" ;;
    *) echo "usage: bash scripts/run.sh {demo|test|test-fast|setup|minkowski} [extra args]" >&2; exit 2 ;;
esac
