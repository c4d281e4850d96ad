"""pipeline.training.strategies: what each fine-tuning strategy trains, checked on real Lightning training."""

import lightning as L
import pytest
import torch
from transformers import AutoTokenizer

from pipeline.training.classifier import SentimentClassifier
from pipeline.parameters import FineTuning
from pipeline.training.datamodule import ReviewsDataModule
from pipeline.errors import PipelineError
from pipeline.training.strategies import strategy_callbacks


def snapshot(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


def train(tiny_model, easy_data, strategy: str, epochs: int, lr_log: list | None = None):
    L.seed_everything(0, verbose=False)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    datamodule = ReviewsDataModule(easy_data, tokenizer, FineTuning(max_length=16).tokenization(), batch_size=32)
    model = SentimentClassifier(str(tiny_model), learning_rate=1e-3)
    before = {"backbone": snapshot(model.backbone), "head": snapshot(model.model.classifier)}
    after_epoch = []

    class Record(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            after_epoch.append(snapshot(pl_module.backbone))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if lr_log is not None and batch_idx == 1:  # mid-epoch, after a scheduler step
                lr_log.append([group["lr"] for group in trainer.optimizers[0].param_groups])

    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[*strategy_callbacks(strategy, unfreeze_epoch=1), Record()])
    trainer.fit(model, datamodule=datamodule)
    return before, after_epoch, model


def test_freeze_trains_only_the_head(tiny_model, easy_data):
    before, after_epoch, model = train(tiny_model, easy_data, "freeze", epochs=1)
    assert torch.equal(before["backbone"], after_epoch[-1])
    assert not torch.equal(before["head"], snapshot(model.model.classifier))


def test_no_freeze_trains_the_backbone(tiny_model, easy_data):
    before, after_epoch, _ = train(tiny_model, easy_data, "no_freeze", epochs=1)
    assert not torch.equal(before["backbone"], after_epoch[-1])


def test_freeze_unfreeze_trains_backbone_from_unfreeze_epoch_at_lower_lr(tiny_model, easy_data):
    lrs = []
    before, after_epoch, _ = train(tiny_model, easy_data, "freeze_unfreeze", epochs=2, lr_log=lrs)
    assert torch.equal(before["backbone"], after_epoch[0])  # epoch 0: frozen
    assert not torch.equal(after_epoch[0], after_epoch[1])  # epoch 1: training
    assert len(lrs[0]) == 2 and len(lrs[1]) == 3  # the backbone joins as its own parameter group
    head_lr, backbone_lr = lrs[1][0], lrs[1][-1]
    assert backbone_lr == pytest.approx(head_lr / 10)  # a tenth of the head's, on the same schedule


def test_unknown_strategy():
    with pytest.raises(PipelineError, match="fine_tuning_strategy='partial': expected one of"):
        strategy_callbacks("partial")
