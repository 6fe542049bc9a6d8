# relink: two commands for a fresh clone — `make paper` and `make test`.
# Both create .venv with the pins that work (torch and torchvision pinned in the
# same pip command as everything else, or pip upgrades torch) and reuse it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.relink-installed
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export PYTHONHASHSEED := 0

PROFILE ?= synthetic

.PHONY: setup paper book test test-fast bench clean distclean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install $(TORCH_PINS) -e ".[all]"
	touch $@

paper: $(STAMP)
	$(BIN)/relink paper --profile $(PROFILE)

chapter-%: $(STAMP)
	$(BIN)/relink paper --profile $(PROFILE) --chapters $*

book: $(STAMP)
	$(BIN)/jupyter-book build book/

# two workers (the CI machine's cores); whole files per worker, so module fixtures are built once
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

bench: $(STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf book/_build

distclean: clean
	rm -rf $(VENV) artifacts

# environment.yml (conda, Binder) is generated from pyproject.toml: one dependency list.
environment.yml: pyproject.toml tools/environment_yml.py
	$(PYTHON) tools/environment_yml.py
