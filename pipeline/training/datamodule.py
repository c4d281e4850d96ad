"""`ReviewsDataModule`: the checked CSVs, tokenized once with the backbone's own tokenizer, in length-grouped batches."""

import hashlib
import json
import math
import os
import tempfile
from functools import cached_property
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from pipeline.on_databricks.cluster import local_path
from pipeline.data.reviews import TEXT_COLUMN, label_ids, read_dataset
from pipeline.serving.truncation import encode
from pipeline.training.epoch_seed import epoch_generator


class TokenizedReviews(Dataset):
    """Token ids (unpadded) and class ids of one split."""

    def __init__(self, input_ids: list[list[int]], labels: list[int]):
        self.input_ids = input_ids
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.input_ids[index], "labels": self.labels[index]}

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


class EpochShuffle(RandomSampler):
    """A random order that depends on (seed, epoch) alone, not on how many numbers were drawn before: Lightning
    calls `set_epoch` before each training epoch, as for the DistributedSampler it puts in its place under DDP, so a
    fit resumed at epoch k draws the order an uninterrupted fit drew there."""

    def __init__(self, data_source, seed: int):
        super().__init__(data_source)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        yield from torch.randperm(len(self.data_source), generator=epoch_generator(self.seed, self.epoch)).tolist()


class LengthGroupedBatchSampler(BatchSampler):
    """Batches of reviews of similar length, so little compute goes into padding.

    Takes the indices in the order `sampler` gives them (`EpochShuffle` for training, or a DistributedSampler's
    shard under DDP, which Lightning injects through the `sampler` argument), sorts them by length within
    windows of `window_batches` batches, and yields those batches in an order drawn from the sampler's seed and epoch.
    """

    def __init__(self, sampler, batch_size: int, drop_last: bool, lengths: list[int], window_batches: int = 64, shuffle: bool = True):
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = lengths
        self.window_batches = window_batches
        self.shuffle = shuffle

    def __iter__(self):
        indices = list(self.sampler)
        window = self.batch_size * self.window_batches
        batches = []
        for start in range(0, len(indices), window):
            chunk = sorted(indices[start : start + window], key=self.lengths.__getitem__, reverse=True)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [batch for batch in batches if len(batch) == self.batch_size]
        order = range(len(batches))
        if self.shuffle:
            order = torch.randperm(len(batches), generator=epoch_generator(self.sampler.seed, self.sampler.epoch)).tolist()
        for position in order:
            yield batches[position]

    def __len__(self) -> int:
        count = len(self.sampler)
        window = self.batch_size * self.window_batches
        full_windows, rest = divmod(count, window)
        if self.drop_last:
            return full_windows * self.window_batches + rest // self.batch_size
        return full_windows * self.window_batches + math.ceil(rest / self.batch_size)


def save_atomically(value, path: Path) -> None:
    """torch.save into a temporary file and rename it, so a crash never leaves a half-written cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(value, scratch)
        os.replace(scratch, path)
    finally:
        if os.path.exists(scratch):
            os.remove(scratch)


class ReviewsDataModule(L.LightningDataModule):
    """Reads `<data_dir>/{train,valid,test}.csv` and serves padded-per-batch token tensors.

    With a `cache_dir`, tokenizing is Lightning's `prepare_data` (one process per node, the other DDP ranks wait
    at a barrier) and `setup` on every rank reads the tokens back; without one, `setup` tokenizes in memory.
    """

    def __init__(self, data_dir: Path, tokenizer: PreTrainedTokenizerBase, tokenization: dict, batch_size: int,
                 num_workers: int = 0, pin_memory: bool = False, cache_dir: Path | None = None,
                 pad_to_multiple_of: int | None = None, seed: int = 0):
        super().__init__()
        self.seed = seed  # of the training order, and of the loaders' own generator
        self.first_epoch = 0  # of this fit: a resumed one's, from its checkpoint
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.tokenizer = tokenizer
        self.tokenization = tokenization  # `FineTuning.tokenization()`: every parameter that shapes the tokens
        self.max_length = int(tokenization["max_length"])
        self.truncation = tokenization["truncation"]
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)
        self.splits: dict[str, TokenizedReviews] = {}

    @classmethod
    def for_config(cls, config, data_dir: Path, tokenizer: PreTrainedTokenizerBase, hardware=None) -> "ReviewsDataModule":
        """The data module of a `FineTuning` configuration; `hardware` (`pipeline.training.hardware.Hardware`) sets its
        loaders (None: a process that only reads the data and tokenizes it)."""
        loading = (hardware.num_workers, hardware.pin_memory, hardware.pad_to_multiple_of) if hardware else (0, False, None)
        workers, pin_memory, pad_to_multiple_of = loading
        return cls(data_dir, tokenizer, config.tokenization(), config.batch_size, workers, pin_memory,
                   local_path(config.cache_dir), pad_to_multiple_of, config.seed)

    @cached_property
    def frames(self) -> dict[str, pd.DataFrame]:
        """The checked splits, read once per process."""
        return read_dataset(self.data_dir)

    @cached_property
    def cache_file(self) -> Path | None:
        """Where `prepare_data` leaves the tokens (None: no cache folder)."""
        return self.cache_dir / f"{self.cache_key()}.pt" if self.cache_dir else None

    def tokens_cached(self) -> bool:
        """True when an earlier run left these tokens in the cache, so `prepare_data` has nothing to do."""
        return self.cache_file is not None and self.cache_file.is_file()

    def prepare_data(self) -> None:
        """Tokenize into the cache, on the one process per node Lightning calls this on."""
        if self.cache_file is not None and not self.cache_file.is_file():
            save_atomically(self.tokenize(), self.cache_file)

    def setup(self, stage: str | None = None) -> None:
        """Every rank's tokens: those `prepare_data` cached, or, with no cache folder, tokenized here."""
        if not self.splits:
            columns = torch.load(self.cache_file) if self.cache_file is not None else self.tokenize()
            self.splits = {split: TokenizedReviews(*split_columns) for split, split_columns in columns.items()}

    def tokenize(self) -> dict[str, tuple[list[list[int]], list[int]]]:
        """(token ids, class ids) of each split."""
        columns = {}
        for split, frame in self.frames.items():
            ids = encode(self.tokenizer, frame[TEXT_COLUMN].tolist(), self.max_length, self.truncation)
            columns[split] = (ids, label_ids(frame))
        return columns

    def cache_key(self) -> str:
        """Same texts, labels, tokenizer and tokenization parameters give the same tokens: hash exactly those. The
        foundation model enters as its tokenizer (its name may be a path that differs from machine to machine)."""
        shaping = {name: value for name, value in self.tokenization.items() if name != "foundation_model"}
        digest = hashlib.sha256(f"{json.dumps(shaping, sort_keys=True)}|{type(self.tokenizer).__name__}".encode())
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        digest.update((backend.to_str() if backend else repr(sorted(self.tokenizer.get_vocab().items()))).encode())
        for split, frame in self.frames.items():
            digest.update(split.encode())
            digest.update(frame.to_csv(index=False).encode())
        return digest.hexdigest()[:24]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.splits[split]
        sampler = EpochShuffle(dataset, self.seed) if shuffle else SequentialSampler(dataset)
        return DataLoader(
            dataset,
            batch_sampler=LengthGroupedBatchSampler(sampler, self.batch_size, False, dataset.lengths, shuffle=shuffle),
            generator=torch.Generator().manual_seed(self.seed),  # workers' seeds: not drawn from the global generator
            collate_fn=self.collate,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def state_dict(self) -> dict:
        """Saved in each checkpoint, all taken at an epoch's end: the epoch a fit resumed from it trains first."""
        return {"first_epoch": self.trainer.current_epoch + 1}

    def load_state_dict(self, state_dict: dict) -> None:
        self.first_epoch = state_dict["first_epoch"]

    def train_dataloader(self) -> DataLoader:
        loader = self._loader("train", shuffle=True)
        # Lightning calls `set_epoch` when each epoch starts; a resumed fit makes its iterator before that (for the
        # schedule's step count), and loader workers take their first indices from the sampler right then.
        loader.batch_sampler.sampler.set_epoch(self.first_epoch)
        return loader

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
