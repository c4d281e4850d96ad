"""Each epoch's randomness from (seed, epoch) alone, so a resumed fit trains as an uninterrupted one.

A fit resumed from `last.ckpt` gets the model, optimizer and schedule back, but not the random number generators
(Lightning's checkpoint does not hold them), and Lightning makes the resumed epoch's batch iterator before the
epoch starts, where an uninterrupted fit makes it after: the resumed epoch would shuffle and drop out differently
and end with another model. So the training order comes from `epoch_generator` (`datamodule.EpochShuffle`, told
its first epoch by the checkpoint; the loaders' own generator), and `EpochSeed` reseeds Python's, NumPy's and
torch's global generators (CPU and every GPU), which dropout draws from, when each training epoch starts: every
rank of a DDP fit gets the same seeds, as `seed_everything` gave them.
"""

import random

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed for each (seed, epoch): NumPy's SeedSequence mixes the two, so (42, 1) and (43, 0) are unrelated."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(epoch_seed(seed, epoch))


class EpochSeed(Callback):
    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        seed = epoch_seed(self.seed, trainer.current_epoch)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # also every CUDA device's generator
