"""TEST DOUBLE, part of the emulated cluster image (tests/databricks_emulator.py puts this folder on PYTHONPATH).

On a Databricks job cluster only the job's driver process holds the runtime context (its credentials, its
SparkSession); a process it starts has neither (MLflow PR #12139: runtime 13+ gives child processes of the driver no
Spark; databricks-sdk's `runtime` auth, `credentials_provider._runtime_native_auth`, reads `dbruntime`, which answers
in the driver's REPL only). The emulator hands
the driver its context in DATABRICKS_EMULATOR_DRIVER; this file, which Python runs at start-up, takes it out of
the environment at once, so no child process inherits it. Any other process gets no Spark: it loses the address
of the driver's Spark gateway (PYSPARK_GATEWAY_PORT/SECRET, which pyspark leaves in the driver's environment),
and a Spark of its own fails to start (spark-submit would otherwise default to `local[*]`).
"""

import json
import os

_driver = os.environ.pop("DATABRICKS_EMULATOR_DRIVER", None)
if _driver:
    import dbruntime

    dbruntime.DRIVER_CONTEXT = json.loads(_driver)
    dbruntime.use_cluster_spark()
else:
    for _variable in ("PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET"):
        os.environ.pop(_variable, None)
    os.environ["PYSPARK_SUBMIT_ARGS"] = "--master no-spark-in-a-child-process-of-the-driver pyspark-shell"
