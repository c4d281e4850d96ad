"""Spark's side of batch_inference: read the input where it lies, score it with the logged model on the executors,
and put the output in place so that a failure leaves the previous output as it was.

The model goes through `mlflow.pyfunc.spark_udf` (env_manager `local`: the executors' own Python), which loads
it once per Python worker and hands it Arrow batches of `spark.sql.execution.arrow.maxRecordsPerBatch` rows.
Each worker's torch uses `spark.task.cpus` threads (OMP_NUM_THREADS, which Spark sets that way for its Python
workers and the UDF sets again), so N concurrent tasks on an N-core executor do not oversubscribe its cores. The
model picks its device itself: a GPU where the executor has one.
"""

import contextlib
import json
import logging
import re
import shutil
from pathlib import Path

import pandas as pd

from pipeline.contract import BATCH, OUTPUT_MARKER
from pipeline.errors import PipelineError, first_line
from pipeline.spark import partitions, python_error_in, spark_session, task_slots

LABEL, PROBABILITY = "label", "probability"  # what the logged model returns for each text (pipeline/serving/sentiment_model.py)
RESULT_TYPE = f"{LABEL} string, {PROBABILITY} double"
TABLE = re.compile(r"^[A-Za-z_]\w*\.[A-Za-z_]\w*\.[A-Za-z_]\w*$")  # catalog.schema.table (names Spark takes unquoted)
RUN_PROPERTY = "pipeline.batch_inference.run_id"  # on an output table: the run that wrote it (a folder has the marker)


def open_session(master: str, rows_per_batch: int):
    """The Spark session, handing the model `rows_per_batch` rows at a time."""
    spark = spark_session(master, BATCH, "batch_inference")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(rows_per_batch))
    return spark


def is_table(location: str) -> bool:
    """A Unity Catalog (or any three-part) table name rather than a path."""
    return bool(TABLE.match(location)) and not Path(location).expanduser().exists()


def read_local_download(path: Path) -> pd.DataFrame:
    """A downloaded artifact (a CSV or Parquet file or folder) as pandas reads it: only an empty field is null."""
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    csvs = [file for file in files if file.suffix.lower() == ".csv"]
    parquets = [file for file in files if file.suffix.lower() == ".parquet"]
    if parquets:
        return pd.concat([pd.read_parquet(file) for file in parquets], ignore_index=True)
    if not csvs:
        raise PipelineError(f"{path}: no .csv or .parquet file in it")
    return pd.concat([pd.read_csv(file, dtype=str, keep_default_na=False, na_values=[""]) for file in csvs], ignore_index=True)


def read_input(spark, location: str):
    """The input as a Spark DataFrame: a table by name, or a CSV or Parquet file or folder (CSV as RFC 4180 text:
    quoted fields may hold commas, quotes and line breaks; an empty field is null)."""
    if is_table(location):
        try:
            return spark.table(location)
        except Exception as error:  # noqa: BLE001 - Spark's AnalysisException, from py4j or Spark Connect
            raise PipelineError(f"input_path={location!r}: no such table ({first_line(error)})") from None
    path = Path(location).expanduser()
    if not path.exists():
        raise PipelineError(f"input_path={location!r}: no such file, folder or table")
    kind = input_format(path, location)
    reader = spark.read.option("recursiveFileLookup", "true") if path.is_dir() else spark.read
    try:
        if kind == "parquet":
            return reader.parquet(str(path.resolve()))
        return reader.csv(str(path.resolve()), header=True, multiLine=True, escape='"')
    except Exception as error:  # noqa: BLE001 - Spark's errors arrive as py4j, Spark or Spark Connect types
        raise PipelineError(f"input_path={location!r}: cannot read it as {kind} ({python_error_in(error)})") from None


def input_format(path: Path, location: str) -> str:
    """`csv` or `parquet`, from the file's suffix or the files in the folder, in any case (`REVIEWS.CSV`)."""
    files = [path] if path.is_file() else [file for file in path.rglob("*")
                                            if file.is_file() and not file.name.startswith(("_", "."))]  # as Spark reads
    suffixes = {file.suffix.lower() for file in files} & {".csv", ".parquet"}
    if len(suffixes) != 1:
        names = ", ".join(sorted(file.name for file in files)[:3]) or "nothing"
        found = "both .csv and .parquet files" if suffixes else f"no .csv or .parquet file (found: {names})"
        raise PipelineError(f"input_path={location!r}: {found} (expected CSV or Parquet)")
    return suffixes.pop().lstrip(".")


def check_texts(frame, text_column: str, location: str) -> int:
    """The number of rows; refuses an input without the text column, with none, or with nulls in it, and one that
    already has the columns the model adds."""
    from pyspark.sql import functions as F

    if text_column not in frame.columns:
        raise PipelineError(f"input_path={location!r}: no column {text_column!r} (text_column); "
                            f"its columns: {', '.join(frame.columns)}")
    taken = [column for column in (LABEL, PROBABILITY) if column in frame.columns]
    if taken:
        raise PipelineError(f"input_path={location!r}: already has column(s) {', '.join(taken)}, which scoring adds; "
                            "drop or rename them")
    try:
        rows, nulls = frame.agg(F.count(F.lit(1)), F.sum(F.col(text_column).isNull().cast("long"))).first()
    except Exception as error:  # noqa: BLE001 - a file Spark cannot read fails here, when it reads the rows
        raise PipelineError(f"input_path={location!r}: cannot read it ({python_error_in(error)})") from None
    if rows == 0:
        raise PipelineError(f"input_path={location!r}: no rows to score")
    if nulls:
        raise PipelineError(f"input_path={location!r}: {nulls} of {rows} rows have no {text_column!r} (null); drop or fill them")
    return rows


LOCAL_ENVIRONMENT_ADVICE = 'Calling `spark_udf()` with `env_manager="local"`'  # mlflow/pyfunc/__init__.py, 3.x


@contextlib.contextmanager
def without_local_environment_advice():
    """MLflow warns at every `env_manager="local"` UDF that executors may run another environment than the model's,
    advising conda. Here they run this one: a Spark of our own runs this Python, a Databricks cluster installs the
    job's libraries on every node. MLflow's check of the model's requirements against this environment still warns."""
    def other_records(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(LOCAL_ENVIRONMENT_ADVICE)

    logger = logging.getLogger("mlflow.pyfunc")
    logger.addFilter(other_records)
    try:
        yield
    finally:
        logger.removeFilter(other_records)


def scored(spark, frame, model_path: str, text_column: str):
    """`frame` with the model's `label` and `probability` for each row's text, in at least one partition per task
    slot (lazy: Spark scores when it writes; the rows' order is not kept)."""
    import mlflow
    from pyspark.sql import functions as F

    threads = spark.conf.get("spark.task.cpus", "1")
    with without_local_environment_advice():
        predict = mlflow.pyfunc.spark_udf(spark, model_path, result_type=RESULT_TYPE, env_manager="local",
                                          extra_env={"OMP_NUM_THREADS": threads})
    slots = task_slots(spark)
    if partitions(frame) < slots:  # one file (a multi-line CSV is never split) would keep one core busy
        frame = frame.repartition(slots)
    return frame.withColumn("_scored", predict(F.col(text_column))).select(
        *frame.columns, F.col(f"_scored.{LABEL}").alias(LABEL), F.col(f"_scored.{PROBABILITY}").alias(PROBABILITY))


def check_output(spark, location: str) -> None:
    """Refuse an output that exists and is not a previous output of this step (a folder without the marker file, a
    table without the run property)."""
    if is_table(location):
        if spark.catalog.tableExists(location):
            properties = {row.key: row.value for row in spark.sql(f"SHOW TBLPROPERTIES {location}").collect()}
            if RUN_PROPERTY not in properties:
                raise PipelineError(f"output_path={location!r}: the table exists and is not a batch_inference output "
                                    f"(no {RUN_PROPERTY} property); give a new name or drop it")
        return
    folder = Path(location).expanduser()
    if folder.exists() and not (folder / OUTPUT_MARKER).is_file():
        raise PipelineError(f"output_path={location!r}: exists and is not a batch_inference output (no {OUTPUT_MARKER} file); "
                            "give a new path or remove it")


def write_output(frame, location: str, marker: dict) -> None:
    """Write `frame` to the table (overwritten in one commit where it is Delta, as on Databricks) or Parquet folder
    `location`. A folder is written beside it first, marked, then swapped in: the old output is renamed aside, the
    new one renamed into place, the old one deleted; a failure while scoring leaves the previous output untouched."""
    if is_table(location):
        with spark_failures(location):
            frame.write.mode("overwrite").option("overwriteSchema", "true").saveAsTable(location)
        frame.sparkSession.sql(f"ALTER TABLE {location} SET TBLPROPERTIES ('{RUN_PROPERTY}' = '{marker['run_id']}')")
        return
    folder = Path(location).expanduser().resolve()
    staging, previous = (folder.with_name(f".{folder.name}.{kind}-{marker['run_id']}") for kind in ("writing", "previous"))
    shutil.rmtree(staging, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        with spark_failures(location):
            frame.write.parquet(str(staging))
    except BaseException as error:  # also Ctrl-C: no half-written folder stays behind
        if isinstance(error, KeyboardInterrupt):  # only this process's call stopped: Spark's tasks may write on
            with contextlib.suppress(Exception):
                frame.sparkSession.stop()  # its listeners in this process first, so the JVMs' end is no error here
            end_local_jvms()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (staging / OUTPUT_MARKER).write_text(json.dumps(marker, indent=1) + "\n")
    if folder.exists():
        folder.rename(previous)
    staging.rename(folder)
    shutil.rmtree(previous, ignore_errors=True)


def end_local_jvms(seconds: float = 30) -> None:
    """End the Spark JVMs this process started (classic local Spark, a local Spark Connect server) and wait until
    they are gone: only then does no task of theirs write any more (`spark.stop()` returns while tasks still run).
    A cluster's Spark is no child of this process."""
    import psutil

    jvms = [child for child in psutil.Process().children(recursive=True) if child.name() == "java"]
    for jvm in jvms:
        jvm.terminate()  # Spark's shutdown hooks remove its scratch folders
    _, left = psutil.wait_procs(jvms, timeout=seconds)
    for jvm in left:
        jvm.kill()
    psutil.wait_procs(left, timeout=seconds)


@contextlib.contextmanager
def spark_failures(location: str):
    """A Spark job that fails (the model's error on an executor, a full disk) as one line: the Python error in it."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - a failed Spark task arrives as py4j, Spark or Spark Connect errors
        raise PipelineError(f"scoring into {location} failed: {python_error_in(error)}") from None


def read_output(spark, location: str):
    return spark.table(location) if is_table(location) else spark.read.parquet(str(Path(location).expanduser().resolve()))


def pair_counts(frame, truth_column: str | None) -> list[tuple[str, str, int]]:
    """(truth, label, rows) for each pair in the scored output, counted by Spark; truth is '' without a truth column
    (normalised as pipeline/data/reviews.py reads labels: trimmed, lower case)."""
    from pyspark.sql import functions as F

    truth = F.lower(F.trim(F.col(truth_column))) if truth_column else F.lit("")
    rows = frame.groupBy(F.coalesce(truth, F.lit("")).alias("truth"), F.col(LABEL)).count().collect()
    return [(row["truth"], row[LABEL], row["count"]) for row in rows]
