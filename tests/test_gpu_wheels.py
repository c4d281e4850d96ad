"""benchmarks/gpu/wheels.py: which packages the GPU machine gets as wheels, decided from requirements and the image."""

import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "gpu"))
import wheels  # noqa: E402


def names(requirements) -> list[str]:
    return [str(requirement) for requirement in requirements]


def test_what_the_image_holds_in_range_travels_not_and_what_it_lacks_does():
    image = {"numpy": Version("2.5.2"), "click": None, "torch": Version("2.11.0")}
    wanted = wheels.needed([Requirement("numpy<3"), Requirement("click>=8"), Requirement("tenacity>=9"),
                            Requirement("torch>=2.7"), Requirement("numpy<2")], image, {})
    # numpy<3 and numpy<2 together exclude the image's 2.5.2; torch never travels; click's version is unknown there
    assert names(wanted) == ["numpy<2,<3", "tenacity>=9"]


def test_requirements_are_combined_before_a_version_is_chosen():
    """opentelemetry-sdk pins opentelemetry-api==1.45.2 while another package asks for any 1.x: the carried 1.45.3
    must be replaced, not kept beside."""
    carried = {"opentelemetry-api": (Version("1.45.3"), Path("opentelemetry_api-1.45.3-py3-none-any.whl"))}
    wanted = wheels.needed([Requirement("opentelemetry-api<3,>=1.9.0"), Requirement("opentelemetry-api==1.45.2")], {}, carried)
    assert [(r.name, str(r.specifier)) for r in wanted] == [("opentelemetry-api", "<3,==1.45.2,>=1.9.0")]


def test_markers_are_those_of_python_312_on_linux():
    wanted = wheels.needed([Requirement('waitress<4; platform_system == "Windows"'), Requirement('gunicorn<27; platform_system != "Windows"'),
                            Requirement('tomli; python_version < "3.11"')], {}, {})
    assert names(wanted) == ["gunicorn<27"]


def test_the_pins_that_are_the_point_travel_even_where_the_image_is_in_range():
    start = {requirement.name: str(requirement.specifier) for requirement in wheels.starting_set(wheels.image_packages())}
    pinned = {line.split("==")[0]: line.split("==")[1] for line in Path(wheels.REPO / "requirements.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert start["transformers"] == f"=={pinned['transformers']}" and start["mlflow"] == f"=={pinned['mlflow']}"
    assert start["numpy"] != f"=={pinned['numpy']}"  # the image's numpy is in the declared range: it stays
