# Two commands after cloning: `make train` (install, then run the main job) and `make test` (install, then test).
# torch==2.13.0 is installed before the project so that pip never pulls a multi-GB CUDA build here.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: install train test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

train: $(VENV)/.installed
	$(PY) pipelines/train.py $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check vibgan pipelines tests data

clean:
	rm -rf $(VENV) runs mlruns mlflow.db mlartifacts
