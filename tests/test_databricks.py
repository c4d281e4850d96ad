"""Databricks as the target, local and remote code: MLflow's real `databricks` backend against the emulator.

The client side is the real thing (`mlflow run -b databricks`, `python -m pipeline.submit`, databricks-sdk auth,
`MLFLOW_TRACKING_URI=databricks`); the workspace is `tests/databricks_emulator.py`, whose jobs run the submitted
command for real and track into a real `mlflow server`. The tests run in file order and share one workspace.
"""

import json
import re
import secrets
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import mlflow
import pandas as pd
import psutil
import pytest
import requests

import main
from conftest import REPO, client_env, params
from databricks_emulator import DatabricksEmulator
from tools.dependencies import mlproject_libraries
from servers import mlflow_server

TOKEN = f"dapi{secrets.token_hex(16)}"  # made here: a literal would travel in the uploaded project
EXPERIMENT = "/Shared/sentiment-tests"
MODEL = "main.default.sentiment"  # Unity Catalog: catalog.schema.model; each test registers under its own suffix
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """(emulator, tracking server URI, client environment, outputs): one workspace for the module."""
    root = tmp_path_factory.mktemp("databricks")
    (root / "server").mkdir()
    with mlflow_server(root / "server", proxied=False) as server_uri, \
            DatabricksEmulator(root / "workspace", server_uri, TOKEN, cluster_env={"HF_HUB_OFFLINE": "1"}) as emulator:
        env = client_env("databricks", DATABRICKS_HOST=emulator.host, DATABRICKS_TOKEN=TOKEN, HOME=str(root / "home"))
        env.pop("DATABRICKS_CONFIG_PROFILE", None)
        yield emulator, server_uri, env, []


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The work tree as git sees it (tracked and not ignored files): what `mlflow run .` uploads, without .venv or data."""
    folder = tmp_path_factory.mktemp("project")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes((REPO / name).read_bytes())
    return folder


def run(workspace, command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    _, _, env, outputs = workspace
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=cwd)
    outputs.append(result.stdout + result.stderr)
    return result


def job_runs(server_uri: str, job_id: int, must_exist: bool = True) -> tuple[mlflow.entities.Run | None, list[mlflow.entities.Run]]:
    """The MLflow run a Databricks job ran (found by its job tag) and its nested step runs."""
    client = mlflow.MlflowClient(server_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    found = client.search_runs([experiment], f"tags.`mlflow.databricks.shellJobRunID` = '{job_id}'")
    if not found and not must_exist:
        return None, []
    (parent,) = found
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                  order_by=["attributes.start_time ASC"])
    return parent, children


def submit_command(uri: str, *args: str, backend_config: Path = REPO / "cluster_spec.json") -> list[str]:
    return [sys.executable, "-m", "pipeline.submit", uri, "--backend-config", str(backend_config),
            "--experiment-name", EXPERIMENT, "--poll-seconds", "1", *args]


def submit(workspace, uri: str, *args: str, **options) -> subprocess.CompletedProcess:
    return run(workspace, submit_command(uri, *args, **options), cwd=REPO)


def pipeline_params(tiny_model, easy_zip_url, model: str) -> list[str]:
    """The whole pipeline, registering `model` in Unity Catalog (three-part name) whatever it and its baseline score;
    every step runs (another test's finished runs of the same commit would otherwise be reused)."""
    return params(download_url=easy_zip_url, foundation_model=tiny_model, epochs=1, max_length=16, batch_size=16,
                  registered_model_name=model, min_score=0, beat_baseline="false", reuse_completed="false")


def new_job(emulator, before: set[int]) -> int:
    """The one job submitted since `before` (the job ids then)."""
    (job_id,) = set(emulator.jobs) - before
    return job_id


def test_local_code_on_databricks(workspace, project, tiny_model, easy_zip_url, monkeypatch):
    emulator, server_uri, env, _ = workspace
    model_name, before = f"{MODEL}_local", set(emulator.jobs)
    result = run(workspace, [sys.executable, "-m", "mlflow", "run", ".", "-b", "databricks", "--backend-config", "cluster_spec.json",
                             "--experiment-name", EXPERIMENT,
                             *pipeline_params(tiny_model, easy_zip_url, model_name)], cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    job_id = new_job(emulator, before)
    assert f"Check the run's status at {emulator.host}/?o=0#job/{job_id}/run/{job_id}" in result.stderr
    job = emulator.wait(job_id)  # the CLI returned at submission; the job goes on
    assert (job.state, job.result) == ("TERMINATED", "SUCCESS"), job.log[-3000:]
    # MLflow's Spark job format: the driver ran main.py's source in MLflow's wrapper, libraries from MLproject.
    assert "shell_command_task" not in job.request
    task = job.request["spark_python_task"]
    assert task["python_file"].startswith("dbfs:/mlflow-experiments/") and task["parameters"][:2] == ["--pipeline-steps", "all"]
    assert job.request["new_cluster"].items() >= json.loads((REPO / "cluster_spec.json").read_text()).items()
    libraries = [library["pypi"]["package"] for library in job.request["libraries"]]
    assert libraries == mlproject_libraries() and f"mlflow=={mlflow.__version__}" in libraries
    # The cluster's own Python and packages ran it, with the job's libraries on top.
    assert "Python 3.12" in job.log and "torch 2.7.0, pandas 2.2.3, mlflow 3.17.2" in job.log

    parent, children = job_runs(server_uri, job_id)
    assert parent.info.status == "FINISHED"
    assert [child.data.tags["mlflow.project.entryPoint"] for child in children] == list(main.STEPS)
    assert all(child.info.status == "FINISHED" for child in children)
    assert children[1].data.tags["pipeline.model_uri"].startswith("models:/")  # the model was logged from the cluster
    assert children[2].data.tags["registered_model_version"] == "1"

    # Registered in Unity Catalog: READY, its files in the catalog's storage, served to a client of the workspace.
    (version,) = emulator.unity_catalog.models[model_name].versions.values()
    assert (version.status, version.run_id) == ("READY", children[1].info.run_id)
    assert emulator.unity_catalog.models[model_name].aliases == {"champion": 1}
    for variable in ("MLFLOW_TRACKING_URI", "DATABRICKS_HOST", "DATABRICKS_TOKEN"):
        monkeypatch.setenv(variable, env[variable])
    model = mlflow.pyfunc.load_model(f"models:/{model_name}@champion")
    assert model.metadata.run_id == children[1].info.run_id  # the catalog serves the model the cluster trained
    predictions = model.predict(pd.DataFrame({"review": ["A wonderful film.", "A dull, tedious mess."]}))
    assert list(predictions.columns)[:2] == ["label", "probability"] and predictions["probability"].between(0.5, 1).all()
    parts = ["transformer_positive_probability", "baseline_positive_probability"]  # a blend adds each part's
    assert list(predictions.columns)[2:] == (parts if children[1].data.params["served_model"] == "blend" else [])


def test_remote_code_on_databricks_waits_with_submit(workspace, git_remote, tiny_model, easy_zip_url):
    """`pipeline.submit` with a git URI and a pinned commit: prints the run page and progress, exits 0 at SUCCESS."""
    emulator, server_uri, _, _ = workspace
    model_name, before = f"{MODEL}_remote", set(emulator.jobs)
    result = submit(workspace, f"{git_remote['url']}/sentiment.git", "--version", git_remote["pinned"],
                    *pipeline_params(tiny_model, easy_zip_url, model_name))
    assert result.returncode == 0, result.stderr[-3000:]
    job_id = new_job(emulator, before)
    job = emulator.jobs[job_id]
    assert (job.state, job.result) == ("TERMINATED", "SUCCESS")  # already: submit waited for it
    parent, children = job_runs(server_uri, job_id)
    assert f"Databricks run page: {emulator.host}/?o=0#job/{job_id}/run/{job_id} (MLflow run {parent.info.run_id})" in result.stdout
    assert "  register_model: FINISHED" in result.stdout
    assert f"remote run succeeded: MLflow run {parent.info.run_id}" in result.stdout
    assert [child.data.tags["mlflow.project.entryPoint"] for child in children] == list(main.STEPS)
    assert parent.info.status == "FINISHED" and all(child.info.status == "FINISHED" for child in children)
    assert parent.data.tags["mlflow.source.git.commit"] == git_remote["pinned"]
    assert parent.data.tags["mlflow.source.git.repoURL"] == f"{git_remote['url']}/sentiment.git"

    model = emulator.unity_catalog.models[model_name]
    assert model.versions[1].status == "READY" and model.versions[1].run_id == children[1].info.run_id
    assert model.aliases == {"champion": 1} and model.versions[1].tags["quality_gate"] == "passed"


def test_remote_code_on_databricks_from_the_cli(workspace, git_remote, easy_zip_url, tmp_path):
    """`mlflow run <git URI> -v <sha> -b databricks`, started outside any checkout: the job runs the pinned commit."""
    emulator, server_uri, _, _ = workspace
    uri, before = f"{git_remote['url']}/monorepo.git#ml/sentiment", set(emulator.jobs)
    result = run(workspace, [sys.executable, "-m", "mlflow", "run", uri, "-v", git_remote["nested"], "-b", "databricks",
                             "--backend-config", str(REPO / "cluster_spec.json"),
                             "--experiment-name", EXPERIMENT, *params(pipeline_steps="download_data", download_url=easy_zip_url)],
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    job = emulator.wait(new_job(emulator, before))
    assert (job.state, job.result) == ("TERMINATED", "SUCCESS"), job.log[-3000:]
    parent, (step,) = job_runs(server_uri, job.run_id)
    assert parent.info.status == step.info.status == "FINISHED"
    assert parent.data.tags["mlflow.source.name"] == uri
    # The cluster got ml/sentiment without .git; the step carries the commit MLflow recorded when it submitted.
    assert parent.data.tags["mlflow.source.git.commit"] == step.data.tags["mlflow.source.git.commit"] == git_remote["nested"]


def test_failing_step_fails_the_job_and_submit(workspace, project, http_root):
    emulator, server_uri, _, _ = workspace
    _, base = http_root
    before = set(emulator.jobs)
    result = submit(workspace, str(project), *params(pipeline_steps="download_data", download_url=f"{base}/missing.zip"))
    assert result.returncode == 1
    job_id = new_job(emulator, before)
    assert (emulator.jobs[job_id].state, emulator.jobs[job_id].result) == ("TERMINATED", "FAILED")
    parent, (step,) = job_runs(server_uri, job_id)
    assert parent.info.status == step.info.status == "FAILED"
    assert f"error: remote run failed: Run (ID '{parent.info.run_id}') failed" in result.stderr
    assert f"{base}/missing.zip: HTTP 404" in emulator.jobs[job_id].log


def test_classic_project_format_fails_on_current_runtimes(workspace, tmp_path):
    """A project without `databricks_spark_job` goes as MLflow's classic `shell_command_task`: runtime 13+ cannot run it."""
    emulator, server_uri, _, _ = workspace
    (tmp_path / "MLproject").write_text("name: classic\nentry_points:\n  main:\n    command: python hello.py\n")
    (tmp_path / "hello.py").write_text("print('hello')\n")
    before = set(emulator.jobs)
    result = submit(workspace, str(tmp_path))
    assert result.returncode == 1 and "error: remote run failed" in result.stderr
    job = emulator.jobs[new_job(emulator, before)]
    assert "shell_command_task" in job.request and "spark_python_task" not in job.request
    assert (job.state, job.result) == ("TERMINATED", "FAILED")
    assert job.message.startswith("For Databricks Runtime 13.0 ML and above, MLflow Projects cannot successfully run")
    parent, _ = job_runs(server_uri, job.run_id)
    assert parent.info.status == "FAILED"


def test_wrapped_cluster_spec_is_refused(workspace, project, tmp_path):
    """In the Spark job format MLflow sends the backend config as `new_cluster` as it is: a wrapped spec is a 400."""
    emulator, server_uri, _, _ = workspace
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"new_cluster": json.loads((REPO / "cluster_spec.json").read_text()), "libraries": []}))
    before = set(emulator.jobs)
    result = submit(workspace, str(project), backend_config=wrapped)
    assert result.returncode == 1 and set(emulator.jobs) == before
    (message,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert message == (f"error: cannot submit {project}: INVALID_PARAMETER_VALUE: Unknown field(s) ['libraries', 'new_cluster'] "
                       "in new_cluster: give the bare cluster spec")
    client = mlflow.MlflowClient(server_uri)
    (refused,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                                    "tags.`mlflow.project.backend` = 'databricks'", order_by=["attributes.start_time DESC"], max_results=1)
    assert refused.info.status == "FAILED" and "mlflow.databricks.runURL" not in refused.data.tags


def test_clusters_refuse_what_databricks_refuses(workspace):
    """Straight to the Jobs API: runtimes, cluster fields and job libraries, as the Databricks docs describe them."""
    emulator, _, _, _ = workspace
    api, bearer = f"{emulator.host}/api/2.0", {"Authorization": f"Bearer {TOKEN}"}
    assert requests.post(f"{emulator.host}/dbfs/tests/job.py", data=b"print('driver ran')", headers=bearer, timeout=5).ok
    spec = json.loads((REPO / "cluster_spec.json").read_text())
    pinned = [{"pypi": {"package": package}} for package in mlproject_libraries()]

    def submit_job(cluster: dict, libraries: list, python_file: str = "dbfs:/tests/job.py"):
        task = {"python_file": python_file, "parameters": []}
        return requests.post(f"{api}/jobs/runs/submit", headers=bearer, timeout=5,
                             json={"run_name": "t", "new_cluster": cluster, "libraries": libraries, "spark_python_task": task})

    def ended(answer) -> tuple[str, str | None, str]:
        job = emulator.wait(answer.json()["run_id"], timeout=300)
        return job.state, job.result, job.message

    job = emulator.wait(submit_job(spec, pinned).json()["run_id"], timeout=600)
    assert (job.state, job.result) == ("TERMINATED", "SUCCESS") and "driver ran" in job.log
    # A library that would replace what the runtime builds for its driver and Spark fails the installation.
    assert ended(submit_job(spec, pinned + [{"pypi": {"package": "torch==2.13.0"}}])) == ("INTERNAL_ERROR", "FAILED", (
        "Library installation failed: torch 2.13.0 would replace the runtime's own torch 2.7.0"))
    state, _, message = ended(submit_job(spec, pinned + [{"pypi": {"package": "pyspark==4.1.1"}}]))
    assert state == "INTERNAL_ERROR" and message == "Library installation failed: pyspark 4.1.1 would replace the runtime's own pyspark 4.0.0"

    refused = {
        "13.3.x-gpu-ml-scala2.12": submit_job(spec | {"spark_version": "13.3.x-gpu-ml-scala2.12"}, pinned),  # end of support
        "unknown field": submit_job(spec | {"workers": 2}, pinned),
        "no node type": submit_job({key: value for key, value in spec.items() if key != "node_type_id"}, pinned),
        "no python file": submit_job(spec, pinned, python_file="dbfs:/tests/missing.py"),
    }
    for case, answer in refused.items():
        assert answer.status_code == 400 and answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", case


def test_multi_node_training_runs_as_its_own_spark_job(workspace, project, tiny_model, easy_zip_url):
    """num_nodes=2 on Databricks: `main` sends fine_tuning_model as a Spark job of its own to the multi-node training
    cluster, whose driver runs TorchDistributor over the cluster's Spark; data, tokens, code and checkpoints live on
    a Unity Catalog volume, where the workers read them."""
    emulator, server_uri, _, _ = workspace
    before = set(emulator.jobs)
    result = submit(workspace, str(project), *params(
        download_url=easy_zip_url, foundation_model=tiny_model, num_nodes=2, epochs=3, max_length=16, batch_size=16,
        learning_rate=3e-3, cache_dir="/Volumes/main/default/files/cache",
        checkpoint_dir="/Volumes/main/default/files/checkpoints",
        registered_model_name=f"{MODEL}_multinode", min_score=0, beat_baseline="false"))
    assert result.returncode == 0, "\n".join(job.log[-3000:] for run_id, job in emulator.jobs.items() if run_id not in before)
    pipeline_job, training_job = (emulator.jobs[run_id] for run_id in sorted(set(emulator.jobs) - before))
    assert training_job.result == "SUCCESS", training_job.log[-3000:]
    assert pipeline_job.request["new_cluster"]["num_workers"] == 0
    assert training_job.request["new_cluster"].items() >= json.loads((REPO / "training_cluster_spec.json").read_text()).items()
    assert training_job.request["new_cluster"]["num_workers"] == 2 and "pyspark" not in str(training_job.request["libraries"])
    parent, children = job_runs(server_uri, pipeline_job.run_id)
    assert [child.data.tags["mlflow.project.entryPoint"] for child in children] == list(main.STEPS)
    tuned = children[1]
    assert tuned.data.tags["mlflow.databricks.shellJobRunID"] == str(training_job.run_id)  # its own job
    assert (tuned.data.params["resolved_num_nodes"], tuned.data.params["train_batches_per_epoch"]) == ("2", "13")
    assert children[2].data.tags["source_run_id"] == tuned.info.run_id and parent.info.status == "FINISHED"
    assert emulator.unity_catalog.models[f"{MODEL}_multinode"].versions[1].run_id == tuned.info.run_id
    shared = emulator.volumes / "main" / "default" / "files"
    assert list((shared / "cache").glob("*.pt"))  # the tokens the driver made for the workers
    assert (shared / "cache" / "runs").is_dir() and not list((shared / "cache" / "runs").iterdir())  # run folder removed


def test_token_is_never_logged(workspace, project, easy_zip_url):
    """Nowhere: not in params, tags, files, outputs or job logs, of this test's own job and of any other test's."""
    emulator, server_uri, _, outputs = workspace
    before = set(emulator.jobs)
    assert submit(workspace, str(project), *params(pipeline_steps="download_data", download_url=easy_zip_url)).returncode == 0
    parent, children = job_runs(server_uri, new_job(emulator, before))
    assert [child.data.tags["mlflow.project.entryPoint"] for child in children] == ["download_data"]
    client = mlflow.MlflowClient(server_uri)
    runs = client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])
    assert {parent.info.run_id, children[0].info.run_id} <= {found.info.run_id for found in runs}
    for found in runs:
        for value in [*found.data.params.values(), *found.data.tags.values()]:
            assert TOKEN not in value and emulator.cluster_token not in value
    for folder in (emulator.root, emulator.root.parent / "server"):  # DBFS, clusters, tracking store, artifacts
        for path in folder.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                assert TOKEN.encode() not in content, path
    for output in outputs + [job.log for job in emulator.jobs.values()]:
        assert TOKEN not in output and emulator.cluster_token not in output


def test_ctrl_c_in_submit_cancels_the_job(workspace, project, tiny_model, easy_zip_url):
    """Interrupting `pipeline.submit` cancels the Databricks run (its processes stop) and fails the MLflow run."""
    emulator, server_uri, env, _ = workspace
    before = set(emulator.jobs)
    # A shell without job control starts background commands with SIGINT ignored, and the child would inherit
    # that: give it the default disposition, as a terminal's Ctrl-C meets it.
    process = subprocess.Popen(submit_command(str(project), *pipeline_params(tiny_model, easy_zip_url, f"{MODEL}_cancelled")), env=env, cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 180
    while not (set(emulator.jobs) - before and job_runs(server_uri, new_job(emulator, before), must_exist=False)[1]):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.5)  # polls until the first step runs (its `mlflow run` has a session of its own)
    job = emulator.jobs[new_job(emulator, before)]
    processes = [job.process.pid, *(child.pid for child in psutil.Process(job.process.pid).children(recursive=True))]
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 1 and "interrupted, cancelling run" in stderr, stderr[-3000:]
    assert (job.state, job.result) == ("TERMINATED", "CANCELED")
    assert not [pid for pid in processes if running(pid)], "job processes outlived the cancellation"
    parent, _ = job_runs(server_uri, job.run_id)
    assert parent.info.status == "FAILED"


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_requests_need_the_bearer_token(workspace):
    emulator, _, _, _ = workspace
    url = f"{emulator.host}/api/2.0/dbfs/get-status?path=/no/such/file"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=5).json()["error_code"] == "UNAUTHENTICATED"
    assert requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_model_storage_needs_a_signed_url(workspace):
    """The registry answers only with the token; model files go up and come back only through the URLs it signs,
    not altered ones; a version is READY once its MLmodel is there."""
    emulator, _, _, _ = workspace
    api, bearer = f"{emulator.host}/api/2.0", {"Authorization": f"Bearer {TOKEN}"}
    name = f"{MODEL}_storage_{secrets.token_hex(3)}"
    version, path = {"name": name, "version": "1"}, f"/Models/{name.replace('.', '/')}/1/MLmodel"
    assert requests.post(f"{api}/mlflow/unity-catalog/registered-models/create", json={"name": name}, headers=bearer, timeout=5).ok
    assert requests.post(f"{api}/mlflow/unity-catalog/model-versions/create", json={"name": name, "source": "s", "run_id": "r"},
                         headers=bearer, timeout=5).ok
    upload = requests.post(f"{api}/fs/create-upload-url", json={"path": path}, headers=bearer, timeout=5).json()["url"]
    assert requests.put(upload.replace("signature=", "signature=0"), data=b"flavors: {}\n", timeout=5).status_code == 403
    assert requests.put(upload, data=b"flavors: {}\n", timeout=5).ok
    assert requests.post(f"{api}/mlflow/unity-catalog/model-versions/finalize", json=version, headers=bearer, timeout=5).ok
    assert requests.get(f"{api}/mlflow/unity-catalog/model-versions/get", params=version, timeout=5).status_code == 401
    url = requests.post(f"{api}/fs/create-download-url", json={"path": path}, headers=bearer, timeout=5).json()["url"]
    answer = requests.get(url, timeout=5)
    assert answer.status_code == 200 and "flavors:" in answer.text
    for altered in (url.replace("/1/MLmodel", "/2/MLmodel"), url.replace("signature=", "signature=0")):
        assert requests.get(altered, timeout=5).status_code == 403
    again = requests.post(f"{api}/fs/create-upload-url", json={"path": path}, headers=bearer, timeout=5)
    assert again.json()["error_code"] == "INVALID_STATE"  # a READY version takes no more files


DRIVER_PROBE = '''
import os, subprocess, sys
from databricks.sdk import WorkspaceClient
from pyspark.sql import SparkSession
print("job environment has a token:", "DATABRICKS_TOKEN" in os.environ or "DATABRICKS_HOST" in os.environ)
WorkspaceClient().dbfs.get_status("/tests/probe.py")
print("driver authenticated; its Spark:", SparkSession.builder.getOrCreate().sparkContext.master)
child = """
from databricks.sdk import WorkspaceClient
try:
    WorkspaceClient().dbfs.get_status('/tests/probe.py')
    print('child authenticated')
except Exception as error:
    print('child has no credentials:', type(error).__name__)
from pyspark.sql import SparkSession
try:
    SparkSession.builder.getOrCreate()
    print('child has Spark')
except Exception as error:
    print('child has no Spark')
"""
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True).stdout)
'''


def test_only_the_driver_process_holds_credentials_and_spark(workspace):
    """A job cluster's environment has no token: its driver authenticates through the runtime context and has
    the cluster's Spark; a process the driver starts has neither (what `main` must make up for)."""
    emulator, _, _, _ = workspace
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    requests.post(f"{emulator.host}/dbfs/tests/probe.py", data=DRIVER_PROBE.encode(), headers=bearer, timeout=5)
    spec = json.loads((REPO / "cluster_spec.json").read_text())
    answer = requests.post(f"{emulator.host}/api/2.0/jobs/runs/submit", headers=bearer, timeout=5, json={
        "run_name": "probe", "new_cluster": spec, "libraries": [{"pypi": {"package": p}} for p in mlproject_libraries()],
        "spark_python_task": {"python_file": "dbfs:/tests/probe.py", "parameters": []}})
    job = emulator.wait(answer.json()["run_id"], timeout=600)
    assert job.result == "SUCCESS", job.log[-3000:]
    assert "job environment has a token: False" in job.log
    assert "driver authenticated; its Spark: local[*]" in job.log
    assert "child has no credentials: ValueError" in job.log and "child has no Spark" in job.log


def test_what_travels_is_the_project_with_its_commit(workspace, tmp_path, easy_zip_url):
    """`pipeline.submit <checkout>` uploads what git lists, not the venv, downloads, checkpoints or local store."""
    emulator, server_uri, _, _ = workspace
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(checkout)], check=True)
    made = {".venv/bin/python": b"\0" * 1024, "data/imdb/train.csv": b"review,sentiment\n", "checkpoints/x/last.ckpt": b"ckpt",
            "mlflow.db": b"SQLite", "lightning_logs/version_0/hparams.yaml": b"{}"}
    for name, content in made.items():
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_bytes(content)
    (checkout / "NOTES.md").write_text("untracked, not ignored: it travels\n")
    before = set(emulator.jobs)
    result = submit(workspace, str(checkout), *params(pipeline_steps="download_data", download_url=easy_zip_url))
    assert result.returncode == 0, result.stderr[-3000:]
    (job_id,) = set(emulator.jobs) - before
    wrapper = (emulator.dbfs / emulator.jobs[job_id].request["spark_python_task"]["python_file"].removeprefix("dbfs:/")).read_text()
    (tarball,) = set(re.findall(r"mlflow-experiments/\d+/projects-code/[0-9a-f]{64}\.tar\.gz", wrapper))
    with tarfile.open(emulator.dbfs / tarball) as archive:
        names = {name.removeprefix("mlflow-project/") for name in archive.getnames()}
    assert {"MLproject", "main.py", "pipeline/fine_tuning_model.py", "data/sample/uci-sentences/train.csv", "NOTES.md"} <= names
    assert not {name for name in names if name.startswith((".venv", "data/imdb", "checkpoints", "mlflow.db", "lightning_logs"))}
    parent, _ = job_runs(server_uri, job_id)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, check=True, capture_output=True, text=True).stdout.strip()
    assert parent.data.tags["mlflow.source.git.commit"] == head and parent.info.status == "FINISHED"


def test_model_version_search_answers_in_pages(workspace):
    """Unity Catalog answers a search one page at a time (`max_results`, `next_page_token`): the quality gate
    reads them all (`pipeline.quality_gate.all_versions`)."""
    emulator, _, _, _ = workspace
    api, bearer = f"{emulator.host}/api/2.0/mlflow/unity-catalog", {"Authorization": f"Bearer {TOKEN}"}
    name = f"main.default.paging_{secrets.token_hex(3)}"
    assert requests.post(f"{api}/registered-models/create", json={"name": name}, headers=bearer, timeout=5).ok
    for _ in range(3):
        assert requests.post(f"{api}/model-versions/create", json={"name": name, "source": "s", "run_id": "r"}, headers=bearer, timeout=5).ok
    pages, token = [], None
    while True:
        query = {"filter": f"name = '{name}'", "max_results": 2} | ({"page_token": token} if token else {})
        answer = requests.get(f"{api}/model-versions/search", params=query, headers=bearer, timeout=5).json()
        pages.append([version["version"] for version in answer["model_versions"]])
        token = answer.get("next_page_token")
        if not token:
            break
    assert pages == [["1", "2"], ["3"]]
