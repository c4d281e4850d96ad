"""Reviews per second of the MiniLM network alone on this CPU, in each precision and kernel path it offers.

    pip install torchao==0.18.0 && python benchmarks/cpu_kernel_paths.py

torchao is installed for this benchmark alone, not in benchmarks/requirements.txt: transformers imports it
whenever it is installed, in every other benchmark too.

Is there a path faster than what the served model runs (`inference.in_precision`: fp32, int8 dynamic per channel,
bf16)? The candidates are compiled by Inductor with weight freezing, PyTorch's recommended CPU inference setting:
bf16 compiled; int8 static (torchao's PT2E flow with `X86InductorQuantizer`: int8 activations and weights, AMX-INT8
or VNNI kernels); int8 dynamic activations with int8 weights (torchao `Int8DynamicActivationInt8WeightConfig`).
all-MiniLM-L6-v2's weights with a fresh head, inputs of random token ids: speed only, labels are not judged (a path
that is not faster needs no quality check). Shapes: 8 × 256 tokens (one 2,048-token bf16 pass of IMDB-length
reviews), 64 × 256 (a big batch of them), 64 × 32 (short sentences). Each shape's first call (compilation) is
timed apart; then `--rounds` rounds in which every path makes `--calls` calls of each shape in turn; the median
round counts. The last line printed is JSON.
"""

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch._inductor.config as inductor_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
SHAPES = ((8, 256), (64, 256), (64, 32))


def token_batch(shape: tuple[int, int], seed: int = 1) -> dict[str, torch.Tensor]:
    ids = torch.randint(1000, 20000, shape, generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def int8_static(network):
    """torchao's PT2E flow: export with dynamic batch and length, observe two batches, convert."""
    from torch.export import Dim, export
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
    dims = {0: Dim("batch", min=1, max=1024), 1: Dim("length", min=2, max=512)}
    exported = export(network, (), token_batch((8, 256)), dynamic_shapes={"input_ids": dims, "attention_mask": dims})
    prepared = prepare_pt2e(exported.module(), quantizer)
    for shape in ((8, 256), (16, 64)):
        prepared(**token_batch(shape, seed=2))
    return convert_pt2e(prepared)


def int8_dynamic_torchao(network):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(network, Int8DynamicActivationInt8WeightConfig())
    return network


def first_calls(network) -> dict[str, float]:
    """Seconds of each shape's first call: compilation, for the compiled paths."""
    seconds = {}
    for shape in SHAPES:
        start = time.perf_counter()
        network(**token_batch(shape))
        seconds[f"{shape[0]}x{shape[1]}"] = round(time.perf_counter() - start, 2)
    return seconds


def reviews_per_s(network, shape: tuple[int, int], calls: int) -> float:
    batch = token_batch(shape)
    start = time.perf_counter()
    for _ in range(calls):
        network(**batch)
    return calls * shape[0] / (time.perf_counter() - start)


def main() -> None:
    from bench_setup import device_label, minilm_folder
    from transformers import AutoModelForSequenceClassification

    from pipeline.serving.inference import in_precision

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    inductor_config.freezing = True
    torch.manual_seed(0)
    fp32 = AutoModelForSequenceClassification.from_pretrained(minilm_folder(), num_labels=2).eval()
    paths = {
        "fp32 (served)": lambda: in_precision(copy.deepcopy(fp32), "fp32"),
        "int8 dynamic per channel (served)": lambda: in_precision(copy.deepcopy(fp32), "int8"),
        "bf16 (served)": lambda: in_precision(copy.deepcopy(fp32), "bf16"),
        "bf16 compiled": lambda: torch.compile(in_precision(fp32, "bf16"), dynamic=True),
        "int8 static PT2E compiled": lambda: torch.compile(int8_static(copy.deepcopy(fp32)), dynamic=True),
        "int8 dynamic torchao compiled": lambda: torch.compile(int8_dynamic_torchao(copy.deepcopy(fp32)), dynamic=True),
    }
    networks, first = {}, {}
    for name, build in paths.items():
        with torch.no_grad():  # built outside inference mode: export (PT2E) refuses its tensors
            networks[name] = build()
        with torch.inference_mode():
            first[name] = first_calls(networks[name])
    runs = {name: {shape: [] for shape in SHAPES} for name in paths}
    with torch.inference_mode():
        for _ in range(args.rounds):  # the paths alternate, so a change of load falls on all of them
            for name, network in networks.items():
                for shape in SHAPES:
                    runs[name][shape].append(reviews_per_s(network, shape, args.calls))
    results = {name: {f"{shape[0]}x{shape[1]}": {"reviews_per_s": round(statistics.median(runs[name][shape]), 1),
                                                 "runs": [round(run, 1) for run in runs[name][shape]],
                                                 "first_call_s": first[name][f"{shape[0]}x{shape[1]}"]} for shape in SHAPES}
               for name in paths}
    for name, figures in results.items():
        print(name, figures, flush=True)
    bf16 = results["bf16 (served)"]
    for name, figures in results.items():
        for shape, figure in figures.items():
            figure["vs_served_bf16"] = round(figure["reviews_per_s"] / bf16[shape]["reviews_per_s"], 3)
    import torchao

    print(json.dumps({"device": device_label(False), "model": "all-MiniLM-L6-v2", "torch": torch.__version__,
                      "torchao": torchao.__version__, "calls": args.calls, "rounds": args.rounds, "paths": results}))


if __name__ == "__main__":
    main()
