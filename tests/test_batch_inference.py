"""The batch_inference step: real Spark (`local[2]`) scoring with a real logged model, its refusals in one line, an
output that a failed run leaves as it was, and the same output on Spark Connect (`SPARK_REMOTE=local[2]`)."""

import json
import os
import re
import subprocess
import sys

import mlflow
import pandas as pd
import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import REPO, cli_runner, easy_reviews, mlflow_run, params, runs_by_entry_point, stopping_at
from pipeline import batch_inference
from pipeline.serving import batch_scoring
from pipeline.evaluation.baseline import fit_baseline
from pipeline.contract import DOWNLOAD, ERROR_TAG, MODEL_VERSION_TAG, OUTPUT_MARKER, STEP_TAG, serving_uri
from pipeline.errors import PipelineError
from pipeline.evaluation.metrics import label_scores
from pipeline.serving.model_logging import log_sentiment_model
from pipeline.parameters import FineTuning

SPARK = "local[2]"
FAILING_MODEL = '''
import mlflow
from mlflow.models import set_model


class Failing(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        raise ValueError("this model refuses to score")


set_model(Failing())
'''


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    """One Spark session for the file, its warehouse (tables by name) in a temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("spark"))  # where Spark puts spark-warehouse/
        session = batch_scoring.open_session(SPARK, 64)
    yield session
    session.stop()


@pytest.fixture
def registered(tracking, tiny_model):
    """A blend of the tiny BERT and a TF-IDF baseline (labels a bag of words decides), registered as `batch` with
    alias `champion`; returns its models:/ URI."""
    network = AutoModelForSequenceClassification.from_pretrained(
        tiny_model, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    frames = {"train": easy_reviews(200, 1), "valid": easy_reviews(40, 2), "test": easy_reviews(40, 3)}
    tokenization = FineTuning(foundation_model=str(tiny_model), max_length=24).tokenization()
    with mlflow.start_run():
        info = log_sentiment_model(network, AutoTokenizer.from_pretrained(tiny_model), tokenization,
                                   baseline=fit_baseline(frames).pipeline, blend_weight=0.25)
    version = mlflow.register_model(info.model_uri, "batch")
    mlflow.MlflowClient().set_registered_model_alias("batch", "champion", version.version)
    return serving_uri("batch", "champion")


def reviews() -> pd.DataFrame:
    """Reviews with what CSV makes hard (commas, quotes, line breaks, the text NA) and a truth column."""
    frame = easy_reviews(60, 7)
    frame.loc[0, "review"] = 'a "wonderful", moving film,\nsecond line'
    frame.loc[1, "review"] = "NA"
    frame["id"] = range(len(frame))
    return frame


def run_step(*args: str):
    return cli_runner().invoke(batch_inference.main, ["--spark-master", SPARK, "--rows-per-batch", "16", *args])


def last_run():
    return mlflow.search_runs(search_all_experiments=True, output_format="list", order_by=["attributes.start_time DESC"])[0]


def test_a_model_uri_that_does_not_resolve_is_one_line_and_a_failed_run(tracking, tmp_path):
    for uri, reason in {"models:/nothing@champion": "Registered Model with name=nothing not found",
                        f"{tmp_path}/no-model": "no such model folder",
                        f"runs:/{'0' * 32}/model": f"model_uri='runs:/{'0' * 32}/model': ",
                        str(tmp_path): "not an MLflow model (no MLmodel file)"}.items():
        result = run_step("--model-uri", uri, "--input-path", str(tmp_path), "--output-path", str(tmp_path / "out"))
        line = result.stderr.strip().splitlines()[-1]
        assert result.exit_code == 1 and line.startswith("error: model_uri=") and reason in line, result.stderr
        run = last_run()
        assert run.info.status == "FAILED" and run.data.tags[ERROR_TAG] == line.removeprefix("error: ")


def test_inputs_it_cannot_score_are_refused_in_one_line(spark, tmp_path):
    (tmp_path / "empty.csv").write_text("review,sentiment\n")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really parquet")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "notes.txt").write_text("no table here")
    pd.DataFrame({"review": ["good", None, None], "sentiment": ["positive"] * 3}).to_parquet(tmp_path / "nulls.parquet")
    refusals = {"nowhere.csv": "input_path='{path}': no such file, folder or table",
                "texts": "input_path='{path}': no .csv or .parquet file (found: notes.txt) (expected CSV or Parquet)",
                "empty.csv": "input_path='{path}': no rows to score",
                "nulls.parquet": "input_path='{path}': 2 of 3 rows have no 'review' (null); drop or fill them",
                "broken.parquet": "input_path='{path}': cannot read it as parquet ("}
    for name, message in refusals.items():
        path = str(tmp_path / name)
        with pytest.raises(PipelineError) as refused:
            batch_scoring.check_texts(batch_scoring.read_input(spark, path), "review", path)
        assert str(refused.value).startswith(message.format(path=path)) and "\n" not in str(refused.value)
    upper = tmp_path / "REVIEWS.CSV"  # a suffix in capitals is still CSV
    upper.write_text("review,sentiment\ngood,positive\n")
    assert batch_scoring.check_texts(batch_scoring.read_input(spark, str(upper)), "review", str(upper)) == 1
    with pytest.raises(PipelineError, match=r"^input_path='nocatalog.noschema.notable': no such table \("):
        batch_scoring.read_input(spark, "nocatalog.noschema.notable")
    path = str(tmp_path / "nulls.parquet")
    with pytest.raises(PipelineError, match=rf"^input_path='{path}': no column 'text' \(text_column\); its columns: review, sentiment$"):
        batch_scoring.check_texts(batch_scoring.read_input(spark, path), "text", path)


def test_an_mlflow_artifact_is_read_on_the_driver_and_latest_is_the_latest_download(spark, tracking, tmp_path):
    (tmp_path / "imdb").mkdir()
    texts = pd.DataFrame({"review": ["good", "", "NA"], "sentiment": ["positive"] * 3})
    texts.to_csv(tmp_path / "imdb" / "test.csv", index=False)
    with mlflow.start_run() as run:
        mlflow.set_tag(STEP_TAG, DOWNLOAD)
        mlflow.log_artifacts(str(tmp_path / "imdb"), "imdb")
    location = batch_inference.input_of("latest", run.info.experiment_id)
    assert location == f"runs:/{run.info.run_id}/imdb/test.csv"
    frame = batch_inference.read(spark, location, tmp_path / "scratch")
    assert [row.review for row in frame.collect()] == ["good", None, "NA"]  # only an empty field is missing, as Spark reads a CSV
    with pytest.raises(PipelineError, match=rf"^input_path='{location}': 1 of 3 rows have no 'review' \(null\)"):
        batch_scoring.check_texts(frame, "review", location)
    with pytest.raises(PipelineError, match=f"^cannot download runs:/{run.info.run_id}/imdb/train.csv: "):
        batch_inference.read(spark, f"runs:/{run.info.run_id}/imdb/train.csv", tmp_path / "scratch")


def test_an_output_that_is_not_a_previous_output_is_refused(spark, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(PipelineError, match=f"^output_path='{tmp_path}/mine': exists and is not a batch_inference output"):
        batch_scoring.check_output(spark, str(tmp_path / "mine"))
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / OUTPUT_MARKER).write_text('{"run_id": "x"}')
    batch_scoring.check_output(spark, str(tmp_path / "ours"))  # a previous output: replaced
    batch_scoring.check_output(spark, str(tmp_path / "new"))

    spark.range(3).write.saveAsTable("spark_catalog.default.foreign")
    with pytest.raises(PipelineError, match="^output_path='spark_catalog.default.foreign': the table exists and is not a batch"):
        batch_scoring.check_output(spark, "spark_catalog.default.foreign")


def test_scores_come_from_counts_as_from_rows():
    pairs = [("positive", "positive", 3), ("negative", "positive", 1), ("negative", "negative", 2)]
    rows = [(truth, label) for truth, label, count in pairs for _ in range(count)]
    scores = batch_inference.output_scores(pairs)
    assert scores == {"fraction_positive": 4 / 6} | label_scores(*zip(*rows))
    assert batch_inference.output_scores([("", "negative", 5)]) == {"fraction_positive": 0.0}


@pytest.mark.slow
def test_scores_csv_parquet_and_a_table_as_the_model_does_row_for_row(spark, registered, tmp_path):
    frame = reviews()
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    (tmp_path / "parquet").mkdir()
    for part, rows in enumerate((frame.iloc[:25], frame.iloc[25:])):
        rows.to_parquet(tmp_path / "parquet" / f"part-{part}.parquet")
    expected = mlflow.pyfunc.load_model(registered).predict(frame["review"].tolist())

    table = "spark_catalog.default.scored"  # a table by name, as a Unity Catalog one on Databricks (here not Delta)
    for source, output in (("reviews.csv", tmp_path / "scored-csv"), ("parquet", tmp_path / "scored-parquet"),
                           ("reviews.csv", table), ("parquet", table)):  # the second replaces the table the first wrote
        result = run_step("--model-uri", registered, "--input-path", str(tmp_path / source), "--output-path", str(output))
        assert result.exit_code == 0, result.stderr
        scored = spark.table(table).toPandas() if output == table else pd.read_parquet(output)
        scored = scored.iloc[scored["id"].astype(int).argsort()].reset_index(drop=True)  # a CSV's ids are text
        assert list(scored.columns) == ["review", "sentiment", "id", "label", "probability"]
        assert scored["review"].tolist() == frame["review"].tolist()  # the CSV's quotes, commas, line breaks and NA
        assert scored["label"].tolist() == expected["label"].tolist()
        assert scored["probability"].tolist() == pytest.approx(expected["probability"].tolist(), abs=1e-6)
        run = last_run()
        marker = (json.loads((output / OUTPUT_MARKER).read_text())["run_id"] if output != table else
                  spark.sql(f"SHOW TBLPROPERTIES {table}").toPandas().set_index("key")["value"][batch_scoring.RUN_PROPERTY])
        assert marker == run.info.run_id
        assert run.data.tags[MODEL_VERSION_TAG] == "1"
        assert run.data.metrics["rows"] == len(frame) and run.data.metrics["rows_per_second"] > 0
        assert run.data.metrics["fraction_positive"] == pytest.approx((expected["label"] == "positive").mean())
        truth_scores = label_scores(frame["sentiment"], expected["label"])
        assert run.data.metrics["accuracy"] == pytest.approx(truth_scores["accuracy"])
        assert run.data.metrics["macro_f1"] == pytest.approx(truth_scores["macro_f1"])
        contexts = {tag.value for dataset in run.inputs.dataset_inputs for tag in dataset.tags if tag.key == "mlflow.data.context"}
        assert contexts == {"input", "output"}


@pytest.mark.slow
def test_a_failing_run_leaves_the_previous_output_as_it_was(spark, registered, tmp_path):
    reviews().to_csv(tmp_path / "reviews.csv", index=False)
    output = tmp_path / "scored"
    first = run_step("--model-uri", registered, "--input-path", str(tmp_path / "reviews.csv"), "--output-path", str(output))
    assert first.exit_code == 0, first.stderr
    before = {path.name: path.read_bytes() for path in output.iterdir()}

    (tmp_path / "failing.py").write_text(FAILING_MODEL)
    with mlflow.start_run():
        failing = mlflow.pyfunc.log_model(name="model", python_model=str(tmp_path / "failing.py")).model_uri
    result = run_step("--model-uri", failing, "--input-path", str(tmp_path / "reviews.csv"), "--output-path", str(output))
    assert result.exit_code == 1 and "ValueError: this model refuses to score" in result.stderr, result.stderr
    assert {path.name: path.read_bytes() for path in output.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["failing.py", "mlflow.db", "mlruns", "reviews.csv", "scored"]

    # SIGTERM (Ctrl-C alike) while Spark writes: one line, and neither the output nor a half-written folder changes.
    step = [sys.executable, "-m", "pipeline.batch_inference", "--model-uri", registered, "--input-path",
            str(tmp_path / "reviews.csv"), "--output-path", str(output), "--spark-master", SPARK]
    env = stopping_at("scoring", {**os.environ, "PYTHONPATH": str(REPO)}, tmp_path.parent / f"{tmp_path.name}-stopped")
    stopped = subprocess.run(step, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert stopped.returncode == 130 and stopped.stderr.strip().splitlines()[-1].startswith("error: interrupted;"), stopped.stderr
    assert "Traceback" not in stopped.stderr + stopped.stdout and "py4j" not in stopped.stderr, stopped.stderr[-3000:]
    assert {path.name: path.read_bytes() for path in output.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["failing.py", "mlflow.db", "mlruns", "reviews.csv", "scored"]


@pytest.mark.slow
def test_main_runs_batch_inference_on_the_model_it_names(registered, tracking, tmp_path):
    """`mlflow run .` (entry point main) with only batch_inference: the model is the alias of the registered name
    given (main gets every parameter's default from MLproject, model_uri's and spark_master's too: Spark's default,
    local[*], started by the step), and the step's line is not lost among Spark's (its log, its stage bar)."""
    reviews().to_csv(tmp_path / "reviews.csv", index=False)
    result = mlflow_run(tracking, *params(pipeline_steps="batch_inference", registered_model_name="batch",
                                          input_path=tmp_path / "reviews.csv", output_path=tmp_path / "scored"))
    assert result.returncode == 0, result.stderr[-3000:]
    printed = (result.stdout + result.stderr).splitlines()
    assert [line for line in printed if line.startswith("scored 60 rows of ")], printed
    assert not [line for line in printed if re.match(r"\d\d/\d\d/\d\d \d\d:\d\d:\d\d [A-Z]+ ", line)  # log4j's lines
                or "[Stage " in line or "Setting default log level" in line], printed
    (step,) = runs_by_entry_point(tracking)["batch_inference"]
    assert step.data.params["model_uri"] == "models:/batch@champion" and step.data.tags[MODEL_VERSION_TAG] == "1"
    assert len(pd.read_parquet(tmp_path / "scored")) == 60


def connect_extras_missing() -> str:
    """Why pyspark cannot start Spark Connect here (its `connect` extras are not installed); '' when it can."""
    from pyspark.sql.connect.utils import check_dependencies

    try:
        check_dependencies(__name__)
    except ImportError as error:
        return str(error)
    return ""


@pytest.mark.slow
@pytest.mark.skipif(bool(connect_extras_missing()), reason=f"Spark Connect needs pyspark[connect]: {connect_extras_missing()}")
def test_spark_connect_scores_as_classic_spark_and_says_why_a_model_failed(spark, registered, tracking, tmp_path, monkeypatch):
    """With SPARK_REMOTE set the step runs on Spark Connect (standard and serverless compute, Databricks Connect),
    which has no sparkContext: pyspark starts a local Spark Connect server for `local[2]` in the step's process."""
    frame = reviews()
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    classic = run_step("--model-uri", registered, "--input-path", str(tmp_path / "reviews.csv"),
                       "--output-path", str(tmp_path / "classic"))
    assert classic.exit_code == 0, classic.stderr
    (tmp_path / "failing.py").write_text(FAILING_MODEL)
    with mlflow.start_run():
        failing = mlflow.pyfunc.log_model(name="model", python_model=str(tmp_path / "failing.py")).model_uri

    monkeypatch.setenv("SPARK_REMOTE", SPARK)  # for the step's process only: this one keeps its classic session
    connect = mlflow_run(tracking, "-e", "batch_inference", *params(
        model_uri=registered, input_path=tmp_path / "reviews.csv", output_path=tmp_path / "connect", rows_per_batch=16))
    assert connect.returncode == 0, connect.stderr[-3000:]
    by_id = [pd.read_parquet(tmp_path / name).astype({"id": int}).set_index("id").sort_index() for name in ("classic", "connect")]
    assert by_id[1].index.is_unique and by_id[1].index.tolist() == frame["id"].tolist()  # every row once
    assert by_id[1]["label"].tolist() == by_id[0]["label"].tolist()
    assert by_id[1]["probability"].tolist() == pytest.approx(by_id[0]["probability"].tolist(), abs=1e-6)
    assert by_id[1]["review"].tolist() == by_id[0]["review"].tolist()

    failed = mlflow_run(tracking, "-e", "batch_inference", *params(
        model_uri=failing, input_path=tmp_path / "reviews.csv", output_path=tmp_path / "connect", rows_per_batch=16))
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]  # the JVM in the step's process logs on
    assert failed.returncode != 0 and errors == [f"error: scoring into {tmp_path / 'connect'} failed: "
                                                 "ValueError: this model refuses to score"], failed.stderr[-3000:]
    assert by_id[1].equals(pd.read_parquet(tmp_path / "connect").astype({"id": int}).set_index("id").sort_index())  # kept
