# `make run` and `make test` set everything up on a fresh machine: a virtual environment in .venv with
# torch installed first (its pinned build), then the pinned requirements.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
RUN_ARGS ?=
PYTEST_ARGS ?=

.PHONY: venv run test test-fast ui clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --constraint requirements.txt -r requirements-dev.txt
	touch $@

run: venv  ## the whole pipeline in this environment: make run RUN_ARGS="-P epochs=1"
	$(BIN)/python -m pipeline.preflight
	PATH="$(abspath $(BIN)):$$PATH" mlflow run . $(RUN_ARGS)

test: venv  ## the whole test suite, CPU and offline
	PATH="$(abspath $(BIN)):$$PATH" python -m pytest $(PYTEST_ARGS)

test-fast: venv  ## the tests without the slow end-to-end ones
	PATH="$(abspath $(BIN)):$$PATH" python -m pytest -m "not slow" $(PYTEST_ARGS)

ui: venv  ## browse the runs and models of the local store (mlflow.db)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

clean:  ## remove local runs, downloads and checkpoints (keeps .venv)
	rm -rf mlflow.db mlruns mlartifacts checkpoints lightning_logs data/imdb
