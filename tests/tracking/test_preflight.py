"""pipeline/tracking/preflight.py, which `make run` runs before `mlflow run .`."""

import http.server
import subprocess
import sys
import threading

import pytest

from conftest import REPO, client_env


def test_an_unreachable_server_is_one_line_without_credentials():
    env = client_env("http://alice:hunter2@127.0.0.1:9")
    result = subprocess.run([sys.executable, "-m", "pipeline.tracking.preflight"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: tracking server http://127.0.0.1:9 does not answer (ConnectionError); check MLFLOW_TRACKING_URI"
    assert "hunter2" not in result.stdout + result.stderr


def test_a_local_store_needs_no_check(tmp_path):
    env = client_env(f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = subprocess.run([sys.executable, "-m", "pipeline.tracking.preflight"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


class Answering(http.server.BaseHTTPRequestHandler):
    """A server that answers every request with `status` and records the Authorization header it got."""

    status = 200
    seen: list[str | None] = []

    def do_GET(self):
        type(self).seen.append(self.headers.get("Authorization"))
        self.send_response(self.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(("status", "message"), [
    (401, "refuses the credentials (HTTP 401); check MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN"),
    (403, "refuses the credentials (HTTP 403); check MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN"),
    (503, "fails (HTTP 503); see the server's log"),
])
def test_a_server_that_refuses_or_fails_says_which(status, message):
    handler = type("Handler", (Answering,), {"status": status, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        env = client_env(uri, MLFLOW_TRACKING_TOKEN="secret-token-123")
        result = subprocess.run([sys.executable, "-m", "pipeline.tracking.preflight"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1 and result.stderr.strip() == f"error: tracking server {uri} {message}"
    assert handler.seen == ["Bearer secret-token-123"]  # asked with the credentials MLflow would send
    assert "secret-token-123" not in result.stdout + result.stderr
