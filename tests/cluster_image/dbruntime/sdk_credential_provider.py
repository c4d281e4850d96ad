"""TEST DOUBLE: `init_runtime_native_auth`, which databricks-sdk's `runtime` credentials strategy imports
(databricks/sdk/runtime/__init__.py) and calls when DATABRICKS_RUNTIME_VERSION is set: (host, header factory),
or (None, None) where the process has no runtime context. The factory gives the runtime's current token each call."""

import dbruntime


def init_runtime_native_auth():
    context = dbruntime.DRIVER_CONTEXT
    if not context:
        return None, None
    return context["host"], lambda: {"Authorization": f"Bearer {dbruntime.current_token()}"}
