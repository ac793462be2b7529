# Two commands on a fresh machine: `make demo` trains on the built-in demo set, `make test` tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision pinned to the builds this machine provides offline; others come from PyPI.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/clipcls demo-data --out demo_data
	rm -rf runs/demo
	$(BIN)/python train.py --config configs/demo.yaml
	$(BIN)/clipcls compare runs/demo --data test=demo_data/test shifted=demo_data/shifted --workers 1

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf runs demo_data
