"""Batch scoring speed: the logged model's `predict` in one process vs the batch_inference step's Spark scoring.

    python benchmarks/batch_inference.py                      # 20,000 IMDB-length reviews, bert-tiny shape
    python benchmarks/batch_inference.py --rows 2000 --rounds 1 --record /tmp/smoke.jsonl   # a quick check

One model (a BERT of --model's shape with a WordPiece tokenizer trained on the committed sentences, logged by
`pipeline/serving/model_logging.py`; weights do not change speed) scores --rows reviews of IMDB's lengths
(`finetune_throughput.imdb_like_reviews`) five ways: (a) `predict` — `mlflow.pyfunc.load_model(...).predict` on all
reviews in one process, torch on its default threads, (b) `predict, 1 thread` — the same with OMP_NUM_THREADS=1, as
a Spark task's Python worker runs it, (c) the step's Spark scoring (`pipeline.serving.batch_scoring`: Parquet in,
`spark_udf`, Parquet folder out) on `local[1]`, (d) on `local[2]`, (e) on `local-cluster[2,1,2048]` (two worker
JVMs). Each way's `cores` is what it computes on (torch's threads; Spark's task slots), so rows/s per core compares
them core for core. Spark's start is
not timed; the model's load by the executors is, as the step's `seconds` metric has it. Each way runs in its own
process (peak memory: the RSS of that process and all its children, JVMs and Python workers included, sampled
every 50 ms), --rounds times, each round starting with the next way; the table gives the median rows/s and the
largest peak. Appends one JSON record, with the machine (`bench_setup.device_label`) and every round, to --record.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_setup import device_label  # noqa: E402

WAYS = ("predict", "predict, 1 thread", "local[1]", "local[2]", "local-cluster[2,1,2048]")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # what `batch_scoring.scored` gives each Spark task (spark.task.cpus = 1)


class TreeMemory:
    """Peak RSS of this process and all its children (Spark's JVMs and Python workers), sampled every 50 ms."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()

    def _sample(self):
        process = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for member in [process, *process.children(recursive=True)]:
                try:
                    total += member.memory_info().rss
                except psutil.Error:  # a worker that just ended
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def prepare(folder: Path, args) -> dict[str, str]:
    """The reviews as a Parquet file and the logged model as a local folder, under `folder`."""
    import mlflow
    from finetune_throughput import build_model, imdb_like_reviews
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipeline.data.reviews import LABELS
    from pipeline.serving.model_logging import log_sentiment_model
    from pipeline.parameters import FineTuning

    reviews = folder / "reviews.parquet"
    pd.DataFrame({"id": range(args.rows), "review": imdb_like_reviews(args.rows, args.seed)}).to_parquet(reviews)
    model_dir, _ = build_model(folder / "network", args.model)
    network = AutoModelForSequenceClassification.from_pretrained(
        model_dir, id2label=dict(enumerate(LABELS)), label2id={label: index for index, label in enumerate(LABELS)})
    tokenization = FineTuning(foundation_model=str(model_dir), max_length=args.max_length).tokenization()
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("batch", artifact_location=str(folder / "artifacts")))
    with mlflow.start_run():
        uri = log_sentiment_model(network, AutoTokenizer.from_pretrained(model_dir), tokenization).model_uri
    model = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(folder / "model"))
    return {"reviews": str(reviews), "model": model, "output": str(folder / "scored")}


def measure(way: str, where: dict, args) -> dict:
    """In this process: rows/s and peak memory of one way."""
    with TreeMemory() as memory:
        if way.startswith("predict"):
            import mlflow
            import torch

            model = mlflow.pyfunc.load_model(where["model"])
            texts = pd.read_parquet(where["reviews"])["review"].tolist()
            cores = torch.get_num_threads()
            started = time.perf_counter()
            model.predict(texts)
        else:
            from pipeline.serving import batch_scoring
            from pipeline.spark import task_slots

            spark = batch_scoring.open_session(way, args.rows_per_batch)
            cores = task_slots(spark)
            frame = batch_scoring.read_input(spark, where["reviews"])
            started = time.perf_counter()
            scored = batch_scoring.scored(spark, frame, where["model"], "review")
            batch_scoring.write_output(scored, where["output"], {"run_id": f"benchmark-{os.getpid()}"})
        seconds = time.perf_counter() - started
    return {"rows_per_s": args.rows / seconds, "seconds": seconds, "peak_memory_mb": memory.peak / 2**20, "cores": cores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--model", choices=("bert-tiny", "minilm", "bert-base"), default="bert-tiny",
                        help="the network's shape (bert-tiny: the pipeline's default foundation model)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--rows-per-batch", type=int, default=1024, help="the step's rows_per_batch")
    parser.add_argument("--rounds", type=int, default=3, help="each way runs this many times; figures are the median")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", type=Path, default=REPO / "benchmarks" / "results" / "batch-inference-cpu.jsonl",
                        help="the JSON Lines file the record is appended to")
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)  # internal: measure one way
    parser.add_argument("--where", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        print(json.dumps(measure(args.way, json.loads(args.where), args)))
        return

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "SPARK_MASTER": ""}
    rounds = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory() as scratch:
        where = prepare(Path(scratch), args)
        for round_ in range(args.rounds):  # each round starts with the next way, so drift in load favours none
            for way in WAYS[round_ % len(WAYS):] + WAYS[:round_ % len(WAYS)]:
                command = [sys.executable, __file__, *sys.argv[1:], "--way", way, "--where", json.dumps(where)]
                answer = subprocess.run(command, env=env | (ONE_THREAD if way == "predict, 1 thread" else {}),
                                        capture_output=True, text=True, check=False, cwd=scratch)
                if answer.returncode != 0:
                    sys.exit(f"{way} failed:\n{answer.stderr[-3000:]}")
                rounds[way].append(json.loads(answer.stdout.strip().splitlines()[-1]))
    results = {way: {"rows_per_s": statistics.median(run["rows_per_s"] for run in runs), "cores": runs[0]["cores"],
                     "peak_memory_mb": max(run["peak_memory_mb"] for run in runs), "rounds": runs}
               for way, runs in rounds.items()}

    device = device_label(False)
    print(f"device: {device}; {args.rows} reviews; model shape {args.model}; max_length {args.max_length}; "
          f"rows_per_batch {args.rows_per_batch}; median of {args.rounds}")
    print("| way | cores | rows/s | vs predict | rows/s per core | vs predict, 1 thread, per core | peak MB (process tree) |")
    print("|---|---|---|---|---|---|---|")
    single = results["predict, 1 thread"]["rows_per_s"] / results["predict, 1 thread"]["cores"]
    for way, row in results.items():
        per_core = row["rows_per_s"] / row["cores"]
        print(f"| {way} | {row['cores']} | {row['rows_per_s']:.1f} | {row['rows_per_s'] / results['predict']['rows_per_s']:.2f} | "
              f"{per_core:.1f} | {per_core / single:.2f} | {row['peak_memory_mb']:.0f} |")
    record = {"benchmark": "batch_inference", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "device": device, "python": platform.python_version(),
              "versions": {name: version(name) for name in ("torch", "pyspark", "mlflow", "transformers")},
              "rows": args.rows, "model": args.model, "max_length": args.max_length, "rows_per_batch": args.rows_per_batch,
              "rounds": args.rounds, "results": results}
    args.record.parent.mkdir(parents=True, exist_ok=True)
    with args.record.open("a") as file:
        file.write(json.dumps(record) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
