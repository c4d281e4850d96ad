"""Which tokens of a long review the model sees: its head, its tail, or both (`head_tail`, the default).

IMDB reviews often run past the token budget and often end with the verdict ("...in short, skip it"). Sun et
al., *How to Fine-Tune BERT for Text Classification?* (2019), found head + tail best on IMDB: the first quarter
of the budget from the start, the other three quarters from the end. Training and the logged model both encode
through `encode`, so the served model truncates exactly as training did (MLflow ships this file with the model).
This module imports nothing from the project.
"""

import functools

TRUNCATIONS = ("head", "tail", "head_tail")


def keep(ids: list[int], budget: int, how: str) -> list[int]:
    """The at most `budget` token ids of `ids` that `how` keeps, in their original order."""
    if how not in TRUNCATIONS:
        raise ValueError(f"truncation={how!r}: expected one of {list(TRUNCATIONS)}")
    if len(ids) <= budget:
        return ids
    if how == "head":
        return ids[:budget]
    if how == "tail":
        return ids[len(ids) - budget:]
    head = budget // 4
    return ids[:head] + ids[len(ids) - (budget - head):]


def encode(tokenizer, texts: list[str], max_length: int, how: str) -> list[list[int]]:
    """Token ids with the tokenizer's special tokens ([CLS] ... [SEP] for BERT), at most `max_length` per text."""
    prefix, suffix = map(list, special_tokens_around(tokenizer))
    budget = max_length - len(prefix) - len(suffix)
    if budget < 1:
        raise ValueError(f"max_length={max_length} leaves no room for text next to the special tokens")
    pieces = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    return [prefix + keep(ids, budget, how) + suffix for ids in pieces]


@functools.lru_cache(maxsize=16)  # per tokenizer object: serving encodes one review per call at batch size 1
def special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after one text, read off an encoded probe (any tokenizer family)."""
    bare = tokenizer("review", add_special_tokens=False)["input_ids"]
    wrapped = tokenizer("review")["input_ids"]
    start = next(index for index in range(len(wrapped) - len(bare) + 1) if wrapped[index:index + len(bare)] == bare)
    return tuple(wrapped[:start]), tuple(wrapped[start + len(bare):])
