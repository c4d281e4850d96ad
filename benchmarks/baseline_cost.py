"""What the TF-IDF + logistic regression baseline costs at IMDB's size, on this machine's CPU.

    python benchmarks/baseline_cost.py [--train 25000] [--words 230]

No IMDB download here: the reviews are a size proxy stitched from the committed real sentences
(data/sample/uci-sentences, CC BY 4.0) to IMDB's count and mean length (25,000 train reviews of ~230 words,
2,500 each for validation and test). `pipeline.evaluation.baseline.fit_baseline` is timed as every fine-tuning run calls it:
one vectoriser, four regularisation strengths, the best on validation scored on test. Prints one JSON line.
"""

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.evaluation.baseline import fit_baseline  # noqa: E402


def proxy_reviews(sentences: pd.DataFrame, count: int, words: int, rng: random.Random) -> pd.DataFrame:
    """`count` reviews of about `words` words, each built from sentences of one label."""
    by_label = {label: group["review"].tolist() for label, group in sentences.groupby("sentiment")}
    rows = []
    for index in range(count):
        label = ("positive", "negative")[index % 2]
        text, length = [], 0
        while length < words:
            sentence = rng.choice(by_label[label])
            text.append(sentence)
            length += len(sentence.split())
        rows.append({"review": " ".join(text), "sentiment": label})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=25_000)
    parser.add_argument("--words", type=int, default=230)
    args = parser.parse_args()
    rng = random.Random(0)
    sentences = pd.concat(pd.read_csv(REPO / "data" / "sample" / "uci-sentences" / f"{split}.csv") for split in ("train", "valid", "test"))
    frames = {"train": proxy_reviews(sentences, args.train, args.words, rng),
              "valid": proxy_reviews(sentences, args.train // 10, args.words, rng),
              "test": proxy_reviews(sentences, args.train // 10, args.words, rng)}
    started = time.perf_counter()
    scores = fit_baseline(frames)
    print(json.dumps({"machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
                      "train_reviews": args.train, "mean_words": round(frames["train"]["review"].str.split().str.len().mean()),
                      "fit_seconds": round(scores.fit_seconds, 2), "wall_seconds": round(time.perf_counter() - started, 2),
                      "chosen_c": scores.regularisation_c}))


if __name__ == "__main__":
    main()
