"""pipeline/quality_gate.py: only a champion that does not exist is "no champion"; any other registry error fails."""

import functools
import http.server
import json
import threading

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Run, RunData, RunInfo

from pipeline.errors import PipelineError
from pipeline.quality_gate import alias_version, judge


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


def candidate(score: float, baseline: float | None = 0.8) -> Run:
    """A finished fine-tuning run with its test macro-F1 and, unless None, its baseline's."""
    info = RunInfo(run_id="r1", experiment_id="0", user_id="", status="FINISHED", start_time=0, end_time=1, lifecycle_stage="active")
    metrics = [Metric("test_macro_f1", score, 0, 0)] + ([Metric("baseline_test_macro_f1", baseline, 0, 0)] if baseline is not None else [])
    return Run(info, RunData(metrics=metrics))


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
