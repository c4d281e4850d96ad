"""Reading and checking the review CSVs (`review` text, `sentiment` positive/negative) of the three splits."""

import csv
import warnings
from pathlib import Path

import pandas as pd

from pipeline.errors import PipelineError, first_line

SPLITS = ("train", "valid", "test")
TEXT_COLUMN = "review"
LABEL_COLUMN = "sentiment"
LABELS = ("negative", "positive")  # position = class id


class DataError(PipelineError):
    """The data set is missing, malformed or unusable for training."""


def read_split(path: Path) -> pd.DataFrame:
    """Load one split, normalise its labels to lower case and reject anything a classifier cannot use.

    A split with a single class is an error for `train` (nothing to learn) and a warning for
    `valid`/`test` (the metrics still compute but macro-F1 says little).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected one CSV per split: {', '.join(SPLITS)})")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8", on_bad_lines="error", index_col=False)
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (invalid byte at offset {error.start})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (expected a header with '{TEXT_COLUMN}' and '{LABEL_COLUMN}')") from None
    except (pd.errors.ParserError, csv.Error) as error:
        raise DataError(f"{path}: not a well-formed CSV ({first_line(error)})") from None

    missing = [column for column in (TEXT_COLUMN, LABEL_COLUMN) if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    frame = frame[[TEXT_COLUMN, LABEL_COLUMN]].copy()
    if frame.empty:
        raise DataError(f"{path}: no rows after the header")

    def line_of(row_index) -> int:  # 1 header line, 1-based lines
        return int(row_index) + 2

    blank = frame[TEXT_COLUMN].str.strip() == ""
    if blank.any():
        raise DataError(f"{path}: empty '{TEXT_COLUMN}' on line {line_of(blank.idxmax())} ({int(blank.sum())} row(s) in all)")

    frame[LABEL_COLUMN] = frame[LABEL_COLUMN].str.strip().str.lower()
    unknown = ~frame[LABEL_COLUMN].isin(LABELS)
    if unknown.any():
        row = unknown.idxmax()
        raise DataError(
            f"{path}: line {line_of(row)}: '{LABEL_COLUMN}' is {frame.at[row, LABEL_COLUMN]!r}, "
            f"expected one of {list(LABELS)} ({int(unknown.sum())} such row(s))"
        )

    classes = set(frame[LABEL_COLUMN])
    if len(classes) == 1:
        message = f"{path}: every row is {classes.pop()!r}; a sentiment split needs both classes"
        if path.stem == "train":
            raise DataError(message)
        warnings.warn(message, stacklevel=2)
    return frame.reset_index(drop=True)


def read_dataset(folder: Path) -> dict[str, pd.DataFrame]:
    """Load and check `<folder>/{train,valid,test}.csv`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder not found")
    return {split: read_split(folder / f"{split}.csv") for split in SPLITS}


def label_ids(frame: pd.DataFrame) -> list[int]:
    """Class ids (0 = negative, 1 = positive) of a checked split."""
    return frame[LABEL_COLUMN].map(LABELS.index).tolist()
