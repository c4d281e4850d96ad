"""pipeline/on_databricks/credentials.py: the refreshing credentials `main` serves its steps on a Databricks cluster, and nowhere else.

Here the driver's own credentials come from a stand-in whose token changes between calls; `tests/on_databricks/test_databricks.py`
has them come from the emulated runtime context, with tokens that expire while the steps run."""

import itertools
import subprocess
import sys

import pytest
import requests

from pipeline.on_databricks import credentials
from pipeline.on_databricks.credentials import credentials_for_children
from pipeline.errors import PipelineError

CHILD = """
from databricks.sdk.core import Config
config = Config()
print(config.auth_type, config.authenticate()["Authorization"])
"""


@pytest.fixture
def databricks_tracking(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "databricks")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.databrickscfg of the machine's
    for variable in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_RUNTIME_VERSION",
                     "DATABRICKS_METADATA_SERVICE_URL"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


@pytest.fixture
def rotating_driver(databricks_tracking, http_root):
    """A cluster's driver whose credentials change on every call, as a refreshing runtime token may."""
    _, host = http_root  # answers 404 to the SDK's host-metadata request, as a workspace may
    databricks_tracking.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    databricks_tracking.setenv("DATABRICKS_HOST", host)
    databricks_tracking.setenv("DATABRICKS_TOKEN", "driver-token")
    tokens = (f"runtime-{number}" for number in itertools.count())
    databricks_tracking.setattr(credentials, "bearer_token", lambda config: next(tokens))
    return host


def test_off_a_cluster_nothing_is_served(databricks_tracking):
    databricks_tracking.setenv("DATABRICKS_HOST", "http://127.0.0.1:9")  # never asked
    databricks_tracking.setenv("DATABRICKS_TOKEN", "dapi-laptop")
    with credentials_for_children() as variables:
        assert variables == {}  # the steps resolve them from the same environment


def test_children_get_a_fresh_token_on_every_refresh_and_never_a_copy(rotating_driver):
    with credentials_for_children() as variables:
        assert set(variables) == {"DATABRICKS_HOST", "DATABRICKS_METADATA_SERVICE_URL"}  # no token in any environment
        assert variables["DATABRICKS_HOST"] == rotating_driver
        env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **variables}
        answers = [subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True).stdout
                   for _ in range(2)]
        url = variables["DATABRICKS_METADATA_SERVICE_URL"]
        headers = {"X-Databricks-Metadata-Version": "1", "X-Databricks-Host": rotating_driver}
        lease = requests.get(url, headers=headers, timeout=5).json()
        assert requests.get(url, headers=headers | {"X-Databricks-Host": "http://elsewhere"}, timeout=5).status_code == 404
        assert requests.get(url.rsplit("/", 1)[0] + "/guess", headers=headers, timeout=5).status_code == 404
    # Each child's SDK authenticated through the service (metadata-service auth) with the driver's token of the moment.
    first, second = (answer.split() for answer in answers)
    assert first[0] == second[0] == "metadata-service"
    assert first[1:] == ["Bearer", first[2]] and first[2].startswith("runtime-") and first[2] != second[2]
    assert lease["token_type"] == "Bearer" and lease["access_token"].startswith("runtime-") and lease["expires_on"] > 0
    with pytest.raises(requests.ConnectionError):  # served only while `main` runs its steps
        requests.get(url, headers=headers, timeout=5)


TWICE = """
from databricks.sdk.core import Config
config = Config()
print(config.authenticate()["Authorization"], config.authenticate()["Authorization"], sep="|")
"""


def test_a_child_reuses_its_leased_token_past_the_sdks_expiry_margin(rotating_driver):
    """The driver's token changes on every call here: a child that asked once per call would show two tokens.
    A lease within the SDK's 40 s margin (the old 15 s) counted as expired on arrival."""
    with credentials_for_children() as variables:
        env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **variables}
        first, second = subprocess.run([sys.executable, "-c", TWICE], env=env, capture_output=True, text=True, check=True).stdout.split("|")
    assert first.startswith("Bearer runtime-") and first == second.strip()
    assert credentials.LEASE_SECONDS > credentials.SDK_EXPIRY_MARGIN_SECONDS


@pytest.mark.parametrize(("runtime", "sdk"), [("https://dbc-1.cloud.databricks.com:443/", "https://dbc-1.cloud.databricks.com"),
                                             ("dbc-1.cloud.databricks.com", "HTTPS://DBC-1.cloud.databricks.com/"),
                                             ("http://127.0.0.1:8080/", "http://127.0.0.1:8080")])
def test_hosts_compare_whatever_their_spelling(runtime, sdk):
    assert credentials.normalized_host(runtime) == credentials.normalized_host(sdk)
    assert credentials.normalized_host(runtime) != credentials.normalized_host("https://dbc-2.cloud.databricks.com")


def test_the_host_header_of_a_child_matches_a_runtime_host_written_otherwise(rotating_driver, databricks_tracking):
    databricks_tracking.setenv("DATABRICKS_HOST", rotating_driver.upper() + "/")  # the runtime's spelling
    with credentials_for_children() as variables:
        headers = {"X-Databricks-Metadata-Version": "1", "X-Databricks-Host": rotating_driver}
        assert requests.get(variables["DATABRICKS_METADATA_SERVICE_URL"], headers=headers, timeout=5).status_code == 200
        assert variables["DATABRICKS_HOST"] == rotating_driver


def test_a_cluster_without_credentials_is_one_line(databricks_tracking):
    databricks_tracking.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    with pytest.raises(PipelineError, match=r"^cannot resolve this cluster's Databricks credentials for the steps \(default auth"):
        with credentials_for_children():
            pass


def test_a_local_store_needs_no_credentials(databricks_tracking, tmp_path):
    databricks_tracking.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    databricks_tracking.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with credentials_for_children() as variables:
        assert variables == {}
