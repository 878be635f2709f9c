# Thin wrappers around scripts/run.sh (which needs only bash and Python 3.11):
#   make demo   create .venv, install medgen, run the built-in end-to-end demo
#   make test   create .venv, install medgen + test tools + MinkowskiEngine, run the whole suite
.PHONY: setup demo test test-fast minkowski clean

setup demo test test-fast minkowski:
	bash scripts/run.sh $@

clean:
	rm -rf .venv .pytest_cache demo_out
