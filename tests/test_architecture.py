"""The walls between the wings (docs/design.md, "Wings and walls"), checked on the code as it is."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "pipeline"
STEPS = {"download_data", "fine_tuning_model", "register_model", "batch_inference"}
TRAVELS_WITH_THE_MODEL = ("serving/sentiment_model.py", "serving/inference.py", "serving/truncation.py")


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def modules_loaded_by(statement: str) -> set[str]:
    """The modules a fresh interpreter has loaded after `statement`, run from the repository."""
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return set(result.stdout.split())


def test_no_wing_imports_a_step_or_main():
    """Steps use wings, never the other way round: a wing that imported a step would import the whole pipeline."""
    for path in PACKAGE.glob("*/*.py"):
        upward = {name for name in imported_modules(path) if name == "main" or name.split(".")[:2] in
                  [["pipeline", step] for step in STEPS]}
        assert not upward, f"{path.relative_to(REPO)} imports {sorted(upward)}"


def test_spark_lies_below_serving_and_training():
    """Batch scoring and multi-node training both run on Spark: its session and errors (`pipeline/spark.py`, the only
    code that builds a session) import no wing, and serving borrows nothing from training. No code asks for
    `sparkContext`, which Spark Connect lacks."""
    wings = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    upward = {name for name in imported_modules(PACKAGE / "spark.py")
              if name.startswith("pipeline.") and name.split(".")[1] in wings | STEPS}
    assert not upward, f"pipeline/spark.py imports {sorted(upward)}"
    for path in (PACKAGE / "serving").glob("*.py"):
        borrowed = {name for name in imported_modules(path) if name.startswith("pipeline.training")}
        assert not borrowed, f"{path.relative_to(REPO)} imports {sorted(borrowed)}"
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        used = ({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)} |
                {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names})
        assert "sparkContext" not in used, f"{path.relative_to(REPO)} asks for sparkContext"
        assert path == PACKAGE / "spark.py" or "SparkSession" not in used, f"{path.relative_to(REPO)} builds a Spark session"


def test_what_travels_with_the_logged_model_runs_without_the_project(tmp_path):
    """The modules the logged model carries (`code_paths`) import each other by their own names, as MLflow loads
    them, and nothing of this repository: copied alone beside each other, they import."""
    for name in TRAVELS_WITH_THE_MODEL:
        shutil.copy(PACKAGE / name, tmp_path)
    code = ("import sys; sys.path = [p for p in sys.path if p not in ('', '.')]; sys.path.insert(0, '.');"
            "import inference, truncation, sentiment_model; assert not [m for m in sys.modules if m.startswith('pipeline')]")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_training_processes_never_import_mlflow_helpers():
    """A training process (`pipeline/training/process.py`, also on Spark workers without credentials) reaches no
    run, registry or Databricks code of ours, and no step."""
    loaded = {name for name in modules_loaded_by("import pipeline.training.process") if name.startswith("pipeline.")}
    walled_off = {name for name in loaded if name.startswith(("pipeline.tracking", "pipeline.evaluation", "pipeline.on_databricks."))
                  or name.split(".")[1] in STEPS or name == "pipeline.serving.model_logging"}
    walled_off -= {"pipeline.on_databricks.cluster"}  # where a cluster's files go: paths only, no client, no credentials
    assert not walled_off, sorted(walled_off)


@pytest.mark.parametrize("module", ["pipeline.parameters", "pipeline.contract"])
def test_parameters_and_the_contract_import_nothing_heavy(module):
    """`main` checks every -P value and names every step from these before any step starts: no torch to load."""
    heavy = {"torch", "lightning", "transformers", "sklearn", "mlflow", "pandas"} & modules_loaded_by(f"import {module}")
    assert not heavy, sorted(heavy)


def test_no_wing_shadows_an_installed_package(tmp_path):
    """`python pipeline/<step>.py` puts `pipeline/` first on sys.path: a wing named like an installed top-level
    package (`databricks`, whose SDK MLflow imports) would hide it from every step."""
    wings = sorted(path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file())
    code = f"import importlib.util; print([name for name in {wings!r} if importlib.util.find_spec(name)])"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr[-2000:]


def test_the_plumbing_below_the_steps_has_no_import_circle():
    """`errors` is the bottom: it imports nothing of the project; `contract` and `logs` only it; `entry` (how an entry
    point runs and reports its errors) sits on them, and none of them imports `entry` back."""
    own = {name: {module for module in imported_modules(PACKAGE / f"{name}.py") if module.startswith("pipeline.")}
           for name in ("errors", "contract", "logs", "entry")}
    assert own["errors"] == set()
    assert {module.rsplit(".", 1)[0] if module.count(".") > 1 else module for module in own["contract"] | own["logs"]} <= {"pipeline.errors"}
    assert not any(module.startswith("pipeline.entry") for name in ("errors", "contract", "logs") for module in own[name])
