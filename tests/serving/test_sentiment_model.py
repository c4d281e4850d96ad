"""pipeline.serving.model_logging and pipeline.serving.sentiment_model: the logged model predicts from raw text in every input
shape MLflow hands over, tokenizes as its run did (from the logged config, with no defaults of its own), and
names what it needs to run."""

import mlflow
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import easy_reviews
from pipeline.evaluation.baseline import fit_baseline
from pipeline.serving.inference import class_probabilities
from pipeline.serving.model_logging import log_sentiment_model
from pipeline.parameters import FineTuning
from pipeline.serving.sentiment_model import SentimentModel, review_texts


def network(tiny_model):
    return AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2, id2label={0: "negative", 1: "positive"},
                                                              label2id={"negative": 0, "positive": 1})


@pytest.fixture
def logged(tracking, tiny_model):
    tokenization = FineTuning(foundation_model=str(tiny_model), max_length=24, truncation="tail").tokenization()
    with mlflow.start_run():
        info = log_sentiment_model(network(tiny_model), AutoTokenizer.from_pretrained(tiny_model), tokenization)
    return info, tokenization


@pytest.fixture
def blended(tracking, tiny_model):
    frames = {"train": easy_reviews(200, 1), "valid": easy_reviews(40, 2), "test": easy_reviews(40, 3)}
    tokenization = FineTuning(foundation_model=str(tiny_model), max_length=24).tokenization()
    with mlflow.start_run():
        return log_sentiment_model(network(tiny_model), AutoTokenizer.from_pretrained(tiny_model), tokenization,
                                   baseline=fit_baseline(frames).pipeline, blend_weight=0.25)


def test_it_predicts_a_label_and_its_probability_for_each_input_shape(logged):
    info, _ = logged
    model = mlflow.pyfunc.load_model(info.model_uri)
    texts = ["a wonderful film", "a dull film", "fine"]
    answers = [model.predict(shape) for shape in (texts, pd.Series(texts), pd.DataFrame({"review": texts}))]
    for answer in answers:
        assert list(answer.columns) == ["label", "probability"] and len(answer) == 3
        assert set(answer["label"]) <= {"positive", "negative"} and answer["probability"].between(0.5, 1).all()
        pd.testing.assert_frame_equal(answer, answers[0])
    assert len(model.predict("one review")) == 1


def test_the_whole_tokenization_travels_and_serving_has_no_defaults(logged, tmp_path):
    info, tokenization = logged
    assert mlflow.pyfunc.load_model(info.model_uri).model_config == tokenization
    stored = mlflow.MlflowClient().get_logged_model(info.model_id).artifact_location
    requirements = mlflow.artifacts.download_artifacts(f"{stored}/requirements.txt", dst_path=str(tmp_path))
    names = [line.split("==")[0] for line in open(requirements).read().split()]
    assert {"mlflow", "torch", "transformers", "pandas"} <= set(names)

    class Context:  # what MLflow hands load_context, without the tokenization
        artifacts = {"classifier": mlflow.artifacts.download_artifacts(f"{stored}/artifacts/classifier", dst_path=str(tmp_path / "c"))}
        model_config = {"foundation_model": "x"}

    with pytest.raises(KeyError, match="max_length"):
        SentimentModel().load_context(Context())


def test_a_blend_serves_the_weighted_probability_and_each_part(blended, tmp_path):
    model = mlflow.pyfunc.load_model(blended.model_uri)
    assert model.model_config["blend_weight"] == 0.25
    answer = model.predict(["a wonderful film", "a dull film", "fine"])
    assert list(answer.columns) == ["label", "probability", "transformer_positive_probability", "baseline_positive_probability"]
    positive = 0.25 * answer["transformer_positive_probability"] + 0.75 * answer["baseline_positive_probability"]
    assert answer["probability"].tolist() == pytest.approx(positive.where(positive >= 0.5, 1 - positive).tolist())
    assert (answer["label"] == positive.map(lambda p: "positive" if p >= 0.5 else "negative")).all()
    assert pd.testing.assert_frame_equal(model.predict(pd.Series(["fine"])), model.predict("fine")) is None
    assert model.metadata.signature.outputs.input_names() == list(answer.columns)

    stored = mlflow.MlflowClient().get_logged_model(blended.model_id).artifact_location
    folder = mlflow.artifacts.download_artifacts(stored, dst_path=str(tmp_path))
    names = [line.split("==")[0] for line in open(f"{folder}/requirements.txt").read().split()]
    assert {"mlflow", "torch", "transformers", "pandas", "scikit-learn", "skops"} <= set(names)
    baseline_flavour = open(f"{folder}/artifacts/baseline/MLmodel").read()
    assert "serialization_format: skops" in baseline_flavour  # scikit-learn's safe format, not a pickle
    assert not list((tmp_path).rglob("*.pkl"))


class Context:
    """What MLflow hands `load_context`: the classifier folder of a logged model and a model config."""

    def __init__(self, classifier: str, model_config: dict):
        self.artifacts, self.model_config = {"classifier": classifier}, model_config


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CPU test: a GPU serves fp32 or bf16 (test_inference)")
@pytest.mark.parametrize(("precisions", "cpu_bf16", "served"), [
    ({}, True, "fp32"),  # logged before serving precisions existed
    ({"serve_precision": "auto", "safe_precisions": ["fp32", "int8", "bf16"]}, True, "bf16"),
    ({"serve_precision": "bf16", "safe_precisions": ["fp32", "int8", "bf16"]}, True, "bf16"),
    ({"serve_precision": "auto", "safe_precisions": ["fp32", "int8", "bf16"]}, False, "int8"),
    ({"serve_precision": "auto", "safe_precisions": ["fp32"]}, True, "fp32"),
    ({"serve_precision": "int8", "safe_precisions": ["fp32"]}, False, "int8"),
])
def test_a_cpu_serves_the_precision_its_config_and_flags_allow(logged, tmp_path, precisions, cpu_bf16, served):
    info, tokenization = logged
    stored = mlflow.MlflowClient().get_logged_model(info.model_id).artifact_location
    folder = mlflow.artifacts.download_artifacts(f"{stored}/artifacts/classifier", dst_path=str(tmp_path))
    model = SentimentModel()
    model.load_context(Context(folder, tokenization | precisions), cpu_bf16=cpu_bf16, cpu_amx=True)
    assert model.precision == served
    linear = model.model.bert.encoder.layer[0].output.dense
    assert isinstance(linear, torch.ao.nn.quantized.dynamic.Linear) == (served == "int8")
    assert next(model.model.parameters()).dtype == (torch.bfloat16 if served == "bf16" else torch.float32)
    answer = model.predict(None, pd.DataFrame({"review": ["a wonderful film", "a dull film"]}))
    assert list(answer.columns) == ["label", "probability"] and answer["probability"].between(0.5, 1).all()


def test_a_blend_mixes_the_transformer_in_its_served_precision(tracking, tiny_model, tmp_path):
    """The blend's transformer part is computed in the precision served, and blended with the baseline as in fp32."""
    frames = {"train": easy_reviews(200, 1), "valid": easy_reviews(40, 2), "test": easy_reviews(40, 3)}
    tokenization = FineTuning(foundation_model=str(tiny_model), max_length=24).tokenization()
    with mlflow.start_run():
        info = log_sentiment_model(network(tiny_model), AutoTokenizer.from_pretrained(tiny_model), tokenization,
                                   {"serve_precision": "int8", "safe_precisions": ["fp32", "int8"]},
                                   baseline=fit_baseline(frames).pipeline, blend_weight=0.5)
    model = mlflow.pyfunc.load_model(info.model_uri)
    assert model.unwrap_python_model().precision == ("fp32" if torch.cuda.is_available() else "int8")
    texts = ["a wonderful film", "a dull film", "fine"]
    answer = model.predict(texts)
    served = model.unwrap_python_model()
    transformer = class_probabilities(served.tokenizer, served.model, texts, 24, tokenization["truncation"])[:, 1]
    assert answer["transformer_positive_probability"].tolist() == pytest.approx(transformer.tolist())
    positive = 0.5 * answer["transformer_positive_probability"] + 0.5 * answer["baseline_positive_probability"]
    assert answer["probability"].tolist() == pytest.approx(positive.where(positive >= 0.5, 1 - positive).tolist())


def test_review_texts_reads_the_first_column_as_text():
    assert review_texts(pd.DataFrame({"review": ["a", 3]})) == ["a", "3"]
    assert review_texts(pd.DataFrame({0: ["x"], "other": ["y"]})) == ["x"]
