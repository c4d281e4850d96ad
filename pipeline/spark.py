"""Spark for the wings that run on it (training on several machines, batch scoring): the session, and the Python
error inside a Spark failure.

A session is classic Spark (a driver JVM in this process, `sparkContext`, py4j) unless `SPARK_REMOTE` is set,
pyspark's own switch to Spark Connect, which standard and serverless compute and Databricks Connect run
(`sc://...`; `local[N]` starts a Spark Connect server here). Spark Connect has no `sparkContext` and no RDDs:
code that runs on both asks the session only for DataFrames, SQL and its configuration.
"""

import os
import re
import sys
from pathlib import Path

from pipeline.errors import PipelineError, first_line
from pipeline.logs import chosen_level

CONNECT_EXTRAS = "pip install 'pyspark[connect]==4.1.1'"
QUIET_LOG4J = Path(__file__).with_name("spark_log4j2.properties")  # Spark's own lines, below PIPELINE_LOG_LEVEL=DEBUG


def connect_url() -> str:
    """The Spark Connect server pyspark's builder connects to (`SPARK_REMOTE`); '' for classic Spark."""
    return os.environ.get("SPARK_REMOTE", "")


def spark_session(master: str, step: str, needs: str):
    """A Spark session for `step`: on `master` (e.g. local-cluster[2,1,1024]); `auto`: Spark Connect where
    SPARK_REMOTE is set, else SPARK_MASTER where it is set, else the cluster's own (on Databricks, the job's;
    elsewhere Spark's default, local[*]). `needs`: what asked for Spark, for the message when pyspark is missing."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise PipelineError(f"{needs} needs pyspark (Databricks runtimes have it; elsewhere: "
                            "pip install pyspark==4.1.1)") from None
    remote = connect_url()
    if remote and master != "auto":
        raise PipelineError(f"spark_master={master!r} and SPARK_REMOTE={remote!r} both name a Spark: "
                            "give spark_master=auto to use SPARK_REMOTE, or unset it")
    if master == "auto":
        master = "" if remote else os.environ.get("SPARK_MASTER", "")
    builder = SparkSession.builder.appName(step)  # pyspark reads SPARK_REMOTE itself
    if master:
        builder = builder.master(master)
    # A Spark of our own (not a cluster's, not a remote one): its workers run this Python, on the loopback.
    if master or remote.startswith("local") or not (remote or "DATABRICKS_RUNTIME_VERSION" in os.environ):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
        if not sys.stderr.isatty():  # its stage bar would share a line with the step's own progress in a log
            builder = builder.config("spark.ui.showConsoleProgress", "false")
        if chosen_level() != "DEBUG":
            builder = builder.config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={QUIET_LOG4J.as_uri()}")
    where = f"SPARK_REMOTE={remote!r}" if remote else f"spark_master={master!r}"
    try:
        return builder.getOrCreate()
    except ImportError as error:  # only Spark Connect imports more (grpcio, ...) when the session starts
        raise PipelineError(f"{where} needs pyspark's Spark Connect extras ({first_line(error)}): {CONNECT_EXTRAS}") from None
    except Exception as error:  # noqa: BLE001 - py4j, gRPC and Spark raise many types; the user needs the first line
        raise PipelineError(f"{where}: cannot start or reach Spark ({first_line(error)})") from None


def task_slots(spark) -> int:
    """How many tasks the cluster runs at once: the partitions Spark splits a range into by default (its default
    parallelism, which Spark Connect cannot ask `sparkContext` for)."""
    return partitions(spark.range(1 << 16))


def partitions(frame) -> int:
    """How many non-empty partitions `frame` has: a small Spark job, as Spark Connect has no RDD to ask."""
    from pyspark.sql import functions as F

    return frame.select(F.spark_partition_id().alias("partition")).distinct().count()


def python_error_in(error: Exception) -> str:
    """The Python error inside a Spark failure (classic Spark's py4j error and Spark Connect's error alike carry
    the worker's traceback among pages of JVM stack), else the JVM's own exception (py4j puts it on a line of its own
    after ": ", as in `: java.io.IOException: Mkdirs failed to create ...`), else its first line."""
    lines = [line.strip().removeprefix(": ") for line in str(error).splitlines()]
    found = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line) and not line.startswith("py4j")]
    return found[-1] if found else first_line(error)
