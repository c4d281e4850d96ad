"""pipeline.training.hardware: the device/precision choice for each kind of machine (GPUs faked through Capabilities)."""

from dataclasses import replace

import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from pipeline.errors import PipelineError
from pipeline.training.hardware import Capabilities, BF16MixedPrecision, choose_hardware, scoring_device

CPU_LAPTOP = Capabilities(cuda_devices=0, cuda_bf16=False, cuda_compute_capability=None, mps=False, cpu_count=2, cpu_bf16=False)
MAC = Capabilities(cuda_devices=0, cuda_bf16=False, cuda_compute_capability=None, mps=True, cpu_count=8, cpu_bf16=False)
T4 = Capabilities(cuda_devices=1, cuda_bf16=False, cuda_compute_capability=(7, 5), mps=False, cpu_count=4, cpu_bf16=False)
H100 = Capabilities(cuda_devices=1, cuda_bf16=True, cuda_compute_capability=(9, 0), mps=False, cpu_count=16, cpu_bf16=False)
A100_X4 = Capabilities(cuda_devices=4, cuda_bf16=True, cuda_compute_capability=(8, 0), mps=False, cpu_count=32, cpu_bf16=False)
XEON_AMX = Capabilities(cuda_devices=0, cuda_bf16=False, cuda_compute_capability=None, mps=False, cpu_count=2, cpu_bf16=True)
H100_ON_XEON_AMX = Capabilities(cuda_devices=1, cuda_bf16=True, cuda_compute_capability=(9, 0), mps=False, cpu_count=16,
                                cpu_bf16=True)


@pytest.mark.parametrize(("capability", "native", "precision"), [((7, 5), False, "16-mixed"), ((8, 0), True, "bf16-mixed")])
def test_bf16_is_chosen_only_where_the_card_has_it(monkeypatch, capability, native, precision):
    """torch's own check counts emulation and says True on a T4 (7.5): only native bf16 may pick bf16-mixed."""
    import torch

    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return including_emulation or native  # emulation: True on every card, as torch >= 2.4 answers

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    caps = Capabilities.detect()
    assert (caps.cuda_bf16, caps.cuda_compute_capability) == (native, capability)
    assert choose_hardware(capabilities=caps).precision == precision
    assert all(flag is False for flag in asked)


def test_this_machine_is_detected():
    caps = Capabilities.detect()
    assert caps.cpu_count >= 1
    hardware = choose_hardware(capabilities=caps)
    expected = "cuda" if caps.cuda_devices else "mps" if caps.mps else "cpu"
    assert hardware.accelerator == expected
    assert choose_hardware("cpu", capabilities=caps).precision == ("bf16-mixed" if caps.cpu_bf16 else "32-true")


@pytest.mark.parametrize(
    "caps, accelerator, devices, precision, strategy, tf32",
    [
        (CPU_LAPTOP, "cpu", 1, "32-true", "auto", False),
        (XEON_AMX, "cpu", 1, "bf16-mixed", "auto", False),  # native bf16 matrix units (AMX or AVX512-BF16)
        (MAC, "mps", 1, "32-true", "auto", False),
        (T4, "cuda", 1, "16-mixed", "auto", False),  # Databricks g4dn: no bf16, fp16 with loss scaling
        (H100, "cuda", 1, "bf16-mixed", "auto", True),
        (A100_X4, "cuda", 4, "bf16-mixed", "ddp", True),
    ],
)
def test_automatic_choice(caps, accelerator, devices, precision, strategy, tf32):
    hardware = choose_hardware(capabilities=caps)
    assert (hardware.accelerator, hardware.devices, hardware.precision, hardware.strategy, hardware.tf32) == (
        accelerator, devices, precision, strategy, tf32)
    assert hardware.pin_memory == (accelerator == "cuda")
    assert hardware.pad_to_multiple_of == (8 if accelerator == "cuda" else None)
    assert hardware.compile == (accelerator == "cuda")
    flags = hardware.trainer_flags()
    if precision == "bf16-mixed":  # Lightning's bf16-mixed on this device, fused optimizers allowed to clip
        [plugin] = flags.pop("plugins")
        assert (type(plugin), plugin.device, plugin.precision) == (BF16MixedPrecision, accelerator, "bf16-mixed")
        flags["precision"] = "bf16-mixed"
    assert flags == {"accelerator": accelerator, "devices": devices, "precision": precision, "strategy": strategy}


def test_cpu_bf16_chooses_only_the_cpus_precision():
    """Native CPU bf16 decides for training on that CPU, never for a GPU or an Apple GPU beside it."""
    assert choose_hardware(capabilities=H100_ON_XEON_AMX).precision == "bf16-mixed"
    assert choose_hardware(capabilities=replace(T4, cpu_bf16=True)).precision == "16-mixed"
    assert choose_hardware(capabilities=replace(MAC, cpu_bf16=True)).precision == "32-true"
    assert choose_hardware("cpu", capabilities=T4).precision == "32-true"
    assert choose_hardware("cpu", capabilities=H100_ON_XEON_AMX).precision == "bf16-mixed"
    assert choose_hardware(precision="32-true", capabilities=XEON_AMX).precision == "32-true"
    cpu_ddp = choose_hardware("cpu", devices="2", capabilities=XEON_AMX)
    assert (cpu_ddp.strategy, cpu_ddp.precision) == ("ddp", "bf16-mixed")


def test_bf16_mixed_lets_fused_adamw_clip_only_where_adamw_has_a_fused_step():
    """CPU and CUDA get the plugin below; an Apple GPU asked for bf16-mixed keeps Lightning's own."""
    assert "plugins" not in (flags := choose_hardware("mps", precision="bf16-mixed", capabilities=MAC).trainer_flags())
    assert flags["precision"] == "bf16-mixed"


def test_bf16_mixed_clips_the_gradients_of_a_fused_adamw_step():
    """Lightning alone refuses a fused optimizer with gradient clipping under bf16-mixed, where nothing is scaled."""
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    model(torch.ones(3, 4)).sum().mul(100).backward()
    with pytest.raises(RuntimeError, match="does not allow for gradient clipping"):
        MixedPrecision("bf16-mixed", "cpu").clip_gradients(optimizer, clip_val=1.0)
    BF16MixedPrecision("cpu").clip_gradients(optimizer, clip_val=1.0)
    assert torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()])) == pytest.approx(1.0)


def test_workers_only_feed_gpus():
    assert choose_hardware(capabilities=CPU_LAPTOP).num_workers == 0
    assert choose_hardware(capabilities=H100).num_workers == 4
    assert choose_hardware(capabilities=A100_X4).num_workers == 4  # 32 cores / 4 ranks - 1, capped at 4
    assert choose_hardware(capabilities=T4).num_workers == 3


def test_overrides():
    assert choose_hardware("cpu", capabilities=H100).precision == "32-true"
    assert choose_hardware("cpu", precision="bf16-mixed", capabilities=H100).precision == "bf16-mixed"
    one_of_four = choose_hardware(devices="1", capabilities=A100_X4)
    assert (one_of_four.devices, one_of_four.strategy) == (1, "auto")
    assert choose_hardware(precision="16-mixed", capabilities=H100).precision == "16-mixed"
    assert choose_hardware(compile="true", capabilities=CPU_LAPTOP).compile is True
    cpu_ddp = choose_hardware("cpu", devices="2", capabilities=CPU_LAPTOP)
    assert (cpu_ddp.devices, cpu_ddp.strategy, cpu_ddp.precision) == (2, "ddp", "32-true")
    assert choose_hardware(compile="false", capabilities=H100).compile is False


@pytest.mark.parametrize(
    "kwargs, caps, message",
    [
        ({"accelerator": "cuda"}, CPU_LAPTOP, "no CUDA GPU is visible"),
        ({"accelerator": "mps"}, CPU_LAPTOP, "no Apple GPU"),
        ({"accelerator": "tpu"}, CPU_LAPTOP, "accelerator='tpu': expected one of"),
        ({"precision": "bf16-mixed"}, T4, "no bfloat16 support"),
        ({"precision": "16-mixed"}, CPU_LAPTOP, "float16 training needs a GPU"),
        ({"precision": "64"}, CPU_LAPTOP, "precision='64': expected one of"),
        ({"devices": "8"}, A100_X4, "this machine has 4 cuda device(s)"),
        ({"devices": "3"}, CPU_LAPTOP, "this machine has 2 cpu device(s)"),
        ({"devices": "two"}, A100_X4, "expected 'auto' or a number"),
        ({"compile": "yes"}, CPU_LAPTOP, "compile='yes': expected one of"),
    ],
)
def test_impossible_requests_are_clear_errors(kwargs, caps, message):
    with pytest.raises(PipelineError) as error:
        choose_hardware(capabilities=caps, **kwargs)
    assert message in str(error.value)


def test_the_step_scores_on_the_device_accelerator_names():
    """Validation and test are scored where `-P accelerator` says: a GPU machine told `cpu` scores on its CPU."""
    assert [scoring_device("auto", caps) for caps in (CPU_LAPTOP, MAC, T4)] == ["cpu", "mps", "cuda"]
    assert scoring_device("cpu", T4) == "cpu" and scoring_device("cpu", MAC) == "cpu"
    with pytest.raises(PipelineError, match=r"^accelerator='cuda': no CUDA GPU is visible"):
        scoring_device("cuda", CPU_LAPTOP)
