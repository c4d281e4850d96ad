"""TEST DOUBLE, part of the emulated cluster image (tests/databricks_emulator.py puts this folder on PYTHONPATH).

On a Databricks job cluster only the job's driver process holds the runtime context (its credentials, its
SparkSession); a process it starts has neither (FACTS: runtime 13+ gives child processes of the driver no Spark;
databricks-sdk's `runtime` auth reads `dbruntime`, which answers in the driver's REPL only). The emulator hands
the driver its context in DATABRICKS_EMULATOR_DRIVER; this file, which Python runs at start-up, takes it out of
the environment at once, so no child process inherits it.
"""

import json
import os

_driver = os.environ.pop("DATABRICKS_EMULATOR_DRIVER", None)
if _driver:
    import dbruntime

    dbruntime.DRIVER_CONTEXT = json.loads(_driver)
    dbruntime.use_cluster_spark()
