"""MLflow project backend `databricks-jobs`: an entry point as a Databricks job, in a workspace of today.

    mlflow run <git URI> -v <full sha> -b databricks-jobs --backend-config cluster_spec.json --experiment-name /Users/<you>/sentiment
    mlflow run . -b databricks-jobs --backend-config cluster_spec.json --experiment-name /Users/<you>/sentiment

MLflow's own `-b databricks` uploads the project to the DBFS root and submits Jobs API 2.0; accounts created now
have no DBFS root ("What is DBFS", Databricks). This backend (entry point group `mlflow.project_backend`, declared
in pyproject.toml) uses what such a workspace has, through databricks-sdk:
- a git URI: the job's `git_source` pins the commit of `-v` (a branch is resolved to its commit first), and
  Databricks checks it out; nothing is uploaded;
- a local folder: what git lists (tracked and untracked, not ignored) goes to workspace files under the user's
  home, or to the Unity Catalog volume folder `code_folder`, into a folder named by the content's SHA-256, so the
  same code is uploaded once;
- Jobs API 2.2 `runs/submit`: one `spark_python_task` on the backend config's job cluster (which must name a Unity
  Catalog access mode) with MLproject's `python_libraries`, running `databricks_task.py`, which runs the entry
  point's file in the driver process.
The MLflow run is created and tagged as MLflow's backend does; its id reaches the job in `spark_env_vars`.

The backend config is the bare cluster spec (Jobs API `new_cluster`), or `{"new_cluster": {...}, "code_folder":
"/Volumes/<catalog>/<schema>/<volume>/<folder>", "git_provider": "gitHub"}` with the last two optional.
"""

import base64
import hashlib
import json
import os
import shlex
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.entities import RunStatus, RunTag
from mlflow.exceptions import ExecutionException, MlflowException
from mlflow.projects.backend.abstract_backend import AbstractBackend
from mlflow.projects.submitted_run import SubmittedRun
from mlflow.projects.utils import fetch_and_validate_project, get_or_create_run, load_project
from mlflow.utils.mlflow_tags import MLFLOW_DATABRICKS_RUN_URL, MLFLOW_DATABRICKS_SHELL_JOB_RUN_ID, MLFLOW_DATABRICKS_WEBAPP_URL
from mlflow.utils.uri import is_databricks_uri

from pipeline.contract import ERROR_TAG, REGISTER
from pipeline.errors import PipelineError, first_line
from pipeline.parameters import parse_steps
from pipeline.tracking.runs import check_model_name, end_unfinished_run

NAME = "databricks-jobs"
TASK_FILE = "databricks_task.py"  # at the project's top: Databricks starts a Python task in its file's folder
# Access modes with Unity Catalog (Clusters API `data_security_mode`); ML GPU runtimes need a dedicated one.
UNITY_CATALOG_MODES = ("SINGLE_USER", "DATA_SECURITY_MODE_DEDICATED", "USER_ISOLATION", "DATA_SECURITY_MODE_STANDARD",
                       "DATA_SECURITY_MODE_AUTO")
# The options MLflow adds to every backend config (`mlflow.projects._run`): not cluster fields.
MLFLOW_OPTIONS = ("ENV_MANAGER", "SYNCHRONOUS", "DOCKER_ARGS", "STORAGE_DIR", "build_image", "docker_auth")
GIT_PROVIDERS = {"github.com": "gitHub", "gitlab.com": "gitLab", "bitbucket.org": "bitbucketCloud",
                 "dev.azure.com": "azureDevOpsServices", "visualstudio.com": "azureDevOpsServices"}
GIT_PROVIDER_VARIABLE = "PIPELINE_GIT_PROVIDER"  # for a self-hosted git server, whose host says nothing
SKIPPED_FOLDERS = {".git", ".venv", "mlruns", "mlartifacts", "__pycache__", "checkpoints", "lightning_logs"}
TERMINAL = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")


class SubmissionRefused(ExecutionException):
    """Nothing was submitted: the project, cluster spec, experiment or parameters cannot run on Databricks."""


class DatabricksJobsBackend(AbstractBackend):
    def run(self, project_uri, entry_point, params, version, backend_config, tracking_uri, experiment_id):
        return submit_project(project_uri, entry_point, params or {}, version, backend_config, tracking_uri, experiment_id)


def submit_project(project_uri: str, entry_point: str, params: dict, version: str | None, backend_config,
                   tracking_uri: str, experiment_id: str) -> "DatabricksJobRun":
    """Check everything a job would trip on, create the MLflow run, put the code where the cluster reads it, submit."""
    from databricks.sdk import WorkspaceClient  # comes with MLflow

    cluster, code_folder, git_provider = read_backend_config(backend_config)
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
    workspace = WorkspaceClient()
    git = git_source(project_uri, version, git_provider) if not is_local(project_uri) else None
    run = get_or_create_run(None, project_uri, experiment_id, work_dir, version, entry_point, params)
    run_id = run.info.run_id
    try:
        if git:
            task_file, source = str(Path(git.pop("subdirectory")) / TASK_FILE), "GIT"
        else:
            folder = upload_code(workspace, staged_files(project_uri), code_folder)
            task_file, source = f"{folder}/{TASK_FILE}", "WORKSPACE"
        cluster["spark_env_vars"] = cluster.get("spark_env_vars", {}) | job_environment(run_id, experiment_id, tracking_uri)
        task = {"task_key": entry_point, "new_cluster": cluster, "libraries": [{"pypi": {"package": spec}} for spec in python_libraries(project)],
                "spark_python_task": {"python_file": task_file, "source": source, "parameters": command[1:]}}
        request = {"run_name": f"MLflow project {entry_point}", "tasks": [task]} | ({"git_source": git} if git else {})
        job_run_id = workspace.api_client.do("POST", "/api/2.2/jobs/runs/submit", body=request)["run_id"]
        page = workspace.jobs.get_run(job_run_id).run_page_url
    except BaseException as error:
        MlflowClient().set_tag(run_id, ERROR_TAG, f"not submitted: {first_line(error)}")
        MlflowClient().set_terminated(run_id, "FAILED")
        if isinstance(error, Exception) and not isinstance(error, ExecutionException):
            raise SubmissionRefused(f"Databricks refused the job: {first_line(error)}") from None
        raise
    tags = {MLFLOW_DATABRICKS_RUN_URL: page, MLFLOW_DATABRICKS_SHELL_JOB_RUN_ID: str(job_run_id), MLFLOW_DATABRICKS_WEBAPP_URL: workspace.config.host}
    MlflowClient().log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])
    print(f"Databricks job run {job_run_id} submitted: {page}", flush=True)
    return DatabricksJobRun(run_id, job_run_id, workspace)


def read_backend_config(backend_config) -> tuple[dict, str | None, str | None]:
    """(cluster spec, code folder, git provider) from the backend config, dict or JSON file; the cluster must have
    a Unity Catalog access mode (no-isolation clusters are refused where legacy features are off, and have no UC)."""
    if isinstance(backend_config, str):
        backend_config = json.loads(Path(backend_config).read_text())
    config = {key: value for key, value in (backend_config or {}).items() if key not in MLFLOW_OPTIONS}
    cluster = dict(config.get("new_cluster", config))
    if not cluster:
        raise SubmissionRefused("no job cluster: give --backend-config cluster_spec.json (a Jobs API new_cluster)")
    mode = cluster.get("data_security_mode")
    if mode not in UNITY_CATALOG_MODES:
        raise SubmissionRefused(f"backend config: data_security_mode {mode!r} is a no-isolation cluster, which new workspaces "
                                "refuse and which has no Unity Catalog; set \"data_security_mode\": \"SINGLE_USER\" (dedicated)")
    code_folder = config.get("code_folder") if "new_cluster" in config else None
    if code_folder and not code_folder.startswith("/Volumes/"):
        raise SubmissionRefused(f"backend config: code_folder {code_folder!r} is not a Unity Catalog volume path (/Volumes/...)")
    return cluster, code_folder, config.get("git_provider") if "new_cluster" in config else None


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
    declared = project.get_entry_point(entry_point).parameters
    try:
        steps = parse_steps(str(params.get("pipeline_steps", declared["pipeline_steps"].default))) if "pipeline_steps" in declared else [REGISTER]
    except PipelineError as error:
        raise SubmissionRefused(str(error)) from None
    if "registered_model_name" in declared and REGISTER in steps:
        try:
            check_model_name(params.get("registered_model_name", declared["registered_model_name"].default), job_registry_uri())
        except PipelineError as error:
            raise SubmissionRefused(str(error)) from None


def job_registry_uri() -> str:
    """The job's registry: Unity Catalog (the default behind tracking URI `databricks`) unless told otherwise."""
    told = os.environ.get("MLFLOW_REGISTRY_URI", "")
    return "databricks" if told == "databricks" or told.startswith("databricks://") else "databricks-uc"


def job_environment(run_id: str, experiment_id: str, tracking_uri: str) -> dict[str, str]:
    """What the job's driver needs to log into this run: a workspace's `databricks` profile URIs become `databricks`."""
    env = {"MLFLOW_RUN_ID": run_id, "MLFLOW_EXPERIMENT_ID": str(experiment_id),
           "MLFLOW_TRACKING_URI": "databricks" if is_databricks_uri(tracking_uri) else tracking_uri}
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


def staged_files(project_uri: str) -> dict[str, Path]:
    """The files that travel, by relative path: in a git work tree what git lists (tracked and untracked, not
    ignored; not the venv, downloads, checkpoints or local store), elsewhere every file outside SKIPPED_FOLDERS."""
    folder = Path(project_uri.partition("#")[0]).expanduser().resolve()
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
                            cwd=folder, capture_output=True, text=True)
    if listed.returncode == 0:
        names = [name for name in listed.stdout.split("\0") if name]
    else:
        names = [str(path.relative_to(folder)) for path in folder.rglob("*")
                 if not SKIPPED_FOLDERS & set(path.relative_to(folder).parts[:-1])]
    return {name: folder / name for name in sorted(names) if (folder / name).is_file()}


def code_digest(files: dict[str, Path]) -> str:
    digest = hashlib.sha256()
    for name, path in files.items():
        digest.update(f"{name}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def upload_code(workspace, files: dict[str, Path], code_folder: str | None) -> str:
    """Upload the files once: into `<home>/.sentiment-finetuning/code/<sha256>` (workspace files) or `<code_folder>/<sha256>`
    (a volume), a marker file last, so a folder with the marker is complete. Returns the folder as the cluster sees it."""
    if TASK_FILE not in files:
        raise SubmissionRefused(f"the project has no {TASK_FILE} at its top: the job would have nothing to run")
    digest = code_digest(files)
    if code_folder:
        folder = f"{code_folder.rstrip('/')}/{digest}"
        store = VolumeFiles(workspace)
    else:
        folder = f"/Users/{workspace.current_user.me().user_name}/.sentiment-finetuning/code/{digest}"
        store = WorkspaceFiles(workspace)
    marker = f"{folder}/.complete"
    if not store.exists(marker):
        for name, path in files.items():
            store.put(f"{folder}/{name}", path.read_bytes())
        store.put(marker, digest.encode())
    return folder if code_folder else f"/Workspace{folder}"


class WorkspaceFiles:
    """Workspace files (Workspace API 2.0 `mkdirs`, `import` as AUTO, `get-status`)."""

    def __init__(self, workspace):
        self.workspace, self.folders = workspace, set()

    def exists(self, path: str) -> bool:
        from databricks.sdk.errors import NotFound

        try:
            self.workspace.workspace.get_status(path)
            return True
        except NotFound:
            return False

    def put(self, path: str, content: bytes) -> None:
        from databricks.sdk.service.workspace import ImportFormat

        parent = path.rpartition("/")[0]
        if parent not in self.folders:
            self.workspace.workspace.mkdirs(parent)
            self.folders.add(parent)
        self.workspace.workspace.import_(path=path, content=base64.b64encode(content).decode(), format=ImportFormat.AUTO,
                                         overwrite=True)


class VolumeFiles:
    """A Unity Catalog volume (Files API: `PUT /api/2.0/fs/files<path>`, `HEAD` for existence)."""

    def __init__(self, workspace):
        self.workspace = workspace

    def exists(self, path: str) -> bool:
        from databricks.sdk.errors import NotFound

        try:
            self.workspace.api_client.do("HEAD", f"/api/2.0/fs/files{path}")
            return True
        except NotFound:
            return False

    def put(self, path: str, content: bytes) -> None:
        self.workspace.api_client.do("PUT", f"/api/2.0/fs/files{path}", query={"overwrite": "true"}, data=content,
                                     headers={"Content-Type": "application/octet-stream"})


class DatabricksJobRun(SubmittedRun):
    """A submitted job run: `wait()` polls it, `cancel()` cancels it; either way the MLflow run ends, with the job's
    reason in `pipeline.error`, where the job ended before its code could (a library, a checkout, a cancellation)."""

    poll_seconds = 30.0  # `pipeline.on_databricks.submit --poll-seconds` sets it

    def __init__(self, mlflow_run_id: str, job_run_id: int, workspace):
        self._run_id, self.job_run_id, self.workspace = mlflow_run_id, job_run_id, workspace

    @property
    def run_id(self) -> str:
        return self._run_id

    def state(self):
        return self.workspace.jobs.get_run(self.job_run_id).state

    def wait(self) -> bool:
        while (state := self.state()).life_cycle_state.value not in TERMINAL:
            time.sleep(self.poll_seconds)
        succeeded = state.result_state is not None and state.result_state.value == "SUCCESS"
        if not succeeded:
            end_unfinished_run(self._run_id, "FAILED", job_failure(state, self.workspace))
        return succeeded

    def get_status(self) -> RunStatus:
        state = self.state()
        if state.life_cycle_state.value not in TERMINAL:
            return RunStatus.RUNNING if state.life_cycle_state.value == "RUNNING" else RunStatus.SCHEDULED
        return RunStatus.FINISHED if state.result_state and state.result_state.value == "SUCCESS" else RunStatus.FAILED

    def cancel(self) -> None:
        self.workspace.jobs.cancel_run(self.job_run_id)
        end_unfinished_run(self._run_id, "KILLED", "cancelled")


def job_failure(state, workspace) -> str:
    """The job's own reason, in one line; a checkout that failed says what a private repository needs."""
    message = (state.state_message or "").strip() or f"job ended {state.life_cycle_state.value}"
    if "checkout" in message.lower() or "clone" in message.lower():
        return (f"Databricks could not check out the code ({first_line(Exception(message))}): a private repository needs "
                f"the workspace's git credential (User settings > Linked accounts) of the job's run-as user")
    return f"Databricks job: {first_line(Exception(message))}"

