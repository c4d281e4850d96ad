"""pipeline/on_databricks/cluster.py: where a relative folder parameter lies, on a laptop and on a Databricks cluster."""

from pathlib import Path

from pipeline.on_databricks.cluster import local_path, on_databricks


def test_on_a_laptop_a_relative_path_is_the_working_directory_s(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.chdir(tmp_path)
    assert not on_databricks()
    assert local_path("./data") == tmp_path / "data"
    assert local_path("~/x") == Path.home() / "x"


def test_on_a_cluster_a_relative_path_lies_on_the_driver_s_disk_not_beside_the_code(monkeypatch, tmp_path):
    """A Python task starts in its (read-only) code folder: `./data` there would be written into the checkout."""
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.setenv("PIPELINE_SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.chdir(tmp_path)
    assert on_databricks()
    assert local_path("./data") == tmp_path / "scratch" / "sentiment-finetuning" / "data"
    assert local_path("/Volumes/main/ml/files/checkpoints") == Path("/Volumes/main/ml/files/checkpoints")
