"""The wheel folder that a lent GPU machine installs before `check.sh`: what its image lacks, nothing it has.

    python benchmarks/gpu/wheels.py            # build .gpu/wheels (PyPI reached from here), print it and its size
    python benchmarks/gpu/wheels.py --check    # only check the folder already built: closure and size

That machine reaches no registry and carries at most 64 MiB of working tree, wheels included. Its image
(image-packages.txt) holds torch, Lightning, transformers and most of the scientific stack, but no MLflow. The
folder gets every package of requirements.txt (torch aside: the image's is built for its CUDA) that the image
lacks or holds at another version than the pin, and then, level by level, every requirement of those wheels
(Python 3.12 on x86-64 Linux, markers evaluated) that the image does not hold. The check fails when a carried
wheel's requirement is met by neither, or when the folder and the tracked tree together pass the budget.
"""

import argparse
import email.parser
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
IMAGE = Path(__file__).with_name("image-packages.txt")
FOLDER = REPO / ".gpu" / "wheels"
BUDGET_MIB = 64  # the device tool's limit on what travels: tracked and untracked files plus carried paths
MARGIN_MIB = 2  # room for what a session adds to the tree before the call
NEVER = {"torch"}  # the image's build fits its driver; a PyPI torch would not (and is gigabytes)
AT_PIN = {"transformers", "tokenizers"}  # the records compare models at the project's own transformers
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]
TARGET = default_environment() | {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
                                  "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                                  "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def image_packages() -> dict[str, Version | None]:
    """Name → the version seen there (None where the list gives no version)."""
    packages = {}
    for line in IMAGE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            packages[canonicalize_name(name)] = Version(version) if version else None
    return packages


def pinned_requirements() -> list[Requirement]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [Requirement(line.split("#")[0].strip()) for line in lines if line.strip() and not line.startswith(("#", "-"))]


def declared_ranges() -> dict[str, Requirement]:
    """pyproject.toml's dependencies: the versions the project runs on."""
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {canonicalize_name(Requirement(line).name): Requirement(line) for line in declared}


def needed(requirements: list[Requirement], image: dict, wheels: dict) -> list[Requirement]:
    """Each named package whose versions allowed by all of `requirements` together neither the image nor the
    folder holds, with that combined specifier."""
    combined: dict[str, Requirement] = {}
    for requirement in requirements:
        if requirement.marker and not requirement.marker.evaluate(TARGET | {"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in combined:
            combined[name].specifier &= requirement.specifier
        else:
            combined[name] = Requirement(f"{name}{requirement.specifier}")
    wanted = []
    for name, requirement in combined.items():
        have = wheels[name][0] if name in wheels else image.get(name, "absent")
        if name in NEVER or have is None or (have != "absent" and requirement.specifier.contains(have, prereleases=True)):
            continue
        wanted.append(requirement)
    return wanted


def starting_set(image: dict) -> list[Requirement]:
    """requirements.txt's pins where the image lacks the package, where its version is outside what the project
    declares, or where the pin itself is the point (AT_PIN); else the declared range, which the image meets."""
    declared = declared_ranges()
    return [pin if canonicalize_name(pin.name) in AT_PIN or canonicalize_name(pin.name) not in image
            else declared.get(canonicalize_name(pin.name), pin) for pin in pinned_requirements()]


def wheel_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        message = email.parser.Parser().parsestr(archive.read(metadata).decode())
    return [Requirement(line) for line in message.get_all("Requires-Dist") or []]


def download(requirements: list[Requirement], folder: Path) -> None:
    platforms = [flag for platform in PLATFORMS for flag in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(folder),
               *[str(requirement).split(";")[0] for requirement in requirements]]
    subprocess.run(command, check=True)


def carried(folder: Path) -> dict[str, tuple[Version, Path]]:
    wheels = {}
    for wheel in sorted(folder.glob("*.whl")):
        name, version, *_ = parse_wheel_filename(wheel.name)
        if name in wheels:
            sys.exit(f"error: two versions of {name} in {folder}: the device's pip would refuse both")
        wheels[name] = (version, wheel)
    return wheels


def build(folder: Path) -> None:
    """Level by level: the pins, then each new wheel's requirements, until nothing is missing."""
    image = image_packages()
    with tempfile.TemporaryDirectory() as staging:
        staging = Path(staging)
        wanted = needed(starting_set(image), image, {})
        while wanted:
            print(f"downloading {len(wanted)}: {', '.join(str(requirement) for requirement in wanted)}")
            for requirement in wanted:  # a tighter specifier replaces the version taken before
                for old in staging.glob(f"{requirement.name.replace('-', '_')}-*.whl"):
                    old.unlink()
            download(wanted, staging)
            wheels = carried(staging)
            requirements = starting_set(image) + [r for _, wheel in wheels.values() for r in wheel_requirements(wheel)]
            wanted = needed(requirements, image, wheels)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.whl"):
            old.unlink()
        for wheel in staging.glob("*.whl"):
            wheel.rename(folder / wheel.name)


def tracked_bytes() -> int:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return sum((REPO / name).stat().st_size for name in files.split("\0") if name and (REPO / name).is_file())


def check(folder: Path) -> list[str]:
    """Every problem with the folder: an unmet requirement, a wheel the image already holds, the size."""
    image, wheels = image_packages(), carried(folder)
    if not wheels:
        return [f"{folder} holds no wheel: run python benchmarks/gpu/wheels.py"]
    problems = []
    for name, (version, wheel) in wheels.items():
        if name in image and image[name] is not None and image[name] == version:
            problems.append(f"{wheel.name}: the image already holds {name} {version}")
        for requirement in wheel_requirements(wheel):
            if requirement.marker and not requirement.marker.evaluate(TARGET | {"extra": ""}):
                continue
            need = canonicalize_name(requirement.name)
            have = wheels[need][0] if need in wheels else image.get(need, "absent")
            if need in NEVER or have is None:
                continue
            if have == "absent" or not requirement.specifier.contains(have, prereleases=True):
                problems.append(f"{wheel.name} needs {requirement}: {'not carried, not in the image' if have == 'absent' else f'{have} is there'}")
    for requirement in needed(starting_set(image), image, wheels):
        problems.append(f"the project needs {requirement}: neither carried nor in the image")
    wheel_mib = sum(wheel.stat().st_size for _, wheel in wheels.values()) / 2**20
    tree_mib = tracked_bytes() / 2**20
    print(f"{len(wheels)} wheels, {wheel_mib:.1f} MiB; tracked tree {tree_mib:.1f} MiB; "
          f"together {wheel_mib + tree_mib:.1f} of {BUDGET_MIB} MiB (margin {MARGIN_MIB})")
    if wheel_mib + tree_mib > BUDGET_MIB - MARGIN_MIB:
        problems.append(f"wheels and tree take {wheel_mib + tree_mib:.1f} MiB: over {BUDGET_MIB - MARGIN_MIB} MiB")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="check the folder already built; download nothing")
    parser.add_argument("--folder", type=Path, default=FOLDER)
    args = parser.parse_args()
    if not args.check:
        build(args.folder)
    for name, (version, wheel) in carried(args.folder).items():
        print(f"  {wheel.stat().st_size / 2**20:6.2f} MiB  {name} {version}")
    problems = check(args.folder)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
