"""TEST DOUBLE of the Databricks runtime's `dbruntime` package, as far as databricks-sdk and MLflow read it.

`DRIVER_CONTEXT` is set in the job's driver process only (see ../sitecustomize.py); everywhere else the
modules below answer as the real ones do outside a REPL: no context, no credentials.
"""

import json
import threading
import time
import urllib.request

DRIVER_CONTEXT: dict | None = None
_token: dict = {}  # the driver's current runtime token: {"token", "expires_at", "issued_at"}
_token_lock = threading.Lock()


def current_token() -> str:
    """The driver's runtime token, renewed every `renew_seconds` of the driver's context (the emulator's
    `token_renew_seconds`: the runtime's own cadence is not documented) before it expires (`token_seconds`); asked
    for over the emulator's private channel with the driver's secret."""
    with _token_lock:
        now = time.time()
        if not _token or now > _token["issued_at"] + DRIVER_CONTEXT["renew_seconds"]:
            request = urllib.request.Request(f"{DRIVER_CONTEXT['host']}/emulator/driver-token", method="POST",
                                             headers={"X-Emulator-Driver-Secret": DRIVER_CONTEXT["secret"]})
            with urllib.request.urlopen(request, timeout=30) as answer:
                _token.update(json.loads(answer.read()), issued_at=now)
        return _token["token"]


def use_cluster_spark() -> None:
    """The driver's `SparkSession.builder.getOrCreate()` gets the cluster's Spark with no master from the job, as
    on Databricks, where the driver's session already exists. Other processes get no default master."""
    master = DRIVER_CONTEXT.get("spark_master")
    if not master:
        return
    from pyspark.sql import SparkSession

    get_or_create = SparkSession.Builder.getOrCreate

    def cluster_session(builder):
        for key, value in {"spark.master": master, "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}.items():
            builder._options.setdefault(key, value)
        return get_or_create(builder)

    SparkSession.Builder.getOrCreate = cluster_session


class UserNamespaceInitializer:
    """What databricks-sdk's `databricks.sdk.runtime` imports first on a cluster (without it the SDK takes the
    laptop path and drops the runtime's credential provider): the runtime objects of the user namespace."""

    @classmethod
    def getOrCreate(cls) -> "UserNamespaceInitializer":
        return cls()

    def get_namespace_globals(self) -> dict:
        from dbruntime.sdk_credential_provider import init_runtime_native_auth

        return {"init_runtime_native_auth": init_runtime_native_auth, "dbutils": NotEmulated("dbutils")}


class NotEmulated:
    """A runtime object the SDK takes from the namespace (`WorkspaceClient().dbutils`) but this image lacks."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute):
        raise AttributeError(f"{self._name}.{attribute} is not emulated")
