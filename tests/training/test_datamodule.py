"""pipeline.training.datamodule: tokenized once, padded per batch, batches grouped by length in random order."""

import torch
from torch.utils.data import SequentialSampler
from transformers import AutoTokenizer

from pipeline.parameters import FineTuning
from pipeline.training.datamodule import EpochShuffle, LengthGroupedBatchSampler, ReviewsDataModule


def test_length_grouped_batches_cover_every_index_once():
    lengths = [(i * 37) % 101 + 1 for i in range(1000)]
    sampler = LengthGroupedBatchSampler(EpochShuffle(range(1000), seed=0), batch_size=16, drop_last=False, lengths=lengths, window_batches=8)
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    assert len(batches) == len(sampler)
    # Sorting within windows keeps lengths in a batch close: far less spread than random batches.
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 15  # random batches of 16 from 1..101 spread ~ 90
    # The order of batches is random: not sorted by length overall.
    firsts = [lengths[b[0]] for b in batches]
    assert firsts != sorted(firsts, reverse=True)


def test_the_training_order_depends_on_the_seed_and_the_epoch_alone():
    """What a resumed fit relies on: epoch k's batches whatever was drawn from torch's generator before."""
    lengths = [i % 13 + 1 for i in range(200)]

    def batches(seed: int, epoch: int) -> list[list[int]]:
        torch.rand(epoch + 3)  # other draws (dropout, an earlier epoch) in between
        shuffle = EpochShuffle(range(200), seed)
        shuffle.set_epoch(epoch)
        return list(LengthGroupedBatchSampler(shuffle, 8, False, lengths, window_batches=4))

    assert batches(7, 2) == batches(7, 2)
    assert len({str(batches(7, 2)), str(batches(7, 3)), str(batches(8, 2))}) == 3


def test_length_grouped_drop_last_and_len():
    for count in (0, 5, 16, 129, 1000):
        for drop_last in (False, True):
            sampler = LengthGroupedBatchSampler(SequentialSampler(range(count)), 16, drop_last, [1] * count, window_batches=4,
                                                shuffle=False)
            assert len(list(sampler)) == len(sampler)
            if drop_last:
                assert all(len(batch) == 16 for batch in sampler)


def test_datamodule_pads_per_batch(tiny_model, easy_data):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    datamodule = ReviewsDataModule(easy_data, tokenizer, FineTuning(max_length=12).tokenization(), batch_size=8, pad_to_multiple_of=8)
    datamodule.setup()
    assert {split: len(dataset) for split, dataset in datamodule.splits.items()} == {"train": 400, "valid": 100, "test": 100}
    assert max(datamodule.splits["train"].lengths) <= 12  # truncated to max_length
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["input_ids"].shape[1] <= 16
    assert batch["labels"].dtype == torch.long and set(batch["labels"].tolist()) <= {0, 1}
    # Every real token has attention; padding has none.
    assert (batch["attention_mask"].sum(dim=1) == torch.tensor(
        [len([t for t in row if t != tokenizer.pad_token_id]) for row in batch["input_ids"].tolist()])).all()


def test_setup_reads_the_tokens_prepare_data_cached(tiny_model, easy_data, tmp_path, monkeypatch):
    """Under DDP Lightning runs `prepare_data` on one process and `setup` on every rank: the others only read the cache."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    preparing = ReviewsDataModule(easy_data, tokenizer, FineTuning(max_length=12).tokenization(), batch_size=8, cache_dir=tmp_path)
    assert not preparing.tokens_cached()
    preparing.prepare_data()
    assert preparing.tokens_cached() and len(list(tmp_path.glob("*.pt"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("tokenized again")

    other_tokenizer = AutoTokenizer.from_pretrained(tiny_model)  # each rank loads its own
    monkeypatch.setattr(type(other_tokenizer), "__call__", refuse)
    other_rank = ReviewsDataModule(easy_data, other_tokenizer, FineTuning(max_length=12).tokenization(), batch_size=8, cache_dir=tmp_path)
    other_rank.setup("fit")
    preparing.prepare_data()  # Lightning calls it again for trainer.test: nothing left to do
    assert {split: len(dataset) for split, dataset in other_rank.splits.items()} == {"train": 400, "valid": 100, "test": 100}
    assert max(other_rank.splits["train"].lengths) <= 12


def test_the_token_cache_key_covers_every_tokenization_parameter(tiny_model, easy_data):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)

    def key(tokenization: dict) -> str:
        return ReviewsDataModule(easy_data, tokenizer, tokenization, batch_size=8).cache_key()

    base = FineTuning(max_length=12).tokenization()
    assert key(base) != key(base | {"max_length": 13})
    assert key(base) != key(base | {"truncation": "head"})
    assert key(base) != key(base | {"a_later_tokenization_parameter": 1})  # a new `tokens=True` field enters by itself
    assert key(base) == key(base | {"foundation_model": "/another/copy/of/it"})  # the model enters as its tokenizer
