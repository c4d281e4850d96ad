"""pipeline/on_databricks/jobs.py, the parts that decide before anything is sent: the backend config, the git source,
what travels and its address. Submitting and running jobs: tests/on_databricks/test_databricks.py (against the emulator)."""

import json
import subprocess

import pytest

from conftest import REPO
from pipeline.on_databricks.code_upload import CodeRefused, check_import_sizes, code_digest, staged_files
from pipeline.on_databricks.jobs import (DEFAULT_TIMEOUT_SECONDS, SubmissionRefused, check_tracking_uri, git_source, job_environment,
                                         pinned_commit, read_backend_config)
from pipeline.on_databricks.submit import dbfs_refused

SPEC = json.loads((REPO / "cluster_spec.json").read_text())


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_the_backend_config_is_the_bare_spec_or_a_wrapped_one(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(SPEC))
    with_options = SPEC | {"ENV_MANAGER": "local", "SYNCHRONOUS": False}  # what MLflow adds to every backend config
    assert read_backend_config(str(path)) == read_backend_config(with_options) == (SPEC, None, None, DEFAULT_TIMEOUT_SECONDS)
    wrapped = {"new_cluster": SPEC, "code_folder": "/Volumes/main/ml/code", "git_provider": "gitLab", "timeout_seconds": 7200}
    assert read_backend_config(wrapped) == (SPEC, "/Volumes/main/ml/code", "gitLab", 7200)


@pytest.mark.parametrize(("config", "message"), [
    ({key: value for key, value in SPEC.items() if key != "data_security_mode"}, "data_security_mode None is a no-isolation cluster"),
    (SPEC | {"data_security_mode": "NONE"}, "data_security_mode 'NONE' is a no-isolation cluster"),
    (SPEC | {"data_security_mode": "LEGACY_SINGLE_USER"}, "no-isolation"),
    ({"new_cluster": SPEC, "code_folder": "/Shared/code"}, "code_folder '/Shared/code' is not a Unity Catalog volume path"),
    # "Standard compute limitations": no Databricks Runtime ML, no GPU instances; the cluster would never start
    (SPEC | {"data_security_mode": "USER_ISOLATION"}, "'USER_ISOLATION' is standard .shared. access, which runs no ML runtime"),
    (SPEC | {"data_security_mode": "DATA_SECURITY_MODE_STANDARD"}, "set \"data_security_mode\": \"SINGLE_USER\" .dedicated."),
    ({"new_cluster": SPEC, "timeout_seconds": "1h"}, "timeout_seconds '1h' is not a whole number of seconds"),
    ({}, "no job cluster"),
])
def test_what_databricks_would_refuse_is_refused_here(config, message):
    with pytest.raises(SubmissionRefused, match=message):
        read_backend_config(config)


@pytest.mark.parametrize(("uri", "provider"), [
    ("https://github.com/me/sentiment.git", "gitHub"),
    ("https://gitlab.com/me/sentiment.git#ml/sentiment", "gitLab"),
    ("https://bitbucket.org/me/sentiment.git", "bitbucketCloud"),
    ("https://dev.azure.com/org/project/_git/sentiment", "azureDevOpsServices"),
])
def test_the_git_provider_comes_from_the_host(uri, provider, monkeypatch):
    monkeypatch.delenv("PIPELINE_GIT_PROVIDER", raising=False)
    source = git_source(uri, "a" * 40, None)
    assert source == {"git_url": uri.partition("#")[0], "git_provider": provider, "git_commit": "a" * 40,
                      "subdirectory": uri.partition("#")[2]}


def test_a_self_hosted_git_server_needs_its_provider_named(monkeypatch):
    monkeypatch.delenv("PIPELINE_GIT_PROVIDER", raising=False)
    with pytest.raises(SubmissionRefused, match="cannot tell the git provider of 'git.example.com'; set PIPELINE_GIT_PROVIDER"):
        git_source("https://git.example.com/me/sentiment.git", "a" * 40, None)
    monkeypatch.setenv("PIPELINE_GIT_PROVIDER", "gitLabEnterpriseEdition")
    assert git_source("https://git.example.com/me/sentiment.git", "a" * 40, None)["git_provider"] == "gitLabEnterpriseEdition"


def test_a_branch_or_tag_is_pinned_to_its_commit(tmp_path):
    """Databricks checks out exactly the commit the run records: a branch, a tag or the default branch becomes its
    commit at submission (a real repository, listed with `git ls-remote`)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "--quiet", "--initial-branch", "main", cwd=repo)
    (repo / "f").write_text("1")
    git("add", "f", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "one", cwd=repo)
    first = git("rev-parse", "HEAD", cwd=repo)
    git("tag", "-a", "v1", "-m", "v1", cwd=repo)
    (repo / "f").write_text("2")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-am", "two", cwd=repo)
    second = git("rev-parse", "HEAD", cwd=repo)
    url = repo.as_uri()
    assert pinned_commit(url, "main") == pinned_commit(url, None) == second
    assert pinned_commit(url, "v1") == first  # the commit an annotated tag points to, not the tag object
    assert pinned_commit(url, first) == first
    with pytest.raises(SubmissionRefused, match="no branch, tag or commit 'nope'"):
        pinned_commit(url, "nope")


def test_what_travels_is_what_git_lists_and_its_address_is_its_content(tmp_path):
    checkout = tmp_path / "checkout"
    git("clone", "--quiet", str(REPO), str(checkout), cwd=tmp_path)
    for name in (".venv/bin/python", "data/imdb/train.csv", "checkpoints/a/last.ckpt", "mlflow.db"):
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text("local only")
    files = staged_files(str(checkout))
    assert {"MLproject", "main.py", "databricks_task.py", "pipeline/on_databricks/jobs.py"} <= set(files)
    assert not [name for name in files if name.startswith((".venv", "data/imdb", "checkpoints", "mlflow.db"))]
    digest = code_digest(files)
    assert digest == code_digest(staged_files(str(checkout)))
    (checkout / "README.md").write_text("a change")  # a tracked file's edit travels; a new file would need `git add`
    assert code_digest(staged_files(str(checkout))) != digest


def test_a_folder_outside_git_travels_without_local_state(tmp_path):
    """On a cluster the project folder has no .git (a job's checkout or workspace files): its files travel, not
    what the run left beside them."""
    folder = tmp_path / "project"
    for name in ("MLproject", "main.py", "pipeline/step.py", "mlruns/0/meta.yaml", "pipeline/__pycache__/step.pyc"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    assert set(staged_files(str(folder))) == {"MLproject", "main.py", "pipeline/step.py"}


def test_dedicated_modes_pass():
    for mode in ("SINGLE_USER", "DATA_SECURITY_MODE_DEDICATED", "DATA_SECURITY_MODE_AUTO"):
        assert read_backend_config(SPEC | {"data_security_mode": mode})[0]["data_security_mode"] == mode


@pytest.mark.parametrize("uri", ["https://user:secret-password@mlflow.example.com", "https://mlflow.example.com/?token=secret-value"])
def test_a_tracking_uri_with_credentials_never_reaches_the_jobs_spec(uri):
    with pytest.raises(SubmissionRefused, match=r"^the tracking URI https://mlflow.example.com... carries credentials") as refused:
        job_environment(uri)
    assert "secret-password" not in str(refused.value) and "secret-value" not in str(refused.value)
    assert job_environment("https://mlflow.example.com") == {"MLFLOW_TRACKING_URI": "https://mlflow.example.com"}
    assert job_environment("databricks://work") == {"MLFLOW_TRACKING_URI": "databricks"}  # the cluster's own workspace


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "./mlruns", "file:///tmp/mlruns"])
def test_a_store_on_this_machine_is_refused_before_anything_is_created(uri):
    with pytest.raises(SubmissionRefused, match="is on this machine, where the job cannot log"):
        check_tracking_uri(uri)
    for reachable in ("databricks", "databricks://work", "https://mlflow.example.com"):
        check_tracking_uri(reachable)


def test_untracked_files_stay_home_and_are_named(tmp_path, caplog):
    """A `.env` beside the code, or a new module not yet added, is not uploaded; the log line names what stayed."""
    checkout = tmp_path / "checkout"
    git("clone", "--quiet", str(REPO), str(checkout), cwd=tmp_path)
    (checkout / ".env").write_text("DATABRICKS_TOKEN=dapi-secret")
    (checkout / "scratch.py").write_text("print(1)")
    (checkout / "MLproject").write_text((checkout / "MLproject").read_text() + "\n# an uncommitted edit\n")
    with caplog.at_level("INFO", logger="pipeline"):
        files = staged_files(str(checkout))
    assert ".env" not in files and "scratch.py" not in files
    assert files["MLproject"].read_text().endswith("# an uncommitted edit\n")  # the work tree's content of a tracked file
    assert "not uploaded (untracked; `git add` what the job needs)" in caplog.text and "scratch.py" in caplog.text


def test_a_file_too_big_for_workspace_files_is_one_line_naming_it(tmp_path):
    big = tmp_path / "weights.bin"
    big.write_bytes(b"\0" * 7_600_000)  # 10.1 MB once base64-encoded
    small = tmp_path / "main.py"
    small.write_text("print(1)")
    with pytest.raises(CodeRefused, match=r"^models/weights.bin \(7.6 MB\) is too big for workspace files .*code_folder"):
        check_import_sizes({"main.py": small, "models/weights.bin": big})
    check_import_sizes({"main.py": small})


@pytest.mark.parametrize("message", [
    # MLflow's upload of the project (`_upload_to_dbfs`), as users report the workspace's answer
    "API request to endpoint /dbfs/mlflow-experiments/1/projects-code/abc.tar.gz failed with error code 403 != 200. "
    "Response body: '{\"error_code\":\"PERMISSION_DENIED\",\"message\":\"Public DBFS root is disabled.\"}'",
    # the same refusal in other words, from MLflow's existence check (`_dbfs_path_exists`)
    "Got unexpected error response when checking whether file mlflow-experiments/1/projects-code/abc.tar.gz exists in DBFS: "
    "{'error_code': 'PERMISSION_DENIED', 'message': 'Access to the DBFS root is not allowed in this workspace.'}",
])
def test_the_dbfs_root_refusal_is_recognised_by_code_and_path_not_wording(message):
    assert dbfs_refused(Exception(message))


def test_other_failures_are_not_taken_for_the_dbfs_root():
    assert not dbfs_refused(Exception("API request to endpoint /api/2.0/jobs/runs/submit failed with error code 400 != 200"))
    assert not dbfs_refused(Exception("PERMISSION_DENIED: cannot use cluster policy"))
