"""Remote code, local target: `mlflow run git://...#<subdir> -v <full sha>` from a real `git daemon`."""

import pytest

from conftest import mlflow_run, params, runs_by_entry_point


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["root", "subdirectory"])
def test_git_uri_runs_the_pinned_commit(layout, git_remote, easy_zip_url, tmp_path):
    if layout == "root":
        uri, sha = f"{git_remote['url']}/sentiment.git", git_remote["pinned"]  # the branch head would fail
    else:
        uri, sha = f"{git_remote['url']}/monorepo.git#ml/sentiment", git_remote["nested"]
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Started outside any checkout of this repository: only the git URI brings the code.
    result = mlflow_run(tracking_uri, "-v", sha, *params(pipeline_steps="download_data", download_url=easy_zip_url,
                                                        local_folder=tmp_path / "data"),
                        experiment="remote", uri=uri, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    runs = runs_by_entry_point(tracking_uri, "remote")
    assert set(runs) == {"main", "download_data"}
    (parent,), (step,) = runs["main"], runs["download_data"]
    assert parent.info.status == step.info.status == "FINISHED"
    assert step.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.data.tags["mlflow.source.name"] == uri
    assert parent.data.tags["mlflow.source.git.repoURL"] == uri.split("#")[0]
    for run in (parent, step):
        assert run.data.tags["mlflow.source.git.commit"] == sha
    assert (tmp_path / "data" / "imdb" / "train.csv").exists()

