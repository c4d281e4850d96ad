"""Serving speed: the logged model's `predict` vs Hugging Face's `pipeline("text-classification")`, same weights.

    python benchmarks/serving_throughput.py                       # MiniLM-L6 shape, real sentences, this CPU
    python benchmarks/serving_throughput.py --device cuda         # a GPU

The same network and tokenizer (a BERT of --model's shape, saved with `save_pretrained`; weights do not change
speed) served several ways: (a) HF `pipeline("text-classification", truncation=True, max_length=--max-length)`
at its best `batch_size` for each call size (each of PIPELINE_BATCH_SIZES up to the call's size is timed), (b)
this project's MLflow model (`pipeline/serving/model_logging.py`) loaded with `mlflow.pyfunc.load_model`, transformer
alone, (c) the same as a blend with the TF-IDF baseline (fitted on the committed real sentences), to measure what
the blend adds, (d) the model's scoring function without MLflow's pyfunc layer, (e) the HF pipeline logged with
`mlflow.transformers` and loaded the same way as (b), also at its best `batch_size`; on a CPU with native bf16
(AVX512-BF16 or AMX) also (f) the HF pipeline in bf16 (`dtype=torch.bfloat16`, transformers 5's name for
`torch_dtype`). The project's models serve in the precision `--serve-precision` gives at load (default `auto`:
the fastest this CPU runs, as every precision is recorded safe: random weights have no accuracy to keep), and (g)
the transformer alone in fp32, in int8 and (native bf16 only) in bf16 beside it; each side's record names its precision. `--sides` runs
some of them (the table leaves the others' columns empty). Each side runs in its own
process, so its peak memory (process RSS on CPU, peak allocated on CUDA; batch sizes run in rising order, so a figure is the peak so
far) is its own. Texts: the committed real sentences (data/sample/uci-sentences, CC BY 4.0) drawn in random
order, or with --texts imdb-like the IMDB-length reviews of finetune_throughput.py. Reviews per second over
--reviews reviews per batch size (at least one call), after one warm-up call; each side runs --rounds times
(each round in a new order) and the table shows the median (peak memory: the largest). The last line printed is
JSON, with every round's figure; `ratio_to_faster_pipeline` compares the project with the faster of (a) and (f).
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_setup import device_label  # noqa: E402
from pipeline.serving.inference import native_cpu_bf16  # noqa: E402

SENTENCES = REPO / "data" / "sample" / "uci-sentences"
SIDES = ("hf_pipeline", "hf_pipeline_bf16", "project", "project_fp32", "project_int8", "project_bf16", "project_blend",
         "project_scoring", "hf_pipeline_mlflow")
# The transformer alone, served in that precision:
FIXED_PRECISION = {"project_fp32": "fp32", "project_int8": "int8", "project_bf16": "bf16"}
NATIVE_BF16_ONLY = ("hf_pipeline_bf16", "project_bf16")  # run only on a CPU with native bf16
BATCH_SIZES = (1, 32, 256)  # reviews a call
PIPELINE_BATCH_SIZES = (1, 8, 32, 256)  # HF pipeline's `batch_size` tried at each call size


def texts_for(kind: str, count: int, seed: int) -> list[str]:
    if kind == "imdb-like":
        from finetune_throughput import imdb_like_reviews

        return imdb_like_reviews(count, seed)
    pool = pd.concat([pd.read_csv(SENTENCES / f"{split}.csv") for split in ("train", "valid", "test")])["review"].tolist()
    return random.Random(seed).choices(pool, k=count)


def prepare(folder: Path, args) -> dict[str, str]:
    """The model folder and the two logged MLflow models (transformer alone, blend), in a store under `folder`."""
    import mlflow
    import transformers
    from finetune_throughput import build_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipeline.evaluation.baseline import fit_baseline
    from pipeline.data.reviews import LABELS
    from pipeline.serving.inference import SERVE_PRECISIONS
    from pipeline.serving.model_logging import log_sentiment_model
    from pipeline.parameters import FineTuning

    model_dir, _ = build_model(folder / "model", args.model)
    network = AutoModelForSequenceClassification.from_pretrained(
        model_dir, id2label=dict(enumerate(LABELS)), label2id={label: index for index, label in enumerate(LABELS)})
    network.save_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenization = FineTuning(foundation_model=str(model_dir), max_length=args.max_length).tokenization()
    baseline = fit_baseline({split: pd.read_csv(SENTENCES / f"{split}.csv") for split in ("train", "valid", "test")})
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("serving", artifact_location=str(folder / "artifacts")))
    precisions = {"serve_precision": args.serve_precision, "safe_precisions": list(SERVE_PRECISIONS)}
    with mlflow.start_run():
        alone = log_sentiment_model(network, tokenizer, tokenization, precisions).model_uri
    fixed = {}
    for side, precision in FIXED_PRECISION.items():
        with mlflow.start_run():
            fixed[side] = log_sentiment_model(network, tokenizer, tokenization, precisions | {"serve_precision": precision}).model_uri
    with mlflow.start_run():
        blend = log_sentiment_model(network, tokenizer, tokenization, precisions, baseline=baseline.pipeline,
                                    blend_weight=0.5).model_uri
    classify = transformers.pipeline("text-classification", model=str(model_dir))
    signature = mlflow.models.infer_signature(["a review"], pd.DataFrame({"label": ["positive"], "score": [0.5]}),
                                              params={"batch_size": 1})
    with mlflow.start_run():
        hf = mlflow.transformers.log_model(classify, name="hf", signature=signature, pip_requirements=["transformers"],
                                           model_config={"truncation": True, "max_length": args.max_length}).model_uri
    return {"model_dir": str(model_dir), "project": alone, **fixed, "project_blend": blend, "hf_pipeline_mlflow": hf,
            "tracking_uri": mlflow.get_tracking_uri()}


def measure(side: str, where: dict, args) -> dict:
    """In this process: reviews/s and peak memory of one side at each batch size. HF's pipeline takes its own
    `batch_size` (reviews a forward pass) apart from the call's size: it runs with each of PIPELINE_BATCH_SIZES up
    to the call's size and reports its best, so it is compared at its best setting."""
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from finetune_throughput import PeakMemory

    cuda = args.device == "cuda"
    precision = "fp32"
    if side in ("hf_pipeline", "hf_pipeline_bf16"):
        from transformers import pipeline

        precision = "bf16" if side == "hf_pipeline_bf16" else "fp32"
        classify = pipeline("text-classification", model=where["model_dir"], device=0 if cuda else -1,
                            dtype=torch.bfloat16 if precision == "bf16" else "auto")
        predict = lambda texts, size: classify(texts, batch_size=size, truncation=True, max_length=args.max_length)  # noqa: E731
    elif side == "project_scoring":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from pipeline.serving.inference import SERVE_PRECISIONS, class_probabilities, in_precision, native_cpu_bf16
        from pipeline.serving.inference import served_precision

        tokenizer = AutoTokenizer.from_pretrained(where["model_dir"])
        network = AutoModelForSequenceClassification.from_pretrained(where["model_dir"]).eval().to("cuda" if cuda else "cpu")
        if not cuda:  # as the logged model serves on this CPU
            precision = served_precision(args.serve_precision, list(SERVE_PRECISIONS), native_cpu_bf16())
            network = in_precision(network, precision)
        predict = lambda texts, _: class_probabilities(tokenizer, network, texts, args.max_length, "head_tail")  # noqa: E731
    else:
        import mlflow

        mlflow.set_tracking_uri(where["tracking_uri"])
        model = mlflow.pyfunc.load_model(where[side])
        if side != "hf_pipeline_mlflow":
            precision = model.unwrap_python_model().precision
        if side == "hf_pipeline_mlflow":
            predict = lambda texts, size: model.predict(texts, params={"batch_size": size})  # noqa: E731
        else:
            predict = lambda texts, _: model.predict(texts)  # noqa: E731
    tunable = side in ("hf_pipeline", "hf_pipeline_bf16", "hf_pipeline_mlflow")

    def reviews_per_s(texts: list[str], batch: int, calls: int, size: int) -> float:
        predict(texts[:batch], size)  # warm-up
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        for call in range(1, calls + 1):
            predict(texts[call * batch:(call + 1) * batch], size)
        if cuda:
            torch.cuda.synchronize()
        return calls * batch / (time.perf_counter() - started)

    results = {}
    with PeakMemory(cuda) as memory:
        for batch in BATCH_SIZES:
            calls = max(1, args.reviews // batch)
            texts = texts_for(args.texts, batch * (calls + 1), args.seed + batch)
            sizes = [size for size in PIPELINE_BATCH_SIZES if size <= batch] if tunable else [batch]
            speeds = {size: reviews_per_s(texts, batch, calls, size) for size in sizes}
            best = max(speeds, key=speeds.get)
            results[batch] = {"reviews_per_s": speeds[best], "precision": precision,
                              "peak_memory_mb": (torch.cuda.max_memory_allocated() if cuda else memory.peak) / 2**20}
            if tunable:
                results[batch] |= {"pipeline_batch_size": best, "by_pipeline_batch_size": speeds}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("bert-tiny", "minilm", "bert-base"), default="minilm")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--texts", choices=("sentences", "imdb-like"), default="sentences")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--reviews", type=int, default=512, help="reviews timed per batch size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="each side runs this many times; figures are the median")
    parser.add_argument("--serve-precision", choices=("auto", "fp32", "int8", "bf16"), default="auto",
                        help="what the project's logged models serve in on a CPU (FineTuning.serve_precision)")
    parser.add_argument("--sides", default=",".join(SIDES), help="comma list of the sides to run (default: all)")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # internal: measure one side
    parser.add_argument("--where", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(measure(args.side, json.loads(args.where), args)))
        return

    env = {**os.environ, "HF_HUB_OFFLINE": "1"} | ({"CUDA_VISIBLE_DEVICES": ""} if args.device == "cpu" else {})
    cpu_bf16 = args.device == "cpu" and native_cpu_bf16()
    asked = args.sides.split(",")
    sides = tuple(side for side in SIDES if side in asked and (side not in NATIVE_BF16_ONLY or cpu_bf16))  # bf16 where native
    with tempfile.TemporaryDirectory() as scratch:
        where = prepare(Path(scratch), args)
        rounds = {side: [] for side in sides}
        for round_ in range(args.rounds):  # each round starts with the next side, so drift in load favours none
            for side in sides[round_ % len(sides):] + sides[:round_ % len(sides)]:
                command = [sys.executable, __file__, *sys.argv[1:], "--side", side, "--where", json.dumps(where)]
                answer = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
                if answer.returncode != 0:
                    sys.exit(f"{side} failed:\n{answer.stderr[-3000:]}")
                rounds[side].append({int(batch): row for batch, row in json.loads(answer.stdout.strip().splitlines()[-1]).items()})
    results = {side: {batch: {"reviews_per_s": statistics.median(run[batch]["reviews_per_s"] for run in runs),
                              "peak_memory_mb": max(run[batch]["peak_memory_mb"] for run in runs),
                              "rounds": [run[batch] for run in runs]}
                      for batch in BATCH_SIZES}
               for side, runs in rounds.items()}
    precisions = {side: runs[0][BATCH_SIZES[0]]["precision"] for side, runs in rounds.items()}

    device = device_label(args.device == "cuda")
    print(f"device: {device}; model shape: {args.model}; texts: {args.texts}; max_length {args.max_length}; "
          f"precision of each side: {precisions}")
    columns = {"hf_pipeline": "HF pipeline", "hf_pipeline_bf16": "HF pipeline bf16", "project": f"project ({precisions.get('project')})",
               "project_fp32": "project fp32", "project_int8": "project int8", "project_bf16": "project bf16", "project_blend": "project blend",
               "project_scoring": "scoring without pyfunc", "hf_pipeline_mlflow": "HF pipeline as MLflow model"}
    print("| batch | " + " | ".join(f"{columns[side]} reviews/s" for side in SIDES) + " | ratio | ratio to the faster pipeline | "
          "ratio as MLflow models | blend cost | " + " | ".join(f"{columns[side]} peak MB" for side in SIDES) + " |")
    print("|---" * (2 * len(SIDES) + 5) + "|")
    ratios, ratios_peer, ratios_mlflow = {}, {}, {}
    for batch in BATCH_SIZES:
        speed = {side: results[side][batch]["reviews_per_s"] for side in sides}
        peer = max(speed.get("hf_pipeline", 0), speed.get("hf_pipeline_bf16", 0))
        if "project" in speed and "hf_pipeline" in speed:
            ratios[batch] = speed["project"] / speed["hf_pipeline"]
            ratios_peer[batch] = speed["project"] / peer
        if "project" in speed and "hf_pipeline_mlflow" in speed:
            ratios_mlflow[batch] = speed["project"] / speed["hf_pipeline_mlflow"]
        cells = []
        for side in SIDES:
            cell = f"{speed[side]:.1f}" if side in speed else ""
            if side == "hf_pipeline" and side in speed:
                cell += f" (batch_size {'/'.join(map(str, sorted({r['pipeline_batch_size'] for r in results[side][batch]['rounds']})))})"
            cells.append(cell)
        blend_cost = f"{speed['project_blend'] / speed['project'] - 1:+.0%}" if {"project", "project_blend"} <= set(speed) else ""
        peaks = [f"{results[side][batch]['peak_memory_mb']:.0f}" if side in speed else "" for side in SIDES]
        print(f"| {batch} | " + " | ".join(cells) + f" | **{ratios.get(batch, float('nan')):.2f}** | "
              f"**{ratios_peer.get(batch, float('nan')):.2f}** | **{ratios_mlflow.get(batch, float('nan')):.2f}** | {blend_cost} | "
              + " | ".join(peaks) + " |")
    print(json.dumps({"device": device, "model": args.model, "texts": args.texts, "max_length": args.max_length,
                      "reviews_per_batch_size": args.reviews, "rounds": args.rounds, "serve_precision": args.serve_precision,
                      "precision": precisions, "results": results,
                      "ratio": {batch: round(value, 3) for batch, value in ratios.items()},
                      "ratio_to_faster_pipeline": {batch: round(value, 3) for batch, value in ratios_peer.items()},
                      "ratio_as_mlflow_models": {batch: round(value, 3) for batch, value in ratios_mlflow.items()}}))


if __name__ == "__main__":
    main()
