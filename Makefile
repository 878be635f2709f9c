# medgen: two commands on a fresh machine with Python 3.11 —
#   make demo   create .venv, install medgen, run the built-in end-to-end demo
#   make test   create .venv, install medgen + test tools + MinkowskiEngine, run the whole suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.medgen-installed

.PHONY: setup demo test test-fast minkowski bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/medgen demo --overwrite

# MinkowskiEngine (the sparse-gan backend the user chose) is built CPU-only once per torch
# version and cached in ~/.cache/medgen/wheels; see scripts/build_minkowski.sh.
minkowski: setup
	bash scripts/build_minkowski.sh $(PY)

test: setup minkowski
	MEDGEN_REQUIRE_MINKOWSKI=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q

# Without building MinkowskiEngine (its equivalence tests are skipped).
test-fast: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache demo_out
