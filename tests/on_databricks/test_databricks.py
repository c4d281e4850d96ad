"""Databricks as the target, local and remote code: our `databricks-jobs` backend on a workspace of 2026, and
MLflow's own `databricks` backend on one that still has a DBFS root.

The client side is the real thing (`mlflow run -b databricks-jobs` / `-b databricks`, `python -m pipeline.on_databricks.submit`,
databricks-sdk auth, `MLFLOW_TRACKING_URI=databricks`); the workspace is `tests/databricks_emulator.py`, whose jobs
run the submitted command for real and track into a real `mlflow server`. Its runtime tokens expire every
TOKEN_RENEW_SECONDS, less than a fine-tuning step takes. The tests run in file order and share the workspaces.
"""

import json
import os
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

from conftest import REPO, client_env, easy_reviews, params
from databricks_emulator import DatabricksEmulator
from pipeline.contract import STEPS
from tools.dependencies import mlproject_libraries
from servers import mlflow_server

TOKEN = f"dapi{secrets.token_hex(16)}"  # made here: a literal would travel in the uploaded project
EXPERIMENT = "/Shared/sentiment-tests"
USER = "someone@example.com"
# The runtime tokens' lifetime, longer than the lease main gives its steps (credentials.LEASE_SECONDS), and how often
# the driver's token changes: every step sees several.
TOKEN_SECONDS, TOKEN_RENEW_SECONDS = 240, 10
MODEL = "main.default.sentiment"  # Unity Catalog: catalog.schema.model; each test registers under its own suffix
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("databricks")
    (root / "server").mkdir()
    with mlflow_server(root / "server", proxied=False) as server_uri:
        yield root, server_uri


def emulated_workspace(tracking_server, name: str, **kinds):
    root, server_uri = tracking_server
    with DatabricksEmulator(root / name, server_uri, TOKEN, cluster_env={"HF_HUB_OFFLINE": "1"}, user=USER, **kinds) as emulator:
        # The git server of these tests is self-hosted: its host says nothing of its provider.
        env = client_env("databricks", DATABRICKS_HOST=emulator.host, DATABRICKS_TOKEN=TOKEN, HOME=str(root / "home"),
                         PIPELINE_GIT_PROVIDER="gitHubEnterprise")
        env.pop("DATABRICKS_CONFIG_PROFILE", None)
        yield emulator, server_uri, env, []


@pytest.fixture(scope="module")
def workspace(tracking_server):
    """(emulator, tracking server URI, client environment, outputs): a workspace of a new account, as of 2026."""
    yield from emulated_workspace(tracking_server, "workspace", token_seconds=TOKEN_SECONDS, token_renew_seconds=TOKEN_RENEW_SECONDS)


@pytest.fixture(scope="module")
def legacy_workspace(tracking_server):
    """A workspace that still has a DBFS root and no-isolation clusters: where MLflow's own backend works."""
    yield from emulated_workspace(tracking_server, "legacy-workspace", legacy=True, first_run_id=5001)  # its own job ids


@pytest.fixture(scope="module")
def reworded_workspace(tracking_server):
    """A new workspace whose DBFS root refusal says it in other words: Databricks documents no message for it."""
    yield from emulated_workspace(tracking_server, "reworded-workspace", first_run_id=9001,
                                  dbfs_root_message="Access to the DBFS root is not allowed in this workspace: {}")


TINY_TASK = """import sys, time
outcome = sys.argv[1]
print("tiny task:", outcome, flush=True)
if outcome == "raise":
    raise ValueError("the tiny task failed on purpose")
if outcome == "sleep":
    time.sleep(300)
"""


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory) -> Path:
    """A project of three files in a git work tree whose one entry point ends as told (`-P outcome=succeed|raise|sleep`)
    in seconds: for what the backend does around a job. Its libraries are this project's, whose cluster is cached."""
    folder = tmp_path_factory.mktemp("tiny-project")
    libraries = "".join(f"\n    - {spec}" for spec in mlproject_libraries())
    (folder / "MLproject").write_text(f"""name: tiny
databricks_spark_job:
  python_libraries:{libraries}
entry_points:
  main:
    parameters:
      outcome: {{type: str, default: succeed}}
    command: python task.py {{outcome}}
""")
    (folder / "task.py").write_text(TINY_TASK)
    (folder / "databricks_task.py").write_text((REPO / "databricks_task.py").read_text())
    for args in (["init", "--quiet"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "tiny"]):
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)
    return folder


def tiny_run(workspace, tiny_project, *args: str, backend_config: Path = REPO / "cluster_spec.json") -> subprocess.CompletedProcess:
    """`mlflow run <tiny project> -b databricks-jobs`, which returns at submission."""
    return run(workspace, [sys.executable, "-m", "mlflow", "run", str(tiny_project), "-b", "databricks-jobs", "--backend-config",
                           str(backend_config), "--experiment-name", EXPERIMENT, *args], cwd=tiny_project)


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


def job_runs(server_uri: str, job_id: int, experiment_name: str = EXPERIMENT,
             must_exist: bool = True) -> tuple[mlflow.entities.Run | None, list[mlflow.entities.Run]]:
    """The MLflow run a Databricks job ran (found by its job tag) and its nested step runs."""
    client = mlflow.MlflowClient(server_uri)
    experiment = client.get_experiment_by_name(experiment_name).experiment_id
    found = client.search_runs([experiment], f"tags.`mlflow.databricks.shellJobRunID` = '{job_id}'")
    if not found and not must_exist:
        return None, []
    (parent,) = found
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                  order_by=["attributes.start_time ASC"])
    return parent, children


def submit_command(uri: str, *args: str, backend_config: Path = REPO / "cluster_spec.json") -> list[str]:
    return [sys.executable, "-m", "pipeline.on_databricks.submit", uri, "--backend-config", str(backend_config),
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
    """`mlflow run . -b databricks-jobs` on a new account's workspace: the code goes to workspace files, Jobs 2.2 runs
    it, the runtime's tokens expire while the steps run, and the model lands in Unity Catalog."""
    emulator, server_uri, env, _ = workspace
    model_name, before = f"{MODEL}_local", set(emulator.jobs)
    experiment = f"/Users/{USER}/sentiment-local"
    result = run(workspace, [sys.executable, "-m", "mlflow", "run", ".", "-b", "databricks-jobs", "--backend-config", "cluster_spec.json",
                             "--experiment-name", experiment,
                             *pipeline_params(tiny_model, easy_zip_url, model_name)], cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    job_id = new_job(emulator, before)
    assert f"Databricks job run {job_id} submitted: {emulator.host}/?o=0#job/{job_id}/run/{job_id}" in result.stdout
    job = emulator.wait(job_id)  # the CLI returned at submission; the job goes on
    assert (job.state, job.result) == ("TERMINATED", "SUCCESS"), job.log[-3000:]
    # The code from workspace files, named by its content; the driver ran databricks_task.py, which ran main.py.
    task = job.request["spark_python_task"]
    assert task["source"] == "WORKSPACE" and re.fullmatch(
        rf"/Workspace/Users/{USER}/\.sentiment-finetuning/code/[0-9a-f]{{64}}/databricks_task\.py", task["python_file"])
    assert task["parameters"][:3] == ["main.py", "--pipeline-steps", "all"]
    assert not list(emulator.dbfs.rglob("*")), "nothing may touch the DBFS root"
    assert job.request["new_cluster"].items() >= {key: value for key, value in json.loads((REPO / "cluster_spec.json").read_text()).items()
                                                  if key != "spark_env_vars"}.items()
    # Every step kept authenticating while the runtime's token was replaced, and never with an expired one.
    assert len(job.tokens_used) >= 3, job.tokens_used
    libraries = [library["pypi"]["package"] for library in job.request["libraries"]]
    assert libraries == mlproject_libraries() and f"mlflow=={mlflow.__version__}" in libraries
    # The cluster's own Python and packages ran it, with the job's libraries on top.
    assert "Python 3.12" in job.log and "torch 2.9.0, pandas 2.2.3, mlflow 3.17.2" in job.log  # runtime 18.0 + the libraries

    parent, children = job_runs(server_uri, job_id, experiment)
    assert parent.data.tags["mlflow.project.backend"] == "databricks-jobs"
    assert parent.info.status == "FINISHED"
    assert [child.data.tags["mlflow.project.entryPoint"] for child in children] == list(STEPS)
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
    """`pipeline.on_databricks.submit` with a git URI and a pinned commit: prints the run page and progress, exits 0 at SUCCESS."""
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
    assert [child.data.tags["mlflow.project.entryPoint"] for child in children] == list(STEPS)
    assert parent.info.status == "FINISHED" and all(child.info.status == "FINISHED" for child in children)
    assert parent.data.tags["mlflow.source.git.commit"] == git_remote["pinned"]
    assert parent.data.tags["mlflow.source.git.repoURL"] == f"{git_remote['url']}/sentiment.git"
    # Nothing uploaded: Databricks checked out the pinned commit (a newer one on the branch would fail).
    assert job.request["git_source"] == {"git_url": f"{git_remote['url']}/sentiment.git", "git_provider": "gitHubEnterprise",
                                         "git_commit": git_remote["pinned"]}
    assert job.request["spark_python_task"]["python_file"] == "databricks_task.py"

    model = emulator.unity_catalog.models[model_name]
    assert model.versions[1].status == "READY" and model.versions[1].run_id == children[1].info.run_id
    assert model.aliases == {"champion": 1} and model.versions[1].tags["quality_gate"] == "passed"


def test_remote_code_on_databricks_from_the_cli(workspace, git_remote, easy_zip_url, tmp_path):
    """`mlflow run <git URI> -v <sha> -b databricks-jobs`, started outside any checkout: Databricks checks out the pinned commit."""
    emulator, server_uri, _, _ = workspace
    uri, before = f"{git_remote['url']}/monorepo.git#ml/sentiment", set(emulator.jobs)
    result = run(workspace, [sys.executable, "-m", "mlflow", "run", uri, "-v", git_remote["nested"], "-b", "databricks-jobs",
                             "--backend-config", str(REPO / "cluster_spec.json"),
                             "--experiment-name", EXPERIMENT, *params(pipeline_steps="download_data", download_url=easy_zip_url)],
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    job = emulator.wait(new_job(emulator, before))
    assert (job.state, job.result) == ("TERMINATED", "SUCCESS"), job.log[-3000:]
    parent, (step,) = job_runs(server_uri, job.run_id)
    assert parent.info.status == step.info.status == "FINISHED"
    assert parent.data.tags["mlflow.source.name"] == uri
    assert job.request["spark_python_task"]["python_file"] == "ml/sentiment/databricks_task.py"
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
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: remote run failed: step download_data failed") and "missing.zip" in line
    assert line.endswith(f"(MLflow run {parent.info.run_id})")
    assert f"{base}/missing.zip: HTTP 404" in emulator.jobs[job_id].log


def test_classic_project_format_fails_on_current_runtimes(legacy_workspace, tmp_path):
    """A project without `databricks_spark_job` goes as MLflow's classic `shell_command_task`: runtime 13+ cannot run it."""
    emulator, server_uri, _, _ = legacy_workspace
    (tmp_path / "MLproject").write_text("name: classic\nentry_points:\n  main:\n    command: python hello.py\n")
    (tmp_path / "hello.py").write_text("print('hello')\n")
    before = set(emulator.jobs)
    result = submit(legacy_workspace, str(tmp_path), "--backend", "databricks")
    assert result.returncode == 1 and "error: remote run failed" in result.stderr
    job = emulator.jobs[new_job(emulator, before)]
    assert "shell_command_task" in job.request and "spark_python_task" not in job.request
    assert (job.state, job.result) == ("TERMINATED", "FAILED")
    assert job.message.startswith("For Databricks Runtime 13.0 ML and above, MLflow Projects cannot successfully run")
    parent, _ = job_runs(server_uri, job.run_id)
    assert parent.info.status == "FAILED"


def test_wrapped_cluster_spec_is_refused(legacy_workspace, project, tmp_path):
    """In the Spark job format MLflow sends the backend config as `new_cluster` as it is: a wrapped spec is a 400."""
    emulator, server_uri, _, _ = legacy_workspace
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"new_cluster": json.loads((REPO / "cluster_spec.json").read_text()), "libraries": []}))
    before = set(emulator.jobs)
    result = submit(legacy_workspace, str(project), "--backend", "databricks", backend_config=wrapped)
    assert result.returncode == 1 and set(emulator.jobs) == before
    (message,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert message == (f"error: cannot submit {project}: INVALID_PARAMETER_VALUE: Unknown field(s) ['libraries', 'new_cluster'] "
                       "in new_cluster: give the bare cluster spec")
    client = mlflow.MlflowClient(server_uri)
    (refused,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                                    "tags.`mlflow.project.backend` = 'databricks'", order_by=["attributes.start_time DESC"], max_results=1)
    assert refused.info.status == "FAILED" and "mlflow.databricks.runURL" not in refused.data.tags


def test_clusters_refuse_what_databricks_refuses(legacy_workspace):
    """Straight to the Jobs API: runtimes, cluster fields and job libraries, as the Databricks docs describe them."""
    emulator, _, _, _ = legacy_workspace
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
        "Library installation failed: torch 2.13.0 would replace the runtime's own torch 2.9.0+cu129"))
    state, _, message = ended(submit_job(spec, pinned + [{"pypi": {"package": "pyspark==4.1.1"}}]))
    assert state == "INTERNAL_ERROR" and message == "Library installation failed: pyspark 4.1.1 would replace the runtime's own pyspark 4.1.0"

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
    assert [child.data.tags["mlflow.project.entryPoint"] for child in children] == list(STEPS)
    tuned = children[1]
    assert tuned.data.tags["mlflow.databricks.shellJobRunID"] == str(training_job.run_id)  # its own job
    assert (tuned.data.params["resolved_num_nodes"], tuned.data.params["train_batches_per_epoch"]) == ("2", "13")
    assert children[2].data.tags["source_run_id"] == tuned.info.run_id and parent.info.status == "FINISHED"
    assert emulator.unity_catalog.models[f"{MODEL}_multinode"].versions[1].run_id == tuned.info.run_id
    shared = emulator.volumes / "main" / "default" / "files"
    assert list((shared / "cache").glob("*.pt"))  # the tokens the driver made for the workers
    assert (shared / "cache" / "runs").is_dir() and not list((shared / "cache" / "runs").iterdir())  # run folder removed


def test_batch_inference_after_the_pipeline_runs_as_its_own_spark_job(workspace, project, tiny_model, easy_zip_url):
    """`all,batch_inference` on Databricks: `main` sends batch_inference as a job of its own (a driver's child process
    gets no Spark), which scores a volume's CSV with the Unity Catalog model's @champion into a volume folder."""
    emulator, server_uri, _, _ = workspace
    volume = emulator.volumes / "main" / "default" / "files"
    easy_reviews(40, 5).to_csv(volume / "reviews.csv", index=False)
    before = set(emulator.jobs)
    result = submit(workspace, str(project), *pipeline_params(tiny_model, easy_zip_url, f"{MODEL}_batch"), *params(
        pipeline_steps="all,batch_inference", input_path="/Volumes/main/default/files/reviews.csv",
        output_path="/Volumes/main/default/files/scored"))
    assert result.returncode == 0, "\n".join(job.log[-3000:] for run_id, job in emulator.jobs.items() if run_id not in before)
    pipeline_job, batch_job = (emulator.jobs[run_id] for run_id in sorted(set(emulator.jobs) - before))
    assert batch_job.result == "SUCCESS", batch_job.log[-3000:]
    _, children = job_runs(server_uri, pipeline_job.run_id)
    assert [child.data.tags["mlflow.project.entryPoint"] for child in children] == [*STEPS, "batch_inference"]
    scored = children[3]
    assert scored.data.tags["mlflow.databricks.shellJobRunID"] == str(batch_job.run_id)  # its own job
    assert scored.data.params["model_uri"] == f"models:/{MODEL}_batch@champion" and scored.data.metrics["rows"] == 40
    assert len(pd.read_parquet(volume / "scored")) == 40


def test_token_is_never_logged(workspace, project, easy_zip_url):
    """Nowhere: not the user's token nor any runtime token the clusters had, in params, tags, files (of the
    workspace, its clusters and the tracking store), outputs or job logs, of this test's own job and any other's."""
    emulator, server_uri, _, outputs = workspace
    before = set(emulator.jobs)
    assert submit(workspace, str(project), *params(pipeline_steps="download_data", download_url=easy_zip_url)).returncode == 0
    parent, children = job_runs(server_uri, new_job(emulator, before))
    assert [child.data.tags["mlflow.project.entryPoint"] for child in children] == ["download_data"]
    secrets_seen = re.compile(rb"runtime-[0-9a-f]{24}|" + re.escape(TOKEN.encode()))
    assert emulator.runtime_tokens, "the clusters were given runtime tokens"
    client = mlflow.MlflowClient(server_uri)
    runs = client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])
    assert {parent.info.run_id, children[0].info.run_id} <= {found.info.run_id for found in runs}
    for found in runs:
        for value in [*found.data.params.values(), *found.data.tags.values()]:
            assert not secrets_seen.search(value.encode()), found.info.run_id
    for folder in (emulator.root, emulator.root.parent / "server"):  # clusters, workspace files, tracking store, artifacts
        for path in folder.rglob("*"):
            if path.is_file():
                assert not secrets_seen.search(path.read_bytes()), path
    for output in outputs + [job.log for job in emulator.jobs.values()]:
        assert not secrets_seen.search(output.encode())


def test_ctrl_c_in_submit_cancels_the_job(workspace, project, tiny_model, easy_zip_url):
    """Interrupting `pipeline.on_databricks.submit` cancels the Databricks run (its processes stop) and fails the MLflow run."""
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
    parent, steps = job_runs(server_uri, job.run_id)
    # Ended: KILLED by the cancellation, or FAILED by `main`, which saw its step die first; no step run left RUNNING.
    assert parent.info.status in ("KILLED", "FAILED")
    assert steps and all(step.info.status in ("KILLED", "FAILED") for step in steps), [step.info.status for step in steps]


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_requests_need_the_bearer_token(workspace):
    emulator, _, _, _ = workspace
    url = f"{emulator.host}/api/2.0/workspace/get-status?path=/Shared/no-such-file"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=5).json()["error_code"] == "UNAUTHENTICATED"
    assert requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # A new account's workspace has no DBFS root, whatever the token.
    answer = requests.get(f"{emulator.host}/api/2.0/dbfs/get-status?path=/x", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert answer.status_code == 403 and answer.json()["message"].startswith("Public DBFS root is disabled")


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


def test_only_the_driver_process_holds_credentials_and_spark(legacy_workspace):
    """A job cluster's environment has no token: its driver authenticates through the runtime context and has
    the cluster's Spark; a process the driver starts has neither (what `main` must make up for)."""
    emulator, _, _, _ = legacy_workspace
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
    """`pipeline.on_databricks.submit <checkout>` uploads what git tracks, not the venv, downloads, checkpoints, local store
    or an untracked file (named in one line), into a folder named by its content: the same code again uploads nothing."""
    emulator, server_uri, _, _ = workspace
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(checkout)], check=True)
    made = {".venv/bin/python": b"\0" * 1024, "data/imdb/train.csv": b"review,sentiment\n", "checkpoints/x/last.ckpt": b"ckpt",
            "mlflow.db": b"SQLite", "lightning_logs/version_0/hparams.yaml": b"{}"}
    for name, content in made.items():
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_bytes(content)
    (checkout / "NOTES.md").write_text("untracked, not ignored: it stays here\n")
    jobs = []
    for _ in range(2):
        before, imports = set(emulator.jobs), emulator.workspace_imports
        result = submit(workspace, str(checkout), *params(pipeline_steps="download_data", download_url=easy_zip_url))
        assert result.returncode == 0, result.stderr[-3000:]
        assert "not uploaded (untracked; `git add` what the job needs): NOTES.md" in result.stdout + result.stderr
        jobs.append(emulator.jobs[new_job(emulator, before)])
        uploaded = emulator.workspace_imports - imports
    first, second = (job.request["spark_python_task"]["python_file"] for job in jobs)
    assert first == second and uploaded == 0  # the second run found the complete folder
    folder = emulator.workspace_files / Path(first).parent.relative_to(f"/Workspace")
    names = {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}
    assert {"MLproject", "main.py", "databricks_task.py", "pipeline/fine_tuning_model.py", "data/sample/uci-sentences/train.csv",
            ".complete"} <= names
    assert not {name for name in names if name.startswith((".venv", "data/imdb", "checkpoints", "mlflow.db", "lightning_logs", "NOTES"))}
    parent, _ = job_runs(server_uri, jobs[0].run_id)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, check=True, capture_output=True, text=True).stdout.strip()
    assert parent.data.tags["mlflow.source.git.commit"] == head and parent.info.status == "FINISHED"


def test_what_a_new_workspace_refuses_fails_before_any_job(workspace, project, tmp_path):
    """A no-isolation cluster, a model name Unity Catalog refuses, an experiment that is no workspace path or whose
    folder is missing: one line each, before a job is submitted (and so before a cluster starts)."""
    emulator, _, env, _ = workspace
    no_isolation = tmp_path / "no_isolation.json"
    no_isolation.write_text(json.dumps({key: value for key, value in json.loads((REPO / "cluster_spec.json").read_text()).items()
                                        if key != "data_security_mode"}))
    cli = [sys.executable, "-m", "mlflow", "run", ".", "-b", "databricks-jobs", "--backend-config", "cluster_spec.json"]
    cases = {
        "no-isolation": (submit_command(str(project), backend_config=no_isolation),
                         "data_security_mode None is a no-isolation cluster"),
        "model name": (submit_command(str(project), "-P", "registered_model_name=sentiment"),
                       "registered_model_name='sentiment': the Unity Catalog registry (databricks-uc) needs catalog.schema.model"),
        "missing folder": ([*submit_command(str(project))[:-4], "--experiment-name", "/Users/nobody@example.com/x", "--poll-seconds", "1"],
                           "Parent directory /Users/nobody@example.com does not exist"),
        "default experiment": (cli, "give --experiment-name /Users/<you>/sentiment"),
        "model name, CLI": ([*cli, "--experiment-name", EXPERIMENT, "-P", "registered_model_name=sentiment"],
                            "needs catalog.schema.model"),
        # A new account's catalog is named after its workspace, not always `main`: checked before any GPU time.
        "missing schema": (submit_command(str(project), "-P", "registered_model_name=workspace.ml.sentiment"),
                           "Unity Catalog has no schema 'workspace.ml' in this workspace; create it (CREATE SCHEMA workspace.ml)"),
    }
    before = set(emulator.jobs)
    for case, (command, expected) in cases.items():
        result = run(workspace, command, cwd=project)
        assert result.returncode != 0 and expected in result.stdout + result.stderr, (case, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, case
    assert set(emulator.jobs) == before


def test_mlflow_legacy_backend_needs_the_dbfs_root(workspace, legacy_workspace, project, easy_zip_url):
    """`--backend databricks` (MLflow's own) is one line naming the DBFS root on a new workspace, and still runs
    where a DBFS root exists."""
    result = submit(workspace, str(project), "--backend", "databricks", *params(pipeline_steps="download_data"))
    (message,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and "this workspace has no DBFS root" in message and "--backend databricks-jobs" in message

    emulator, server_uri, _, _ = legacy_workspace
    before = set(emulator.jobs)
    result = submit(legacy_workspace, str(project), "--backend", "databricks", *params(pipeline_steps="download_data", download_url=easy_zip_url))
    assert result.returncode == 0, result.stderr[-3000:]
    job = emulator.jobs[new_job(emulator, before)]
    assert job.request["spark_python_task"]["python_file"].startswith("dbfs:/mlflow-experiments/")
    parent, (step,) = job_runs(server_uri, job.run_id)
    assert parent.info.status == step.info.status == "FINISHED"


def test_model_version_search_answers_in_pages(workspace):
    """Unity Catalog answers a search one page at a time (`max_results`, `next_page_token`): the quality gate
    reads them all (`pipeline.evaluation.quality_gate.all_versions`)."""
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


def test_code_can_go_to_a_unity_catalog_volume_once(workspace, project, monkeypatch):
    """`code_folder` in the backend config: the project's files go to the volume through the Files API, into a
    folder named by their content, and the same code a second time sends nothing."""
    from databricks.sdk import WorkspaceClient

    from pipeline.on_databricks.code_upload import staged_files, upload_code

    emulator, _, _, _ = workspace
    client = WorkspaceClient(host=emulator.host, token=TOKEN)
    files = staged_files(str(project))
    folder = upload_code(client, files, "/Volumes/main/default/files/code")
    local = emulator.volumes / folder.removeprefix("/Volumes/")
    assert re.fullmatch(r"/Volumes/main/default/files/code/[0-9a-f]{64}", folder)
    assert {str(path.relative_to(local)) for path in local.rglob("*") if path.is_file()} == set(files) | {".complete"}
    before = {path: path.stat().st_mtime_ns for path in local.rglob("*")}
    monkeypatch.setattr("pipeline.on_databricks.code_upload.VolumeFiles.put", lambda *args: pytest.fail("uploaded again"))
    assert upload_code(client, files, "/Volumes/main/default/files/code") == folder
    assert {path: path.stat().st_mtime_ns for path in local.rglob("*")} == before


def test_a_lost_submit_answer_starts_one_job(workspace, tiny_project, monkeypatch):
    """The workspace starts the run and the answer is lost: the SDK sends the POST again, with the same idempotency
    token (the MLflow run's id), and Databricks returns the first run instead of starting a second cluster."""
    emulator, server_uri, _, _ = workspace
    before = set(emulator.jobs)
    monkeypatch.setattr(emulator, "lose_submit_answers", 1)
    result = tiny_run(workspace, tiny_project)
    assert result.returncode == 0, result.stderr[-3000:]
    job = emulator.wait(new_job(emulator, before))  # one job, not two
    assert emulator.lose_submit_answers == 0 and (job.state, job.result) == ("TERMINATED", "SUCCESS"), job.log[-2000:]
    parent, _ = job_runs(server_uri, job.run_id)
    assert emulator.idempotency[parent.info.run_id] == job.run_id
    assert job.request["timeout_seconds"] == 86_400
    # MLflow's own backend's tags: the job run, its one-time job and the workspace
    assert parent.data.tags["mlflow.databricks.shellJobID"] == str(job.run_id)
    assert parent.data.tags["mlflow.databricks.webappURL"] == emulator.host


def test_a_job_that_fails_says_why_in_one_line(workspace, tiny_project, tmp_path, monkeypatch):
    """Jobs 2.2's reasons, most precise first: the task's exception (runs/get-output), a cluster the cloud cannot start
    (status.termination_details), a run past its timeout_seconds; each ends the MLflow run FAILED with that line."""
    from databricks.sdk import WorkspaceClient

    from pipeline.on_databricks.job_run import DatabricksJobRun

    emulator, server_uri, _, _ = workspace
    monkeypatch.setattr(emulator, "no_capacity", {"g5.xlarge"})
    short = tmp_path / "short.json"
    short.write_text(json.dumps({key: value for key, value in json.loads((REPO / "cluster_spec.json").read_text()).items()} | {"node_type_id": "g5.xlarge"}))
    hurried = tmp_path / "hurried.json"
    hurried.write_text(json.dumps({"new_cluster": json.loads((REPO / "cluster_spec.json").read_text()), "timeout_seconds": 3}))
    cases = {
        "exception": (["-P", "outcome=raise"], REPO / "cluster_spec.json", "Databricks job: ValueError: the tiny task failed on purpose"),
        "capacity": ([], short, "Databricks job: CLOUD_FAILURE: Cluster could not be started: the cloud provider has insufficient "
                                "capacity for g5.xlarge"),
        "timeout": (["-P", "outcome=sleep"], hurried, "Databricks job: timed out (Run timed out after 3 seconds)"),
    }
    for case, (args, spec, reason) in cases.items():
        before = set(emulator.jobs)
        result = submit(workspace, str(tiny_project), *args, backend_config=spec)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 1 and len(errors) == 1 and reason in errors[0], (case, result.stderr[-3000:])
        job_id = new_job(emulator, before)
        parent, _ = job_runs(server_uri, job_id)
        assert parent.info.status == "FAILED" and parent.data.tags["pipeline.error"].startswith(reason), case
        client = WorkspaceClient(host=emulator.host, token=TOKEN)
        assert DatabricksJobRun(parent.info.run_id, job_id, client).get_status() == "FAILED"  # MLflow's string
    assert emulator.jobs[job_id].result == "TIMEDOUT"


def test_standard_access_mode_never_starts_an_ml_runtime(workspace):
    """What the backend refuses before submitting (tests/on_databricks/test_jobs.py), the workspace shows at start."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.workspace import ImportFormat

    emulator, _, _, _ = workspace
    client = WorkspaceClient(host=emulator.host, token=TOKEN)
    spec = json.loads((REPO / "cluster_spec.json").read_text()) | {"data_security_mode": "USER_ISOLATION"}
    (python_file,) = [f"/Workspace/Shared/standard-{secrets.token_hex(3)}.py"]
    client.workspace.import_(path=python_file.removeprefix("/Workspace"), content="cHJpbnQoMSk=", format=ImportFormat.AUTO)  # print(1)
    run_id = client.api_client.do("POST", "/api/2.2/jobs/runs/submit", body={"tasks": [{
        "task_key": "t", "new_cluster": spec, "spark_python_task": {"python_file": python_file, "source": "WORKSPACE"}}]})["run_id"]
    emulator.wait(run_id)
    run = client.api_client.do("GET", "/api/2.2/jobs/runs/get", query={"run_id": run_id})
    assert run["state"]["life_cycle_state"] == "INTERNAL_ERROR"
    assert run["status"]["termination_details"]["code"] == "INVALID_CLUSTER_REQUEST"
    with pytest.raises(Exception, match="multiple tasks"):  # a submission's output is its task run's
        client.api_client.do("GET", "/api/2.2/jobs/runs/get-output", query={"run_id": run_id})
    assert "error" not in client.api_client.do("GET", "/api/2.2/jobs/runs/get-output", query={"run_id": run["tasks"][0]["run_id"]})


def test_a_profile_in_the_tracking_uri_names_the_workspace(workspace, tiny_project, tmp_path):
    """`MLFLOW_TRACKING_URI=databricks://work`: the run, the code and the job all go to that profile's workspace, although
    the default profile names another (a dead address here)."""
    emulator, server_uri, env, outputs = workspace
    (tmp_path / ".databrickscfg").write_text(f"[DEFAULT]\nhost = http://127.0.0.1:9\ntoken = dapi-elsewhere\nretry_timeout_seconds = 1\n\n"
                                             f"[work]\nhost = {emulator.host}\ntoken = {TOKEN}\n")
    profiled = {key: value for key, value in env.items() if key not in ("DATABRICKS_HOST", "DATABRICKS_TOKEN")}
    profiled |= {"HOME": str(tmp_path), "MLFLOW_TRACKING_URI": "databricks://work"}
    before = set(emulator.jobs)
    result = subprocess.run([sys.executable, "-m", "mlflow", "run", str(tiny_project), "-b", "databricks-jobs", "--backend-config",
                             str(REPO / "cluster_spec.json"), "--experiment-name", EXPERIMENT], env=profiled, capture_output=True,
                            text=True, timeout=600, cwd=tiny_project)
    outputs.append(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    job = emulator.wait(new_job(emulator, before))
    assert (job.state, job.result) == ("TERMINATED", "SUCCESS"), job.log[-2000:]
    parent, _ = job_runs(server_uri, job.run_id)
    assert parent.data.tags["mlflow.databricks.webappURL"] == emulator.host


def test_what_cannot_travel_to_workspace_files_is_refused_before_anything_is_created(workspace, tiny_project, tmp_path):
    """A tracked file past the import API's 10 MB: one line naming it, no run, no upload, no job."""
    emulator, server_uri, _, _ = workspace
    heavy = tmp_path / "heavy"
    subprocess.run(["git", "clone", "--quiet", str(tiny_project), str(heavy)], check=True)
    (heavy / "weights.bin").write_bytes(os.urandom(8_000_000))
    subprocess.run(["git", "add", "weights.bin"], cwd=heavy, check=True)
    before_jobs, before_imports = set(emulator.jobs), emulator.workspace_imports
    runs_before = len(mlflow.MlflowClient(server_uri).search_runs([mlflow.MlflowClient(server_uri).get_experiment_by_name(EXPERIMENT).experiment_id]))
    result = tiny_run(workspace, heavy)
    assert result.returncode != 0 and "weights.bin (8.0 MB) is too big for workspace files" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert set(emulator.jobs) == before_jobs and emulator.workspace_imports == before_imports
    client = mlflow.MlflowClient(server_uri)
    assert len(client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])) == runs_before


def test_volume_paths_are_url_encoded(workspace, tiny_project, tmp_path):
    """A file name with a space, `#`, `&` or `?` reaches the volume under its own name (the Files API path is the URL's)."""
    from databricks.sdk import WorkspaceClient

    from pipeline.on_databricks.code_upload import staged_files, upload_code

    emulator, _, _, _ = workspace
    odd = tmp_path / "odd"
    subprocess.run(["git", "clone", "--quiet", str(tiny_project), str(odd)], check=True)
    (odd / "notes #1 & more?.md").write_text("odd name")
    subprocess.run(["git", "add", "."], cwd=odd, check=True)
    folder = upload_code(WorkspaceClient(host=emulator.host, token=TOKEN), staged_files(str(odd)), "/Volumes/main/default/files/odd")
    local = emulator.volumes / folder.removeprefix("/Volumes/")
    assert (local / "notes #1 & more?.md").read_text() == "odd name"
    assert {path.name for path in local.iterdir()} == {"MLproject", "task.py", "databricks_task.py", "notes #1 & more?.md", ".complete"}


def test_mlflow_legacy_backend_is_explained_whatever_the_refusal_says(reworded_workspace, project):
    result = submit(reworded_workspace, str(project), "--backend", "databricks", *params(pipeline_steps="download_data"))
    (message,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and "this workspace has no DBFS root" in message and "--backend databricks-jobs" in message
