"""The Spark session both Spark wings use, and the Python error it finds in a Spark failure."""

import pytest

from pipeline.errors import PipelineError
from pipeline.spark import python_error_in, spark_session


def test_a_failed_python_worker_is_its_own_error():
    spark_failure = Exception("An error occurred while calling o51.collectToPython.\n: org.apache.spark.SparkException: Job aborted"
                              "\n\tat org.apache...\nTraceback (most recent call last):\n  File \"x.py\"\n"
                              "FileNotFoundError: [Errno 2] No such file or directory: '/local/data/train.csv'\n\tat org...")
    assert python_error_in(spark_failure) == "FileNotFoundError: [Errno 2] No such file or directory: '/local/data/train.csv'"


def test_a_failed_spark_write_is_the_jvms_own_reason():
    """py4j's first line names only the call ("An error occurred while calling o102.parquet."); the reason a user can
    act on is the Java exception after it."""
    write_failure = Exception("An error occurred while calling o102.parquet.\n: java.io.IOException: Mkdirs failed to create "
                              "file:/data/out/.predictions.writing-1 (exists=false, cwd=file:/work)\n\tat org.apache.hadoop...")
    assert python_error_in(write_failure) == ("java.io.IOException: Mkdirs failed to create file:/data/out/.predictions.writing-1 "
                                              "(exists=false, cwd=file:/work)")


def test_a_spark_master_beside_spark_remote_is_refused_before_spark_starts(monkeypatch):
    """SPARK_REMOTE (Spark Connect) and a master name two different Sparks: the step would run on one of them."""
    monkeypatch.setenv("SPARK_REMOTE", "sc://cluster:15002")
    refused = r"^spark_master='local\[2\]' and SPARK_REMOTE='sc://cluster:15002' both name a Spark: "
    with pytest.raises(PipelineError, match=refused):
        spark_session("local[2]", "batch_inference", "batch_inference")
