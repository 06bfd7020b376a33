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

# The main job: train RAMer on the built-in synthetic multi-party benchmark (generated in memory), test the best
# checkpoint and print the metric table, then evaluate the same model with text and audio removed.
DEMO_RUN := runs/demo-ramer-$(shell date +%Y%m%d-%H%M%S)

demo: $(STAMP)
	$(BIN)/mmer train --model ramer --dataset synth-party --out $(DEMO_RUN)
	$(BIN)/mmer evaluate --run $(DEMO_RUN) --drop-modalities text,audio

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
