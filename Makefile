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

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(VENV)/.lab: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[lab,test]'
	touch $(VENV)/.lab

lab: $(VENV)/.lab
	$(BIN)/fkrunbook local start
	$(BIN)/jupyter lab notebooks/

clean:
	-$(BIN)/fkrunbook local stop
	rm -rf .fkrunbook audit
