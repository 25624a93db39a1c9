# Two commands on a fresh machine:
#   make run   - create .venv, install citkit, run the default toy stream (LoRA-FT and Joint)
#   make test  - create .venv, install citkit with test extras, run the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch is enough for the toy world; a machine with a GPU may install any CUDA build.
TORCH ?= torch==2.13.0

.PHONY: run test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/citkit run --method lora-ft --quiet
	$(BIN)/citkit run --method joint --quiet

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
