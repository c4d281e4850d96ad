"""TEST DOUBLE: a Python environment built like a Databricks job cluster's, for the emulator and for CI.

A job cluster brings its own Python and packages (torch built for its NVIDIA driver, numpy, pandas, pyarrow,
pyspark, transformers, its own MLflow), and pip-installs the job's libraries on top of them. This module builds:

- the **runtime** (`runtime_environment()`): the runtime's Python (3.12 for 18 and 17.3 LTS ML) with the runtime's
  own versions, from the committed constraint list `databricks/<runtime>.constraints.txt`, of the packages the
  project touches (not all ~420 the image has: see tests/README.md). Built once per runtime and cached; the
  runtime is the selected one (`$SENTIMENT_DATABRICKS_RUNTIME`, else the cluster specs') unless named;
- a **cluster** over it (`cluster_environment(libraries)`): a venv that sees the runtime's packages (a `.pth`
  file) and gets the job's libraries pip-installed on top, as the cluster's library installer does. Cached per
  library list. A library that would replace one of the packages the runtime builds for its driver and Spark
  (`PROTECTED`) is refused before anything is installed: on a real cluster it would install, and then lose the
  GPU (a CUDA 13 torch on an older driver) or stop the runtime (numpy 2 over 15.4: dask-contrib/dask-databricks
  #41; pandas-on-Spark supports only the runtime's pandas). `LibraryRefused` says which and why.

    python tests/databricks_runtime.py cluster-env DIR   # CI: the runtime + MLproject's python_libraries + test tools
    SENTIMENT_DATABRICKS_RUNTIME=17.3.x-gpu-ml-scala2.13 python tests/databricks_runtime.py cluster-env DIR   # another runtime

Only the standard library and `packaging` are used here, so any Python can build the environments.
"""

import fcntl
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tools.dependencies import (declared, runtime_constraints_file, runtime_release, runtime_versions,  # noqa: E402
                                selected_runtime, settings)

# The LTS runtimes Databricks supports in November 2026 and their Python (Databricks runtime release notes);
# 12.2 LTS and 13.3 LTS have reached end of support. 18 LTS (release notes: Spark 4.1.0, released 2026-06-10,
# supported to 2029-06-10) is keyed `18.0` as its ML package list (databricks/README.md).
RUNTIME_PYTHON = {"14.3": "3.10", "15.4": "3.11", "16.4": "3.12", "17.3": "3.12", "18.0": "3.12"}

# What the runtime builds for its NVIDIA driver and its Spark (Databricks runtime release notes; PyTorch RFC #172663 and
# PR #187130: PyPI's torch from 2.11 is a CUDA 13 build, which needs driver R580+; dask-contrib/dask-databricks #41:
# numpy 2 over runtime 15.4 stops it; pandas-on-Spark supports only the runtime's pandas).
PROTECTED = ("torch", "torchvision", "numpy", "pandas", "pyarrow", "pyspark", "nvidia-*")
# The runtime's own MLflow and SDK: a job that does not pin MLflow runs with these, as on a real cluster.
RUNTIME_OWN = ("mlflow-skinny", "databricks-sdk")
CACHE = Path(os.environ.get("SENTIMENT_RUNTIME_CACHE", Path.home() / ".cache" / "sentiment-finetuning-tests" / "runtimes"))
DONE = ".complete"


class LibraryRefused(Exception):
    """A job library would replace a package the runtime owns (Databricks' library installation failure)."""




def find_python(version: str) -> str:
    """An interpreter of `version`: $PYTHON<major><minor>, pythonX.Y on the PATH, or pyenv's."""
    candidates = [os.environ.get(f"PYTHON{version.replace('.', '')}", ""), shutil.which(f"python{version}") or "",
                  *sorted(str(path) for path in (Path.home() / ".pyenv" / "versions").glob(f"{version}.*/bin/python{version}"))]
    for candidate in filter(None, candidates):
        found = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip() == version:
            return candidate
    raise RuntimeError(f"no Python {version} found (the runtime's): install it or set PYTHON{version.replace('.', '')}")


def installable_versions(runtime: str) -> dict[str, str]:
    """The runtime's versions as PyPI has them: the image's torch is a CUDA build of its own (18.0: `2.9.0+cu129`,
    from PyTorch's index) with its CUDA libraries (`nvidia-*-cu12`); PyPI has the same release with the CUDA
    libraries it pins itself."""
    versions = runtime_versions(runtime).items()
    return {name: Version(version).public for name, version in versions if not fnmatch.fnmatch(name, "nvidia-*-cu[0-9]*")}


def runtime_pins(folder: Path, runtime: str) -> Path:
    """The runtime's versions as exact pins (`~=` would let pip move a patch release the image does not have)."""
    path = folder / "runtime-pins.txt"
    path.write_text("".join(f"{name}=={version}\n" for name, version in sorted(installable_versions(runtime).items())))
    return path


def runtime_packages(runtime: str) -> list[str]:
    """The runtime's packages the project touches: its protected builds, its MLflow and SDK, and every project
    dependency it already has (at its own version: the pins make sure)."""
    versions = installable_versions(runtime)
    names = {name for name in versions if any(fnmatch.fnmatch(name, pattern) for pattern in PROTECTED) and not name.startswith("nvidia-")}
    names -= {"torchvision"}  # not used by the project; torch's own nvidia-* dependencies come with it
    names |= set(RUNTIME_OWN) | {canonicalize_name(requirement.name) for requirement in declared()} | {"pytest"}
    return sorted(f"{name}=={versions[name]}" for name in names if name in versions)


def site_packages(environment: Path) -> Path:
    (found,) = (environment / "lib").glob("python3.*/site-packages")
    return found


def _build(folder: Path, steps) -> Path:
    """Build `folder` once: reuse it when complete, else start over (a build that was cut off). One builder at
    a time (a file lock): two jobs of one emulator, or CI and a test, may ask for the same environment."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / DONE).exists():
            shutil.rmtree(folder, ignore_errors=True)
            steps(folder)
            (folder / DONE).write_text("")
    return folder


def pip(environment: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([str(environment / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args],
                          check=not capture, capture_output=capture, text=True)


def runtime_environment(runtime: str | None = None) -> Path:
    """The runtime's Python with the runtime's versions of `runtime_packages()`, cached by what defines it."""
    runtime = runtime or selected_runtime()
    packages = runtime_packages(runtime)
    key = hashlib.sha256(json.dumps([runtime_constraints_file(runtime).read_text(), packages]).encode()).hexdigest()[:12]

    def steps(folder: Path) -> None:
        subprocess.run([find_python(RUNTIME_PYTHON[runtime_release(runtime)]), "-m", "venv", str(folder)], check=True)
        pip(folder, "install", "--quiet", "--constraint", str(runtime_pins(folder, runtime)), *packages)

    return _build(CACHE / f"{runtime}-{key}", steps)


def refused(environment: Path, libraries: list[str], runtime: str) -> list[str]:
    """Why installing `libraries` into `environment` would replace a protected runtime package (pip's own plan)."""
    plan = pip(environment, "install", "--dry-run", "--quiet", "--report", "-", *libraries, capture=True)
    if plan.returncode != 0:
        raise LibraryRefused(f"pip cannot install {' '.join(libraries)}: {plan.stderr.strip().splitlines()[-1:]}")
    installed = runtime_versions(runtime)
    replaced, added = [], []
    for item in json.loads(plan.stdout)["install"]:
        name, version = canonicalize_name(item["metadata"]["name"]), item["metadata"]["version"]
        if not any(fnmatch.fnmatch(name, pattern) for pattern in PROTECTED):
            continue
        if name in installed:
            replaced.append(f"{name} {version} would replace the runtime's own {name} {installed[name]}")
        else:
            added.append(name)
    if added and not replaced:  # e.g. CUDA 13 libraries beside the runtime's CUDA 12 build
        replaced.append(f"{', '.join(added)} would install beside the runtime's own builds")
    return replaced


def cluster_environment(libraries: list[str], extra: tuple[str, ...] = (), runtime: str | None = None) -> Path:
    """A cluster of `runtime` (default: the selected one) with `libraries` installed over it (and `extra`,
    unchecked: CI's test tools).

    Raises LibraryRefused, naming the package, when one would replace a protected runtime package."""
    name = runtime or selected_runtime()
    runtime = runtime_environment(name)
    key = hashlib.sha256(json.dumps([runtime.name, libraries, list(extra)]).encode()).hexdigest()[:12]

    def steps(folder: Path) -> None:
        subprocess.run([str(runtime / "bin" / "python"), "-m", "venv", str(folder)], check=True)
        # The cluster's Python sees the runtime's packages; what pip installs here shadows them (as an upgrade).
        (site_packages(folder) / "databricks_runtime.pth").write_text(f"{site_packages(runtime)}\n")
        reasons = refused(folder, libraries, name)
        if reasons:
            raise LibraryRefused("; ".join(reasons))
        pip(folder, "install", "--quiet", *libraries, *extra)

    try:
        return _build(CACHE / f"{runtime.name}+{key}", steps)
    except LibraryRefused:
        shutil.rmtree(CACHE / f"{runtime.name}+{key}", ignore_errors=True)
        raise


def installed_versions(environment: Path) -> dict[str, str]:
    listed = pip(environment, "list", "--format", "json", capture=True)
    return {canonicalize_name(item["name"]): item["version"] for item in json.loads(listed.stdout)}


def changed_runtime_packages(runtime: Path, cluster: Path, libraries: list[str]) -> list[str]:
    """Runtime packages whose version the cluster's libraries changed, but those they replace on purpose:
    `replaced` in pyproject.toml (mlflow==<client> brings its own mlflow-skinny) and the libraries themselves (one
    list serves every supported runtime: 18.0 lacks torchmetrics, so 17.3's own is replaced by the lock's)."""
    before, after = installed_versions(runtime), installed_versions(cluster)
    allowed = {canonicalize_name(name) for name in [*settings()["replaced"], *(spec.partition("==")[0] for spec in libraries)]}
    return [f"{name} {version} -> {after[name]}" for name, version in sorted(before.items())
            if after.get(name) != version and name not in allowed]


def build_ci_cluster_environment(link: Path) -> Path:
    """CI's cluster-like environment: MLproject's python_libraries over the runtime, plus the test tools;
    `pip check` must pass. `link` points to it (a symlink), so `link/bin/python` runs it."""
    from tools.dependencies import mlproject_libraries

    # The runtime's pytest runs the tests; the other test tools at the versions requirements-dev.txt pins.
    tools = tuple(line for line in (REPO / "requirements-dev.txt").read_text().splitlines()
                  if line.startswith(("hypothesis==", "pytest-xdist==", "execnet==")))
    libraries = mlproject_libraries()
    environment = cluster_environment(libraries, tools)
    pip(environment, "check")
    changed = changed_runtime_packages(runtime_environment(), environment, libraries)
    if changed:
        raise SystemExit(f"python_libraries change the runtime's own packages: {', '.join(changed)}")
    pip(environment, "install", "--quiet", "--no-deps", "-e", str(REPO))  # the client's side: backend databricks-jobs
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(environment)
    return environment


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "cluster-env":
        sys.exit(__doc__)
    print(build_ci_cluster_environment(Path(sys.argv[2]).absolute()))
