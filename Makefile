# Two entry points: `make demo` and `make test`. Both create or update both environments first:
# .venv (training: Axolotl and its pins) and .venv-vllm (generation: vLLM, whose pins conflict
# with Axolotl's, reached only through its OpenAI-compatible server).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
# The CUDA build of vLLM where a GPU driver is present, the CPU build elsewhere; both are full
# resolutions made by locks/resolve.py, installed as they are.
VLLM_REQUIREMENTS ?= $(if $(shell command -v nvidia-smi 2>/dev/null),requirements-vllm-cuda.txt,requirements-vllm.txt)

.PHONY: venv venv-vllm demo test clean-cache

# Reinstall only when the pinned requirements or the package metadata change.
$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	# DeepSpeed's CPU ops (shared-memory collectives, CPU Adam for ZeRO offload), compiled once into the
	# environment rather than on the first run that needs them (tests/conftest.py points there), with the
	# environment's ninja, as at run time: another ninja's build log makes the first run compile them again
	PATH=$(CURDIR)/$(BIN):$$PATH DS_ACCELERATOR=cpu TORCH_EXTENSIONS_DIR=$(CURDIR)/$(VENV)/torch_extensions \
	    $(BIN)/python -c "from deepspeed.accelerator \
	    import get_accelerator; [get_accelerator().create_op_builder(n).load() for n in ('ShareMemCommBuilder', 'CPUAdamBuilder')]"
	@touch $(STAMP)

$(VLLM_STAMP): $(VLLM_REQUIREMENTS)
	@test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps -r $(VLLM_REQUIREMENTS)
	@touch $(VLLM_STAMP)

venv: $(STAMP)

venv-vllm: $(VLLM_STAMP)

demo: venv venv-vllm
	$(BIN)/python -m recipekit.demo

test: venv venv-vllm
	$(BIN)/python -m pytest

clean-cache:
	rm -rf .cache
