"""The bar a fine-tuned transformer must clear: TF-IDF word 1–2-grams (sublinear tf) + logistic regression.

Trained on the same train split in seconds, its regularisation picked on the validation split, scored on the
same test split. A transformer that does not beat it is not worth serving; the quality gate says so.
"""

import time
from dataclasses import dataclass

import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from pipeline.data import LABEL_COLUMN, TEXT_COLUMN

NAME = "TF-IDF + logistic regression"
C_GRID = (0.25, 1.0, 4.0, 16.0)  # inverse regularisation strengths tried on the validation split


@dataclass(frozen=True)
class BaselineScores:
    test_accuracy: float
    test_macro_f1: float
    regularisation_c: float
    fit_seconds: float  # fitting every candidate and scoring, not loading the data

    def metrics(self) -> dict[str, float]:
        """As logged on the fine-tuning run, next to the model's own test metrics."""
        return {"baseline_test_accuracy": self.test_accuracy, "baseline_test_macro_f1": self.test_macro_f1,
                "baseline_fit_seconds": self.fit_seconds}


def fit_baseline(frames: dict[str, pd.DataFrame]) -> BaselineScores:
    """Vectorise once, fit one classifier per C on train, keep the best by validation macro-F1, score it on test."""
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    features = {"train": vectorizer.fit_transform(frames["train"][TEXT_COLUMN])}
    features |= {split: vectorizer.transform(frames[split][TEXT_COLUMN]) for split in ("valid", "test")}
    labels = {split: frames[split][LABEL_COLUMN] for split in features}
    fitted = [LogisticRegression(C=c, max_iter=2000).fit(features["train"], labels["train"]) for c in C_GRID]
    best = max(fitted, key=lambda model: f1_score(labels["valid"], model.predict(features["valid"]), average="macro"))
    predicted = best.predict(features["test"])
    return BaselineScores(test_accuracy=float(accuracy_score(labels["test"], predicted)),
                          test_macro_f1=float(f1_score(labels["test"], predicted, average="macro")),
                          regularisation_c=best.C, fit_seconds=time.perf_counter() - started)
