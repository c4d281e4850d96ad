"""The download_data step, in process: real HTTP download, checks, and what it records in MLflow."""

import mlflow
import pytest

from conftest import cli_runner, leftovers
from pipeline import download_data
from test_fetch import server  # noqa: F401 - the scripted HTTP server fixture


def invoke(*args):
    return cli_runner().invoke(download_data.main, list(args))


def only_run(experiment="Default"):
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    assert len(runs) == 1
    return runs[0]


def test_downloads_checks_and_records(tracking, easy_zip_url, tmp_path):
    result = invoke("--download-url", easy_zip_url, "--local-folder", str(tmp_path / "data"))
    assert result.exit_code == 0, result.output
    run = only_run()
    assert run.info.status == "FINISHED"
    assert run.data.tags["pipeline.step"] == "download_data"
    assert run.data.params["download_url"] == easy_zip_url
    assert run.data.metrics["train_rows"] == 400 and run.data.metrics["test_rows"] == 100
    assert len(run.data.tags["archive_sha256"]) == 64
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"imdb-train", "imdb-valid", "imdb-test"}
    assert all(d.dataset.digest for d in inputs.values())
    assert [tag.value for tag in inputs["imdb-valid"].tags if tag.key == "mlflow.data.context"] == ["valid"]
    artifacts = sorted(a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "imdb"))
    assert artifacts == ["imdb/test.csv", "imdb/train.csv", "imdb/valid.csv"]
    assert (tmp_path / "data" / "imdb" / "train.csv").is_file()


def test_bad_download_fails_the_run_and_keeps_old_data(tracking, http_root, easy_zip_url, tmp_path):
    folder, base = http_root
    (folder / "page.zip").write_text("<html><body>Please log in</body></html>")
    data = tmp_path / "data"
    assert invoke("--download-url", easy_zip_url, "--local-folder", str(data)).exit_code == 0
    before = (data / "imdb" / "train.csv").read_bytes()

    result = invoke("--download-url", f"{base}/page.zip", "--local-folder", str(data))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: {base}/page.zip: not a zip archive (it starts with '<html><body>Please log in</body></html>')"
    failed = mlflow.search_runs(experiment_names=["Default"], filter_string="attributes.status = 'FAILED'", output_format="list")
    assert len(failed) == 1 and "not a zip archive" in failed[0].data.tags["pipeline.error"]
    assert (data / "imdb" / "train.csv").read_bytes() == before
    assert leftovers(data) == []


def test_checksum_mismatch(tracking, easy_zip_url, tmp_path):
    result = invoke("--download-url", easy_zip_url, "--local-folder", str(tmp_path), "--sha256", "0" * 64)
    assert result.exit_code == 1
    assert "SHA-256 is" in result.stderr and f"expected {'0' * 64}" in result.stderr
    assert not (tmp_path / "imdb").exists()
    assert only_run().info.status == "FAILED"


def test_connection_cut_mid_body_keeps_old_data(tracking, easy_zip_url, server, tmp_path, monkeypatch):  # noqa: F811
    handler, base = server
    handler.script["/imdb.zip"] = [(200, b"PK\x03\x04 partial", 10_000_000)]
    monkeypatch.setattr("tenacity.nap.time.sleep", lambda seconds: None)  # the retries' back-off
    data = tmp_path / "data"
    assert invoke("--download-url", easy_zip_url, "--local-folder", str(data)).exit_code == 0
    before = (data / "imdb" / "train.csv").read_bytes()

    result = invoke("--download-url", f"{base}/imdb.zip", "--local-folder", str(data))
    assert result.exit_code == 1 and handler.hits["/imdb.zip"] == 4  # 1 + 3 retries
    message = f"error: {base}/imdb.zip: connection broke off mid-download (ChunkedEncodingError) (gave up after 4 attempts)"
    assert result.stderr.strip().splitlines()[-1] == message
    failed = mlflow.search_runs(experiment_names=["Default"], filter_string="attributes.status = 'FAILED'", output_format="list")
    assert len(failed) == 1 and failed[0].data.tags["pipeline.error"] == message.removeprefix("error: ")
    assert (data / "imdb" / "train.csv").read_bytes() == before and leftovers(data) == []


@pytest.mark.parametrize("folder", ["/proc/no-such-folder", "a-file"])
def test_unwritable_local_folder_is_one_line(tracking, easy_zip_url, tmp_path, folder):
    (tmp_path / "a-file").write_text("not a folder")
    local_folder = folder if folder.startswith("/") else str(tmp_path / folder)
    result = invoke("--download-url", easy_zip_url, "--local-folder", local_folder)
    assert result.exit_code == 1 and not isinstance(result.exception, OSError)
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: local_folder={local_folder!r}: cannot write there (")
    assert only_run().data.tags["pipeline.error"] == line.removeprefix("error: ")
