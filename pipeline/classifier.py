"""`SentimentClassifier`: a Hugging Face sequence classifier trained by Lightning, with honest per-split metrics."""

import lightning as L
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score
from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

from pipeline.data import LABELS
from pipeline.errors import PipelineError, first_line


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
                 warmup_ratio: float = 0.1, compile: bool = False):
        super().__init__()
        # Kept in checkpoints, not sent to the logger: the step logs its own parameters once.
        self.save_hyperparameters(logger=False)
        self.model = load_pretrained(
            AutoModelForSequenceClassification,
            foundation_model,
            num_labels=len(LABELS),
            id2label=dict(enumerate(LABELS)),
            label2id={label: index for index, label in enumerate(LABELS)},
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
            # One fused kernel instead of a Python loop over parameters, on CUDA and (torch >= 2.4) on CPU.
            fused=self.device.type in ("cuda", "cpu"),
        )
        total_steps = self.trainer.estimated_stepping_batches
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.hparams.warmup_ratio * total_steps), total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
