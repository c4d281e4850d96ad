"""pipeline/on_databricks/jobs.py, the parts that decide before anything is sent: the backend config, the git source,
what travels and its address. Submitting and running jobs: tests/on_databricks/test_databricks.py (against the emulator)."""

import json
import subprocess

import pytest

from conftest import REPO
from pipeline.on_databricks.jobs import (SubmissionRefused, code_digest, git_source, pinned_commit, read_backend_config,
                                      staged_files)

SPEC = json.loads((REPO / "cluster_spec.json").read_text())


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_the_backend_config_is_the_bare_spec_or_a_wrapped_one(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(SPEC))
    with_options = SPEC | {"ENV_MANAGER": "local", "SYNCHRONOUS": False}  # what MLflow adds to every backend config
    assert read_backend_config(str(path)) == read_backend_config(with_options) == (SPEC, None, None)
    wrapped = {"new_cluster": SPEC, "code_folder": "/Volumes/main/ml/code", "git_provider": "gitLab"}
    assert read_backend_config(wrapped) == (SPEC, "/Volumes/main/ml/code", "gitLab")


@pytest.mark.parametrize(("config", "message"), [
    ({key: value for key, value in SPEC.items() if key != "data_security_mode"}, "data_security_mode None is a no-isolation cluster"),
    (SPEC | {"data_security_mode": "NONE"}, "data_security_mode 'NONE' is a no-isolation cluster"),
    (SPEC | {"data_security_mode": "LEGACY_SINGLE_USER"}, "no-isolation"),
    ({"new_cluster": SPEC, "code_folder": "/Shared/code"}, "code_folder '/Shared/code' is not a Unity Catalog volume path"),
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
    (checkout / "NOTES.md").write_text("a change")
    assert code_digest(staged_files(str(checkout))) != digest


def test_a_folder_outside_git_travels_without_local_state(tmp_path):
    """On a cluster the project folder has no .git (a job's checkout or workspace files): its files travel, not
    what the run left beside them."""
    folder = tmp_path / "project"
    for name in ("MLproject", "main.py", "pipeline/step.py", "mlruns/0/meta.yaml", "pipeline/__pycache__/step.pyc"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    assert set(staged_files(str(folder))) == {"MLproject", "main.py", "pipeline/step.py"}
