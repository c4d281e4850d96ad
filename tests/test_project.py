"""The project files agree: MLproject loads in MLflow's Databricks Spark job format, one pinned package list
everywhere (requirements.txt, conda.yaml, MLproject's python_libraries), a bare cluster spec on a runtime whose
Python the pins accept."""

import json
import re
import tomllib
from pathlib import Path

import yaml
from mlflow.projects._project_spec import load_project

from conftest import REPO

REQUIREMENTS = [line for line in (REPO / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]


def test_one_pinned_package_list_everywhere():
    assert REQUIREMENTS and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[\w.]+", line) for line in REQUIREMENTS)
    conda = yaml.safe_load((REPO / "conda.yaml").read_text())
    (pip,) = [item["pip"] for item in conda["dependencies"] if isinstance(item, dict)]
    assert pip == REQUIREMENTS
    assert load_project(str(REPO)).databricks_spark_job_spec.python_libraries == REQUIREMENTS


def test_entry_points_run_python_files_of_the_project():
    """On Databricks MLflow takes each command's second word as the file to run, so each is `python <file>.py`."""
    project = load_project(str(REPO))
    assert project.env_type is None and project.databricks_spark_job_spec.python_file is None
    for name in ("main", "download_data", "fine_tuning_model", "register_model"):
        words = project.get_entry_point(name).command.split(" ")
        assert words[0] == "python" and words[1].endswith(".py") and (REPO / words[1]).is_file(), name
        assert all(parameter.type != "path" for parameter in project.get_entry_point(name).parameters.values())


def test_cluster_spec_is_a_bare_supported_gpu_cluster():
    spec = json.loads((REPO / "cluster_spec.json").read_text())
    assert "new_cluster" not in spec and "libraries" not in spec  # MLflow sends the file as new_cluster
    assert spec["spark_version"] == "15.4.x-gpu-ml-scala2.12" and spec["node_type_id"] == "g4dn.xlarge"
    # 15.4 LTS ML ships Python 3.11, the version pyproject.toml and conda.yaml pin (16.4 and 17.3 have 3.12).
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"] == ">=3.11,<3.12"
    assert "python=3.11.7" in yaml.safe_load((REPO / "conda.yaml").read_text())["dependencies"]


def test_no_code_reads_shared_folder():
    for path in [*REPO.glob("*.py"), *REPO.glob("pipeline/*.py")]:
        assert "../shared" not in Path(path).read_text(), path


def test_training_cluster_spec_is_a_bare_multi_node_gpu_cluster():
    """`main` submits multi-node fine-tuning on Databricks with this spec: several GPU nodes, one GPU per Spark task."""
    spec = json.loads((REPO / "training_cluster_spec.json").read_text())
    assert "new_cluster" not in spec and "libraries" not in spec
    assert spec["spark_version"] == json.loads((REPO / "cluster_spec.json").read_text())["spark_version"]
    assert spec["num_workers"] >= 2 and spec["node_type_id"].startswith("g4dn.")
    assert spec["spark_conf"]["spark.task.resource.gpu.amount"] == "1"  # as TorchDistributor expects on GPUs
