"""MLflow project backend `databricks-jobs`: an entry point as a Databricks job, in a workspace of today.

    mlflow run <git URI> -v <full sha> -b databricks-jobs --backend-config cluster_spec.json --experiment-name /Users/<you>/sentiment
    mlflow run . -b databricks-jobs --backend-config cluster_spec.json --experiment-name /Users/<you>/sentiment

MLflow's own `-b databricks` uploads the project to the DBFS root and submits Jobs API 2.0; accounts created now
have no DBFS root ("What is DBFS", Databricks). This backend (entry point group `mlflow.project_backend`, declared
in pyproject.toml) uses what such a workspace has, through databricks-sdk:
- a git URI: the job's `git_source` pins the commit of `-v` (a branch is resolved to its commit first), and
  Databricks checks it out; nothing is uploaded;
- a local folder: what git tracks goes to workspace files under the user's home, or to the Unity Catalog volume
  folder `code_folder` (pipeline/on_databricks/code_upload.py);
- Jobs API 2.2 `runs/submit`: one `spark_python_task` on the backend config's job cluster (which must name a
  dedicated access mode: ML runtimes and GPUs run in no other) with MLproject's `python_libraries`, running
  `databricks_task.py`, which runs the entry point's file in the driver process; an `idempotency_token` (the MLflow
  run's id), so the SDK's retry of a POST whose answer was lost starts no second cluster, and `timeout_seconds`;
- the workspace is the tracking URI's: `databricks://<profile>` names a `.databrickscfg` profile, as in MLflow's backend.
The MLflow run is created and tagged as MLflow's backend does; its id reaches the job in `spark_env_vars`, and the
job is followed by `pipeline/on_databricks/job_run.py`.

The backend config is the bare cluster spec (Jobs API `new_cluster`), or `{"new_cluster": {...}, "code_folder":
"/Volumes/<catalog>/<schema>/<volume>/<folder>", "git_provider": "gitHub", "timeout_seconds": 86400}` with the last
three optional.
"""

import json
import os
import shlex
import subprocess
from pathlib import Path
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.entities import RunTag
from mlflow.exceptions import ExecutionException, MlflowException
from mlflow.projects.backend.abstract_backend import AbstractBackend
from mlflow.projects.utils import fetch_and_validate_project, get_or_create_run, load_project
from mlflow.utils.mlflow_tags import (MLFLOW_DATABRICKS_RUN_URL, MLFLOW_DATABRICKS_SHELL_JOB_ID, MLFLOW_DATABRICKS_SHELL_JOB_RUN_ID,
                                      MLFLOW_DATABRICKS_WEBAPP_URL)
from mlflow.utils.uri import get_db_info_from_uri, is_databricks_uri

from pipeline.contract import ERROR_TAG, REGISTER
from pipeline.errors import PipelineError, first_line
from pipeline.on_databricks.code_upload import TASK_FILE, CodeRefused, check_import_sizes, staged_files, upload_code
from pipeline.on_databricks.job_run import DatabricksJobRun
from pipeline.parameters import parse_steps
from pipeline.tracking.runs import check_model_name

NAME = "databricks-jobs"
# Access modes (Clusters API `data_security_mode`) that run ML runtimes and GPUs: dedicated ones ("Standard compute
# limitations": no Databricks Runtime ML, no GPU instances), and AUTO, which picks dedicated for an ML runtime.
DEDICATED_MODES = ("SINGLE_USER", "DATA_SECURITY_MODE_DEDICATED", "DATA_SECURITY_MODE_AUTO")
STANDARD_MODES = ("USER_ISOLATION", "DATA_SECURITY_MODE_STANDARD")
DEFAULT_TIMEOUT_SECONDS = 86_400  # a day: far past a fine-tuning on one T4, short of a hung cluster billing for a week
# The options MLflow adds to every backend config (`mlflow.projects._run`): not cluster fields.
MLFLOW_OPTIONS = ("ENV_MANAGER", "SYNCHRONOUS", "DOCKER_ARGS", "STORAGE_DIR", "build_image", "docker_auth")
GIT_PROVIDERS = {"github.com": "gitHub", "gitlab.com": "gitLab", "bitbucket.org": "bitbucketCloud",
                 "dev.azure.com": "azureDevOpsServices", "visualstudio.com": "azureDevOpsServices"}
GIT_PROVIDER_VARIABLE = "PIPELINE_GIT_PROVIDER"  # for a self-hosted git server, whose host says nothing


class SubmissionRefused(ExecutionException):
    """Nothing was submitted: the project, cluster spec, experiment or parameters cannot run on Databricks."""


class DatabricksJobsBackend(AbstractBackend):
    def run(self, project_uri, entry_point, params, version, backend_config, tracking_uri, experiment_id):
        return submit_project(project_uri, entry_point, params or {}, version, backend_config, tracking_uri, experiment_id)


def submit_project(project_uri: str, entry_point: str, params: dict, version: str | None, backend_config,
                   tracking_uri: str, experiment_id: str) -> "DatabricksJobRun":
    """Check everything a job would trip on, create the MLflow run, put the code where the cluster reads it, submit."""
    check_tracking_uri(tracking_uri)
    cluster, code_folder, git_provider, timeout = read_backend_config(backend_config)
    check_experiment(experiment_id)
    try:
        work_dir = fetch_and_validate_project(project_uri, version, entry_point, params)
    except ExecutionException as error:
        raise SubmissionRefused(first_line(error)) from None
    project = load_project(work_dir)
    command = shlex.split(project.get_entry_point(entry_point).compute_command(params, None))
    if command[:1] != ["python"] or len(command) < 2:
        raise SubmissionRefused(f"entry point {entry_point!r}: its command must be `python <file> ...`, not {command[:2]}")
    check_parameters(project, entry_point, params)
    environment = job_environment(tracking_uri)
    workspace = workspace_client(tracking_uri)
    check_catalog_schema(workspace, project, entry_point, params)
    git = git_source(project_uri, version, git_provider) if not is_local(project_uri) else None
    files = staged_files(project_uri) if not git else {}
    if files and not code_folder:
        try:
            check_import_sizes(files)
        except CodeRefused as error:
            raise SubmissionRefused(str(error)) from None
    run = get_or_create_run(None, project_uri, experiment_id, work_dir, version, entry_point, params)
    run_id = run.info.run_id
    try:
        if git:
            task_file, source = str(Path(git.pop("subdirectory")) / TASK_FILE), "GIT"
        else:
            folder = upload_code(workspace, files, code_folder)
            task_file, source = f"{folder}/{TASK_FILE}", "WORKSPACE"
        cluster["spark_env_vars"] = cluster.get("spark_env_vars", {}) | environment | {"MLFLOW_RUN_ID": run_id,
                                                                                       "MLFLOW_EXPERIMENT_ID": str(experiment_id)}
        task = {"task_key": entry_point, "new_cluster": cluster, "libraries": [{"pypi": {"package": spec}} for spec in python_libraries(project)],
                "spark_python_task": {"python_file": task_file, "source": source, "parameters": command[1:]}}
        # The run id as idempotency token: a POST the SDK sends again after a lost answer returns the first job run.
        request = {"run_name": f"MLflow project {entry_point}", "tasks": [task], "idempotency_token": run_id,
                   "timeout_seconds": timeout} | ({"git_source": git} if git else {})
        submitted = DatabricksJobRun(run_id, workspace.api_client.do("POST", "/api/2.2/jobs/runs/submit", body=request)["run_id"],
                                     workspace)
        job = submitted.job()
    except BaseException as error:
        MlflowClient().set_tag(run_id, ERROR_TAG, f"not submitted: {first_line(error)}")
        MlflowClient().set_terminated(run_id, "FAILED")
        if isinstance(error, CodeRefused):
            raise SubmissionRefused(str(error)) from None
        if isinstance(error, Exception) and not isinstance(error, ExecutionException):
            raise SubmissionRefused(f"Databricks refused the job: {first_line(error)}") from None
        raise
    page = job["run_page_url"]
    tags = {MLFLOW_DATABRICKS_RUN_URL: page, MLFLOW_DATABRICKS_SHELL_JOB_RUN_ID: str(submitted.job_run_id),
            MLFLOW_DATABRICKS_WEBAPP_URL: workspace.config.host} | (
            {MLFLOW_DATABRICKS_SHELL_JOB_ID: str(job["job_id"])} if job.get("job_id") is not None else {})
    MlflowClient().log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])
    print(f"Databricks job run {submitted.job_run_id} submitted: {page}", flush=True)
    return submitted


def workspace_client(tracking_uri: str):
    """The workspace of the tracking URI: `databricks://<profile>` is that `.databrickscfg` profile (as MLflow's own
    backend reads it), anything else the SDK's default credentials. Unresolvable credentials are one line."""
    from databricks.sdk import WorkspaceClient  # comes with MLflow

    profile = get_db_info_from_uri(tracking_uri)[0] if is_databricks_uri(tracking_uri) else None
    try:
        return WorkspaceClient(profile=profile) if profile else WorkspaceClient()
    except Exception as error:  # noqa: BLE001 - the SDK raises ValueError and its own types for each auth method
        where = f"profile {profile!r} of ~/.databrickscfg" if profile else "DATABRICKS_HOST/DATABRICKS_TOKEN or ~/.databrickscfg"
        raise SubmissionRefused(f"no Databricks credentials from {where}: {first_line(error)}") from None


def read_backend_config(backend_config) -> tuple[dict, str | None, str | None, int]:
    """(cluster spec, code folder, git provider, timeout seconds) from the backend config, dict or JSON file; the
    cluster must have a dedicated access mode (no-isolation clusters are refused where legacy features are off and
    have no Unity Catalog; standard ones run no ML runtime and no GPU)."""
    if isinstance(backend_config, str):
        backend_config = json.loads(Path(backend_config).read_text())
    config = {key: value for key, value in (backend_config or {}).items() if key not in MLFLOW_OPTIONS}
    cluster = dict(config.get("new_cluster", config))
    if not cluster:
        raise SubmissionRefused("no job cluster: give --backend-config cluster_spec.json (a Jobs API new_cluster)")
    mode = cluster.get("data_security_mode")
    if mode in STANDARD_MODES:
        raise SubmissionRefused(f"backend config: data_security_mode {mode!r} is standard (shared) access, which runs no ML "
                                "runtime and no GPU, so the cluster would never start; set \"data_security_mode\": \"SINGLE_USER\" (dedicated)")
    if mode not in DEDICATED_MODES:
        raise SubmissionRefused(f"backend config: data_security_mode {mode!r} is a no-isolation cluster, which new workspaces "
                                "refuse and which has no Unity Catalog; set \"data_security_mode\": \"SINGLE_USER\" (dedicated)")
    wrapped = "new_cluster" in config
    code_folder = config.get("code_folder") if wrapped else None
    if code_folder and not code_folder.startswith("/Volumes/"):
        raise SubmissionRefused(f"backend config: code_folder {code_folder!r} is not a Unity Catalog volume path (/Volumes/...)")
    timeout = config.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS) if wrapped else DEFAULT_TIMEOUT_SECONDS
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
        raise SubmissionRefused(f"backend config: timeout_seconds {timeout!r} is not a whole number of seconds (0: no limit)")
    return cluster, code_folder, config.get("git_provider") if wrapped else None, timeout


def check_tracking_uri(tracking_uri: str) -> None:
    """The job logs into the run created here: a store on this machine (a SQLite file, a folder) is out of its reach."""
    if not is_databricks_uri(tracking_uri) and urlparse(tracking_uri).scheme not in ("http", "https"):
        raise SubmissionRefused(f"the tracking URI {tracking_uri!r} is on this machine, where the job cannot log: set "
                                "MLFLOW_TRACKING_URI=databricks (or databricks://<profile>, or the workspace's tracking server)")


def check_experiment(experiment_id: str | None) -> None:
    """A Databricks experiment is a workspace path; MLflow's default experiment is no place for a job's runs."""
    if not experiment_id:
        raise SubmissionRefused("no experiment: give --experiment-name /Users/<you>/sentiment (or /Shared/...)")
    try:
        name = MlflowClient().get_experiment(experiment_id).name
    except MlflowException as error:
        raise SubmissionRefused(f"experiment {experiment_id}: {first_line(error)}") from None
    if not name.startswith("/"):
        raise SubmissionRefused(f"experiment {name!r} is not a workspace path: give --experiment-name /Users/<you>/sentiment "
                                "(or /Shared/...)")


def check_parameters(project, entry_point: str, params: dict) -> None:
    """What the job would only find late: a model name its Unity Catalog registry refuses (where it registers:
    `register_model`, or `main` with that step among its `pipeline_steps`)."""
    try:
        name = registered_model(project, entry_point, params)
        if name is not None:
            check_model_name(name, job_registry_uri())
    except PipelineError as error:
        raise SubmissionRefused(str(error)) from None


def check_catalog_schema(workspace, project, entry_point: str, params: dict) -> None:
    """Where the job registers in Unity Catalog, its `catalog.schema` must exist before any GPU time is spent: new
    accounts get a workspace catalog, not always `main` (Unity Catalog API `GET /api/2.1/unity-catalog/schemas/<name>`)."""
    from databricks.sdk.errors import NotFound, PermissionDenied

    name = registered_model(project, entry_point, params)
    if name is None or job_registry_uri() != "databricks-uc":
        return
    schema = name.rpartition(".")[0]
    try:
        workspace.schemas.get(schema)
    except NotFound:
        raise SubmissionRefused(f"registered_model_name={name!r}: Unity Catalog has no schema {schema!r} in this workspace; "
                                f"create it (CREATE SCHEMA {schema}) or pass -P registered_model_name=<catalog>.<schema>.<model> "
                                "with one that exists (new workspaces have a workspace catalog, not always main)") from None
    except PermissionDenied as error:
        raise SubmissionRefused(f"registered_model_name={name!r}: no access to the schema {schema!r} ({first_line(error)}); "
                                "ask for USE CATALOG, USE SCHEMA and CREATE MODEL on it, or pass another") from None


def registered_model(project, entry_point: str, params: dict) -> str | None:
    """The model name the job registers under, or None where it registers nothing."""
    declared = project.get_entry_point(entry_point).parameters
    steps = parse_steps(str(params.get("pipeline_steps", declared["pipeline_steps"].default))) if "pipeline_steps" in declared else [REGISTER]
    if "registered_model_name" not in declared or REGISTER not in steps:
        return None
    return str(params.get("registered_model_name", declared["registered_model_name"].default))


def job_registry_uri() -> str:
    """The job's registry: Unity Catalog (the default behind tracking URI `databricks`) unless told otherwise."""
    told = os.environ.get("MLFLOW_REGISTRY_URI", "")
    return "databricks" if told == "databricks" or told.startswith("databricks://") else "databricks-uc"


def job_environment(tracking_uri: str) -> dict[str, str]:
    """Where the job's driver tracks: a workspace's `databricks` profile URIs become `databricks` (the cluster's own
    workspace). `spark_env_vars` are part of the job's spec, which anyone who can view the run reads: a tracking URI
    carrying credentials is refused rather than written there."""
    parsed = urlparse(tracking_uri)
    if not is_databricks_uri(tracking_uri) and (parsed.username or parsed.password or parsed.query):
        raise SubmissionRefused(f"the tracking URI {parsed.scheme}://{parsed.hostname}... carries credentials (user:password@ or a "
                                "query), which would be stored in the job's spec: give the bare URI, and the credentials to the "
                                "cluster as secret references in the spec's spark_env_vars (\"MLFLOW_TRACKING_PASSWORD\": "
                                "\"{{secrets/<scope>/<key>}}\")")
    env = {"MLFLOW_TRACKING_URI": "databricks" if is_databricks_uri(tracking_uri) else tracking_uri}
    if os.environ.get("MLFLOW_REGISTRY_URI"):
        env["MLFLOW_REGISTRY_URI"] = job_registry_uri()
    return env


def python_libraries(project) -> list[str]:
    spec = getattr(project, "databricks_spark_job_spec", None)
    return list(getattr(spec, "python_libraries", None) or [])


def is_local(project_uri: str) -> bool:
    return Path(project_uri.partition("#")[0]).expanduser().exists()


def git_source(project_uri: str, version: str | None, provider: str | None) -> dict:
    """The job's `git_source` (Jobs API 2.2) for a git URI, with the commit pinned, plus the project's subdirectory."""
    url, _, subdirectory = project_uri.partition("#")
    host = (urlparse(url).hostname or "").lower()
    provider = provider or os.environ.get(GIT_PROVIDER_VARIABLE) or next(
        (name for known, name in GIT_PROVIDERS.items() if host == known or host.endswith(f".{known}")), None)
    if not provider:
        raise SubmissionRefused(f"{url}: cannot tell the git provider of {host!r}; set {GIT_PROVIDER_VARIABLE} (e.g. "
                                "gitHubEnterprise, gitLabEnterpriseEdition, bitbucketServer) or git_provider in the backend config")
    return {"git_url": url, "git_provider": provider, "git_commit": pinned_commit(url, version), "subdirectory": subdirectory}


def pinned_commit(url: str, version: str | None) -> str:
    """`version` when it is a full commit sha, else the commit the branch or tag (or the default branch) is at now."""
    if version and len(version) == 40 and all(char in "0123456789abcdef" for char in version.lower()):
        return version
    refs = [version, f"refs/heads/{version}", f"refs/tags/{version}^{{}}", f"refs/tags/{version}"] if version else ["HEAD"]
    listed = subprocess.run(["git", "ls-remote", url], capture_output=True, text=True, timeout=120)
    found = dict(reversed(line.split("\t")) for line in listed.stdout.splitlines() if "\t" in line)
    commit = next((found[ref] for ref in refs if ref in found), None)
    if not commit:
        raise SubmissionRefused(f"{url}: no branch, tag or commit {version or 'HEAD'!r} (git ls-remote: "
                                f"{first_line(Exception(listed.stderr)) if listed.returncode else 'not listed'})")
    return commit
