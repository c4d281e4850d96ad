"""TEST DOUBLE: `get_context()`, which MLflow's `_use_repl_context_if_available` and DynamicConfigProvider read
(mlflow/utils/databricks_utils.py): None outside the driver, as outside a REPL; in the driver only the fields
an emulated job has (MLflow checks `hasattr` for each one it wants)."""

from types import SimpleNamespace

import dbruntime


def get_context():
    context = dbruntime.DRIVER_CONTEXT
    if not context:
        return None
    return SimpleNamespace(apiUrl=context["host"], apiToken=dbruntime.current_token(), sslTrustAll=False, isInJob=True, isInNotebook=False)
