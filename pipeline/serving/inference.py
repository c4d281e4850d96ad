"""Class probabilities of raw texts, as the served model computes them, and the blend of two models' probabilities.

Fast the way serving needs: one batched tokenizer call, reviews sorted by length and cut into forward passes
of a padded-token budget (`TOKENS_PER_PASS`), each padded only to its own longest review, under
`torch.inference_mode`, results put back in the caller's order. The fine-tuning step scores its validation and
test splits through the same function, so the blend weight it chooses and the test metrics it logs are the
served model's. On a CPU the network may serve in int8 or bf16 (`served_precision`, `in_precision`): the step
records which ones keep its validation accuracy, and the served model picks among those at load. Like
`truncation.py`, this module travels with the logged model and imports nothing from the project.
"""

import copy
import warnings

import numpy as np
import torch

try:  # beside this file in the logged model (code_paths), or in this repository
    from truncation import encode
except ModuleNotFoundError:
    from pipeline.serving.truncation import encode

# Padded tokens (reviews x longest review) per forward pass, from benchmarks/scoring_pass_budget.py on a 2-core
# Xeon (BENCHMARKS.md, "Serving" and "Serving precision again"): bigger passes stop paying once the matrices fill
# the cores, and smaller ones pad less. fp32 and int8: 512, the fastest or near it on calls of 32 and 256
# sentences and of 32 IMDB-length reviews; bf16: 2048, as AMX fills later (at worst 86 % of the best budget on
# those calls). GPU: the 64 full-length reviews a pass took before, not yet measured.
TOKENS_PER_PASS = {"cpu": 512, "cpu-bf16": 2048, "cuda": 16384}

SERVE_PRECISIONS = ("fp32", "int8", "bf16")  # what a CPU may serve the network in
# `auto` serves the first recorded-safe one. With AMX (and on a GPU) bf16 first: the fastest on IMDB-length reviews
# (BENCHMARKS.md, machine C). With AVX512-BF16 but no AMX int8 first: there bf16 runs on vector units only, and a
# served bf16 model lost to the int8 one and to HF's bf16 pipeline at 32 reviews a call (issue 38, an AMD EPYC).
AUTO_ORDER = ("bf16", "int8", "fp32")
AUTO_ORDER_WITHOUT_AMX = ("int8", "bf16", "fp32")


def native_cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX). torch's mkldnn bf16 check also says True
    on plain AVX-512, where bf16 is emulated and slower than fp32."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def native_bf16(capability: tuple[int, int]) -> bool:
    """bf16 tensor cores on a CUDA GPU: compute capability 8.0 (Ampere) and newer. `torch.cuda.is_bf16_supported()`
    alone also counts emulation (its default since torch 2.4) and says True on a T4 (7.5), which then runs far slower."""
    return capability >= (8, 0) and torch.cuda.is_bf16_supported(including_emulation=False)


def native_cpu_amx() -> bool:
    """Whether this CPU has AMX tiles, whose bf16 matrix units make bf16 the faster CPU precision."""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check and check())


def auto_order(device: str = "cpu", amx: bool | None = None) -> tuple[str, ...]:
    """The order `auto` tries precisions in on `device` (`amx`: default, detected here)."""
    if device != "cpu" or (native_cpu_amx() if amx is None else amx):
        return AUTO_ORDER
    return AUTO_ORDER_WITHOUT_AMX


def cpu_precisions(cpu_bf16: bool) -> tuple[str, ...]:
    """The precisions a CPU runs at speed: fp32 and int8 everywhere, bf16 where it is native (`native_cpu_bf16`)."""
    return SERVE_PRECISIONS if cpu_bf16 else ("fp32", "int8")


def precisions_at_speed(device: str, bf16: bool) -> tuple[str, ...]:
    """What `device` serves at speed, `bf16` saying whether it has native bf16: a CPU, `cpu_precisions`; a CUDA GPU,
    fp32 and bf16 where it has bf16 tensor cores (`native_bf16`; dynamic int8 is a CPU path); another device, fp32."""
    if device == "cpu":
        return cpu_precisions(bf16)
    return ("fp32", "bf16") if device == "cuda" and bf16 else ("fp32",)


def served_precision(asked: str, safe: list[str], bf16: bool, device: str = "cpu", amx: bool | None = None) -> str:
    """What `device` serves: on a CPU `asked` where it names a precision, elsewhere `asked` where the device runs it
    at speed (else fp32); `auto`: the first in `auto_order(device, amx)` of the `safe` ones (recorded at logging) that
    the device runs at speed, fp32 when none is."""
    at_speed = precisions_at_speed(device, bf16)
    if asked != "auto":
        return asked if device == "cpu" or asked in at_speed else "fp32"
    return next(precision for precision in auto_order(device, amx) if precision == "fp32" or (precision in safe and precision in at_speed))


def in_precision(network, precision: str):
    """A copy of the fp32 `network` that computes in `precision` (`network` itself for fp32): int8 (CPU) quantizes
    the weights of its Linear layers (a scale per output channel: finer than the default one per matrix) and each
    call's activations (dynamic quantization); bf16 casts it."""
    if precision == "int8":
        with warnings.catch_warnings():  # deprecated for torchao, which every served model would then need; works in torch 2.13
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(
                network, {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig})
    if precision == "bf16":
        return copy.deepcopy(network).to(torch.bfloat16)
    return network


def class_probabilities(tokenizer, network, texts: list[str], max_length: int, truncation: str,
                        tokens_per_pass: int | None = None) -> np.ndarray:
    """(len(texts), classes) softmax probabilities of `network` in eval mode (no dropout; its mode is restored), on
    the device its parameters are on, in passes of at most `tokens_per_pass` padded tokens (a longer review
    alone); by default the device's `TOKENS_PER_PASS` (a CPU's for the network's precision)."""
    first, training = next(network.parameters()), network.training
    device = first.device
    budget = tokens_per_pass or TOKENS_PER_PASS["cuda" if device.type != "cpu" else "cpu-bf16" if first.dtype == torch.bfloat16 else "cpu"]
    ids = encode(tokenizer, texts, max_length, truncation)
    probabilities = np.empty((len(ids), network.config.num_labels), dtype=np.float64)
    if training:  # switching walks every submodule: a visible share of a one-review call, so only when needed
        network.eval()
    with torch.inference_mode():
        for chosen in forward_passes(ids, budget):
            input_ids, attention_mask = padded([ids[index] for index in chosen], tokenizer.pad_token_id, tokenizer.padding_side)
            logits = network(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
            probabilities[chosen] = logits.float().softmax(dim=-1).cpu().numpy()
    if training:
        network.train()
    return probabilities


def forward_passes(ids: list[list[int]], tokens_per_pass: int):
    """Indices of `ids` pass by pass: shortest first, each pass as many reviews as fit `tokens_per_pass` once
    padded to its longest (always at least one)."""
    chosen = []
    for index in sorted(range(len(ids)), key=lambda index: len(ids[index])):
        if chosen and (len(chosen) + 1) * len(ids[index]) > tokens_per_pass:
            yield chosen
            chosen = []
        chosen.append(index)
    if chosen:
        yield chosen


def padded(ids: list[list[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids padded to the longest of them and their attention mask, as `tokenizer.pad` makes them for
    training, without its per-call Python overhead: padded as lists, one tensor each (a visible share of a
    one-review call)."""
    longest = max(len(row) for row in ids)
    input_ids, attention_mask = [], []
    for tokens in ids:
        padding = longest - len(tokens)
        input_ids.append([pad_id] * padding + tokens if side == "left" else tokens + [pad_id] * padding)
        attention_mask.append([0] * padding + [1] * len(tokens) if side == "left" else [1] * len(tokens) + [0] * padding)
    return torch.tensor(input_ids), torch.tensor(attention_mask)


def labels_of(positive: np.ndarray, labels) -> np.ndarray:
    """The label of each positive-class probability: `labels` is (negative, positive); 0.5 and above is positive."""
    return np.where(positive >= 0.5, labels[1], labels[0])


def blend(transformer_positive: np.ndarray, baseline_positive: np.ndarray, weight: float) -> np.ndarray:
    """The served positive-class probability: `weight` of the transformer's, the rest the baseline's."""
    return weight * transformer_positive + (1.0 - weight) * baseline_positive
