# Set-up and the two everyday commands. Each target (re)creates the virtual environment in .venv
# when pyproject.toml or constraints.txt changed, so a fresh clone needs nothing but `make demo` / `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mmer data synth --preset synth-party --out runs/demo-data-$$(date +%Y%m%d-%H%M%S) --quiet
	$(BIN)/mmer data check --dataset synth-party

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
