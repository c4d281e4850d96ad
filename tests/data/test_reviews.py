"""pipeline.data.reviews: each malformed split is rejected with a one-line error naming the file (and line)."""

import string
import warnings

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.data.reviews import DataError, label_ids, read_dataset, read_split


def write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_reads_and_normalises_labels(tmp_path):
    path = write(tmp_path / "train.csv", 'review,sentiment,extra\n"Great, truly",Positive,x\nAwful film, negative ,y\n')
    frame = read_split(path)
    assert list(frame.columns) == ["review", "sentiment"]
    assert frame["review"].tolist() == ["Great, truly", "Awful film"]
    assert label_ids(frame) == [1, 0]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "the file is empty"),
        ("review,sentiment\n", "no rows after the header"),
        ("text,label\ngood,positive\n", "missing column(s) ['review', 'sentiment']"),
        ("review,sentiment\ngood,positive\nbad,neutral\n", "line 3: 'sentiment' is 'neutral'"),
        ("review,sentiment\ngood,positive\n  ,negative\n", "empty 'review' on line 3"),
        (b"review,sentiment\ncaf\xe9 \xff,positive\nbad,negative\n", "not UTF-8"),
        ('review,sentiment\n"unclosed,positive\n', "not a well-formed CSV"),
        ("review,sentiment\ngood,positive\nfine,positive\n", "every row is 'positive'"),
    ],
)
def test_rejects_bad_train_split(tmp_path, content, message):
    path = write(tmp_path / "train.csv", content)
    with pytest.raises(DataError) as error:
        read_split(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_one_class_in_valid_is_a_warning(tmp_path):
    path = write(tmp_path / "valid.csv", "review,sentiment\ngood,positive\nfine,positive\n")
    with pytest.warns(UserWarning, match="every row is 'positive'"):
        assert len(read_split(path)) == 2


def test_missing_split_names_the_file(tmp_path, easy_data):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.csv").write_text((easy_data / "train.csv").read_text())
    with pytest.raises(DataError, match=r"valid\.csv: file not found"):
        read_dataset(folder)
    with pytest.raises(DataError, match="data folder not found"):
        read_dataset(tmp_path / "nowhere")


cells = st.one_of(
    st.text(alphabet=string.printable + "é€\u2028", max_size=12),
    st.sampled_from(["positive", "negative", "Positive ", "neutral", "", '"', "a,b", "\n"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.lists(st.sampled_from(["review", "sentiment", "other", ""]), min_size=0, max_size=4),
    rows=st.lists(st.lists(cells, min_size=0, max_size=4), max_size=6),
    raw=st.one_of(st.none(), st.binary(max_size=40)),
)
def test_malformed_csvs_load_or_fail_clearly(tmp_path, header, rows, raw):
    """Whatever the bytes, the loader returns checked rows or raises DataError, never anything else."""
    if raw is not None:
        content = raw
    else:
        content = "\n".join(",".join(cells) for cells in [header, *rows]).encode()
    path = write(tmp_path / "train.csv", content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            frame = read_split(path)
        except DataError as error:
            assert str(path) in str(error) and "\n" not in str(error)
            return
    assert len(frame) > 0
    assert set(frame["sentiment"]) == {"positive", "negative"}
    assert (frame["review"].str.strip() != "").all()
    assert isinstance(frame, pd.DataFrame)
