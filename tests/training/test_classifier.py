"""pipeline.training.classifier: honest metrics (macro-F1 is not accuracy), one-line load errors, decay only where it belongs."""

import logging
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from transformers import AutoModelForSequenceClassification, BertConfig, BertModel

from pipeline.logs import LOGGER
from pipeline.training.classifier import SentimentClassifier, check_backbone, load_backbone, load_pretrained, load_tokenizer
from pipeline.training.classifier import sentiment_metrics
from pipeline.errors import PipelineError
from pipeline.training.hardware import BF16MixedPrecision


def test_macro_f1_weighs_both_classes_where_accuracy_does_not():
    metrics = sentiment_metrics("test_")
    predictions, truth = torch.tensor([1, 1, 1, 1]), torch.tensor([1, 1, 1, 0])  # always "positive"
    scores = {name: float(value) for name, value in metrics(predictions, truth).items()}
    assert scores["test_accuracy"] == pytest.approx(0.75)
    assert scores["test_macro_f1"] == pytest.approx((0 + 6 / 7) / 2)  # F1 0 for "negative", 6/7 for "positive"


def test_a_model_that_cannot_be_loaded_is_one_line_saying_how_to_work_offline(tmp_path):
    with pytest.raises(PipelineError, match=r"foundation_model='.*nothing': cannot load it .*-P foundation_model=/path/to/folder"):
        load_pretrained(AutoModelForSequenceClassification, str(tmp_path / "nothing"))


@pytest.fixture
def pipeline_records(caplog):
    """The `pipeline` logger's records, whether or not an earlier test configured it not to propagate."""
    propagate, LOGGER.propagate = LOGGER.propagate, True
    caplog.set_level(logging.DEBUG, logger=LOGGER.name)
    yield caplog
    LOGGER.propagate = propagate


def test_a_new_head_is_no_warning_and_a_backbone_weight_missing_from_the_checkpoint_is_one(tiny_model, tmp_path,
                                                                                           pipeline_records, capfd):
    """Transformers' load report calls the new head's weights missing, in a block of warning lines, at every load."""
    load_backbone(str(tiny_model), num_labels=2)
    printed = capfd.readouterr()
    assert "LOAD REPORT" not in printed.err + printed.out and "initialized" not in printed.err + printed.out
    assert [record.levelno for record in pipeline_records.records] == [logging.DEBUG]
    assert "new head ['classifier.bias', 'classifier.weight']" in pipeline_records.records[0].getMessage()
    BertModel(BertConfig.from_pretrained(tiny_model), add_pooling_layer=False).save_pretrained(tmp_path)  # no pooler
    load_backbone(str(tmp_path), num_labels=2)
    assert [record.getMessage() for record in pipeline_records.records
                                                if record.levelno == logging.WARNING] == [
        f"foundation_model='{tmp_path}': 2 weights of the backbone are not in its checkpoint and start random "
        "(bert.pooler.dense.bias, bert.pooler.dense.weight)"]


def test_a_fresh_head_in_training_mode_and_decay_only_on_weight_matrices(tiny_model):
    model = SentimentClassifier(str(tiny_model), learning_rate=3e-3, weight_decay=0.05, warmup_ratio=0.2)
    assert model.model.config.id2label == {0: "negative", 1: "positive"} and model.model.training
    model.trainer = SimpleNamespace(estimated_stepping_batches=10, precision="32-true", precision_plugin=Precision())  # what it asks
    configured = model.configure_optimizers()
    assert configured["optimizer"].defaults["fused"]  # fp32 on a CPU: one fused kernel
    model.trainer = SimpleNamespace(estimated_stepping_batches=10, precision="bf16-mixed", precision_plugin=BF16MixedPrecision("cpu"))
    assert model.configure_optimizers()["optimizer"].defaults["fused"]  # bf16: nothing scaled, clipping allowed
    for plugin in (MixedPrecision("bf16-mixed", "cpu"), MixedPrecision("16-mixed", "cpu")):  # Lightning's own: no clipping of fused steps
        model.trainer = SimpleNamespace(estimated_stepping_batches=10, precision=plugin.precision, precision_plugin=plugin)
        assert not model.configure_optimizers()["optimizer"].defaults["fused"]
    decay, no_decay = configured["optimizer"].param_groups
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0 and decay["initial_lr"] == 3e-3
    assert all(parameter.ndim == 2 for parameter in decay["params"])
    assert {names[id(parameter)].rsplit(".", 1)[1] for parameter in no_decay["params"]} == {"bias", "weight"}  # LayerNorm's
    assert all("LayerNorm" in names[id(p)] or names[id(p)].endswith("bias") for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    scheduler = configured["lr_scheduler"]["scheduler"]
    assert scheduler.lr_lambdas[0](0) == 0.0 and scheduler.lr_lambdas[0](2) == 1.0  # 2 warm-up steps of 10, then decay


def test_a_decoder_backbone_pads_with_its_end_of_sequence_token(tiny_decoder):
    """GPT-2 style: no pad token. Its EOS pads, and the model is told, so a padded batch classifies each review at
    its own last token (a padded and an unpadded review score the same)."""
    tokenizer = load_tokenizer(str(tiny_decoder))
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    model = SentimentClassifier(str(tiny_decoder), pad_token_id=tokenizer.pad_token_id).model.eval()
    assert model.config.pad_token_id == tokenizer.pad_token_id
    short, long = tokenizer(["a great film", "a dull and tedious and far too long film"])["input_ids"]
    padded = torch.tensor([short + [tokenizer.pad_token_id] * (len(long) - len(short)), long])
    mask = (torch.arange(len(long)) < torch.tensor([[len(short)], [len(long)]])).long()
    with torch.no_grad():
        batch = model(input_ids=padded, attention_mask=mask).logits
        alone = model(input_ids=torch.tensor([short])).logits
    assert torch.allclose(batch[0], alone[0], atol=1e-5)


def test_a_folder_without_a_tokenizer_is_refused(tiny_model, tmp_path):
    """Config and weights but no tokenizer files: without a vocabulary every token is unknown; refused in one line."""
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((tiny_model / name).read_bytes())
    with pytest.raises(PipelineError, match=r"^foundation_model='.*weights-only': no tokenizer files in the folder; save the backbone's tokenizer with it"):
        load_tokenizer(str(folder))


@pytest.mark.parametrize("missing", ["{tmp}/no-such-model", "./no-such-model", "~/no-such-model"])
def test_a_folder_that_does_not_exist_is_said_to_be_missing_not_a_bad_hub_id(tmp_path, monkeypatch, missing):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    path = missing.format(tmp=tmp_path)
    with pytest.raises(PipelineError, match=rf"^foundation_model='{path}': no such folder \(a local model is a folder saved with save_pretrained"):
        load_tokenizer(path)


def test_a_tokenizer_without_a_vocabulary_is_refused(tiny_model, tmp_path):
    """Tokenizer files that hold no vocabulary (special tokens only): every token would be unknown."""
    from transformers import BertTokenizerFast

    folder = tmp_path / "empty-vocabulary"
    folder.mkdir()
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    with pytest.raises(PipelineError, match=r"^foundation_model='.*empty-vocabulary': its tokenizer has 5 tokens, no vocabulary; save"):
        load_tokenizer(str(folder))


@pytest.mark.parametrize(("max_length", "refused"), [(128, False), (129, True), (256, True)])
def test_max_length_is_checked_against_the_model_s_positions(tiny_model, max_length, refused):
    tokenizer = load_tokenizer(str(tiny_model))  # 128 positions
    if refused:
        with pytest.raises(PipelineError, match=rf"^max_length={max_length}: '.*' takes at most 128 tokens; pass -P max_length=128 or less$"):
            check_backbone(str(tiny_model), tokenizer, max_length)
    else:
        check_backbone(str(tiny_model), tokenizer, max_length)


def test_an_encoder_decoder_backbone_is_refused_before_training(tiny_model, tmp_path):
    """BART/T5 style: refused in one line naming what to pick instead, not a traceback mid-epoch."""
    from transformers import BartConfig, BartModel

    folder = tmp_path / "tiny-bart"
    BartModel(BartConfig(vocab_size=1500, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                         decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                         max_position_embeddings=64)).save_pretrained(folder)
    tokenizer = load_tokenizer(str(tiny_model))  # any real tokenizer: the check is the model's
    with pytest.raises(PipelineError, match=r"^foundation_model='.*tiny-bart': an encoder-decoder model \(bart\); fine-tune an encoder"):
        check_backbone(str(folder), tokenizer, 32)
