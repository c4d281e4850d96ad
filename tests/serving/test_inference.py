"""pipeline/serving/inference.py: length-sorted batches give each review the probabilities it gets alone, in the caller's order."""

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from pipeline.serving.inference import blend, class_probabilities, cpu_precisions, forward_passes, in_precision, labels_of
from pipeline.serving import inference
from pipeline.serving.inference import AUTO_ORDER, TOKENS_PER_PASS, auto_order, native_cpu_bf16, padded, served_precision
from pipeline.serving.truncation import encode


@pytest.fixture(scope="module")
def classifier(tiny_model):
    network = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2).eval()
    return AutoTokenizer.from_pretrained(tiny_model), network


def test_each_review_scores_as_it_does_alone_and_in_order(classifier):
    tokenizer, network = classifier
    texts = ["great", "a long and winding review of a film that was dull", "bad film", "fine " * 30, "ok"]
    batched = class_probabilities(tokenizer, network, texts, max_length=24, truncation="head_tail", tokens_per_pass=40)
    with torch.inference_mode():
        alone = [network(input_ids=torch.tensor([ids])).logits.softmax(-1)[0].numpy()
                 for ids in encode(tokenizer, texts, 24, "head_tail")]
    assert batched.shape == (5, 2) and np.allclose(batched.sum(axis=1), 1)
    assert np.allclose(batched, np.stack(alone), atol=1e-5)


def test_forward_passes_stay_within_the_token_budget_shortest_first(classifier):
    tokenizer, network = classifier
    texts = ["fine " * words for words in (3, 20, 1, 7, 7, 2, 12, 5)]
    shapes = []
    hook = network.register_forward_hook(lambda module, args, kwargs, output: shapes.append(tuple(kwargs["input_ids"].shape)),
                                         with_kwargs=True)
    try:
        class_probabilities(tokenizer, network, texts, max_length=16, truncation="head", tokens_per_pass=30)
    finally:
        hook.remove()
    lengths = sorted(len(ids) for ids in encode(tokenizer, texts, 16, "head"))
    assert sum(reviews for reviews, _ in shapes) == len(texts) and len(shapes) > 1
    assert all(reviews * longest <= 30 or reviews == 1 for reviews, longest in shapes)
    assert [longest for _, longest in shapes] == sorted(longest for _, longest in shapes)
    assert shapes[-1][1] == lengths[-1]  # the longest review comes last, padded to nothing longer than itself


def test_forward_passes_put_a_review_longer_than_the_budget_alone():
    assert list(forward_passes([[1] * 50, [1] * 2, [1] * 3], tokens_per_pass=10)) == [[1, 2], [0]]


def test_a_network_in_training_mode_scores_without_dropout_and_stays_in_training_mode(classifier):
    """A LightningModule's network is in training mode (dropout on) when the step scores it."""
    tokenizer, network = classifier
    texts = ["great", "bad film", "fine " * 10]
    expected = class_probabilities(tokenizer, network, texts, max_length=24, truncation="head")
    network.train()
    try:
        again = [class_probabilities(tokenizer, network, texts, max_length=24, truncation="head") for _ in range(2)]
        assert network.training
    finally:
        network.eval()
    assert (again[0] == expected).all() and (again[1] == expected).all()


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_matches_the_tokenizers_own(classifier, side):
    tokenizer, _ = classifier
    ids = encode(tokenizer, ["a much longer review than the other", "short"], 24, "head")
    tokenizer.padding_side = side
    try:
        expected = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
    finally:
        tokenizer.padding_side = "right"
    input_ids, attention_mask = padded(ids, tokenizer.pad_token_id, side)
    assert torch.equal(input_ids, expected["input_ids"]) and torch.equal(attention_mask, expected["attention_mask"])


def test_blend_weighs_the_transformer_by_weight():
    assert blend(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.25) == pytest.approx([0.25, 0.75])


def test_labels_of_puts_one_half_on_the_positive_side():
    assert list(labels_of(np.array([0.0, 0.4999, 0.5, 1.0]), ("negative", "positive"))) == [
        "negative", "negative", "positive", "positive"]


@pytest.mark.parametrize(("asked", "safe", "cpu_bf16", "served"), [
    ("auto", ["fp32", "int8", "bf16"], True, "bf16"),  # the first safe one of AUTO_ORDER
    ("auto", ["fp32", "int8", "bf16"], False, "int8"),  # bf16 would be emulated here: slower than fp32
    ("auto", ["fp32", "bf16"], False, "fp32"),
    ("auto", ["fp32", "int8"], True, "int8"),  # bf16 changed labels when the model was logged
    ("auto", ["fp32"], True, "fp32"),
    ("int8", ["fp32"], True, "int8"),  # asked by name: served as asked
    ("fp32", ["fp32", "int8", "bf16"], True, "fp32"),
])
def test_auto_serves_the_first_recorded_safe_precision_of_auto_order_this_cpu_runs(asked, safe, cpu_bf16, served):
    assert AUTO_ORDER == ("bf16", "int8", "fp32")  # BENCHMARKS.md, machine C (AMX)
    assert served_precision(asked, safe, cpu_bf16, amx=True) == served


@pytest.mark.parametrize(("safe", "served"), [(["fp32", "int8", "bf16"], "int8"), (["fp32", "bf16"], "bf16"), (["fp32"], "fp32")])
def test_a_bf16_cpu_without_amx_tries_int8_first(safe, served):
    """AVX512-BF16 without AMX tiles (an AMD EPYC): bf16 runs on vector units, and int8 was the faster there."""
    assert served_precision("auto", safe, True, amx=False) == served
    assert auto_order("cuda", amx=False) == AUTO_ORDER  # a GPU: bf16 first wherever its cores have it


@pytest.mark.parametrize(("asked", "safe", "device", "bf16", "served"), [
    ("auto", ["fp32", "int8", "bf16"], "cuda", True, "bf16"),  # an A100, L4, H100: bf16 tensor cores
    ("auto", ["fp32", "int8", "bf16"], "cuda", False, "fp32"),  # a T4: bf16 would be emulated
    ("auto", ["fp32", "int8"], "cuda", True, "fp32"),  # int8 is dynamic quantization, a CPU path
    ("bf16", ["fp32"], "cuda", True, "bf16"),  # asked by name, and the card runs it
    ("int8", ["fp32", "int8"], "cuda", True, "fp32"),  # asked by name, but no GPU path: fp32 on the GPU
    ("bf16", ["fp32", "bf16"], "mps", True, "fp32"),
])
def test_a_gpu_serves_bf16_only_where_its_cores_have_it_and_never_int8(asked, safe, device, bf16, served):
    assert served_precision(asked, safe, bf16, device) == served


def test_a_bf16_network_on_a_cpu_scores_in_bigger_passes(classifier, monkeypatch):
    """bf16 on a CPU takes `TOKENS_PER_PASS["cpu-bf16"]` padded tokens a pass, fp32 and int8 the CPU's own."""
    tokenizer, network = classifier
    budgets = []
    original = inference.forward_passes
    monkeypatch.setattr(inference, "forward_passes", lambda ids, budget: budgets.append(budget) or original(ids, budget))
    for precision in ("fp32", "int8", "bf16"):
        class_probabilities(tokenizer, in_precision(network, precision), ["a review"], max_length=24, truncation="head_tail")
    assert budgets == [TOKENS_PER_PASS["cpu"]] * 2 + [TOKENS_PER_PASS["cpu-bf16"]]


def test_bf16_counts_only_where_the_cpu_has_it_natively():
    assert cpu_precisions(True) == ("fp32", "int8", "bf16") and cpu_precisions(False) == ("fp32", "int8")
    flags = set(open("/proc/cpuinfo").read().split()) if Path("/proc/cpuinfo").exists() else None
    if flags is None or not {"avx2", "avx512f", "neon", "asimd"} & flags:
        pytest.skip("no /proc/cpuinfo flags to compare with")
    assert native_cpu_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_int8_and_bf16_copies_score_close_to_fp32_and_leave_it_untouched(classifier):
    tokenizer, network = classifier
    texts = ["great", "a long and winding review of a film that was dull", "bad film", "fine " * 30]
    fp32 = class_probabilities(tokenizer, network, texts, max_length=24, truncation="head_tail")
    assert in_precision(network, "fp32") is network
    int8, bf16 = in_precision(network, "int8"), in_precision(network, "bf16")
    assert isinstance(int8.bert.encoder.layer[0].intermediate.dense, torch.ao.nn.quantized.dynamic.Linear)
    assert next(bf16.parameters()).dtype == torch.bfloat16 and next(network.parameters()).dtype == torch.float32
    for copy in (int8, bf16):
        assert np.allclose(class_probabilities(tokenizer, copy, texts, max_length=24, truncation="head_tail"), fp32, atol=0.02)
    assert np.array_equal(class_probabilities(tokenizer, network, texts, max_length=24, truncation="head_tail"), fp32)
