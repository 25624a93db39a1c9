# Two commands on a fresh machine:
#   make run   - create .venv, install citkit, compare zero-shot, LoRA-FT and Replay on the default toy stream
#   make test  - create .venv, install citkit with test extras, run the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# torch with the torchvision built for it (Qwen, OneVision, InternVL and SmolVLM processors import torchvision).
# This pair runs on the CPU; elsewhere e.g. TORCH="torch torchvision --index-url https://download.pytorch.org/whl/cpu".
TORCH ?= torch==2.14.1 torchvision==0.29.1

.PHONY: run test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/citkit compare --methods zero-shot,lora-ft,replay --quiet

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
