"""Training throughput: Hugging Face `Trainer` vs this project's Lightning code, same model shape, data and device.

    python benchmarks/finetune_throughput.py --quick            # bert-tiny shape, < 2 min on a 2-core CPU
    python benchmarks/finetune_throughput.py --model minilm --batch-size 32 --steps 60
    python benchmarks/finetune_throughput.py --device cuda --model bert-base --batch-size 128 --repeats 3   # a GPU

(a) HF `Trainer` with its defaults plus dynamic padding (`DataCollatorWithPadding`): what most users run;
(b) HF `Trainer` at its best: length-grouped batches (`train_sampling_strategy="group_by_length"`, transformers 5's
name for `group_by_length=True`), `optim="adamw_torch_fused"`, and this project's loader workers, pinned memory,
pad-to-multiple, precision (bf16 on CPUs with native bf16 too) and `torch_compile` choice; (c) `SentimentClassifier`
+ `ReviewsDataModule` + Lightning `Trainer` with the flags `pipeline.training.hardware` picks; where that is
bf16-mixed on a CPU (native bf16: AVX512-BF16 or AMX), also (d) the same in fp32 (`32-true`), whose samples/s
`bf16_speedup` divides. Both train a randomly
initialised BERT of the chosen shape (weights do not change speed) on reviews whose lengths follow IMDB's
(log-normal, median ~175 words), truncated to --max-length tokens, with the same tokenizer. Timing starts
after --warmup steps (compilation, allocator warm-up) and ends with the last step (CUDA synchronised).
The data set is exactly one epoch of (warmup + steps) batches. Samples/s counts timed optimizer steps × batch
size; tokens/s multiplies by the mean real (unpadded) tokens per review; MFU = 6 × parameters × tokens/s ÷ the
device's peak. With --repeats N the sides run N times, alternating, and the median counts. The last line
printed is one JSON object: `ratio` is the project over (a), `ratio_tuned` the project over (b).
Needs `accelerate` (the HF Trainer requires it): pip install -r benchmarks/requirements.txt
"""

import argparse
import csv
import dataclasses
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import lightning as L
import numpy as np
import psutil
import torch
from transformers import (BertConfig, BertForSequenceClassification, BertTokenizerFast, DataCollatorWithPadding, Trainer,
                          TrainerCallback, TrainingArguments)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_setup import device_label  # noqa: E402
from pipeline.training.classifier import SentimentClassifier  # noqa: E402
from pipeline.parameters import FineTuning  # noqa: E402
from pipeline.training.datamodule import ReviewsDataModule, TokenizedReviews  # noqa: E402
from pipeline.training.hardware import choose_hardware  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "uci-sentences"
SHAPES = {  # hidden, layers, heads, intermediate
    "bert-tiny": (128, 2, 2, 512),
    "minilm": (384, 6, 12, 1536),
    "bert-base": (768, 12, 12, 3072),
}
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "T4": 65.0}  # dense bf16/fp16


def imdb_like_reviews(count: int, seed: int) -> list[str]:
    """Reviews built from real sentence words, with lengths drawn like IMDB's (median ~175 words, long tail)."""
    rng = random.Random(seed)
    with open(SAMPLE / "train.csv", newline="") as file:
        words = [word for row in csv.DictReader(file) for word in row["review"].split()]
    lengths = np.clip(np.random.default_rng(seed).lognormal(mean=np.log(175), sigma=0.7, size=count), 10, 2500)
    return [" ".join(rng.choices(words, k=int(length))) for length in lengths]


def build_model(folder: Path, shape: str) -> tuple[Path, BertTokenizerFast]:
    """A WordPiece tokenizer trained on the sample sentences and a random BERT of `shape`, saved like a hub model."""
    from tokenizers import BertWordPieceTokenizer

    with open(SAMPLE / "train.csv", newline="") as file:
        corpus = [row["review"] for row in csv.DictReader(file)]
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(corpus, vocab_size=8000, min_frequency=1)
    tokenizer = BertTokenizerFast(vocab=wordpiece.get_vocab(), do_lower_case=True, model_max_length=512)
    tokenizer.save_pretrained(folder)
    hidden, layers, heads, intermediate = SHAPES[shape]
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=intermediate, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder, tokenizer


class PeakMemory:
    """Peak GPU memory allocated, or peak process RSS sampled every 50 ms on CPU."""

    def __init__(self, cuda: bool):
        self.cuda, self.peak, self._stop = cuda, 0, threading.Event()

    def __enter__(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc):
        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_hf_trainer(model_dir, tokenizer, dataset, args, hardware, tuned: bool) -> float:
    """Seconds for the timed steps of HF Trainer, with its defaults or (`tuned`) at its best settings."""
    marks = {}

    class Clock(TrainerCallback):
        def on_step_begin(self, training_args, state, control, **kwargs):
            if state.global_step == args.warmup:
                synchronize()
                marks["start"] = time.perf_counter()

        def on_train_end(self, training_args, state, control, **kwargs):
            synchronize()
            marks["end"] = time.perf_counter()

    cuda = hardware.accelerator == "cuda"
    with tempfile.TemporaryDirectory() as output:
        training = TrainingArguments(
            output_dir=output, per_device_train_batch_size=args.batch_size, max_steps=args.warmup + args.steps,
            learning_rate=1e-4, report_to="none", save_strategy="no", logging_strategy="no", eval_strategy="no",
            # On a CPU only the tuned side takes bf16 (autocast), where the project trains in it: HF's default is fp32.
            bf16=hardware.precision.startswith("bf16") and (cuda or tuned), fp16=cuda and hardware.precision == "16-mixed",
            use_cpu=not cuda, seed=args.seed, disable_tqdm=True,
            **({"train_sampling_strategy": "group_by_length", "optim": "adamw_torch_fused", "torch_compile": hardware.compile,
                "dataloader_num_workers": hardware.num_workers, "dataloader_pin_memory": hardware.pin_memory} if tuned else {}),
        )
        model = BertForSequenceClassification.from_pretrained(model_dir)
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=hardware.pad_to_multiple_of if tuned else None)
        Trainer(model=model, args=training, train_dataset=dataset, data_collator=collator, processing_class=tokenizer,
                callbacks=[Clock()]).train()
    return marks["end"] - marks["start"]


def run_project(model_dir, tokenizer, data_dir, args, hardware) -> float:
    """Seconds for the timed steps of this project's LightningModule, DataModule and Trainer flags."""
    marks = {}

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == args.warmup and "start" not in marks:
                synchronize()
                marks["start"] = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            synchronize()
            marks["end"] = time.perf_counter()

    L.seed_everything(args.seed, verbose=False)
    datamodule = ReviewsDataModule(data_dir, tokenizer, FineTuning(max_length=args.max_length).tokenization(), args.batch_size, hardware.num_workers,
                                   hardware.pin_memory, pad_to_multiple_of=hardware.pad_to_multiple_of)
    datamodule.setup()
    model = SentimentClassifier(str(model_dir), learning_rate=1e-4, compile=hardware.compile)
    trainer = L.Trainer(max_steps=args.warmup + args.steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, gradient_clip_val=1.0, callbacks=[Clock()], **hardware.trainer_flags())
    trainer.fit(model, datamodule=datamodule)
    return marks["end"] - marks["start"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="bert-tiny shape, 40 timed steps: < 2 min on 2 CPU cores")
    parser.add_argument("--model", choices=SHAPES, default="minilm")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=60, help="timed optimizer steps per side")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--compile", choices=("auto", "true", "false"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="alternate both sides N times and take the median")
    args = parser.parse_args()
    if args.quick:
        args.model, args.steps, args.warmup = "bert-tiny", 40, 3

    hardware = choose_hardware(accelerator=args.device, compile=args.compile)
    cuda = hardware.accelerator == "cuda"
    if hardware.tf32:
        torch.set_float32_matmul_precision("high")
    device_name = device_label(cuda)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model_dir, tokenizer = build_model(scratch / "model", args.model)
        # Exactly one epoch: each side trains on every review once, so neither gets luckier (shorter) batches.
        reviews = imdb_like_reviews((args.steps + args.warmup) * args.batch_size, args.seed)
        data_dir = scratch / "data"
        data_dir.mkdir()
        for split, rows in {"train": reviews, "valid": reviews[:64], "test": reviews[:64]}.items():
            with open(data_dir / f"{split}.csv", "w", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(["review", "sentiment"])
                writer.writerows([text, "positive" if index % 2 else "negative"] for index, text in enumerate(rows))
        encoded = tokenizer(reviews, truncation=True, max_length=args.max_length)["input_ids"]
        dataset = TokenizedReviews(encoded, [index % 2 for index in range(len(reviews))])
        mean_tokens = float(np.mean([len(ids) for ids in encoded]))
        parameters = sum(p.numel() for p in BertForSequenceClassification.from_pretrained(model_dir).parameters())

        runners = {"hf_trainer": lambda: run_hf_trainer(model_dir, tokenizer, dataset, args, hardware, tuned=False),
                   "hf_tuned": lambda: run_hf_trainer(model_dir, tokenizer, dataset, args, hardware, tuned=True),
                   "project": lambda: run_project(model_dir, tokenizer, data_dir, args, hardware)}
        if not cuda and hardware.precision == "bf16-mixed":
            fp32 = dataclasses.replace(hardware, precision="32-true")
            runners["project_fp32"] = lambda: run_project(model_dir, tokenizer, data_dir, args, fp32)
        timings, peaks = {name: [] for name in runners}, {name: 0 for name in runners}
        for _ in range(args.repeats):
            for name, runner in runners.items():
                with PeakMemory(cuda) as memory:
                    timings[name].append(runner())
                peaks[name] = max(peaks[name], memory.peak)
        results = {}
        for name, seconds in timings.items():
            samples_per_s = args.steps * args.batch_size / float(np.median(seconds))
            results[name] = {"samples_per_s": samples_per_s, "tokens_per_s": samples_per_s * mean_tokens,
                             "peak_memory_mb": peaks[name] / 2**20, "runs_samples_per_s": [args.steps * args.batch_size / s for s in seconds]}

    peak = next((value for key, value in PEAK_TFLOPS.items() if key in device_name), None) if cuda else None
    print(f"device: {device_name}; model: {args.model} ({parameters / 1e6:.1f} M parameters); batch {args.batch_size}; "
          f"max_length {args.max_length}; mean real tokens/review {mean_tokens:.0f}; precision {hardware.precision}; "
          f"compile {hardware.compile}; {args.steps} timed steps after {args.warmup}")
    for name, result in results.items():
        mfu = 6 * parameters * result["tokens_per_s"] / (peak * 1e12) if peak else None
        result["mfu"] = mfu
        print(f"{name:>10}: {result['samples_per_s']:9.1f} samples/s  {result['tokens_per_s']:10.0f} tokens/s  "
              f"peak memory {result['peak_memory_mb']:8.0f} MB" + (f"  MFU {100 * mfu:5.1f} %" if mfu else ""))
    ratio = results["project"]["samples_per_s"] / results["hf_trainer"]["samples_per_s"]
    ratio_tuned = results["project"]["samples_per_s"] / results["hf_tuned"]["samples_per_s"]
    print(f"ratio (project / HF Trainer defaults): {ratio:.2f}; ratio_tuned (project / tuned HF Trainer): {ratio_tuned:.2f}")
    fp32 = {"project_fp32_samples_per_s": round(results["project_fp32"]["samples_per_s"], 2),
            "bf16_speedup": round(results["project"]["samples_per_s"] / results["project_fp32"]["samples_per_s"], 3)
            } if "project_fp32" in results else {}
    if fp32:
        print(f"bf16_speedup (project bf16-mixed / project 32-true): {fp32['bf16_speedup']:.2f}")
    print(json.dumps({
        "device": device_name, "model": args.model, "parameters": parameters, "batch_size": args.batch_size,
        "max_length": args.max_length, "precision": hardware.precision, "compile": hardware.compile,
        "hf_trainer_samples_per_s": round(results["hf_trainer"]["samples_per_s"], 2),
        "project_samples_per_s": round(results["project"]["samples_per_s"], 2),
        "hf_tuned_samples_per_s": round(results["hf_tuned"]["samples_per_s"], 2),
        "ratio": round(ratio, 3), "ratio_tuned": round(ratio_tuned, 3), "repeats": args.repeats, **fp32,
        "hf_tuned_bf16": hardware.precision.startswith("bf16"),
        **{f"{name}_{key}": value for name, result in results.items() for key, value in (
            ("tokens_per_s", round(result["tokens_per_s"])), ("peak_memory_mb", round(result["peak_memory_mb"])),
            ("mfu", result["mfu"]), ("runs_samples_per_s", [round(v, 2) for v in result["runs_samples_per_s"]]))},
    }))


if __name__ == "__main__":
    main()
