"""What running on a Databricks cluster changes for a process: that it is on one, and where its files go.

From Runtime 14 a Python task starts in its file's folder (Databricks, "What is the default current working
directory?"): the checkout of the job's git source or its workspace files, which are the code and not a place for
data. So a relative folder parameter (`./data`, `./checkpoints`) lies on the driver's local disk there; what must
outlive the job cluster, or be read by its workers, belongs on a Unity Catalog volume (`/Volumes/...`).
"""

import os
import tempfile
from pathlib import Path

SCRATCH_VARIABLE = "PIPELINE_SCRATCH"  # the folder relative paths resolve against on a cluster (default: $TMPDIR)


def on_databricks() -> bool:
    """True inside a Databricks cluster (the runtime sets DATABRICKS_RUNTIME_VERSION)."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def local_path(path: str) -> Path:
    """`path` with `~` expanded, as an absolute path: relative to the working directory on a laptop, to the driver's
    local disk on a cluster."""
    expanded = Path(path).expanduser()
    if not expanded.is_absolute() and on_databricks():
        expanded = Path(os.environ.get(SCRATCH_VARIABLE) or tempfile.gettempdir()) / "sentiment-finetuning" / expanded
    return expanded.resolve()
