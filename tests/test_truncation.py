"""pipeline/truncation.py: head, tail and head + tail of long reviews, special tokens in place."""

import pytest
from transformers import AutoTokenizer

from pipeline.truncation import TRUNCATIONS, encode, keep


def test_keep_takes_the_head_the_tail_or_a_quarter_and_three_quarters():
    ids = list(range(100))
    assert keep(ids, 20, "head") == list(range(20))
    assert keep(ids, 20, "tail") == list(range(80, 100))
    assert keep(ids, 20, "head_tail") == list(range(5)) + list(range(85, 100))
    for how in TRUNCATIONS:
        assert keep(ids[:10], 20, how) == ids[:10]  # short reviews stay whole
    with pytest.raises(ValueError, match=r"truncation='middle': expected one of \['head', 'tail', 'head_tail'\]"):
        keep(ids, 20, "middle")


def test_encode_keeps_special_tokens_around_the_kept_text(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    text = "the film was wonderful " * 10 + "in short it was awful"
    (head,), (head_tail,) = (encode(tokenizer, [text], 16, how) for how in ("head", "head_tail"))
    for ids in (head, head_tail):
        assert len(ids) == 16 and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert "awful" not in tokenizer.decode(head) and tokenizer.decode(head_tail).endswith("in short it was awful [SEP]")
    assert encode(tokenizer, ["short one"], 16, "head_tail") == [tokenizer("short one")["input_ids"]]
