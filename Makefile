# prana: two commands set everything up on a fresh machine with python3.11, make and the package registries.
#   make demo   create .venv (if missing or if the pins changed), install, run the demo on embedded data
#   make test   same set-up, then the whole test suite
#   make bench  same set-up, then the benchmarks (each prints prana beside its anchor)

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "prana needs $(PYTHON) on PATH"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/prana demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=25 --durations-min=5

bench: $(STAMP)
	$(BIN)/python benchmarks/compare.py
	$(BIN)/python benchmarks/kmeans.py
	$(BIN)/python benchmarks/federated.py
	$(BIN)/python benchmarks/travelling.py
	$(BIN)/python benchmarks/auction.py
	$(BIN)/python benchmarks/growth.py --batch 10

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
