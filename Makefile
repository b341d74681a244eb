# Two commands from a fresh clone:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow install bench bench-envs docs device-wheels clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## demo: set up, then reproduce ROMMEO's iterated climbing game (100 seeds, ~1-2 min on a 2-core CPU)
demo: $(STAMP)
	$(VENV)/bin/coopmarl reproduce rommeo-climbing --out runs/demo-rommeo-climbing

## test: set up, then run the test suite (slow reproduction tests excluded; `make test-slow` runs them)
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile --durations=20

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/tabular_seeds.py

## bench-envs: env-only steps/s of every env next to lbforaging, mpe2 and JaxMARL (~5-10 min on 2 cores)
bench-envs: $(STAMP)
	$(PY) benchmarks/env_throughput.py

## docs: set up, then build the documentation site into build/site (mkdocs --strict: a warning fails; ~5 s)
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

## device-wheels: wheels of the dependencies the GPU machine's image lacks, into .whl/ (git-ignored), for
## benchmarks/device_check.sh (run it there with `.whl` carried); flashbax's and tensorboardX's own needs are there
device-wheels: $(STAMP)
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: -d .whl \
		flashbax==$$($(PY) -c 'import importlib.metadata as m; print(m.version("flashbax"))') \
		tensorboardX==$$($(PY) -c 'import importlib.metadata as m; print(m.version("tensorboardX"))')

clean:
	rm -rf $(VENV) runs .pytest_cache
