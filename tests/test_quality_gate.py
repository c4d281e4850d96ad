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


def candidate(score: float) -> Run:
    info = RunInfo(run_id="r1", experiment_id="0", user_id="", status="FINISHED", start_time=0, end_time=1, lifecycle_stage="active")
    return Run(info, RunData(metrics=[Metric("test_macro_f1", score, 0, 0)]))


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
