"""pipeline/evaluation/baseline.py: TF-IDF + logistic regression on the same splits the transformer sees."""

import pandas as pd

from conftest import SAMPLE, easy_reviews
from pipeline.evaluation.baseline import C_GRID, fit_baseline
from pipeline.evaluation.serving_choice import scores


def test_learns_real_sentences_well_above_chance():
    frames = {split: pd.read_csv(SAMPLE / f"{split}.csv") for split in ("train", "valid", "test")}
    baseline = fit_baseline(frames)
    tested = scores(frames["test"]["sentiment"], baseline.positive["test"])
    assert tested["accuracy"] > 0.7 and tested["macro_f1"] > 0.7  # 2,379 real sentences: a bag of words works
    assert baseline.regularisation_c in C_GRID and baseline.fit_seconds > 0  # a duration, not a speed target
    assert set(baseline.positive) == {"valid", "test"} and len(baseline.positive["valid"]) == len(frames["valid"])


def test_the_fitted_pipeline_reads_raw_text_as_it_scored():
    frames = {"train": easy_reviews(200, 1), "valid": easy_reviews(60, 2), "test": easy_reviews(60, 3)}
    baseline = fit_baseline(frames)
    positive_column = list(baseline.pipeline.classes_).index("positive")
    again = baseline.pipeline.predict_proba(frames["test"]["review"])[:, positive_column]
    assert (again == baseline.positive["test"]).all()


def test_picks_regularisation_on_validation_not_test():
    frames = {"train": easy_reviews(200, 1), "valid": easy_reviews(60, 2), "test": easy_reviews(60, 3)}
    flipped = frames | {"test": frames["test"].assign(sentiment=frames["test"]["sentiment"].map(
        {"positive": "negative", "negative": "positive"}))}
    assert scores(frames["test"]["sentiment"], fit_baseline(frames).positive["test"])["accuracy"] > 0.9
    assert scores(flipped["test"]["sentiment"], fit_baseline(flipped).positive["test"])["accuracy"] < 0.1  # test never steers
