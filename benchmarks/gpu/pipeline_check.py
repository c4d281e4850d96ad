"""The whole pipeline through `mlflow run . --env-manager local` in each training precision, and the registered model
scored on this machine's GPU and on its CPU: what `check.sh` runs on a lent GPU machine (and, `--accelerator cpu`,
in its dry run here).

    python benchmarks/gpu/pipeline_check.py --out /tmp/check                       # auto, 16-mixed, 32-true on the GPU
    python benchmarks/gpu/pipeline_check.py --out /tmp/check --accelerator cpu --precisions 32-true

Offline: the data is the committed sample (data/sample/uci-sentences, zipped here), the backbone a randomly
initialised BERT of --shape with a WordPiece tokenizer trained on the sample (benchmarks/finetune_throughput.py),
the tracking store a SQLite file in a scratch folder. Each precision is its own `main` run (download reused after
the first), registered under its own name with a gate every model passes (the point is the GPU path, not quality).
Then the champion is scored on the test split in fresh processes: in fp32 on the GPU and on the CPU, whose labels must
be equal wherever the CPU's probability is more than TOLERANCE from 0.5 and whose probabilities must be within
TOLERANCE; and on the GPU as it serves by default (`serve_precision=auto`: bf16 on cards with bf16 tensor cores
where the step recorded it safe), whose labels must equal the CPU's fp32 ones wherever those are more than
SERVED_TOLERANCE from 0.5.
One JSON line per precision goes to <out>/pipeline.jsonl; the exit code says whether every precision passed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample" / "uci-sentences"
TOLERANCE = 0.01  # fp32 on a GPU and a CPU sum in other orders; no TF32 at serving time
SERVED_TOLERANCE = 0.05  # bf16 keeps 8 bits of mantissa: its probabilities move by about 1e-2 on these models


def sample_zip(folder: Path) -> Path:
    """The sample's three CSVs in a zip, as the README's offline block makes it."""
    archive = folder / "sentences.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for split in ("train", "valid", "test"):
            bundle.write(SAMPLE / f"{split}.csv", f"{split}.csv")
    return archive


def backbone(folder: Path, shape: str) -> Path:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from finetune_throughput import build_model

    model_dir, _ = build_model(folder / f"backbone-{shape}", shape)
    return model_dir


def run_pipeline(scratch: Path, env: dict, log, precision: str, args, zip_path: Path, model_dir: Path) -> dict:
    """One `mlflow run .` (main: download, fine-tune, register) and what its runs recorded."""
    import mlflow

    name = f"gpu_check_{precision.replace('-', '_')}"
    options = {"download_url": zip_path, "local_folder": scratch / "data", "foundation_model": model_dir,
               "precision": precision, "accelerator": args.accelerator, "epochs": args.epochs, "max_length": args.max_length,
               "batch_size": args.batch_size, "checkpoint_dir": scratch / "checkpoints", "cache_dir": scratch / "cache",
               "registered_model_name": name, "min_score": 0, "beat_baseline": "false"}
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local", "--experiment-name", "gpu-check",
               *[item for key, value in options.items() for item in ("-P", f"{key}={value}")]]
    start = time.monotonic()
    log.write(f"\n=== {precision}: {' '.join(command)}\n")
    log.flush()
    exit_code = subprocess.run(command, cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    record = {"precision": precision, "exit_code": exit_code, "wall_s": round(time.monotonic() - start, 1)}
    runs = mlflow.search_runs(experiment_names=["gpu-check"], output_format="list", order_by=["attributes.start_time DESC"])
    parent = next((run for run in runs if run.data.tags.get("mlflow.project.entryPoint") == "main"), None)
    if parent is None:
        return record | {"ok": False, "why": "no main run"}
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    record["statuses"] = {"main": parent.info.status} | {
        run.data.tags.get("mlflow.project.entryPoint", run.info.run_name): run.info.status for run in children}
    tuning = next((run for run in children if run.data.tags.get("mlflow.project.entryPoint") == "fine_tuning_model"), None)
    if tuning is not None:
        record |= {key: tuning.data.params.get(key) for key in ("resolved_accelerator", "resolved_precision", "resolved_devices")}
        record |= {key: round(value, 4) for key, value in tuning.data.metrics.items() if key.startswith("test_")}
    record["model_uri"] = f"models:/{name}@champion"
    record["ok"] = exit_code == 0 and all(status == "FINISHED" for status in record["statuses"].values())
    return record


def scored(model_uri: str, env: dict, gpu: bool, precision: str) -> dict:
    """The test split's labels and probabilities from the model loaded in a fresh process, with or without the GPU,
    with `serve_precision` set to `precision` at load."""
    with tempfile.NamedTemporaryFile(suffix=".json") as answer:
        device_env = env if gpu else env | {"CUDA_VISIBLE_DEVICES": ""}
        subprocess.run([sys.executable, __file__, "score", model_uri, precision, answer.name], env=device_env, check=True)
        return json.loads(Path(answer.name).read_text())


def score(model_uri: str, precision: str, answer: str) -> None:
    """(In its own process.) Load `model_uri` with `serve_precision=precision`, score the sample's test split, write
    labels, probabilities, device and served precision."""
    import mlflow
    import pandas as pd
    import torch

    model = mlflow.pyfunc.load_model(model_uri, model_config={"serve_precision": precision})
    texts = pd.read_csv(SAMPLE / "test.csv")["review"].tolist()
    start = time.monotonic()
    predictions = model.predict(texts)
    seconds = time.monotonic() - start
    served = model.unwrap_python_model()
    Path(answer).write_text(json.dumps({
        "labels": predictions["label"].tolist(), "probabilities": predictions["probability"].tolist(),
        "device": str(next(served.model.parameters()).device), "precision": served.precision,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "reviews_per_s": round(len(texts) / seconds, 1)}))


def compare(scores: dict, reference: dict, tolerance: float) -> tuple[int, float, int]:
    """(labels differing where the reference is more than `tolerance` from 0.5, largest gap in positive-class
    probability, labels differing at all) of `scores` against `reference`."""
    def positive(answer):  # `probability` is that of the row's own label
        return [p if label == "positive" else 1 - p for label, p in zip(answer["labels"], answer["probabilities"])]

    ours, theirs = positive(scores), positive(reference)
    differing = [index for index, (a, b) in enumerate(zip(scores["labels"], reference["labels"])) if a != b]
    sure_differing = [index for index in differing if abs(theirs[index] - 0.5) > tolerance]
    return len(sure_differing), max(abs(a - b) for a, b in zip(ours, theirs)), len(differing)


def serving_record(model_uri: str, env: dict) -> dict:
    """fp32 on the GPU against fp32 on the CPU, and what the GPU serves by default against the CPU's fp32."""
    cpu_fp32, gpu_fp32, gpu_auto = (scored(model_uri, env, gpu, precision)
                                    for gpu, precision in ((False, "fp32"), (True, "fp32"), (True, "auto")))
    fp32_differing, fp32_gap, _ = compare(gpu_fp32, cpu_fp32, TOLERANCE)
    served_differing, served_gap, served_changed = compare(gpu_auto, cpu_fp32, SERVED_TOLERANCE)
    return {"served_on": gpu_auto["device"], "served_precision": gpu_auto["precision"], "reviews": len(cpu_fp32["labels"]),
            "fp32_labels_differing": fp32_differing, "fp32_max_probability_gap": round(fp32_gap, 5),
            "served_labels_differing": served_differing, "served_labels_changed": served_changed,
            "served_max_probability_gap": round(served_gap, 5), "served_reviews_per_s": gpu_auto["reviews_per_s"],
            "gpu_fp32_reviews_per_s": gpu_fp32["reviews_per_s"], "cpu_fp32_reviews_per_s": cpu_fp32["reviews_per_s"],
            "serving_ok": fp32_differing == 0 and fp32_gap <= TOLERANCE and served_differing == 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="pipeline.jsonl and pipeline.log go here")
    parser.add_argument("--precisions", default="auto,16-mixed,32-true")
    parser.add_argument("--accelerator", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--shape", default="minilm", choices=("bert-tiny", "minilm", "bert-base"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import mlflow

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch, open(args.out / "pipeline.log", "a") as log:
        scratch = Path(scratch)
        uri = f"sqlite:///{scratch}/mlflow.db"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        mlflow.set_tracking_uri(uri)
        zip_path, model_dir = sample_zip(scratch), backbone(scratch, args.shape)
        failed = []
        for precision in args.precisions.split(","):
            record = run_pipeline(scratch, env, log, precision, args, zip_path, model_dir)
            if record["ok"]:
                record |= serving_record(record["model_uri"], env)
                record["ok"] = record.pop("serving_ok")
            record |= {"shape": args.shape, "epochs": args.epochs, "max_length": args.max_length, "batch_size": args.batch_size}
            with open(args.out / "pipeline.jsonl", "a") as records:
                records.write(json.dumps(record) + "\n")
            print(f"{precision}: {'ok' if record['ok'] else 'FAILED'} {json.dumps(record)}", flush=True)
            if not record["ok"]:
                failed.append(precision)
    sys.exit(f"failed: {', '.join(failed)} (see pipeline.log)" if failed else 0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["score"]:
        score(*sys.argv[2:5])
    else:
        main()
