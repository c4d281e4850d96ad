"""The Databricks credentials `main` hands to the steps it starts.

On a Databricks job cluster the environment has no DATABRICKS_HOST or DATABRICKS_TOKEN: the job's driver process
authenticates through the runtime's own context (databricks-sdk's `runtime` auth), and a process it starts has
no such context. `main` runs each step as such a process, so it resolves its own credentials once and passes
host and token to the steps in their environment: never as a parameter, tag, file or log line.
"""

import os

import mlflow
from mlflow.utils.uri import get_db_info_from_uri, is_databricks_uri

from pipeline.errors import PipelineError, first_line


def on_databricks() -> bool:
    """True inside a Databricks cluster (the runtime sets DATABRICKS_RUNTIME_VERSION)."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def child_process_credentials() -> dict[str, str]:
    """DATABRICKS_HOST and DATABRICKS_TOKEN as this process resolved them, for the environment of its children;
    empty off a cluster or when nothing tracks to Databricks (children there resolve as their parent does)."""
    uris = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    if not on_databricks() or not any(is_databricks_uri(uri) for uri in uris):
        return {}
    from databricks.sdk.core import Config  # comes with MLflow

    profile = next((get_db_info_from_uri(uri)[0] for uri in uris if is_databricks_uri(uri)), None)
    try:
        config = Config(profile=profile)
        scheme, _, token = config.authenticate().get("Authorization", "").partition(" ")
    except Exception as error:  # noqa: BLE001 - the SDK raises its own types and ValueError for each auth method
        raise PipelineError(f"cannot resolve this cluster's Databricks credentials for the steps ({first_line(error)})") from None
    if scheme != "Bearer" or not token:
        raise PipelineError(f"Databricks auth type {config.auth_type!r} gives no bearer token to hand to the steps")
    return {"DATABRICKS_HOST": config.host, "DATABRICKS_TOKEN": token}
