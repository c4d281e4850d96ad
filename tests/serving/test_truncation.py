"""pipeline/serving/truncation.py: head, tail and head + tail of long reviews, special tokens in place."""

import mlflow
import pytest
from transformers import AutoTokenizer

from conftest import cli_runner, verdict_last_reviews, write_splits
from pipeline import fine_tuning_model
from pipeline.serving.truncation import TRUNCATIONS, encode, keep


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


def test_head_tail_learns_a_verdict_at_the_end_and_serves_it(tracking, tiny_model, tmp_path):
    """Reviews of ~70 tokens cut to 16: the head sees filler only, head + tail sees the verdict; the served model
    cuts as training did."""
    data = write_splits(tmp_path / "long", {"train": verdict_last_reviews(400, 1), "valid": verdict_last_reviews(100, 2),
                                           "test": verdict_last_reviews(100, 3)})
    scores = {}
    for how in ("head", "head_tail"):
        result = cli_runner().invoke(fine_tuning_model.main, [
            "--foundation-model", str(tiny_model), "--data-path", str(data), "--truncation", how, "--max-length", "16",
            "--epochs", "3", "--batch-size", "16", "--learning-rate", "3e-3", "--checkpoint-dir", str(tmp_path / "ckpt"),
            "--cache-dir", str(tmp_path / "cache")])
        assert result.exit_code == 0, result.output
        run = mlflow.search_runs(experiment_names=["Default"], output_format="list", max_results=1,
                                 order_by=["attributes.start_time DESC"])[0]
        scores[how] = run.data.metrics["test_accuracy"]
    assert scores["head"] <= 0.65 and scores["head_tail"] >= 0.9, scores

    model = mlflow.pyfunc.load_model(run.data.tags["pipeline.model_uri"])  # the head_tail run's
    assert model.model_config["truncation"] == "head_tail"
    texts = verdict_last_reviews(20, 4)
    assert (model.predict(texts["review"].tolist())["label"] == texts["sentiment"]).mean() >= 0.9
