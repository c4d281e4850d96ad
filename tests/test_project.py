"""The project files agree: MLproject loads in MLflow's Databricks Spark job format, the package lists derive from
pyproject.toml (requirements.txt locks it, conda.yaml repeats the lock, python_libraries holds only what the
runtime lacks), bare cluster specs on the runtime whose package list is committed."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from mlflow.projects._project_spec import load_project

from conftest import REPO
from tools import dependencies

REQUIREMENTS = [line for line in (REPO / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]


def test_package_lists_derive_from_pyproject():
    assert REQUIREMENTS and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[\w.]+", line) for line in REQUIREMENTS)
    assert dependencies.problems() == []
    conda = yaml.safe_load((REPO / "conda.yaml").read_text())
    (pip,) = [item["pip"] for item in conda["dependencies"] if isinstance(item, dict)]
    assert pip == REQUIREMENTS


def test_python_libraries_install_only_what_a_runtime_lacks():
    """18 and 17.3 LTS ML have torch, pandas, transformers and the rest in their own builds: the job adds MLflow at
    the client's version and Lightning, which neither ships, torchmetrics, which 18.0 lacks, and nothing they own."""
    libraries = load_project(str(REPO)).databricks_spark_job_spec.python_libraries
    assert libraries == ["mlflow==3.17.2", "lightning==2.6.6", "torchmetrics==1.9.0"]
    assert dependencies.supported_runtimes() == ["18.0.x-gpu-ml-scala2.13", "17.3.x-gpu-ml-scala2.13"]
    for release in dependencies.supported_runtimes():
        runtime = dependencies.runtime_versions(release)
        assert "lightning" not in runtime and runtime["mlflow-skinny"] != "3.17.2" and "mlflow" not in runtime
        assert {"torch", "numpy", "pandas", "pyarrow", "transformers"} <= set(runtime)
    assert "torchmetrics" not in dependencies.runtime_versions("18.0.x-gpu-ml-scala2.13")
    assert dependencies.runtime_versions("17.3.x-gpu-ml-scala2.13")["torchmetrics"] == "1.6.0"


def test_the_runtimes_package_lists_are_those_databricks_ships():
    """The facts the docs state, read back from the committed lists (databricks/README.md names their source)."""
    runtime_18, runtime_17 = (dependencies.runtime_versions(runtime) for runtime in dependencies.supported_runtimes())
    assert (runtime_18["torch"], runtime_18["transformers"], runtime_18["mlflow-skinny"], runtime_18["pyspark"]) == (
        "2.9.0+cu129", "4.57.1", "3.8.1", "4.1.0")
    assert (runtime_17["torch"], runtime_17["transformers"], runtime_17["mlflow-skinny"], runtime_17["pyspark"]) == (
        "2.7.0", "4.51.3", "3.0.1", "4.0.0")


def test_the_cluster_like_environment_follows_the_chosen_runtime(monkeypatch):
    """`make test-cluster RUNTIME=...` sets SENTIMENT_DATABRICKS_RUNTIME; the generated files do not depend on it."""
    monkeypatch.setenv(dependencies.RUNTIME_VARIABLE, "17.3.x-gpu-ml-scala2.13")
    assert dependencies.runtime_release() == "17.3" and dependencies.runtime_versions()["pyspark"] == "4.0.0"
    assert dependencies.problems() == []
    monkeypatch.setenv(dependencies.RUNTIME_VARIABLE, "16.4.x-gpu-ml-scala2.12")
    with pytest.raises(ValueError, match="supported runtimes are 18.0.x-gpu-ml-scala2.13, 17.3.x-gpu-ml-scala2.13"):
        dependencies.runtime_versions()
    monkeypatch.setenv(dependencies.RUNTIME_VARIABLE, "")
    assert dependencies.runtime_release() == "18.0"


def test_the_checks_refuse_a_library_that_would_replace_the_runtimes_torch(monkeypatch):
    """Raising the declared torch above a runtime's (17.3: 2.7, 18.0: 2.9) is a problem the check names, not a new job
    library; above 17.3's alone, too: one library list serves both runtimes."""
    declared = dependencies.declared()
    monkeypatch.setattr(dependencies, "declared", lambda: [type(r)("torch>=2.13") if r.name == "torch" else r for r in declared])
    problems = dependencies.problems()
    assert any("needs more than runtime 17.3's own torch 2.7.0" in problem for problem in problems)
    assert any("needs more than runtime 18.0's own torch 2.9.0+cu129" in problem for problem in problems)
    monkeypatch.setattr(dependencies, "declared", lambda: [type(r)("torch>=2.8") if r.name == "torch" else r for r in declared])
    assert [problem for problem in dependencies.problems() if "own torch" in problem] == [
        "torch>=2.8 needs more than runtime 17.3's own torch 2.7.0, which no job may replace"]


def test_entry_points_run_python_files_of_the_project():
    """On Databricks MLflow takes each command's second word as the file to run, so each is `python <file>.py`."""
    project = load_project(str(REPO))
    assert project.env_type is None and project.databricks_spark_job_spec.python_file is None
    for name in ("main", "download_data", "fine_tuning_model", "register_model"):
        words = project.get_entry_point(name).command.split(" ")
        assert words[0] == "python" and words[1].endswith(".py") and (REPO / words[1]).is_file(), name
        assert all(parameter.type != "path" for parameter in project.get_entry_point(name).parameters.values())


@pytest.mark.parametrize(("spec_file", "node_type"), [
    ("cluster_spec.json", "g4dn.xlarge"),  # AWS: one T4
    ("cluster_spec.azure.json", "Standard_NC4as_T4_v3"),  # Azure: one T4
    ("cluster_spec.gcp.json", "g2-standard-4"),  # GCP: no T4 node type on Databricks; one L4
])
def test_cluster_specs_are_bare_dedicated_gpu_clusters(spec_file, node_type):
    spec = json.loads((REPO / spec_file).read_text())
    assert "new_cluster" not in spec and "libraries" not in spec  # the bare Jobs API new_cluster
    assert spec["spark_version"] == dependencies.settings()["runtime"] == "18.0.x-gpu-ml-scala2.13"
    assert spec["node_type_id"] == node_type
    assert spec["data_security_mode"] == "SINGLE_USER"  # dedicated: Unity Catalog and /Volumes; ML GPU runtimes need it
    assert dependencies.runtime_constraints_file(spec["spark_version"]).is_file()
    # 18 and 17.3 LTS ML ship Python 3.12; laptops keep 3.11 (conda.yaml): the code supports both.
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"] == ">=3.11,<3.13"
    assert "python=3.11.7" in yaml.safe_load((REPO / "conda.yaml").read_text())["dependencies"]


def test_the_databricks_jobs_backend_is_registered_with_mlflow():
    """`pip install -e .` (make venv) declares the backend in MLflow's plugin group; MLflow's loader finds it."""
    from mlflow.projects.backend import loader

    from pipeline.on_databricks.jobs import DatabricksJobsBackend

    assert isinstance(loader.load_backend("databricks-jobs"), DatabricksJobsBackend)


def test_no_code_reads_shared_folder():
    for path in [*REPO.glob("*.py"), *REPO.glob("pipeline/*.py"), *REPO.glob("tools/*.py"), *REPO.glob("tests/*.py")]:
        if path == Path(__file__):
            continue  # this test names the folder it looks for
        assert "../shared" not in Path(path).read_text(), path


def test_training_cluster_spec_is_a_bare_multi_node_gpu_cluster():
    """`main` submits multi-node fine-tuning on Databricks with this spec: several GPU nodes, one GPU per Spark task."""
    spec = json.loads((REPO / "training_cluster_spec.json").read_text())
    assert "new_cluster" not in spec and "libraries" not in spec
    assert spec["spark_version"] == json.loads((REPO / "cluster_spec.json").read_text())["spark_version"]
    assert spec["num_workers"] >= 2 and spec["node_type_id"].startswith("g4dn.") and spec["data_security_mode"] == "SINGLE_USER"
    assert spec["spark_conf"]["spark.task.resource.gpu.amount"] == "1"  # as TorchDistributor expects on GPUs
