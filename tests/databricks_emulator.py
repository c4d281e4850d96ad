"""A Databricks workspace on 127.0.0.1, as a workspace created in 2026 is, as far as this project's clients use one.

The client code is the real thing (`mlflow run -b databricks-jobs` and MLflow's own `-b databricks`,
`MLFLOW_TRACKING_URI=databricks`, databricks-sdk auth); the tests run it up to the cluster, which this module
stands in for. It refuses what Databricks documents as refused, not only what our client happens to send.

A new account's workspace (the default; `legacy=True` gives one of the old kind, for MLflow's own backend):
- no DBFS root: `dbfs/get-status` and `POST /dbfs/<path>` answer 403 "Public DBFS root is disabled" ("What is DBFS":
  new accounts are provisioned without the DBFS root and mounts);
- no no-isolation clusters: a `new_cluster` needs a Unity Catalog `data_security_mode` (the account setting that
  disables legacy features turns them off); `/Volumes/...` exists only on such a cluster;
- runtime tokens expire (`token_seconds`): the driver's context hands out fresh ones, renewed every
  `token_renew_seconds` (default: at half their life; the runtime's cadence is not documented), and a request with an
  expired one is a 401;
- no ML runtime on standard access mode (`USER_ISOLATION`, `DATA_SECURITY_MODE_STANDARD`; "Standard compute
  limitations": no Databricks Runtime ML, no GPU instances): such a cluster never starts, the run ends INTERNAL_ERROR
  with termination code INVALID_CLUSTER_REQUEST;
- Jobs API 2.2 `runs/submit` with one task: `spark_python_task` from `git_source` (checked out from the git server
  at the pinned commit, without `.git`, read-only) or from workspace files (`source: WORKSPACE`), started in the
  file's folder (Runtime 14+: "the default current working directory is the directory of the script");
- workspace files (`workspace/mkdirs`, `import`, `get-status`: only under `/Users/<user>` and `/Shared`), the Files
  API on the volume `main.default.files`, `preview/scim/v2/Me`, and experiments named by a workspace path whose
  folder exists.

And in both kinds:
- with `legacy=True`, `GET /api/2.0/dbfs/get-status` and `POST /dbfs/<path>` (the project tarball, the job's python file) on a DBFS folder;
- `POST /api/2.0/jobs/runs/submit`: the cluster spec must be a bare `new_cluster` on a runtime Databricks supports
  (a wrapped `{"new_cluster": ...}` spec or any other unknown field is a 400). A `spark_python_task` runs its
  `dbfs:/` python file with its parameters as the cluster's driver would: on the runtime's own Python and
  packages (`tests/databricks_runtime.py`, from the committed constraint list of the runtime the spec names: 18.0
  or 17.3) with the job's `pypi` libraries really pip-installed on top, from a driver folder that is not the
  project's, `/dbfs` and `/databricks` mapped into the emulator's folders. A library that would replace a package
  the runtime builds for its driver and Spark (torch, numpy, pandas, pyarrow, pyspark, CUDA libraries) ends the run
  as a library installation failure naming it. A `shell_command_task` (MLflow's classic project format) ends
  FAILED, as Databricks documents for runtime 13 and above;
- `GET /api/2.x/jobs/runs/get` (PENDING → RUNNING → TERMINATED with SUCCESS / FAILED / CANCELED / TIMEDOUT, or
  INTERNAL_ERROR when a library cannot be installed or the cluster cannot start), with Jobs 2.2's reasons: the run's
  `status.termination_details` (`code`, `type`, `message`: the codes of the Jobs API's TerminationCodeCode) and each
  task's own `run_id`, `state` and `status`; `runs/get-output` of a task run (`error`, the exception's last line, and
  `error_trace`), refused for the run of a multi-task submission ("Retrieving the output of runs with multiple tasks is
  not supported"); `POST /api/2.x/jobs/runs/cancel`;
- Jobs API `runs/submit` `idempotency_token` (a second submission with the same token returns the first run's id,
  "If a run with the provided token already exists, the request does not create a new run") and `timeout_seconds`
  (the run ends TIMEDOUT); `lose_submit_answers` drops the connection of that many submissions after starting their
  run, as a network fault between client and workspace may;
- node types without capacity (`no_capacity`): the cluster cannot start, INTERNAL_ERROR with termination code
  CLOUD_FAILURE, as a cloud out of an instance type reports;
- `/api/2.0/mlflow/...` forwarded to a real `mlflow server` (its 5xx answers too), except Unity Catalog's model
  registry and its files, which `tests/unity_catalog_emulator.py` keeps.

Every request needs `Authorization: Bearer <token>`: the user's token or a live runtime token of a job's driver. What
a job cluster gives, and no more:
- its environment has no DATABRICKS_HOST / DATABRICKS_TOKEN (a job cluster has none). The driver process alone
  authenticates, through the runtime context that databricks-sdk's `runtime` auth and MLflow read (`dbruntime`,
  stood in by `tests/cluster_image/`), with a token of the cluster's own, never the user's; a process the
  driver starts gets no context;
- the driver's Spark is the cluster's (`SparkSession.builder.getOrCreate()` with no master: `local[*]` on a
  single node, `local-cluster[<num_workers>,1,1024]` for a cluster with workers); a child process gets none.
"""

import base64
import contextlib
import http.server
import itertools
import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import psutil
import requests

from databricks_runtime import RUNTIME_PYTHON, LibraryRefused, cluster_environment
from tools.dependencies import runtime_release, supported_runtimes
from unity_catalog_emulator import PRESIGNED_PREFIX, ApiError, UnityCatalog, file_within

# MLflow's job code copies the tarball with `rsync -a -v --ignore-existing FILE DIR`. Databricks images have rsync,
# these test machines do not: the cluster's PATH gets this stand-in, which does exactly that and refuses the rest.
RSYNC_STAND_IN = '''[ "$#" -eq 5 ] && [ "$1 $2 $3" = "-a -v --ignore-existing" ] || { echo "rsync stand-in: unsupported: $*" >&2; exit 2; }
echo "$4"
[ -e "$5/$(basename "$4")" ] || exec cp -p "$4" "$5"'''
SPARK_VERSION = re.compile(r"^(\d+\.\d+)\.x-(?:(?:cpu|gpu)-ml-)?scala2\.1[23]$")
# The fields of a Jobs API `new_cluster` (ClusterSpec in the Databricks REST reference).
CLUSTER_FIELDS = {
    "apply_policy_default_values", "autoscale", "autotermination_minutes", "aws_attributes", "azure_attributes",
    "cluster_log_conf", "cluster_name", "custom_tags", "data_security_mode", "docker_image", "driver_instance_pool_id",
    "driver_node_type_id", "enable_elastic_disk", "enable_local_disk_encryption", "gcp_attributes", "init_scripts",
    "instance_pool_id", "is_single_node", "kind", "node_type_id", "num_workers", "policy_id", "runtime_engine",
    "single_user_name", "spark_conf", "spark_env_vars", "spark_version", "ssh_public_keys", "use_ml_runtime",
    "workload_type",
}
# MLflow 3.17 sends its own run options inside `new_cluster` in the Spark job format (it passes the whole backend
# config on). Databricks ran such jobs (MLflow PR #12139 was tested on a workspace), so they are tolerated.
MLFLOW_RUN_OPTIONS = {"ENV_MANAGER", "SYNCHRONOUS", "DOCKER_ARGS", "STORAGE_DIR", "build_image", "docker_auth"}
CLASSIC_PROJECTS_REFUSED = ("For Databricks Runtime 13.0 ML and above, MLflow Projects cannot successfully run within a "
                            "Databricks job type cluster (use MLflow's Databricks Spark job project format)")
CLUSTER_IMAGE = Path(__file__).with_name("cluster_image")  # the runtime context of the driver process
TERMINAL = ("TERMINATED", "INTERNAL_ERROR", "SKIPPED")
STANDARD_MODES = {"USER_ISOLATION", "DATA_SECURITY_MODE_STANDARD"}  # standard (shared) access
# Access modes with Unity Catalog (Clusters API `data_security_mode`); without one a cluster is no-isolation.
UNITY_CATALOG_MODES = {"SINGLE_USER", "USER_ISOLATION", "DATA_SECURITY_MODE_DEDICATED", "DATA_SECURITY_MODE_STANDARD",
                       "DATA_SECURITY_MODE_AUTO"}
# Jobs API `GitSource.git_provider`
GIT_PROVIDERS = {"gitHub", "bitbucketCloud", "azureDevOpsServices", "gitHubEnterprise", "bitbucketServer", "gitLab",
                 "gitLabEnterpriseEdition", "awsCodeCommit"}
DBFS_ROOT_DISABLED = "Public DBFS root is disabled. Access is denied on path: {}"  # the workspace's answer, as users report it
WORKSPACE_IMPORT_LIMIT = 10 * 1024 * 1024  # Workspace API import: 10 MB of base64 content (Databricks REST reference)
NOTEBOOK_HEADER = "# Databricks notebook source"  # AUTO imports a file with it as a notebook, others as files


@dataclass
class Job:
    run_id: int
    request: dict
    folder: Path
    runtime: str
    state: str = "PENDING"  # life_cycle_state
    result: str | None = None
    message: str = "Waiting for cluster"
    termination: dict | None = None  # status.termination_details: code, type, message
    error_trace: str = ""  # the task's uncaught exception, as runs/get-output reports it
    submitted_at: float = field(default_factory=time.monotonic)
    process: subprocess.Popen | None = None
    cancelled: bool = False
    driver_secret: str = field(default_factory=lambda: os.urandom(16).hex())  # how its driver context asks for tokens
    tokens_used: set = field(default_factory=set)  # the runtime tokens its processes authenticated with
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def log(self) -> str:
        path = self.folder / "driver.log"
        return path.read_text(errors="replace") if path.exists() else ""


class DatabricksEmulator:
    """Start with `with DatabricksEmulator(root, tracking_url, token) as workspace:`; `workspace.host` is its URL."""

    def __init__(self, root: Path, tracking_url: str, token: str, cluster_env: dict[str, str] | None = None,
                 legacy: bool = False, token_seconds: float = 3600, token_renew_seconds: float | None = None,
                 user: str = "someone@example.com", first_run_id: int = 101, no_capacity: tuple[str, ...] = (),
                 dbfs_root_message: str | None = None):
        self.root, self.tracking_url, self.token = root, tracking_url.rstrip("/"), token
        self.legacy, self.token_seconds, self.user = legacy, token_seconds, user
        self.token_renew_seconds = token_renew_seconds or token_seconds / 2
        self.no_capacity, self.dbfs_root_message = set(no_capacity), dbfs_root_message or DBFS_ROOT_DISABLED
        self.idempotency: dict[str, int] = {}  # runs/submit idempotency_token -> run id
        self.lose_submit_answers = 0  # submissions whose answer is lost after their run started
        self.runtime_tokens: dict[str, tuple[float, int]] = {}  # token -> (expiry, job run id)
        self.refused_expired = 0  # requests refused with an expired runtime token
        self.workspace_imports = 0  # files imported into the workspace
        self.cluster_env = cluster_env or {}  # what the cluster image sets, e.g. HF_HUB_OFFLINE for offline tests
        self.dbfs = root / "dbfs"
        self.volumes = root / "volumes"  # /Volumes/<catalog>/<schema>/<volume>: one volume, main.default.files
        self.workspace_files = root / "workspace-files"  # /Workspace/...
        self.jobs: dict[int, Job] = {}
        self.ids = itertools.count(first_run_id)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.unity_catalog = UnityCatalog(root / "uc-storage", self.host)

    def __enter__(self):
        self.dbfs.mkdir(parents=True, exist_ok=True)
        (self.volumes / "main" / "default" / "files").mkdir(parents=True, exist_ok=True)
        for folder in (f"Users/{self.user}", "Shared"):  # the user's home and /Shared exist in every workspace
            (self.workspace_files / folder).mkdir(parents=True, exist_ok=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        for job in self.jobs.values():
            self._cancel(job)
        self.server.shutdown()
        self.server.server_close()

    def wait(self, run_id: int, timeout: float = 600) -> Job:
        """Block until the job has ended (tests use this where the CLI returns right after submitting)."""
        job = self.jobs[run_id]
        deadline = time.monotonic() + timeout
        while job.state not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.5)
        return job

    # --- the REST API -------------------------------------------------------------------------------------

    def _handler(self):
        emulator = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._dispatch("GET")

            def do_POST(self):
                self._dispatch("POST")

            def do_PUT(self):
                self._dispatch("PUT")

            def do_PATCH(self):
                self._dispatch("PATCH")

            def do_DELETE(self):
                self._dispatch("DELETE")

            def do_HEAD(self):
                self._dispatch("HEAD")

            def _dispatch(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlparse(self.path)
                if url.path == "/.well-known/databricks-config":
                    return self._reply(404, {"error_code": "NOT_FOUND", "message": "no host metadata"})
                if url.path == "/emulator/driver-token":  # the runtime's own channel, not a public API
                    return self._reply(*emulator.driver_token(self.headers.get("X-Emulator-Driver-Secret")))
                signed = url.path.startswith(PRESIGNED_PREFIX)  # signed URLs to storage need no token, as on a cloud
                refusal = None if signed else emulator.authentication_problem(self.headers.get("Authorization"))
                if refusal:
                    return self._reply(401, {"error_code": "UNAUTHENTICATED", "message": refusal})
                try:
                    if signed:
                        data = emulator.unity_catalog.presigned(method, url.path, parse_qs(url.query), body)
                        status, payload, content_type = 200, data, "application/octet-stream"
                    else:
                        status, payload, content_type = emulator.route(method, url.path, parse_qs(url.query), body,
                                                                       self.headers.get("Content-Type"), url.query)
                except ApiError as error:
                    status, payload, content_type = error.status, {"error_code": error.code, "message": str(error)}, None
                except AnswerLost:
                    self.close_connection = True  # the request was acted on; the client hears nothing
                    return
                self._reply(status, payload, content_type)

            def _reply(self, status, payload, content_type=None):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type or "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        return Handler

    # --- credentials ------------------------------------------------------------------------------------

    def authentication_problem(self, header: str | None) -> str | None:
        """None for the user's token or a live runtime token (recorded as used by its job); else why not."""
        token = (header or "").removeprefix("Bearer ")
        if header == f"Bearer {self.token}":
            return None
        if token in self.runtime_tokens:
            expiry, run_id = self.runtime_tokens[token]
            if time.time() < expiry:
                self.jobs[run_id].tokens_used.add(token)
                return None
            self.refused_expired += 1
            return "Token expired"
        return "invalid or missing bearer token"

    def driver_token(self, secret: str | None) -> tuple[int, dict]:
        """A fresh runtime token for the driver whose context holds `secret` (as the runtime refreshes its own)."""
        job = next((job for job in self.jobs.values() if secret and job.driver_secret == secret), None)
        if job is None or job.state in TERMINAL:
            return 401, {"error_code": "UNAUTHENTICATED", "message": "no such driver"}
        token, expiry = f"runtime-{os.urandom(12).hex()}", time.time() + self.token_seconds
        self.runtime_tokens[token] = (expiry, job.run_id)
        return 200, {"token": token, "expires_at": expiry}

    def route(self, method, path, query, body, content_type, raw_query):
        if path.startswith("/api/2.0/fs/files/"):  # the Files API on volumes, before the registry's own fs/ calls
            # the file's path is the URL's, percent-encoded (Files API: `file_path` is a path parameter)
            return self._volume_file(method, unquote(path.removeprefix("/api/2.0/fs/files")), body)
        if self.unity_catalog.handles(path):
            fields = {key: values[0] for key, values in query.items()} | json.loads(body or b"{}")
            return 200, self.unity_catalog.route(method, path, fields), None
        if path.startswith(("/api/2.0/mlflow/", "/api/2.0/mlflow-artifacts/", "/api/3.0/mlflow/")):
            if path.endswith("/experiments/create"):
                self._check_experiment_name(json.loads(body or b"{}").get("name", ""))
            return self._forward(method, path, raw_query, body, content_type)
        if (method, path) == ("GET", "/api/2.0/dbfs/get-status"):
            return self._dbfs_status(json.loads(body or b"{}").get("path") or query.get("path", [""])[0])
        if method == "POST" and path.startswith("/dbfs/"):
            return self._dbfs_upload(path.removeprefix("/dbfs/"), body)
        if (method, path) == ("GET", "/api/2.0/preview/scim/v2/Me"):
            return 200, {"id": "1", "userName": self.user, "active": True}, None
        if path.startswith("/api/2.0/workspace/"):
            return self._workspace(method, path.removeprefix("/api/2.0/workspace/"), query, body)
        if (method, path) == ("POST", "/api/2.0/jobs/runs/submit"):  # Jobs API 2.0: one task at the top level
            return 200, {"run_id": self._submit(json.loads(body)).run_id}, None
        if (method, path) in (("POST", "/api/2.1/jobs/runs/submit"), ("POST", "/api/2.2/jobs/runs/submit")):
            request = json.loads(body)
            token = request.get("idempotency_token")
            if token in self.idempotency:
                return 200, {"run_id": self.idempotency[token]}, None
            run_id = self._submit_tasks(request).run_id
            if token:
                self.idempotency[token] = run_id
            if self.lose_submit_answers:
                self.lose_submit_answers -= 1
                raise AnswerLost
            return 200, {"run_id": run_id}, None
        if method == "GET" and path in ("/api/2.0/jobs/runs/get", "/api/2.1/jobs/runs/get", "/api/2.2/jobs/runs/get"):
            return 200, self._describe(self._job(query.get("run_id", [""])[0])), None
        if method == "GET" and path in ("/api/2.1/jobs/runs/get-output", "/api/2.2/jobs/runs/get-output"):
            return 200, self._output(query.get("run_id", [""])[0]), None
        if method == "POST" and path in ("/api/2.0/jobs/runs/cancel", "/api/2.1/jobs/runs/cancel", "/api/2.2/jobs/runs/cancel"):
            self._cancel(self._job(json.loads(body).get("run_id")))
            return 200, {}, None
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"{method} {path} is not emulated")

    def _forward(self, method, path, raw_query, body, content_type):
        """The MLflow REST API of a Databricks workspace is an MLflow tracking server: ask the real one."""
        answer = requests.request(method, f"{self.tracking_url}{path}" + (f"?{raw_query}" if raw_query else ""),
                                  data=body, headers={"Content-Type": content_type or "application/json"}, timeout=120)
        return answer.status_code, answer.content, answer.headers.get("Content-Type")

    # --- DBFS ----------------------------------------------------------------------------------------------

    def _dbfs_status(self, dbfs_path: str):
        self._check_dbfs_root(dbfs_path)
        target = file_within(self.dbfs, dbfs_path)
        if not target.exists():
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"No file or directory exists on path {dbfs_path}.")
        return 200, {"path": dbfs_path, "is_dir": target.is_dir(), "file_size": target.stat().st_size}, None

    def _dbfs_upload(self, dbfs_path: str, body: bytes):
        self._check_dbfs_root(dbfs_path)
        target = file_within(self.dbfs, dbfs_path)
        if target.exists():
            raise ApiError(409, "RESOURCE_ALREADY_EXISTS", f"File already exists: {dbfs_path}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        return 200, {}, None

    def _check_dbfs_root(self, dbfs_path: str) -> None:
        if not self.legacy:
            raise ApiError(403, "PERMISSION_DENIED", self.dbfs_root_message.format(dbfs_path))

    # --- workspace files, volumes, experiments --------------------------------------------------------------

    def _workspace_path(self, path: str) -> Path:
        """A workspace path the user may write: under their home or /Shared (a 403 elsewhere)."""
        if not path.startswith("/") or not (path.startswith((f"/Users/{self.user}/", "/Shared/")) or path in (f"/Users/{self.user}", "/Shared")):
            raise ApiError(403, "PERMISSION_DENIED", f"{self.user} does not have Manage permissions on {path or '(no path)'}")
        return file_within(self.workspace_files, path)

    def _workspace(self, method: str, action: str, query: dict, body: bytes):
        fields = {key: values[0] for key, values in query.items()} | (json.loads(body) if body else {})
        path = str(fields.get("path", ""))
        if (method, action) == ("GET", "get-status"):
            target = file_within(self.workspace_files, path)
            if not target.exists():
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Path ({path}) doesn't exist.")
            return 200, {"path": path, "object_type": "DIRECTORY" if target.is_dir() else "FILE"}, None
        if (method, action) == ("POST", "mkdirs"):
            self._workspace_path(path).mkdir(parents=True, exist_ok=True)
            return 200, {}, None
        if (method, action) == ("POST", "import"):
            target, encoded = self._workspace_path(path), fields.get("content", "")
            if len(encoded) > WORKSPACE_IMPORT_LIMIT:  # "content: The base64-encoded content. This has a limit of 10 MB."
                raise ApiError(400, "MAX_NOTEBOOK_SIZE_EXCEEDED", f"{path}: more than 10 MB in one import")
            content = base64.b64decode(encoded)
            if fields.get("format", "SOURCE") != "AUTO" or content.startswith(NOTEBOOK_HEADER.encode()):
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{path}: the emulator imports workspace files only (format AUTO)")
            if not target.parent.is_dir():
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"The parent folder ({path.rpartition('/')[0]}) does not exist.")
            if target.exists() and str(fields.get("overwrite", "false")).lower() != "true":
                raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{path} already exists.")
            target.write_bytes(content)
            self.workspace_imports += 1
            return 200, {}, None
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"{method} /api/2.0/workspace/{action} is not emulated")

    def _volume_file(self, method: str, path: str, body: bytes):
        """Files API on the one volume, `/Volumes/main/default/files`."""
        if not path.startswith("/Volumes/main/default/files/"):
            raise ApiError(404, "NOT_FOUND", f"{path}: no such volume (the workspace has main.default.files)")
        target = file_within(self.volumes, path.removeprefix("/Volumes"))
        if method == "HEAD":
            if not target.is_file():
                raise ApiError(404, "NOT_FOUND", f"{path} does not exist")
            return 200, b"", "application/octet-stream"
        if method == "PUT":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
            return 200, {}, None
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"{method} /api/2.0/fs/files is not emulated")

    def _check_experiment_name(self, name: str) -> None:
        """A workspace experiment is named by an absolute workspace path whose folder exists."""
        if not name.startswith("/"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Got an invalid experiment name '{name}'. An experiment name must be "
                                                           "an absolute path within the Databricks workspace, e.g. '/Users/<some-username>/my-experiment'.")
        folder = name.rstrip("/").rpartition("/")[0]
        if not file_within(self.workspace_files, folder).is_dir():
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Parent directory {folder} does not exist.")

    # --- Jobs ----------------------------------------------------------------------------------------------

    def _job(self, run_id) -> Job:
        try:
            return self.jobs[int(run_id)]
        except (KeyError, TypeError, ValueError):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.") from None

    def _submit_tasks(self, request: dict) -> Job:
        """Jobs API 2.1/2.2: `tasks` (the emulator runs one), each with its own cluster, libraries and task."""
        unknown = sorted(set(request) - {"run_name", "tasks", "git_source", "timeout_seconds", "idempotency_token",
                                         "access_control_list", "environments", "budget_policy_id", "queue", "run_as"})
        if unknown:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Unknown field(s) {unknown} in runs/submit (2.2 takes `tasks`)")
        if len(str(request.get("idempotency_token", ""))) > 64:  # "This field must have at most 64 characters"
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "idempotency_token: at most 64 characters")
        timeout = request.get("timeout_seconds", 0)
        if not isinstance(timeout, int) or timeout < 0:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "timeout_seconds must be a non-negative integer")
        tasks = request.get("tasks")
        if not isinstance(tasks, list) or len(tasks) != 1:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "the emulator runs exactly one task per run")
        (task,) = tasks
        if not task.get("task_key"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Task key must be specified")
        runtime = check_cluster(task.get("new_cluster"), self.legacy)
        python_task = task.get("spark_python_task")
        if not isinstance(python_task, dict):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "the task needs a spark_python_task here")
        check_parameters(python_task)
        source, python_file = python_task.get("source", "GIT" if "git_source" in request else "WORKSPACE"), str(python_task.get("python_file", ""))
        if source == "GIT":
            check_git_source(request.get("git_source"))
            if python_file.startswith("/"):
                raise ApiError(400, "INVALID_PARAMETER_VALUE", "with source GIT, python_file is relative to the repository")
        elif source == "WORKSPACE":
            if not python_file.startswith("/") or not file_within(self.workspace_files, python_file.removeprefix("/Workspace")).is_file():
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"spark_python_task.python_file {python_file!r} does not exist in the workspace")
        else:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"source {source!r}: GIT or WORKSPACE here")
        flat = {"run_name": request.get("run_name", ""), "new_cluster": task["new_cluster"], "libraries": task.get("libraries", []),
                "spark_python_task": python_task | {"source": source}, "task_key": task["task_key"],
                "timeout_seconds": timeout} | ({"git_source": request["git_source"]} if source == "GIT" else {})
        return self._start(flat, runtime)

    def _submit(self, request: dict) -> Job:
        runtime = check_cluster(request.get("new_cluster"), self.legacy)
        python_task, shell_task = request.get("spark_python_task"), request.get("shell_command_task")
        if python_task is not None:
            if not isinstance(python_task.get("parameters", []), list) or not all(
                    isinstance(parameter, str) for parameter in python_task.get("parameters", [])):
                raise ApiError(400, "INVALID_PARAMETER_VALUE", "spark_python_task.parameters must be a list of strings")
            python_file = str(python_task.get("python_file", ""))
            if not python_file.startswith("dbfs:/") or not file_within(self.dbfs, python_file.removeprefix("dbfs:")).is_file():
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"spark_python_task.python_file {python_file!r} does not exist in DBFS")
        elif not isinstance(shell_task, dict):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "the run needs a task (spark_python_task here)")
        return self._start(request, runtime)

    def _start(self, request: dict, runtime: str) -> Job:
        run_id = next(self.ids)
        job = Job(run_id, request, self.root / "clusters" / str(run_id), runtime)  # a new_cluster: nothing left from other jobs
        self.jobs[run_id] = job
        threading.Thread(target=self._run_reporting_errors, args=(job,), daemon=True).start()
        return job

    def _run_reporting_errors(self, job: Job) -> None:
        """A fault of the emulator itself ends the run (INTERNAL_ERROR) instead of leaving it PENDING forever."""
        try:
            self._run(job)
        except Exception as error:  # noqa: BLE001 - reported in the run's state, as Databricks reports its own faults
            with job.lock:
                job.state, job.result, job.message = "INTERNAL_ERROR", "FAILED", f"emulator fault: {error!r}"

    def _run(self, job: Job) -> None:
        """Start the cluster (folders, Python, libraries), then run the driver's python file and record how it ended."""
        if "shell_command_task" in job.request:  # MLflow's classic project format: every supported runtime is 13+
            job.state, job.result, job.message = "TERMINATED", "FAILED", CLASSIC_PROJECTS_REFUSED
            return
        python_bin, tools, driver = job.folder / "databricks" / "python3" / "bin", job.folder / "usr" / "bin", job.folder / "databricks" / "driver"
        for folder in (python_bin, tools, driver, job.folder / "home"):
            folder.mkdir(parents=True)
        failure = self._start_failure(job.request["new_cluster"])
        if failure:
            with job.lock:
                if not job.cancelled:
                    self._end(job, "INTERNAL_ERROR", "FAILED", *failure)
            return
        try:
            cluster = self._install_libraries(job)
        except LibraryRefused as error:
            failure = f"Library installation failed: {error}", "LIBRARY_INSTALLATION_ERROR"
        else:
            for name in ("python", "python3"):  # the cluster's Python: the runtime's, with the job's libraries
                script(python_bin / name, f'exec "{cluster / "bin" / "python"}" "$@"')
            script(python_bin / "mlflow", f'exec "{cluster / "bin" / "python"}" -m mlflow "$@"')
        script(tools / "rsync", RSYNC_STAND_IN)
        task = job.request["spark_python_task"]
        try:
            entry = self._task_file(job, task, driver)
        except subprocess.CalledProcessError as error:
            failure = failure or (f"Failed to checkout Git repository: {(error.stderr or '').strip().splitlines()[-1:]}",
                                  "REPOSITORY_CHECKOUT_FAILED")
            entry = driver
        command = [str(python_bin / "python"), str(entry), *(self._in_sandbox(part, job) for part in task.get("parameters", []))]
        workers = int(job.request["new_cluster"].get("num_workers", 0))
        spark_master = f"local-cluster[{workers},1,1024]" if workers else "local[*]"
        driver_context = {"host": self.host, "secret": job.driver_secret, "spark_master": spark_master,
                          "renew_seconds": self.token_renew_seconds}
        env = {"PATH": f"{python_bin}:{tools}:/usr/local/bin:/usr/bin:/bin", "HOME": str(job.folder / "home"),
               "LANG": "C.UTF-8", "DATABRICKS_RUNTIME_VERSION": job.runtime, "PYTHONPATH": str(CLUSTER_IMAGE),
               "PYSPARK_PYTHON": str(python_bin / "python3"), **self.cluster_env,
               **job.request["new_cluster"].get("spark_env_vars", {}),
               "DATABRICKS_EMULATOR_DRIVER": json.dumps(driver_context)}
        with job.lock:
            if job.cancelled:
                return
            if failure:
                self._end(job, "INTERNAL_ERROR", "FAILED", failure[0], failure[1], "CLIENT_ERROR")
                return
            with (job.folder / "driver.log").open("wb") as log:
                job.process = subprocess.Popen(command, cwd=entry.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True)
            job.state, job.message = "RUNNING", "In run"
        code_folder = {"GIT": job.folder / "checkout", "WORKSPACE": entry.parent}.get(task.get("source"))
        before = code_files(code_folder)
        timeout = job.request.get("timeout_seconds") or None
        try:
            code = job.process.wait(timeout=timeout and max(0.0, timeout - (time.monotonic() - job.submitted_at)))
        except subprocess.TimeoutExpired:
            stop_process_tree(job.process.pid)
            with job.lock:
                if not job.cancelled:
                    self._end(job, "TERMINATED", "TIMEDOUT", f"Run timed out after {timeout} seconds")
            return
        written = sorted(set(code_files(code_folder).items()) - set(before.items()))
        with job.lock:
            if job.cancelled:
                return
            job.error_trace = last_traceback(job.log) if code else ""
            if written:  # read-only there; root, who runs these tests, could write anyway: so it is checked
                self._end(job, "TERMINATED", "FAILED", f"wrote into the job's code folder, which is read-only: "
                                                       f"{[name for name, _ in written][:5]}", "RUN_EXECUTION_ERROR", "CLIENT_ERROR")
            elif code:
                self._end(job, "TERMINATED", "FAILED", "Workload failed, see run output for details", "RUN_EXECUTION_ERROR", "CLIENT_ERROR")
            else:
                self._end(job, "TERMINATED", "SUCCESS", "", "SUCCESS", "SUCCESS")

    def _start_failure(self, cluster: dict) -> tuple[str, str, str] | None:
        """(message, termination code, type) where the cluster cannot start: an ML runtime on standard access mode, or
        a node type the cloud has no capacity for."""
        if cluster.get("data_security_mode") in STANDARD_MODES and "-ml-" in str(cluster.get("spark_version")):
            return ("Databricks Runtime ML is not supported on standard access mode: use dedicated (SINGLE_USER)",
                    "INVALID_CLUSTER_REQUEST", "CLIENT_ERROR")
        short = sorted({cluster.get("node_type_id"), cluster.get("driver_node_type_id")} & self.no_capacity)
        if short:
            return (f"Cluster could not be started: the cloud provider has insufficient capacity for {short[0]} in this region",
                    "CLOUD_FAILURE", "CLOUD_FAILURE")
        return None

    @staticmethod
    def _end(job: Job, life_cycle: str, result: str, message: str, code: str | None = None, kind: str | None = None) -> None:
        job.state, job.result, job.message = life_cycle, result, message
        job.termination = {"code": code, "type": kind, "message": message} if code else None

    def _task_file(self, job: Job, task: dict, driver: Path) -> Path:
        """The python file the driver runs, where it runs it from: MLflow's DBFS wrapper copied into the driver's
        own folder (Jobs 2.0), the git checkout (read-only, without .git) or the workspace file (read-only here)."""
        if task.get("source") == "GIT":
            checkout, git = job.folder / "checkout", job.request["git_source"]
            run_git = lambda *args: subprocess.run(["git", *args], check=True, capture_output=True, text=True, timeout=300)  # noqa: E731
            run_git("clone", "--quiet", "--no-checkout", git["git_url"], str(checkout))
            ref = git.get("git_commit") or git.get("git_tag") or f"origin/{git['git_branch']}"
            run_git("-C", str(checkout), "checkout", "--quiet", ref)
            shutil.rmtree(checkout / ".git")
            read_only(checkout)
            return checkout / task["python_file"]
        if task.get("source") == "WORKSPACE":
            entry = file_within(self.workspace_files, task["python_file"].removeprefix("/Workspace"))
            read_only(entry.parent)
            return entry
        source = file_within(self.dbfs, task["python_file"].removeprefix("dbfs:"))
        entry = driver / source.name
        entry.write_text(self._in_sandbox(source.read_text(), job))
        return entry

    def _install_libraries(self, job: Job) -> Path:
        """The cluster's Python with the job's libraries installed over the runtime its spec names (built once per
        runtime and library list): the runtimes whose package list is committed in databricks/."""
        committed = {runtime_release(runtime): runtime for runtime in supported_runtimes()}
        if job.runtime not in committed:
            raise LibraryRefused(f"the emulator has the package sets of runtimes {', '.join(committed)} only, not {job.runtime}")
        specs = []
        for library in job.request.get("libraries", []):
            spec = library.get("pypi", {}).get("package") if isinstance(library, dict) else None
            if not isinstance(spec, str) or not spec:
                raise LibraryRefused(f"{json.dumps(library)}: the emulator installs `pypi` libraries only")
            specs.append(spec)
        return cluster_environment(specs, runtime=committed[job.runtime])

    def _in_sandbox(self, text: str, job: Job) -> str:
        """The driver's view of the cluster: `/dbfs/...` is the emulator's DBFS, `/Volumes/...` its Unity Catalog
        volumes (shared by every job, as a volume is), `/databricks/...` the job's own folder."""
        if self.legacy:
            text = re.sub(r"(?<![\w./-])/dbfs(?=/)", str(self.dbfs), text)
        if job.request["new_cluster"].get("data_security_mode") in UNITY_CATALOG_MODES:  # volumes need Unity Catalog
            text = re.sub(r"(?<![\w./-])/Volumes(?=/)", str(self.volumes), text)
        text = re.sub(r"(?<![\w./-])/Workspace(?=/)", str(self.workspace_files), text)
        return re.sub(r"(?<![\w./-])/databricks(?=/)", str(job.folder / "databricks"), text)

    def _cancel(self, job: Job) -> None:
        with job.lock:
            if job.state in TERMINAL:
                return
            job.cancelled = True
            if job.process and job.process.poll() is None:
                stop_process_tree(job.process.pid)
            self._end(job, "TERMINATED", "CANCELED", "Run cancelled", "USER_CANCELED", "SUCCESS")

    def _describe(self, job: Job) -> dict:
        state = {"life_cycle_state": job.state, "state_message": job.message}
        if job.result:
            state["result_state"] = job.result
        status = {"state": job.state} | ({"termination_details": job.termination} if job.termination else {})
        run = {"job_id": job.run_id, "run_id": job.run_id, "run_name": job.request.get("run_name", ""),
               "run_page_url": f"{self.host}/?o=0#job/{job.run_id}/run/{job.run_id}", "state": state, "status": status}
        if "task_key" in job.request:  # a Jobs 2.1+ submission: its task is a run of its own
            run["tasks"] = [{"task_key": job.request["task_key"], "run_id": task_run_id(job.run_id), "state": state, "status": status}]
        return run

    def _output(self, run_id) -> dict:
        """`runs/get-output` (Jobs 2.1+): the output of a task run; the run of a multi-task submission has none."""
        job = next((job for job in self.jobs.values() if str(task_run_id(job.run_id)) == str(run_id)), None)
        if job is None:
            if "task_key" in self._job(run_id).request:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", "Retrieving the output of runs with multiple tasks is not "
                                                               "supported. Please retrieve the output of each individual task run instead.")
            job = self._job(run_id)
        output = {"metadata": self._describe(job) | {"run_id": int(run_id)}}
        if job.error_trace:
            output |= {"error": job.error_trace.strip().splitlines()[-1], "error_trace": job.error_trace}
        return output


class AnswerLost(Exception):
    """The request was carried out and its answer never reached the client (a connection reset)."""


def task_run_id(run_id: int) -> int:
    """The run id of a submission's one task: a run of its own, with an id of its own, as in Jobs 2.1+."""
    return 1_000_000 + run_id


def last_traceback(log: str) -> str:
    """The last Python traceback in a driver's log, from its header to the exception line."""
    start = log.rfind("Traceback (most recent call last):")
    if start < 0:
        return ""
    lines = log[start:].splitlines()
    end = next((index for index, line in enumerate(lines[1:], 1) if line and not line.startswith((" ", "\t"))), len(lines) - 1)
    return "\n".join(lines[:end + 1])


def stop_process_tree(pid: int) -> None:
    """Stop a job's processes as terminating its cluster would: all of them, also those MLflow started in sessions
    of their own (asynchronous `mlflow run` steps), which a signal to the job's process group would miss."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]  # collected first: orphans would leave the tree
    except psutil.NoSuchProcess:
        return
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    for process in psutil.wait_procs(processes, timeout=10)[1]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def script(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def code_files(folder: Path | None) -> dict[str, float]:
    """The files of a code folder and their modification times, Python's bytecode cache aside."""
    if folder is None or not folder.is_dir():
        return {}
    return {str(path.relative_to(folder)): path.stat().st_mtime for path in folder.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts}


def read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)


def check_parameters(python_task: dict) -> None:
    if not isinstance(python_task.get("parameters", []), list) or not all(isinstance(part, str) for part in python_task.get("parameters", [])):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "spark_python_task.parameters must be a list of strings")


def check_git_source(git) -> None:
    """Jobs API `GitSource`: a URL, a known provider, exactly one of commit, branch and tag."""
    if not isinstance(git, dict) or not git.get("git_url"):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "source GIT needs git_source.git_url")
    if git.get("git_provider") not in GIT_PROVIDERS:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"git_provider {git.get('git_provider')!r}: one of {sorted(GIT_PROVIDERS)}")
    if sum(bool(git.get(key)) for key in ("git_commit", "git_branch", "git_tag")) != 1:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "git_source needs exactly one of git_commit, git_branch, git_tag")


def check_cluster(cluster, legacy: bool = False) -> str:
    """The runtime version of a valid `new_cluster`; an ApiError (400) for what Databricks refuses."""
    if not isinstance(cluster, dict):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "new_cluster must be an object (the bare cluster spec)")
    unknown = sorted(set(cluster) - CLUSTER_FIELDS - MLFLOW_RUN_OPTIONS)
    if unknown:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Unknown field(s) {unknown} in new_cluster: give the bare cluster spec")
    missing = [key for key in ("spark_version", "node_type_id") if key not in cluster]
    if missing:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Missing required field(s) new_cluster.{', new_cluster.'.join(missing)}")
    match = SPARK_VERSION.match(str(cluster["spark_version"]))
    if not match or match.group(1) not in RUNTIME_PYTHON:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Invalid spark version {cluster['spark_version']!r}: "
                                                       f"supported LTS runtimes are {', '.join(RUNTIME_PYTHON)}")
    if not legacy and cluster.get("data_security_mode") not in UNITY_CATALOG_MODES:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"data_security_mode {cluster.get('data_security_mode')!r}: no-isolation "
                                                       "clusters are disabled in this workspace (legacy features are off)")
    return match.group(1)
