#!/usr/bin/env bash
# Check that medgen works with the lowest versions pyproject.toml declares for its heavy stack.
#
# Usage: bash benchmarks/check_lowest_versions.sh [VENV_DIR] [extra pytest args]
#        (default VENV_DIR: /tmp/medgen-lowest; run by hand, never in CI: it downloads a CUDA build
#        of the lowest torch, ~3 GB, and takes 10-20 min on 2 cores)
#
# Every `NAME>=X` requirement of LOWEST below is installed as `NAME==X` (read from pyproject.toml,
# so the check follows the declared bounds); the other requirements resolve as pip chooses. Then:
# the versions, `medgen --help`, a part of the suite (every family's contract and inference tests,
# resume, FID against pytorch-fid, the demo test) and `medgen demo --no-fid` at tiny settings.
# Exit status: non-zero when any step fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${1:-/tmp/medgen-lowest}"
LOWEST="torch torchvision monai scipy numpy"
BASE="${PYTHON:-$(command -v python3.11 || command -v python3)}"

pins="$("$BASE" - "$LOWEST" <<'EOF'
import re, sys, tomllib
want = set(sys.argv[1].split())
for req in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", req.strip())
    if m and m.group(1).lower() in want:
        print(f"{m.group(1)}=={m.group(2)}")
EOF
)"
[[ $(wc -l <<<"$pins") -eq $(wc -w <<<"$LOWEST") ]] || { echo "expected a >= bound for each of: $LOWEST; found: $pins" >&2; exit 2; }
echo "lowest versions: $(tr '\n' ' ' <<<"$pins")"

# Tests run from a copy without the package (so the installed medgen is the one imported), and
# medgen is built from another copy (so no build/ folder appears in the checkout).
work="$(mktemp -d /tmp/medgen-lowest-tests.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
cp -r pyproject.toml README.md LICENSE medgen_cli "$work/src/"
cp -r tests pyproject.toml configs benchmarks "$work/"

rm -rf "$VENV"
"$BASE" -m venv "$VENV"
printf '%s\n' "$pins" > "$VENV/lowest.txt"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -c "$VENV/lowest.txt" "$work/src[test]"
"$VENV/bin/python" -m pip install -q --no-deps $("$VENV/bin/python" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["tool"]["medgen"]["no-deps-dependencies"]))')
"$VENV/bin/python" -c '
import importlib.metadata as md
print("installed:", ", ".join(f"{n} {md.version(n)}" for n in ("torch", "torchvision", "monai", "scipy", "numpy", "pytorch-fid", "typer", "pydantic")))'
"$VENV/bin/medgen" --help >/dev/null

export OMP_NUM_THREADS=1 MEDGEN_CACHE_DIR="$work/cache"
(cd "$work" && "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    tests/families tests/engine/test_contract_toy.py tests/engine/test_resume_safety.py \
    tests/metrics/test_fid_api.py tests/metrics/test_fid_cache.py tests/cli/test_demo.py "${@:2}")
(cd "$work" && "$VENV/bin/medgen" demo --out "$work/demo" --size 16 --ae-steps 20 --diffusion-steps 20 \
    --num-samples 3 --sample-steps 4 --num-volumes 12 --device cpu --no-fid)
echo "lowest versions OK: $(tr '\n' ' ' <<<"$pins")"
