"""The bar a fine-tuned transformer must clear: TF-IDF word 1–2-grams (sublinear tf) + logistic regression.

Trained on the same train split in seconds, its regularisation picked on the validation split, scored on the
same test split. A transformer that does not beat it is not worth serving alone; the two make different
mistakes, so the step may serve their blend (`pipeline.evaluation.serving_choice`), with this fitted pipeline inside the
logged model.
"""

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from pipeline.data.reviews import LABEL_COLUMN, LABELS, TEXT_COLUMN
from pipeline.evaluation.metrics import label_scores

NAME = "TF-IDF + logistic regression"
C_GRID = (0.25, 1.0, 4.0, 16.0)  # inverse regularisation strengths tried on the validation split


@dataclass(frozen=True)
class Baseline:
    pipeline: Pipeline  # fitted: raw review texts in, `predict_proba` over `LABELS` out
    positive: dict[str, np.ndarray]  # positive-class probability of each validation and test review
    regularisation_c: float
    fit_seconds: float  # fitting every candidate and scoring, not loading the data


def fit_baseline(frames: dict[str, pd.DataFrame]) -> Baseline:
    """Vectorise once, fit one classifier per C on train, keep the best by validation macro-F1."""
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    features = {"train": vectorizer.fit_transform(frames["train"][TEXT_COLUMN])}
    features |= {split: vectorizer.transform(frames[split][TEXT_COLUMN]) for split in ("valid", "test")}
    labels = {split: frames[split][LABEL_COLUMN] for split in features}
    fitted = [LogisticRegression(C=c, max_iter=2000).fit(features["train"], labels["train"]) for c in C_GRID]
    best = max(fitted, key=lambda model: label_scores(labels["valid"], model.predict(features["valid"]))["macro_f1"])
    positive_column = list(best.classes_).index(LABELS[1])
    positive = {split: best.predict_proba(features[split])[:, positive_column] for split in ("valid", "test")}
    return Baseline(pipeline=Pipeline([("tfidf", vectorizer), ("logistic_regression", best)]), positive=positive,
                    regularisation_c=best.C, fit_seconds=time.perf_counter() - started)
