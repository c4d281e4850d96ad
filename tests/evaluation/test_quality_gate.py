"""pipeline/evaluation/quality_gate.py: only a champion that does not exist is "no champion"; any other registry error fails."""

import functools
import http.server
import json
import threading

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Run, RunData, RunInfo
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipeline.errors import PipelineError
from pipeline.contract import DIGEST_TAG, GATE_TAG, METRIC_TAG, SCORE_TAG
from pipeline.evaluation.quality_gate import alias_version, judge, promote


class RegistryAnswering(http.server.BaseHTTPRequestHandler):
    """Answers every request with one status and Databricks/MLflow-style error body."""

    def __init__(self, status, code, *args, **kwargs):
        self.status, self.code = status, code
        super().__init__(*args, **kwargs)

    def do_GET(self):
        body = json.dumps({"error_code": self.code, "message": f"{self.code} from the test registry"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def registry(monkeypatch):
    """start(status, code) -> the URI of a registry on 127.0.0.1 that answers so; MLflow does not retry."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    servers = []

    def start(status: int, code: str) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RegistryAnswering, status, code))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def candidate(score: float, baseline: float | None = 0.8, served: float | None = -1.0) -> Run:
    """A finished fine-tuning run with its transformer's test macro-F1 and, unless None, its baseline's and its
    served model's (a blend; by default the transformer served alone, with its score)."""
    served = score if served == -1.0 else served
    info = RunInfo(run_id="r1", experiment_id="0", user_id="", status="FINISHED", start_time=0, end_time=1, lifecycle_stage="active")
    values = {"test_macro_f1": score, "baseline_test_macro_f1": baseline, "served_test_macro_f1": served}
    return Run(info, RunData(metrics=[Metric(name, value, 0, 0) for name, value in values.items() if value is not None]))


@pytest.mark.parametrize(("score", "baseline", "reason"), [
    (0.85, 0.80, None),
    (0.80, 0.80, "test_macro_f1=0.8000 does not beat the TF-IDF + logistic regression baseline (0.8000; lift +0.0000)"),
    (0.75, 0.84, "test_macro_f1=0.7500 does not beat the TF-IDF + logistic regression baseline (0.8400; lift -0.0900)"),
    (0.85, None, "run r1 logged no baseline_test_macro_f1 to beat (fine-tune it again, or -P beat_baseline=false)"),
])
def test_a_model_must_beat_its_baseline(registry, score, baseline, reason):
    client = MlflowClient(tracking_uri="sqlite://", registry_uri=registry(404, "RESOURCE_DOES_NOT_EXIST"))
    verdict = judge(client, "sentiment", "champion", candidate(score, baseline), "test_macro_f1", 0.7)
    assert verdict.passed == (reason is None) and (reason is None or verdict.reason == reason)
    assert judge(client, "sentiment", "champion", candidate(score, baseline), "test_macro_f1", 0.7, beat_baseline=False).passed


def test_the_gate_judges_the_served_model(registry):
    """A transformer below its baseline, blended into a served model above it, passes, and says the served score."""
    client = MlflowClient(tracking_uri="sqlite://", registry_uri=registry(404, "RESOURCE_DOES_NOT_EXIST"))
    verdict = judge(client, "sentiment", "champion", candidate(0.78, 0.80, served=0.86), "test_macro_f1", 0.7)
    assert verdict.passed and verdict.score == 0.86
    refused = judge(client, "sentiment", "champion", candidate(0.90, 0.80, served=0.79), "test_macro_f1", 0.7)
    assert not refused.passed and refused.reason.startswith("test_macro_f1=0.7900 does not beat")


def test_a_candidate_without_the_served_score_is_refused_not_judged_on_the_transformer(registry):
    """The served model's metric is the one the gate may judge: judged on the transformer's instead, a blend could be
    promoted on another model's score."""
    client = MlflowClient(tracking_uri="sqlite://", registry_uri=registry(404, "RESOURCE_DOES_NOT_EXIST"))
    with pytest.raises(PipelineError, match=r"^run r1 logged no 'served_test_macro_f1', the served model's score: it was "
                                            r"fine-tuned by older code; fine-tune it again$"):
        judge(client, "sentiment", "champion", candidate(0.9, served=None), "test_macro_f1", 0.7)


def test_a_missing_model_or_alias_means_no_champion(registry):
    client = MlflowClient(tracking_uri="sqlite://", registry_uri=registry(404, "RESOURCE_DOES_NOT_EXIST"))
    assert alias_version(client, "sentiment", "champion") is None
    verdict = judge(client, "sentiment", "champion", candidate(0.9), "test_macro_f1", 0.7)
    assert verdict.passed and verdict.reason == "test_macro_f1=0.9000 >= min_score=0.7; no current @champion"


@pytest.mark.parametrize(("status", "code"), [(403, "PERMISSION_DENIED"), (500, "INTERNAL_ERROR")])
def test_other_registry_errors_fail_the_gate(registry, status, code):
    client = MlflowClient(tracking_uri="sqlite://", registry_uri=registry(status, code))
    with pytest.raises(PipelineError, match=r"^cannot read @champion of 'sentiment' from the model registry: ") as raised:
        judge(client, "sentiment", "champion", candidate(0.9), "test_macro_f1", 0.7)
    assert "\n" not in str(raised.value)


def test_promotion_that_collides_with_a_concurrent_writer_reads_again_and_settles_on_the_best(tracking):
    """Two first-time sets of one alias collide in SQL stores (a unique-key error, HTTP 400 over a server): the
    loser reads the registry again and compares, as for any other concurrent change."""
    client = MlflowClient()
    client.create_registered_model("raced")
    for score in ("0.6", "0.9"):
        client.create_model_version("raced", "file:///m", tags={GATE_TAG: "passed", DIGEST_TAG: "d", METRIC_TAG: "test_macro_f1",
                                                                SCORE_TAG: score})

    class CollidingClient(MlflowClient):
        collisions = 0

        def set_registered_model_alias(self, name, alias, version):
            if not self.collisions:  # the other writer got there first, with its own (worse) version
                self.collisions += 1
                MlflowClient().set_registered_model_alias(name, alias, "1")
                raise MlflowException("UNIQUE constraint failed: registered_model_aliases", INVALID_PARAMETER_VALUE)
            return super().set_registered_model_alias(name, alias, version)

    colliding = CollidingClient()
    assert promote(colliding, "raced", "champion", "test_macro_f1", "d") == "2"
    assert colliding.collisions == 1 and str(client.get_model_version_by_alias("raced", "champion").version) == "2"
