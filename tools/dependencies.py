"""The project's package lists, derived from one declared source and checked against it.

    python tools/dependencies.py check    # exit 1 with one line per disagreement (tests/test_project.py runs it)
    python tools/dependencies.py write    # regenerate conda.yaml's pip list and MLproject's python_libraries

`pyproject.toml` declares what the code needs (the oldest versions it runs on); `requirements.txt` locks the
newest ones for a laptop. The Databricks job cluster already has most of them in its own build: its
`python_libraries` are only the dependencies the runtime (`databricks/<runtime>.constraints.txt`) lacks or has
too old, at the locked version, and never a package the runtime builds for its driver and Spark (`never_install`).

The project supports several runtimes (`runtimes` in pyproject.toml; the cluster specs name the default, `runtime`).
`$SENTIMENT_DATABRICKS_RUNTIME` (`make test-cluster RUNTIME=...`) chooses the one the cluster-like environment is
built like; the generated files do not depend on it.
"""

import os

import fnmatch
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)$")
# `name~=version`; the 18.0 list pins torch and torchvision exactly, with their CUDA build (`torch==2.9.0+cu129`).
RUNTIME_LINE = re.compile(r"^([A-Za-z0-9_.\-]+)(?:~=|==)([^\s;#]+)$")
RUNTIME_VARIABLE = "SENTIMENT_DATABRICKS_RUNTIME"


def settings() -> dict:
    """`[tool.sentiment-finetuning.databricks]` of pyproject.toml: the runtimes and the packages they own."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["sentiment-finetuning"]["databricks"]


def supported_runtimes() -> list[str]:
    """The `spark_version`s the project runs on, each with its package list in databricks/."""
    return list(settings()["runtimes"])


def selected_runtime() -> str:
    """The runtime the cluster-like environment is built like: `$SENTIMENT_DATABRICKS_RUNTIME`, else the specs' default."""
    runtime = os.environ.get(RUNTIME_VARIABLE) or settings()["runtime"]
    if runtime not in supported_runtimes():
        raise ValueError(f"{RUNTIME_VARIABLE}={runtime!r}: the supported runtimes are {', '.join(supported_runtimes())}")
    return runtime


def declared() -> list[Requirement]:
    return [Requirement(line) for line in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]


def locked() -> dict[str, str]:
    """requirements.txt: {canonical name: pinned version}, in file order."""
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            match = PIN.match(line.strip())
            if not match:
                raise ValueError(f"requirements.txt: {line!r} is not an exact pin (name==version)")
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def runtime_release(runtime: str | None = None) -> str:
    """The runtime's release, e.g. `18.0` for `18.0.x-gpu-ml-scala2.13` (default: the selected runtime)."""
    return (runtime or selected_runtime()).split(".x")[0]


def runtime_constraints_file(runtime: str | None = None) -> Path:
    return REPO / "databricks" / f"{runtime or selected_runtime()}.constraints.txt"


def runtime_versions(runtime: str | None = None) -> dict[str, str]:
    """{canonical name: version} of the packages the runtime ships (default: the selected runtime)."""
    runtime = runtime or selected_runtime()
    versions = {}
    for line in runtime_constraints_file(runtime).read_text().splitlines():
        match = RUNTIME_LINE.match(line.strip())
        if match:
            versions[canonicalize_name(match.group(1))] = match.group(2)
    versions["pyspark"] = settings()["runtimes"][runtime]  # Spark's own Python package: part of the runtime, not of the list
    return versions


def never_installed(name: str) -> bool:
    return any(fnmatch.fnmatch(canonicalize_name(name), pattern) for pattern in settings()["never_install"])


def python_libraries() -> list[str]:
    """What the job cluster installs: each dependency that one of the supported runtimes lacks or has too old,
    pinned as locally.

    One MLproject serves every supported runtime (the spec's `spark_version` picks it), so the list is what any of
    them needs: on 18.0 torchmetrics is missing, so 17.3 gets torchmetrics at the lock's version over its own too.
    A list derived from one runtime would leave the other without a dependency; replacing a runtime's package is
    safe except for those it builds for its driver and Spark, which `problems()` refuses for every runtime."""
    pins, runtimes = locked(), [runtime_versions(runtime) for runtime in supported_runtimes()]
    libraries = []
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        if any(name not in versions or not requirement.specifier.contains(Version(versions[name]), prereleases=True)
               for versions in runtimes):
            libraries.append(f"{requirement.name}=={pins[name]}")
    return libraries


def problems() -> list[str]:
    """Every disagreement between the declared source, the lock, the runtime and the generated files."""
    found = []
    pins = locked()
    names = [canonicalize_name(requirement.name) for requirement in declared()]
    if settings()["runtime"] not in supported_runtimes():
        found.append(f"pyproject.toml: the default runtime {settings()['runtime']} is not among runtimes {supported_runtimes()}")
    for runtime in supported_runtimes():
        if not runtime_constraints_file(runtime).is_file():
            found.append(f"databricks/{runtime}.constraints.txt: the package list of a supported runtime is missing")
    if found:
        return found  # the checks below read every supported runtime's package list
    if sorted(pins) != sorted(names):
        found.append(f"requirements.txt pins {sorted(pins)}, pyproject.toml declares {sorted(names)}")
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        if name in pins and not requirement.specifier.contains(Version(pins[name]), prereleases=True):
            found.append(f"requirements.txt: {name}=={pins[name]} is outside pyproject.toml's {requirement}")
        for runtime in supported_runtimes():
            have = runtime_versions(runtime).get(name)
            if never_installed(name) and (have is None or not requirement.specifier.contains(Version(have))):
                release = runtime_release(runtime)
                found.append(f"{requirement} needs more than runtime {release}'s own {name} {have}, which no job may replace")
    for library in python_libraries():
        if never_installed(library.partition("==")[0]):
            found.append(f"python_libraries would install {library}, which the runtime owns")
    if mlproject_libraries() != python_libraries():
        found.append(f"MLproject python_libraries {mlproject_libraries()} != generated {python_libraries()} (run make deps)")
    if conda_pip() != requirement_lines():
        found.append("conda.yaml's pip list differs from requirements.txt (run make deps)")
    return found


def requirement_lines() -> list[str]:
    return [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines() if line.strip() and not line.startswith("#")]


def mlproject_libraries() -> list[str]:
    import yaml

    return yaml.safe_load((REPO / "MLproject").read_text())["databricks_spark_job"]["python_libraries"]


def conda_pip() -> list[str]:
    import yaml

    (pip,) = [item["pip"] for item in yaml.safe_load((REPO / "conda.yaml").read_text())["dependencies"] if isinstance(item, dict)]
    return pip


def replace_list(text: str, header: str, indent: str, items: list[str]) -> str:
    """`text` with the YAML list under the line `header` (items at `indent`) replaced by `items`."""
    pattern = re.compile(rf"^({re.escape(header)}\n)((?:{re.escape(indent)}- .*\n)+)", re.MULTILINE)
    if not pattern.search(text):
        raise ValueError(f"no list under {header.strip()!r}")
    return pattern.sub(lambda match: match.group(1) + "".join(f"{indent}- {item}\n" for item in items), text, count=1)


def write() -> None:
    mlproject = REPO / "MLproject"
    mlproject.write_text(replace_list(mlproject.read_text(), "  python_libraries:", "    ", python_libraries()))
    conda = REPO / "conda.yaml"
    conda.write_text(replace_list(conda.read_text(), "  - pip:", "      ", requirement_lines()))


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    if command == "write":
        write()
    elif command == "libraries":
        print("\n".join(python_libraries()))
    found = problems()
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    sys.exit(1 if found else 0)
