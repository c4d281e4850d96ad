"""Which cluster spec a job that `main` submits from a cluster gets: the one of the cloud the workspace runs on.

Node types are per cloud (a T4 is `g4dn.xlarge` on AWS, `Standard_NC4as_T4_v3` on Azure; GCP offers an L4,
`g2-standard-4`), so batch_inference's job and multi-node training's job take `cluster_spec<suffix>.json` and
`training_cluster_spec<suffix>.json` of the workspace's cloud, which databricks-sdk reads from the host
(`Config.is_azure`, `is_gcp`: `*.azuredatabricks.net`, `*.gcp.databricks.com`, else AWS). `main` checks them before its
first step, so a spec for the wrong cloud fails in one line before any GPU time, not after the training.
"""

import json
import re
from pathlib import Path

from pipeline.errors import PipelineError

SUFFIXES = {"aws": "", "azure": ".azure", "gcp": ".gcp"}
# What each cloud's instance type names look like: AWS `family.size`, Azure `Standard_...`, GCP `family-kind-n`.
NODE_TYPES = {"aws": re.compile(r"^[a-z0-9-]+\.[a-z0-9]+$"), "azure": re.compile(r"^Standard_\w+$"),
              "gcp": re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")}
SINGLE_NODE, MULTI_NODE = "cluster_spec", "training_cluster_spec"


def workspace_cloud(config) -> str:
    """`aws`, `azure` or `gcp`: the cloud of the workspace databricks-sdk's `config` points at."""
    return "azure" if config.is_azure else "gcp" if config.is_gcp else "aws"


def spec_path(folder: Path, kind: str, cloud: str) -> Path:
    return folder / f"{kind}{SUFFIXES[cloud]}.json"


def checked_spec(folder: Path, kind: str, cloud: str) -> Path:
    """The spec of `kind` for `cloud`, refused in one line where it is missing or names another cloud's node types."""
    path = spec_path(folder, kind, cloud)
    if not path.is_file():
        raise PipelineError(f"{path.name}: missing; the jobs main submits on this {cloud.upper()} workspace take their cluster from it")
    spec = json.loads(path.read_text())
    for field in ("node_type_id", "driver_node_type_id"):
        node_type = spec.get(field)
        if node_type is not None and not NODE_TYPES[cloud].match(str(node_type)):
            raise PipelineError(f"{path.name}: {field} {node_type!r} is no {cloud.upper()} node type, and this workspace runs on "
                                f"{cloud.upper()}")
    return path


def job_specs(folder: Path, steps: list[str], values: dict[str, str]) -> dict[str, str]:
    """On a cluster, step → the checked spec of the job `main` will submit for it (batch_inference; fine_tuning_model
    with num_nodes > 1); elsewhere, and for steps that run beside `main`, nothing."""
    from pipeline.contract import BATCH, FINE_TUNING
    from pipeline.on_databricks.cluster import on_databricks

    kinds = {BATCH: SINGLE_NODE} if BATCH in steps else {}
    if FINE_TUNING in steps and int(values.get("num_nodes", 1)) > 1:
        kinds[FINE_TUNING] = MULTI_NODE
    if not kinds or not on_databricks():
        return {}
    from databricks.sdk.core import Config  # comes with MLflow

    from pipeline.on_databricks.credentials import databricks_profile

    cloud = workspace_cloud(Config(profile=databricks_profile()))
    return {step: str(checked_spec(folder, kind, cloud)) for step, kind in kinds.items()}
