"""pipeline.classifier: honest metrics (macro-F1 is not accuracy), one-line load errors, decay only where it belongs."""

from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from pipeline.classifier import SentimentClassifier, load_pretrained, sentiment_metrics
from pipeline.errors import PipelineError


def test_macro_f1_weighs_both_classes_where_accuracy_does_not():
    metrics = sentiment_metrics("test_")
    predictions, truth = torch.tensor([1, 1, 1, 1]), torch.tensor([1, 1, 1, 0])  # always "positive"
    scores = {name: float(value) for name, value in metrics(predictions, truth).items()}
    assert scores["test_accuracy"] == pytest.approx(0.75)
    assert scores["test_macro_f1"] == pytest.approx((0 + 6 / 7) / 2)  # F1 0 for "negative", 6/7 for "positive"


def test_a_model_that_cannot_be_loaded_is_one_line_saying_how_to_work_offline(tmp_path):
    with pytest.raises(PipelineError, match=r"foundation_model='.*nothing': cannot load it .*-P foundation_model=/path/to/folder"):
        load_pretrained(AutoModelForSequenceClassification, str(tmp_path / "nothing"))


def test_a_fresh_head_in_training_mode_and_decay_only_on_weight_matrices(tiny_model):
    model = SentimentClassifier(str(tiny_model), learning_rate=3e-3, weight_decay=0.05, warmup_ratio=0.2)
    assert model.model.config.id2label == {0: "negative", 1: "positive"} and model.model.training
    model.trainer = SimpleNamespace(estimated_stepping_batches=10)  # all configure_optimizers asks of a Trainer
    configured = model.configure_optimizers()
    decay, no_decay = configured["optimizer"].param_groups
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0 and decay["initial_lr"] == 3e-3
    assert all(parameter.ndim == 2 for parameter in decay["params"])
    assert {names[id(parameter)].rsplit(".", 1)[1] for parameter in no_decay["params"]} == {"bias", "weight"}  # LayerNorm's
    assert all("LayerNorm" in names[id(p)] or names[id(p)].endswith("bias") for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    scheduler = configured["lr_scheduler"]["scheduler"]
    assert scheduler.lr_lambdas[0](0) == 0.0 and scheduler.lr_lambdas[0](2) == 1.0  # 2 warm-up steps of 10, then decay
