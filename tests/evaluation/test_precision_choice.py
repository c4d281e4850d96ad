"""pipeline.evaluation.precision_choice: which precisions a CPU may serve, judged on validation and recorded in the
logged model, which then serves them (CPU flags given as a parameter, never read from this machine)."""

import mlflow
import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import easy_reviews
from pipeline.data.reviews import LABEL_COLUMN, LABELS, TEXT_COLUMN
from pipeline.errors import PipelineError
from pipeline.evaluation.precision_choice import check_precisions, refuse_unchecked_precision, safe_precisions
from pipeline.parameters import FineTuning
from pipeline.serving.inference import auto_order, class_probabilities, labels_of, padded
from pipeline.serving.model_logging import log_sentiment_model
from pipeline.serving.truncation import encode


@pytest.fixture(scope="module")
def trained(tiny_model):
    """The tiny BERT fine-tuned for a few seconds on easy reviews: confident where a random one sits near 0.5."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    network = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2, id2label=dict(enumerate(LABELS)),
                                                                 label2id={label: index for index, label in enumerate(LABELS)})
    train = easy_reviews(400, 1)
    ids = encode(tokenizer, train[TEXT_COLUMN].tolist(), 24, "head_tail")
    targets = torch.tensor((train[LABEL_COLUMN] == LABELS[1]).astype(int).to_numpy())
    optimizer = torch.optim.AdamW(network.parameters(), lr=3e-3)
    network.train()
    for _ in range(3):
        for start in range(0, len(ids), 16):
            input_ids, attention_mask = padded(ids[start:start + 16], tokenizer.pad_token_id, "right")
            loss = network(input_ids=input_ids, attention_mask=attention_mask, labels=targets[start:start + 16]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    return tokenizer, network.eval()


def check(trained, asked: str, cpu_bf16: bool, device: str = "cpu"):
    tokenizer, network = trained
    valid = easy_reviews(100, 2)
    texts, tokenization = valid[TEXT_COLUMN].tolist(), {"max_length": 24, "truncation": "head_tail"}
    fp32 = class_probabilities(tokenizer, network, texts, 24, "head_tail")[:, 1]
    return check_precisions(asked, network, tokenizer, tokenization, texts, valid[LABEL_COLUMN], fp32, device, cpu_bf16)


def test_safe_precisions_change_at_most_half_a_percent_of_fp32_s_labels():
    assert safe_precisions({"fp32": 0.0, "int8": 0.005, "bf16": 0.006}) == ["fp32", "int8"]
    assert safe_precisions({"fp32": 0.0, "int8": 0.03}) == ["fp32"]  # even where the changes raised accuracy
    assert safe_precisions({"fp32": 0.0}) == ["fp32"]


def test_changes_that_cancel_out_in_accuracy_are_still_counted(trained):
    """A precision is judged by the labels it changes, not by accuracy alone, where flips either way hide."""
    result, _, _ = check(trained, "auto", cpu_bf16=True)
    assert result.valid_changed["fp32"] == 0.0
    for precision, changed in result.valid_changed.items():
        assert changed >= abs(result.valid_accuracy[precision] - result.valid_accuracy["fp32"]) - 1e-9


@pytest.mark.parametrize(("cpu_bf16", "checked"), [(False, ["fp32", "int8"]), (True, ["fp32", "int8", "bf16"])])
def test_each_precision_the_cpu_runs_natively_scores_validation(trained, cpu_bf16, checked):
    result, network, valid = check(trained, "auto", cpu_bf16)
    assert list(result.valid_accuracy) == checked and result.valid_accuracy["fp32"] >= 0.85  # it learned
    assert list(result.valid_changed) == checked and result.safe == safe_precisions(result.valid_changed)
    first_safe = [precision for precision in auto_order() if precision in result.safe][0]
    assert result.served == first_safe and len(valid) == 100
    assert result.model_config() == {"serve_precision": "auto", "safe_precisions": result.safe,
                                     "precision_valid_accuracy": result.valid_accuracy,
                                     "precision_valid_changed": result.valid_changed}


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_a_device_without_native_bf16_or_a_cpu_checks_and_serves_fp32_alone(trained, device):
    result, network, _ = check(trained, "auto", cpu_bf16=False, device=device)
    assert (list(result.valid_accuracy), result.served, network) == (["fp32"], "fp32", trained[1])


def test_a_gpu_with_bf16_tensor_cores_checks_bf16_too(trained):
    """(The network stays on this CPU: what is checked is the same bf16 rounding a GPU would serve.)"""
    result, network, _ = check(trained, "auto", cpu_bf16=True, device="cuda")
    assert list(result.valid_accuracy) == ["fp32", "bf16"] and "int8" not in result.valid_changed
    assert result.served == ("bf16" if "bf16" in result.safe else "fp32")
    assert next(network.parameters()).dtype == (torch.bfloat16 if result.served == "bf16" else torch.float32)


@pytest.mark.parametrize(("asked", "device", "cpu_bf16", "message"), [
    ("int8", "cuda", True, "serve_precision='int8': this cuda device cannot check it"),
    ("bf16", "cuda", False, "serve_precision='bf16': this cuda device cannot check it"),  # a T4
    ("bf16", "cpu", False, "serve_precision='bf16': this CPU has no native bfloat16"),
])
def test_a_precision_this_machine_cannot_check_is_one_line(asked, device, cpu_bf16, message):
    with pytest.raises(PipelineError, match=f"^{message}"):
        refuse_unchecked_precision(asked, device, cpu_bf16)


def test_checkable_precisions_pass():
    for asked, device, cpu_bf16 in (("auto", "cuda", False), ("fp32", "mps", False), ("int8", "cpu", False), ("bf16", "cpu", True),
                                    ("bf16", "cuda", True)):
        refuse_unchecked_precision(asked, device, cpu_bf16)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CPU test: a GPU serves fp32 or bf16, never int8")
def test_the_logged_model_records_the_safe_precisions_and_serves_int8_as_fp32_labels(trained, tracking, tiny_model):
    tokenizer, network = trained
    result, _, _ = check(trained, "int8", cpu_bf16=False)
    assert result.served == "int8" and "int8" in result.safe  # dynamic int8 keeps this model's validation accuracy
    tokenization = FineTuning(foundation_model=str(tiny_model), max_length=24).tokenization()
    with mlflow.start_run():
        info = log_sentiment_model(network, tokenizer, tokenization, result.model_config())
    model = mlflow.pyfunc.load_model(info.model_uri)
    assert model.model_config["safe_precisions"] == result.safe
    assert model.model_config["precision_valid_accuracy"] == pytest.approx(result.valid_accuracy)
    assert model.model_config["precision_valid_changed"] == pytest.approx(result.valid_changed)
    assert model.unwrap_python_model().precision == "int8"
    reviews = easy_reviews(60, 4)[TEXT_COLUMN].tolist()
    fp32 = labels_of(class_probabilities(tokenizer, network, reviews, 24, "head_tail")[:, 1], LABELS)
    assert np.array_equal(model.predict(reviews)["label"].to_numpy(), fp32)
