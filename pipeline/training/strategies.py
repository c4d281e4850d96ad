"""Fine-tuning strategies (the lightning-flash idea) as Lightning `BaseFinetuning` callbacks.

- `no_freeze`: train backbone and head together from the first step (the default: best accuracy).
- `freeze`: keep the pretrained backbone fixed and train only the head (fast, but a small backbone such as
  bert-tiny has too little in its frozen features: the book's 0.59 accuracy).
- `freeze_unfreeze`: train the head first; from epoch `unfreeze_epoch` the backbone too, at a tenth of the
  head's learning rate and on the same warm-up/decay schedule.
"""

from lightning.pytorch.callbacks import BaseFinetuning, Callback
from torch.optim.lr_scheduler import LambdaLR

from pipeline.errors import PipelineError
from pipeline.parameters import STRATEGIES



class FreezeBackbone(BaseFinetuning):
    """Freeze `pl_module.backbone` for the whole run."""

    def freeze_before_training(self, pl_module) -> None:
        self.freeze(pl_module.backbone)

    def finetune_function(self, pl_module, current_epoch, optimizer) -> None:
        """Nothing to unfreeze: the backbone stays fixed."""


class FreezeUnfreeze(FreezeBackbone):
    """Freeze `pl_module.backbone`, then train it as a new parameter group from `unfreeze_epoch` on."""

    def __init__(self, unfreeze_epoch: int = 1, backbone_lr_ratio: float = 0.1):
        super().__init__()
        self.unfreeze_epoch = unfreeze_epoch
        self.backbone_lr_ratio = backbone_lr_ratio

    def finetune_function(self, pl_module, current_epoch, optimizer) -> None:
        if current_epoch == self.unfreeze_epoch:
            self.unfreeze_and_add_param_group(pl_module.backbone, optimizer,
                                              lr=pl_module.hparams.learning_rate * self.backbone_lr_ratio)
        # Also after a resume, which restores the group but not the scheduler's per-group functions.
        for config in pl_module.trainer.lr_scheduler_configs:
            if config.scheduler.optimizer is optimizer and isinstance(config.scheduler, LambdaLR):
                extend_schedule(config.scheduler)


def extend_schedule(scheduler: LambdaLR) -> None:
    """Put parameter groups added after the scheduler was built on its schedule (the first group's function)."""
    groups = scheduler.optimizer.param_groups
    while len(scheduler.lr_lambdas) < len(groups):
        scheduler.lr_lambdas.append(scheduler.lr_lambdas[0])
    while len(scheduler.base_lrs) < len(groups):
        group = groups[len(scheduler.base_lrs)]
        scheduler.base_lrs.append(group.setdefault("initial_lr", group["lr"]))


def strategy_callbacks(strategy: str, unfreeze_epoch: int = 1) -> list[Callback]:
    if strategy == "no_freeze":
        return []
    if strategy == "freeze":
        return [FreezeBackbone()]
    if strategy == "freeze_unfreeze":
        return [FreezeUnfreeze(unfreeze_epoch)]
    raise PipelineError(f"fine_tuning_strategy={strategy!r}: expected one of {list(STRATEGIES)}")
