"""Fine-tuning strategies (the lightning-flash idea) as Lightning `BaseFinetuning` callbacks.

- `no_freeze`: train backbone and head together from the first step (the default: best accuracy).
- `freeze`: keep the pretrained backbone fixed and train only the head (fast, but a small backbone such as
  bert-tiny has too little in its frozen features: the book's 0.59 accuracy).
- `freeze_unfreeze`: train the head first, then from epoch `unfreeze_epoch` the backbone too, starting at a
  tenth of the head's learning rate and rising (Lightning's `BackboneFinetuning`).
"""

from lightning.pytorch.callbacks import BackboneFinetuning, BaseFinetuning, Callback

from pipeline.errors import PipelineError

STRATEGIES = ("no_freeze", "freeze", "freeze_unfreeze")


class FreezeBackbone(BaseFinetuning):
    """Freeze `pl_module.backbone` for the whole run."""

    def freeze_before_training(self, pl_module) -> None:
        self.freeze(pl_module.backbone)

    def finetune_function(self, pl_module, current_epoch, optimizer) -> None:
        """Nothing to unfreeze: the backbone stays fixed."""


def strategy_callbacks(strategy: str, unfreeze_epoch: int = 1) -> list[Callback]:
    if strategy == "no_freeze":
        return []
    if strategy == "freeze":
        return [FreezeBackbone()]
    if strategy == "freeze_unfreeze":
        return [BackboneFinetuning(unfreeze_backbone_at_epoch=unfreeze_epoch, backbone_initial_ratio_lr=0.1, should_align=True)]
    raise PipelineError(f"fine_tuning_strategy={strategy!r}: expected one of {list(STRATEGIES)}")
