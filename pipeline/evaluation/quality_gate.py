"""The regression test before deploying: a new model version takes the serving alias only if it is good enough.

The gate judges the served model (`pipeline.contract.served_metric`: the transformer alone, or its blend with the
baseline); a candidate without it is refused, never judged on another model's metric. A candidate passes when that
test metric reaches `min_score`, beats the TF-IDF + logistic regression baseline
trained on the same splits (`pipeline.evaluation.baseline`; a switch) and is not below the current champion's on the
same test data (the champion's logged metric when the test data digests match, otherwise the champion model
is scored on the candidate's test split). Passing versions are tagged; the alias then goes to the best
passing version on that test data, re-checked until stable so that concurrent pipelines agree.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from pipeline.contract import DATA_RUN_TAG, DIGEST_TAG, GATE_TAG, METRIC_TAG, SCORE_TAG, TEST_METRICS, baseline_metric, data_uri
from pipeline.contract import served_metric
from pipeline.evaluation.baseline import NAME as BASELINE_NAME
from pipeline.data.reviews import LABEL_COLUMN, TEXT_COLUMN, read_split
from pipeline.errors import PipelineError, first_line
from pipeline.evaluation.metrics import split_scores
from pipeline.serving.model_logging import refuse_without_code_execution
from pipeline.data.input_data import input_digests
from pipeline.tracking.runs import download_artifacts

@dataclass(frozen=True)
class Verdict:
    passed: bool
    score: float
    reason: str


def judge(client: MlflowClient, name: str, alias: str, candidate: Run, metric: str, min_score: float,
          beat_baseline: bool = True) -> Verdict:
    """Does the candidate run's model deserve `alias`?"""
    if metric not in TEST_METRICS:
        raise PipelineError(f"gate_metric={metric!r}: expected one of {list(TEST_METRICS)}")
    score = candidate.data.metrics.get(served_metric(metric))
    if score is None:
        raise PipelineError(f"run {candidate.info.run_id} logged no {served_metric(metric)!r}, the served model's score: it "
                            "was fine-tuned by older code; fine-tune it again")
    if score < min_score:
        return Verdict(False, score, f"{metric}={score:.4f} is below min_score={min_score}")
    if beat_baseline:
        baseline = candidate.data.metrics.get(baseline_metric(metric))
        if baseline is None:
            return Verdict(False, score, f"run {candidate.info.run_id} logged no {baseline_metric(metric)} to beat "
                                         "(fine-tune it again, or -P beat_baseline=false)")
        if score <= baseline:
            return Verdict(False, score, f"{metric}={score:.4f} does not beat the {BASELINE_NAME} baseline "
                                         f"({baseline:.4f}; lift {score - baseline:+.4f})")
    champion = alias_version(client, name, alias)
    if champion is None:
        return Verdict(True, score, f"{metric}={score:.4f} >= min_score={min_score}; no current @{alias}")
    champion_score, how = score_on_candidate_data(client, champion, candidate, metric)
    if score < champion_score:
        return Verdict(False, score, f"{metric}={score:.4f} is worse than @{alias} (version {champion.version}: "
                                     f"{champion_score:.4f}{how}) on the same test data")
    return Verdict(True, score, f"{metric}={score:.4f} >= @{alias} (version {champion.version}: {champion_score:.4f}{how}) "
                                f"and >= min_score={min_score}")


def alias_version(client: MlflowClient, name: str, alias: str):
    """The version holding `alias`, or None when the model or the alias does not exist yet.

    Any other error (network, permission, server) fails the step: read as "no champion", it would crown an
    unchecked model."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST" or (
                error.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(error)):  # SQL stores' missing alias
            return None
        raise PipelineError(f"cannot read @{alias} of {name!r} from the model registry: {first_line(error)}") from None


def score_on_candidate_data(client: MlflowClient, champion, candidate: Run, metric: str) -> tuple[float, str]:
    """The champion's `metric` on the candidate's test data, and how it was found (for the verdict): its logged
    served score when it was tested on the same data; a champion logged before served scores existed, by its own
    test metric, which its served model then was; otherwise its model scored here."""
    test_digest = input_digests(candidate).get("test")
    source = client.get_run(champion.run_id)
    if test_digest and input_digests(source).get("test") == test_digest:
        if served_metric(metric) in source.data.metrics:
            return source.data.metrics[served_metric(metric)], ""
        if metric in source.data.metrics:
            return source.data.metrics[metric], f", its {metric}: logged before served scores existed"
    with tempfile.TemporaryDirectory(prefix="gate-") as scratch:
        frame = read_split(candidate_test_csv(candidate, Path(scratch)))
        refuse_without_code_execution(f"scoring the champion {champion.name} version {champion.version} on the candidate's test split")
        model = mlflow.pyfunc.load_model(f"models:/{champion.name}/{champion.version}")
        predicted = model.predict(frame[[TEXT_COLUMN]])["label"]
        return split_scores(frame[LABEL_COLUMN], predicted)[metric], ""


def candidate_test_csv(candidate: Run, scratch: Path) -> Path:
    """The test split the candidate was scored on: from its download run, or the folder it read."""
    data_run_id = candidate.data.tags.get(DATA_RUN_TAG)
    if data_run_id:
        return download_artifacts(data_uri(data_run_id, "test"), scratch)
    folder = Path(candidate.data.params.get("data_path", ""))
    if (folder / "test.csv").is_file():
        return folder / "test.csv"
    raise PipelineError(f"cannot find the test data of run {candidate.info.run_id} to compare it with the champion")


def all_versions(client: MlflowClient, name: str) -> list:
    """Every version of the model: the registry answers a search one page at a time."""
    found, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{name}'", page_token=token)
        found += list(page)
        token = page.token
        if not token:
            return found


def promote(client: MlflowClient, name: str, alias: str, metric: str, test_digest: str) -> str:
    """Point `alias` at the best passing version on this test data; repeat until no concurrent writer changed it."""
    for attempt in range(10):
        # Unity Catalog's search leaves tags out of its answers: read each version for them.
        versions = [client.get_model_version(name, found.version) for found in all_versions(client, name)]
        passing = [version for version in versions
                   if version.tags.get(GATE_TAG) == "passed" and version.tags.get(DIGEST_TAG) == test_digest
                   and version.tags.get(METRIC_TAG) == metric]
        best = max(passing, key=lambda version: (float(version.tags[SCORE_TAG]), int(version.version)))
        current = alias_version(client, name, alias)
        if current is not None and str(current.version) == str(best.version):
            return str(best.version)
        try:
            client.set_registered_model_alias(name, alias, best.version)
        except MlflowException:
            # A concurrent writer set it at the same moment (two first-time sets collide in SQL stores as a
            # unique-key error): read again and compare, as for any other change.
            if attempt == 9:
                raise
    return str(best.version)
