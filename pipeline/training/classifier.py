"""`SentimentClassifier`: a Hugging Face sequence classifier trained by Lightning, with honest per-split metrics."""

import contextlib
import logging
from pathlib import Path

import lightning as L
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup
from transformers.utils import logging as transformers_logging

from pipeline.data.reviews import LABELS
from pipeline.errors import PipelineError, first_line
from pipeline.logs import LOGGER
from pipeline.training.hardware import BF16MixedPrecision


def load_pretrained(auto_class, foundation_model: str, **kwargs):
    """`auto_class.from_pretrained` with a one-line error that says how to work offline."""
    try:
        return auto_class.from_pretrained(foundation_model, **kwargs)
    except (OSError, ValueError) as error:
        reason = first_line(error)[:300]
        raise PipelineError(
            f"foundation_model={foundation_model!r}: cannot load it from the Hugging Face Hub or a local folder ({reason}); "
            "offline, pass -P foundation_model=/path/to/folder saved with save_pretrained()"
        ) from None


@contextlib.contextmanager
def transformers_errors_only():
    before = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        transformers_logging.set_verbosity(before)


def load_backbone(foundation_model: str, **kwargs):
    """The backbone with a new classification head. Transformers reports the head's fresh weights in a warning block
    (its load report) although a new head is what fine-tuning means; the report is read here instead: the new and
    the unused weights at DEBUG, one warning where weights of the backbone itself were not in the checkpoint."""
    with transformers_errors_only():
        model, loading = load_pretrained(AutoModelForSequenceClassification, foundation_model, output_loading_info=True, **kwargs)
    backbone = f"{model.base_model_prefix}."
    fresh = [key for key in loading["missing_keys"] if key.startswith(backbone)]
    LOGGER.debug("foundation_model=%r: new head %s; checkpoint weights not used: %s", foundation_model,
                 sorted(loading["missing_keys"]), sorted(loading["unexpected_keys"]) or "none")
    if fresh:
        LOGGER.warning("foundation_model=%r: %d weights of the backbone are not in its checkpoint and start random (%s)",
                       foundation_model, len(fresh), ", ".join(sorted(fresh)[:3]) + (", ..." if len(fresh) > 3 else ""))
    return model


MIN_VOCABULARY = 100  # fewer entries is no tokenizer: a folder saved without one loads with its special tokens only
# What a saved tokenizer leaves in its folder (one of them at least), across the tokenizer kinds of transformers 4 and 5
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
SAVE_TOKENIZER = "save the backbone's tokenizer with it (tokenizer.save_pretrained(folder))"


def looks_like_a_path(value: str) -> bool:
    """A value no hub id can be: absolute, or starting with `.`, `~` or a drive letter (hub ids are `name` or `org/name`)."""
    return value.startswith(("/", ".", "~", "\\")) or (len(value) > 1 and value[1] == ":")


def load_tokenizer(foundation_model: str):
    """The backbone's tokenizer, checked before anything trains on it: a real vocabulary (without one every token is
    unknown and the model learns nothing), and a pad token. Decoder-only backbones (GPT-2 style) have none: their
    end-of-sequence token pads, as Hugging Face's own examples do, and the model is told (`pad_token_id`)."""
    folder = Path(foundation_model).expanduser()
    if looks_like_a_path(foundation_model) and not folder.is_dir():
        raise PipelineError(f"foundation_model={foundation_model!r}: no such folder (a local model is a folder saved with "
                            "save_pretrained; a hub model is named like prajjwal1/bert-tiny)")
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise PipelineError(f"foundation_model={foundation_model!r}: no tokenizer files in the folder; {SAVE_TOKENIZER}")
    tokenizer = load_pretrained(AutoTokenizer, foundation_model)
    if len(tokenizer) < MIN_VOCABULARY:
        raise PipelineError(f"foundation_model={foundation_model!r}: its tokenizer has {len(tokenizer)} tokens, no vocabulary; "
                            f"{SAVE_TOKENIZER}")
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise PipelineError(f"foundation_model={foundation_model!r}: its tokenizer has neither a pad nor an end-of-sequence "
                                "token to pad batches with")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_backbone(foundation_model: str, tokenizer, max_length: int) -> None:
    """What would fail only mid-training, said before it: an encoder-decoder backbone (its classification head needs
    every review to end in the same number of EOS tokens, which truncation does not keep), and a `max_length` beyond
    the model's positions (a tensor-shape error mid-epoch)."""
    config = load_pretrained(AutoConfig, foundation_model)
    if getattr(config, "is_encoder_decoder", False):
        raise PipelineError(f"foundation_model={foundation_model!r}: an encoder-decoder model ({config.model_type}); fine-tune "
                            "an encoder (BERT, RoBERTa, DeBERTa, MiniLM) or a decoder (GPT-2 style) instead")
    limits = [getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    limits = [int(limit) for limit in limits if isinstance(limit, int) and 0 < limit < 1_000_000]  # HF's "no limit" is 1e30
    if limits and max_length > min(limits):
        raise PipelineError(f"max_length={max_length}: {foundation_model!r} takes at most {min(limits)} tokens; "
                            f"pass -P max_length={min(limits)} or less")


def sentiment_metrics(prefix: str) -> MetricCollection:
    """Accuracy and macro-averaged F1 over the two classes (torchmetrics' plain `F1Score` would be micro = accuracy)."""
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes=len(LABELS), average="micro"),
            "macro_f1": MulticlassF1Score(num_classes=len(LABELS), average="macro"),
        },
        prefix=prefix,
    )


class SentimentClassifier(L.LightningModule):
    """A pretrained backbone plus a fresh classification head, trained with AdamW and linear warm-up/decay."""

    def __init__(self, foundation_model: str, learning_rate: float = 1e-4, weight_decay: float = 0.01,
                 warmup_ratio: float = 0.1, compile: bool = False, pad_token_id: int | None = None):
        super().__init__()
        # Kept in checkpoints, not sent to the logger: the step logs its own parameters once.
        self.save_hyperparameters(logger=False)
        self.model = load_backbone(
            foundation_model,
            num_labels=len(LABELS),
            id2label=dict(enumerate(LABELS)),
            label2id={label: index for index, label in enumerate(LABELS)},
            **({"pad_token_id": pad_token_id} if pad_token_id is not None else {}),  # a decoder finds each review's end by it
        )
        self.model.train()  # from_pretrained() returns eval mode; Lightning keeps the modes it is given
        if compile:
            # In place: parameter names (checkpoints, save_pretrained) stay those of the plain model.
            # dynamic=True: batches are padded to their own length, so shapes vary.
            self.model.compile(dynamic=True)
        self.train_metrics = sentiment_metrics("train_")
        self.val_metrics = sentiment_metrics("val_")
        self.test_metrics = sentiment_metrics("test_")
        self.test_confusion = MulticlassConfusionMatrix(num_classes=len(LABELS))
        self.test_confusion_matrix: torch.Tensor | None = None  # rows: true class, columns: predicted

    @property
    def backbone(self) -> torch.nn.Module:
        """The pretrained encoder; the fine-tuning strategies freeze and unfreeze this."""
        return self.model.base_model

    def _step(self, batch: dict, metrics: MetricCollection, stage: str) -> torch.Tensor:
        output = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        predictions = output.logits.argmax(dim=-1)
        metrics.update(predictions, batch["labels"])
        if stage == "test":
            self.test_confusion.update(predictions, batch["labels"])
        batch_size = batch["labels"].shape[0]
        self.log(f"{stage}_loss", output.loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size, sync_dist=stage != "train")
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=batch_size)
        return output.loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, self.train_metrics, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, self.val_metrics, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, self.test_metrics, "test")

    def on_test_epoch_end(self):
        self.test_confusion_matrix = self.test_confusion.compute().cpu()  # summed over DDP ranks
        self.test_confusion.reset()

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:  # a frozen backbone joins later through the fine-tuning callback
                (no_decay if parameter.ndim < 2 else decay).append(parameter)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.learning_rate,
            # One fused kernel instead of a loop over parameters, on CUDA and (torch >= 2.4) on CPU; in fp32, and in
            # bf16-mixed through `BF16MixedPrecision`: a fused step unscales fp16 gradients itself, so Lightning
            # refuses it with the gradient clipping we use under its own mixed precisions.
            fused=self.device.type in ("cuda", "cpu") and (
                self.trainer.precision == "32-true" or isinstance(self.trainer.precision_plugin, BF16MixedPrecision)),
        )
        total_steps = self.trainer.estimated_stepping_batches
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.hparams.warmup_ratio * total_steps), total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
