"""The one place that decides device, precision and data-loading settings for training, and the device that scores.

The same code runs on a laptop CPU (bf16 mixed precision where it has bf16 matrix instructions: AVX512-BF16 or
AMX), an Apple GPU, one NVIDIA GPU (bf16 where the card has it, fp16 with loss scaling on older cards such as the
Databricks g4dn T4), all GPUs of a node (DDP) and one device per process on several nodes (DDP, processes
started by Spark).
"""

import os
from dataclasses import dataclass

import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import GradClipAlgorithmType

from pipeline.errors import PipelineError
from pipeline.parameters import ACCELERATORS, PRECISIONS, SWITCHES, FineTuning
from pipeline.serving.inference import native_bf16, native_cpu_bf16


@dataclass(frozen=True)
class Capabilities:
    """What the machine offers; tests build these by hand to stand in for GPUs they do not have."""

    cuda_devices: int
    cuda_bf16: bool
    cuda_compute_capability: tuple[int, int] | None
    mps: bool
    cpu_count: int
    cpu_bf16: bool  # native bf16 on the CPU (the served model's check, which serving shares)

    @classmethod
    def detect(cls) -> "Capabilities":
        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        capability = torch.cuda.get_device_capability(0) if cuda_devices else None
        return cls(
            cuda_devices=cuda_devices,
            cuda_bf16=capability is not None and native_bf16(capability),
            cuda_compute_capability=capability,
            mps=torch.backends.mps.is_available(),
            cpu_count=os.cpu_count() or 1,
            cpu_bf16=native_cpu_bf16(),
        )


class BF16MixedPrecision(MixedPrecision):
    """Lightning's bf16-mixed, letting a fused optimizer's gradients be clipped. Lightning refuses that under every
    mixed precision because a fused step unscales fp16 gradients itself; bf16 scales none, so clipping before the
    step is exact. With the fused step the project trains bert-tiny level with HF's tuned Trainer in bf16 on a
    2-core Xeon, where unfused it was 7 % behind (BENCHMARKS.md, machine C); the tuned Trainer fuses on GPUs too."""

    def __init__(self, device: str):
        super().__init__("bf16-mixed", device)

    def clip_gradients(self, optimizer, clip_val=0.0, gradient_clip_algorithm=GradClipAlgorithmType.NORM) -> None:
        Precision.clip_gradients(self, optimizer, clip_val, gradient_clip_algorithm)


@dataclass(frozen=True)
class Hardware:
    """Lightning Trainer flags and DataLoader settings for this machine."""

    accelerator: str
    devices: int
    precision: str
    strategy: str
    num_workers: int
    pin_memory: bool
    pad_to_multiple_of: int | None
    tf32: bool
    compile: bool

    def trainer_flags(self) -> dict:
        fusable = self.precision == "bf16-mixed" and self.accelerator in ("cpu", "cuda")  # where AdamW has a fused step
        precision = {"plugins": [BF16MixedPrecision(self.accelerator)]} if fusable else {"precision": self.precision}
        return {"accelerator": self.accelerator, "devices": self.devices, "strategy": self.strategy, **precision}


def choose_hardware(
    accelerator: str = "auto",
    devices: str | int = "auto",
    precision: str = "auto",
    compile: str = "auto",
    capabilities: Capabilities | None = None,
    distributed: bool = False,
) -> Hardware:
    """Pick the fastest safe settings, or check and apply the ones the user asked for. `distributed`: one of
    several processes of one training (DDP even on one device)."""
    caps = capabilities or Capabilities.detect()
    if accelerator not in ACCELERATORS:
        raise PipelineError(f"accelerator={accelerator!r}: expected one of {list(ACCELERATORS)}")
    if precision not in PRECISIONS:
        raise PipelineError(f"precision={precision!r}: expected one of {list(PRECISIONS)}")
    if compile not in SWITCHES:
        raise PipelineError(f"compile={compile!r}: expected one of {list(SWITCHES)}")

    if accelerator == "auto":
        accelerator = "cuda" if caps.cuda_devices else "mps" if caps.mps else "cpu"
    if accelerator == "cuda" and not caps.cuda_devices:
        raise PipelineError("accelerator='cuda': no CUDA GPU is visible to this process (use accelerator=auto or cpu)")
    if accelerator == "mps" and not caps.mps:
        raise PipelineError("accelerator='mps': no Apple GPU is available (use accelerator=auto or cpu)")

    # Several CPU processes (DDP over gloo) are allowed but never chosen: they exist to test the DDP path.
    available = {"cuda": caps.cuda_devices, "cpu": caps.cpu_count}.get(accelerator, 1)
    if str(devices) == "auto":
        devices = available if accelerator == "cuda" else 1
    else:
        try:
            devices = int(devices)
        except ValueError:
            raise PipelineError(f"devices={devices!r}: expected 'auto' or a number of devices") from None
        if not 1 <= devices <= available:
            raise PipelineError(f"devices={devices}: this machine has {available} {accelerator} device(s)")

    if precision == "auto":
        if accelerator == "cuda":
            precision = "bf16-mixed" if caps.cuda_bf16 else "16-mixed"
        else:
            precision = "bf16-mixed" if accelerator == "cpu" and caps.cpu_bf16 else "32-true"
    if precision == "bf16-mixed" and accelerator == "cuda" and not caps.cuda_bf16:
        raise PipelineError("precision='bf16-mixed': this GPU has no bfloat16 support (use precision=16-mixed or auto)")
    if precision == "16-mixed" and accelerator == "cpu":
        raise PipelineError("precision='16-mixed': float16 training needs a GPU (use bf16-mixed or 32-true on CPU)")

    on_cuda = accelerator == "cuda"
    return Hardware(
        accelerator=accelerator,
        devices=devices,
        precision=precision,
        strategy="ddp" if devices > 1 or distributed else "auto",
        # Workers only pay off when a GPU does the compute; on a CPU they steal its cores.
        num_workers=min(4, max(0, caps.cpu_count // devices - 1)) if on_cuda else 0,
        pin_memory=on_cuda,
        pad_to_multiple_of=8 if on_cuda else None,  # tensor-core friendly shapes; on a CPU it is only padding
        tf32=on_cuda and (caps.cuda_compute_capability or (0, 0)) >= (8, 0),
        # torch.compile pays back its compile time on GPUs; on a small CPU it does not (BENCHMARKS.md).
        compile=compile == "true" or (compile == "auto" and on_cuda),
    )


def training_process_hardware(config: FineTuning, world_size: int, capabilities: Capabilities | None = None) -> Hardware:
    """What one training process uses. `world_size` 1: this machine's `devices` (Lightning's DDP launcher starts a
    process for each further one); otherwise one of `world_size` processes Spark started: one device, DDP."""
    devices = config.devices if world_size == 1 else 1
    return choose_hardware(config.accelerator, devices, config.precision, config.compile, capabilities, distributed=world_size > 1)


def spark_processes(config: FineTuning) -> int:
    """How many training processes Spark starts for `num_nodes > 1`: `devices` on each node ('auto': one)."""
    return config.num_nodes * (1 if config.devices == "auto" else int(config.devices))


def spark_uses_gpus(accelerator: str, capabilities: Capabilities | None = None) -> bool:
    """Whether Spark's training processes get GPUs: asked for, or (auto) the driver's node type has them."""
    return accelerator == "cuda" or (accelerator == "auto" and (capabilities or Capabilities.detect()).cuda_devices > 0)


def scoring_device(accelerator: str, capabilities: Capabilities | None = None) -> str:
    """The torch device on which the step scores validation and test: the one `accelerator` names ('auto': a CUDA
    GPU, else an Apple GPU, else the CPU), refused in one line where this machine lacks it."""
    return choose_hardware(accelerator, devices=1, capabilities=capabilities).accelerator
