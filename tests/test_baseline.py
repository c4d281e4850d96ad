"""pipeline/baseline.py: TF-IDF + logistic regression on the same splits the transformer sees."""

import pandas as pd

from conftest import SAMPLE, easy_reviews
from pipeline.baseline import C_GRID, fit_baseline


def test_learns_real_sentences_well_above_chance():
    frames = {split: pd.read_csv(SAMPLE / f"{split}.csv") for split in ("train", "valid", "test")}
    scores = fit_baseline(frames)
    assert scores.test_accuracy > 0.7 and scores.test_macro_f1 > 0.7  # 2,379 real sentences: a bag of words works
    assert scores.regularisation_c in C_GRID and 0 < scores.fit_seconds < 60
    assert set(scores.metrics()) == {"baseline_test_accuracy", "baseline_test_macro_f1", "baseline_fit_seconds"}


def test_picks_regularisation_on_validation_not_test():
    frames = {"train": easy_reviews(200, 1), "valid": easy_reviews(60, 2), "test": easy_reviews(60, 3)}
    flipped = frames | {"test": frames["test"].assign(sentiment=frames["test"]["sentiment"].map(
        {"positive": "negative", "negative": "positive"}))}
    assert fit_baseline(frames).test_accuracy > 0.9
    assert fit_baseline(flipped).test_accuracy < 0.1  # the test labels never steer the choice
