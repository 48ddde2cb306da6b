# The two commands a new user runs: `make demo` and `make test`.
# Both create or reuse .venv/ themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lab venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/fkrunbook demo

# The suite runs in parallel (pytest-xdist): whole files per worker, so a module's fixtures are
# built once; one worker more than there are cores, as tests spend part of their time waiting on
# servers, kernels and locks. `make test PYTEST_WORKERS=0` runs it in one process.
PYTEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

$(VENV)/.lab: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[lab,test]'
	touch $(VENV)/.lab

# JupyterLab on working copies of the notebooks (tracked ones stay clean), the local database
# started and stopped with it; works as root and headless. `make lab LAB_ARGS="--port 8888"`;
# token from FKRUNBOOK_LAB_TOKEN.
lab: $(VENV)/.lab
	$(BIN)/fkrunbook lab $(LAB_ARGS)

clean:
	-$(BIN)/fkrunbook local stop
	rm -rf .fkrunbook audit
