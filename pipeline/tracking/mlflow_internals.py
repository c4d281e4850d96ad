"""The few MLflow internals this project leans on, in one place; `tests/tracking/test_mlflow_internals.py` fails loudly
when an MLflow upgrade changes one of them.

- The registry's own name checks (`mlflow.utils.validation`): `register_model` runs them before it registers
  anything, so a bad name is one line and no half-registered version. MLflow has no public validator.
- `DatabricksSubmittedRun.POLL_STATUS_INTERVAL`: how often MLflow's synchronous Databricks wait polls the job
  (30 s). `pipeline.on_databricks.submit --poll-seconds` sets it; the public API offers no other knob for that wait.
- `get_databricks_env_vars` in MLflow's local project backend: it adds the parent's Databricks host and a copy of
  its token to each entry point's environment. `main` replaces what it adds (`step_environment`) with the
  refreshing credentials of `pipeline.on_databricks.credentials`, since a copied token expires while a step runs.
"""

import contextlib
from collections.abc import Iterator

import mlflow.projects.backend.local as local_backend

from mlflow.projects.databricks import DatabricksSubmittedRun
from mlflow.utils.validation import _validate_model_alias_name, _validate_model_alias_name_reserved, _validate_model_name


def check_registry_names(name: str, aliases: tuple[str, ...]) -> None:
    """Raise MlflowException where the registry would refuse the model name or an alias."""
    _validate_model_name(name)
    for alias in aliases:
        _validate_model_alias_name(alias)
        _validate_model_alias_name_reserved(alias)


def set_databricks_poll_interval(seconds: float) -> None:
    DatabricksSubmittedRun.POLL_STATUS_INTERVAL = seconds


@contextlib.contextmanager
def step_environment(variables: dict[str, str]) -> Iterator[None]:
    """While active, the entry points MLflow's local backend starts get `variables` (and the tracking URI) where
    MLflow would add the Databricks credentials it resolved itself; nothing changes when `variables` is empty."""
    original = local_backend.get_databricks_env_vars
    if variables:
        local_backend.get_databricks_env_vars = lambda tracking_uri: {"MLFLOW_TRACKING_URI": tracking_uri, **variables}
    try:
        yield
    finally:
        local_backend.get_databricks_env_vars = original
