"""Reviews per second of the served model's scoring (`pipeline/serving/inference.py`) by padded tokens a forward pass.

    python benchmarks/scoring_pass_budget.py                  # this CPU
    python benchmarks/scoring_pass_budget.py --device cuda    # a GPU
    python benchmarks/scoring_pass_budget.py --precision bf16 # this CPU, the network in bf16 (or int8)

Picks `scoring.TOKENS_PER_PASS` for a device: calls of 32 and 256 real sentences (data/sample/uci-sentences, CC BY
4.0) and of 32 IMDB-length reviews (finetune_throughput.py), MiniLM-L6 shape, each budget timed on the same
calls (median call), the network in --precision (`inference.in_precision`; CPU only). A budget past every call's
padded size means one forward pass per call. The last line printed is JSON.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
BUDGETS = (128, 256, 512, 1024, 2048, 4096, 16384, 1_000_000)
WORKLOADS = (("sentences", 32, 12), ("sentences", 256, 3), ("imdb-like", 32, 3))  # texts, reviews a call, calls


def main() -> None:
    from bench_setup import device_label
    from finetune_throughput import build_model
    from serving_throughput import texts_for
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipeline.serving.inference import SERVE_PRECISIONS, class_probabilities, in_precision

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("bert-tiny", "minilm", "bert-base"), default="minilm")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=SERVE_PRECISIONS, default="fp32", help="the network's, on a CPU")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        model_dir, _ = build_model(Path(scratch) / "model", args.model)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        network = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2).eval().to(args.device)
        network = in_precision(network, args.precision) if args.device == "cpu" else network
    results = {}
    for kind, size, count in WORKLOADS:
        texts = texts_for(kind, size * count, 5)
        calls = [texts[start:start + size] for start in range(0, len(texts), size)]
        seconds = {budget: [] for budget in BUDGETS}
        for budget in BUDGETS:  # warm-up
            class_probabilities(tokenizer, network, calls[0], 256, "head_tail", tokens_per_pass=budget)
        for call in calls:
            for budget in BUDGETS:
                started = time.perf_counter()
                class_probabilities(tokenizer, network, call, 256, "head_tail", tokens_per_pass=budget)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                seconds[budget].append(time.perf_counter() - started)
        results[f"{kind} x{size}"] = {budget: round(size / statistics.median(times), 1) for budget, times in seconds.items()}
        print(f"{kind}, {size} a call: " + ", ".join(f"{budget}: {speed}" for budget, speed in results[f'{kind} x{size}'].items()),
              flush=True)
    print(json.dumps({"device": device_label(args.device == "cuda"), "model": args.model, "precision": args.precision if args.device == "cpu" else "fp32",
                      "reviews_per_s_by_tokens_per_pass": results}))


if __name__ == "__main__":
    main()
