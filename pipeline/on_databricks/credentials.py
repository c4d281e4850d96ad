"""Databricks credentials for the processes `main` starts, fresh for as long as they run.

On a Databricks job cluster only the job's driver process authenticates: databricks-sdk's `runtime` auth reads the
runtime's context, whose token is short-lived and re-read on every call. A process the driver starts (each step,
and the training process a step starts) has no context. Handing the children a copy of the token would stop the
refreshing: environment credentials come first in MLflow's and the SDK's order, and the copy expires mid-run.

So `main` serves its own credentials to its children on 127.0.0.1 as databricks-sdk's metadata service (the
`metadata-service` auth type, `DATABRICKS_METADATA_SERVICE_URL`: the SDK's documented way for a local process to
hand tokens to others). A child's SDK, and MLflow through it, asks for a token when its last one is near expiry;
`main` answers with the runtime's current one, leased for LEASE_SECONDS: longer than the SDK's expiry margin, or
every call of every step would fetch a token again. No token is written to an environment,
file, param, tag or log line; the URL has a random path, so only the processes given it can ask.
"""

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import mlflow
from mlflow.utils.uri import get_db_info_from_uri, is_databricks_uri

from pipeline.on_databricks.cluster import on_databricks
from pipeline.errors import PipelineError, first_line

# databricks-sdk counts a token as expired 40 s before its end (`Token.expired`, oauth.py, 0.49 to 0.167): a child
# uses a leased token for LEASE_SECONDS minus that, a minute, then asks again. Runtime tokens live about an hour.
SDK_EXPIRY_MARGIN_SECONDS = 40
LEASE_SECONDS = SDK_EXPIRY_MARGIN_SECONDS + 60
METADATA_VERSION = "1"  # the X-Databricks-Metadata-Version databricks-sdk sends


def databricks_profile() -> str | None:
    """The ~/.databrickscfg profile of the tracking or registry URI (`databricks://<profile>`), if one is named."""
    uris = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    return next((get_db_info_from_uri(uri)[0] for uri in uris if is_databricks_uri(uri)), None)


def tracks_to_databricks() -> bool:
    return any(is_databricks_uri(uri) for uri in (mlflow.get_tracking_uri(), mlflow.get_registry_uri()))


@contextlib.contextmanager
def credentials_for_children() -> Iterator[dict[str, str]]:
    """The environment variables through which this process's children authenticate to Databricks, served while
    the block runs; empty off a cluster or when nothing tracks to Databricks (children resolve as their parent)."""
    if not on_databricks() or not tracks_to_databricks():
        yield {}
        return
    from databricks.sdk.core import Config  # comes with MLflow

    try:
        config = Config(profile=databricks_profile())
        bearer_token(config)
    except Exception as error:  # noqa: BLE001 - the SDK raises its own types and ValueError for each auth method
        raise PipelineError(f"cannot resolve this cluster's Databricks credentials for the steps ({first_line(error)})") from None
    path = f"/{secrets.token_urlsafe(24)}"
    server = ThreadingHTTPServer(("127.0.0.1", 0), token_handler(config, path))
    thread = threading.Thread(target=server.serve_forever, name="databricks-credentials", daemon=True)
    thread.start()
    try:
        yield {"DATABRICKS_HOST": normalized_host(config.host),
               "DATABRICKS_METADATA_SERVICE_URL": f"http://127.0.0.1:{server.server_port}{path}"}
    finally:
        server.shutdown()
        server.server_close()


def bearer_token(config) -> str:
    """The token `config` authenticates with now (the runtime's current one, on a driver)."""
    scheme, _, token = config.authenticate().get("Authorization", "").partition(" ")
    if scheme != "Bearer" or not token:
        raise PipelineError(f"Databricks auth type {config.auth_type!r} gives no bearer token to hand to the steps")
    return token


def normalized_host(host: str) -> str:
    """`scheme://hostname[:port]`, lower case, without a default port, path or trailing slash: the runtime's context and
    the SDK write one workspace's host differently (`https://x.cloud.databricks.com:443/`, `x.cloud.databricks.com`)."""
    parsed = urlparse(host if "://" in host else f"https://{host}")
    scheme = parsed.scheme.lower()
    port = "" if parsed.port in (None, {"https": 443, "http": 80}.get(scheme)) else f":{parsed.port}"
    return f"{scheme}://{(parsed.hostname or '').lower()}{port}"


def token_handler(config, path: str) -> type[BaseHTTPRequestHandler]:
    """Answers databricks-sdk's metadata-service request (`MetadataServiceTokenSource.refresh`): GET with the
    version and host headers, `{access_token, token_type, expires_on}` back."""
    host = normalized_host(config.host)

    class TokenHandler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass  # a request line is no one's business, and the default goes to stderr

        def do_GET(self):
            if self.path != path or self.headers.get("X-Databricks-Metadata-Version") != METADATA_VERSION \
                    or normalized_host(self.headers.get("X-Databricks-Host") or "") != host:
                return self.reply(404, {"error": "not this service"})
            try:
                token = bearer_token(config)
            except Exception as error:  # noqa: BLE001 - the child's SDK reports the message
                return self.reply(503, {"error": first_line(error)})
            self.reply(200, {"access_token": token, "token_type": "Bearer", "expires_on": int(time.time()) + LEASE_SECONDS})

        def reply(self, status: int, payload: dict):
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return TokenHandler
