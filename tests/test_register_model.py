"""The register_model step, in process: versions, aliases, the quality gate, and refusing what is not a model."""

import mlflow
import pytest

from conftest import cli_runner
from pipeline import download_data, fine_tuning_model, register_model


@pytest.fixture(scope="module")
def store(tiny_model, easy_zip_url, tmp_path_factory):
    """A store with one download run and two fine-tuning runs: a weak one (1 slow epoch) and a strong one.

    Shared by the tests of this file; each registers under its own model name."""
    tmp_path = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
        yield make_runs(tiny_model, easy_zip_url, tmp_path)
    mlflow.set_tracking_uri(None)


def make_runs(tiny_model, easy_zip_url, tmp_path):
    runner = cli_runner()
    assert runner.invoke(download_data.main, ["--download-url", easy_zip_url, "--local-folder", str(tmp_path)]).exit_code == 0
    common = ["--foundation-model", str(tiny_model), "--max-length", "16", "--checkpoint-dir", str(tmp_path / "ckpt"),
              "--cache-dir", str(tmp_path / "cache"), "--batch-size", "16",
              "--serve", "transformer"]  # the gate judges what is served: here each transformer, weak and strong
    for extra in (["--epochs", "1", "--learning-rate", "1e-5"], ["--epochs", "3", "--learning-rate", "3e-3"]):
        result = runner.invoke(fine_tuning_model.main, [*common, *extra])
        assert result.exit_code == 0, result.output
    runs = mlflow.search_runs(experiment_names=["Default"], output_format="list", order_by=["attributes.start_time ASC"])
    download, weak, strong = runs
    assert strong.data.metrics["test_macro_f1"] > weak.data.metrics["test_macro_f1"]
    return {"download": download, "weak": weak, "strong": strong}


def register(name: str, *args):
    return cli_runner().invoke(register_model.main, ["--registered-model-name", name, *args])


def aliases(name: str) -> dict[str, str]:
    return {alias: str(version) for alias, version in mlflow.MlflowClient().get_registered_model(name).aliases.items()}


def test_gate_promotes_only_models_at_least_as_good(store):
    """Champion against challenger; the baseline rule is off here (test_gate_refuses_a_model_below_its_baseline)."""
    client = mlflow.MlflowClient()
    result = register("gated", "--mlflow-run-id", store["strong"].info.run_id, "--min-score", "0.6", "--beat-baseline", "false")
    assert result.exit_code == 0, result.output
    assert "registered gated version 1; @champion -> version 1" in result.output
    version = client.get_model_version_by_alias("gated", "champion")
    assert version.run_id == store["strong"].info.run_id
    assert version.tags["quality_gate"] == "passed" and version.tags["source_run_id"] == store["strong"].info.run_id

    result = register("gated", "--mlflow-run-id", store["weak"].info.run_id, "--min-score", "0", "--beat-baseline", "false")
    assert result.exit_code == 0, result.output
    assert "@challenger -> version 2 (not promoted)" in result.output and "is worse than @champion (version 1" in result.output
    assert aliases("gated") == {"champion": "1", "challenger": "2"}

    result = register("gated", "--mlflow-run-id", store["strong"].info.run_id, "--min-score", "0.6", "--beat-baseline", "false")  # as good: promoted
    assert result.exit_code == 0
    assert aliases("gated")["champion"] == "3"
    (registration,) = [r for r in mlflow.search_runs(experiment_names=["Default"], output_format="list")
                       if r.data.tags["pipeline.step"] == "register_model" and r.data.tags.get("registered_model_name") == "gated"
                       and r.data.tags["registered_model_version"] == "2"]
    assert registration.data.tags["pipeline.quality_gate"] == "failed"


def test_gate_refuses_a_model_below_its_baseline(store):
    """On these bag-of-words reviews TF-IDF + logistic regression is perfect: neither the tiny model nor a blend
    with it (what is served, and what the gate judges) can beat it."""
    strong = store["strong"].data.metrics
    assert strong["baseline_test_macro_f1"] >= strong["served_test_macro_f1"]
    result = register("baseline", "--mlflow-run-id", store["strong"].info.run_id, "--min-score", "0.6")
    assert result.exit_code == 0, result.output
    assert aliases("baseline") == {"challenger": "1"}
    assert (f"@challenger -> version 1 (not promoted): test_macro_f1={strong['served_test_macro_f1']:.4f} does not beat "
            f"the TF-IDF + logistic regression baseline ({strong['baseline_test_macro_f1']:.4f}; lift "
            f"{strong['served_test_macro_f1'] - strong['baseline_test_macro_f1']:+.4f})") in result.output


def test_gate_minimum_score(store):
    result = register("minimum", "--mlflow-run-id", store["weak"].info.run_id, "--min-score", "0.99", "--gate-metric", "test_accuracy")
    assert result.exit_code == 0
    score = store["weak"].data.metrics["test_accuracy"]
    assert f"test_accuracy={score:.4f} is below min_score=0.99" in result.output
    assert aliases("minimum") == {"challenger": "1"}


def test_latest_run_is_the_default(store):
    assert register("latest", "--min-score", "0").exit_code == 0
    version = mlflow.MlflowClient().get_model_version("latest", "1")
    assert version.run_id == store["strong"].info.run_id  # the newest finished fine-tuning run


def test_refuses_runs_that_are_not_fine_tuning(store):
    result = register("refused", "--mlflow-run-id", store["download"].info.run_id)
    assert result.exit_code == 1
    assert "that is a 'download_data' run, not a fine_tuning_model run" in result.stderr
    result = register("refused", "--mlflow-run-id", "0123456789abcdef0123456789abcdef")
    assert result.exit_code == 1
    assert "mlflow_run_id='0123456789abcdef0123456789abcdef': no such run" in result.stderr


def test_nothing_to_register(tracking):
    result = register("nothing")
    assert result.exit_code == 1
    assert "no finished 'fine_tuning_model' run in experiment" in result.stderr


def test_unity_catalog_needs_three_part_names(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "databricks-uc")
    result = register("dl_finetuned_model", "--mlflow-run-id", store["strong"].info.run_id)
    assert result.exit_code == 1
    assert ("registered_model_name='dl_finetuned_model': the Unity Catalog registry (databricks-uc) needs "
            "catalog.schema.model, e.g. main.default.dl_finetuned_model") in result.stderr
    (attempt,) = mlflow.search_runs(filter_string="params.registered_model_name = 'dl_finetuned_model'", output_format="list")
    assert attempt.info.status == "FAILED"


@pytest.mark.parametrize(("args", "message"), [
    (["--registered-model-name", "bad/name"], "Invalid model name 'bad/name'. Names cannot contain '/' or ':'."),
    (["--registered-model-name", "names", "--alias", "best model!"], "Invalid alias name: 'best model!'."),
    (["--registered-model-name", "names", "--alias", "latest"], "'latest' alias name (case insensitive) is reserved."),
    (["--registered-model-name", "names", "--challenger-alias", "champion"],
     "alias and challenger_alias are both 'champion': give the challenger another name"),
])
def test_bad_names_are_one_line_before_registering(store, args, message):
    result = cli_runner().invoke(register_model.main, ["--mlflow-run-id", store["strong"].info.run_id, *args])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {message}")
    assert mlflow.MlflowClient().search_model_versions(f"run_id = '{store['strong'].info.run_id}' and name = 'names'") == []
