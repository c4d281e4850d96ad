"""Real servers for the tests, each on a free 127.0.0.1 port in its own process group (stopped as a group:
`mlflow server` starts a dozen processes that would outlive a plain kill)."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(ready, process: subprocess.Popen, log: Path, what: str, timeout: float = 120) -> None:
    """Poll `ready()` until it is true; fail with the server's log if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError, requests.RequestException):
            if ready():
                return
        time.sleep(0.3)
    raise RuntimeError(f"{what} not ready after {timeout} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def server_process(command: list[str], log: Path, ready, what: str, env: dict | None = None):
    """Run `command` in its own process group until the block ends; `ready()` says when it serves."""
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, **(env or {})})
    try:
        wait_until(ready, process, log, what)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def http_ok(url: str) -> bool:
    return requests.get(url, timeout=2).status_code == 200


@contextlib.contextmanager
def mlflow_server(folder: Path, proxied: bool = True, port: int | None = None):
    """`mlflow server` with a SQLite store in `folder`, on `port` (default: a free one); yields its http URI.

    proxied: artifacts go through the server (`--artifacts-destination`), as a team server does.
    Otherwise they go straight to `folder/artifacts` (`--default-artifact-root`), which is what a server
    behind the Databricks emulator needs: with tracking URI `databricks` MLflow refuses `mlflow-artifacts:` URIs.
    """
    port = port or free_port()
    artifacts = folder / "artifacts"
    storage = (["--artifacts-destination", str(artifacts)] if proxied
               else ["--no-serve-artifacts", "--default-artifact-root", artifacts.as_uri()])
    command = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", *storage,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    uri = f"http://127.0.0.1:{port}"
    with server_process(command, folder / "server.log", lambda: http_ok(f"{uri}/health"), "mlflow server"):
        yield uri


@contextlib.contextmanager
def git_daemon(base: Path):
    """`git daemon` serving the bare repositories under `base` read-only; yields `git://127.0.0.1:<port>`."""
    port = free_port()
    command = ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}", "--listen=127.0.0.1",
               f"--port={port}", str(base)]

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    with server_process(command, base.parent / "git-daemon.log", ready, "git daemon"):
        yield f"git://127.0.0.1:{port}"
