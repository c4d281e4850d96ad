"""download_data on damaged archives (Hypothesis): every variant of a valid data zip either succeeds with data
that passes the checks, or fails with exactly one `error: ...` line, a FAILED run carrying that reason, and the
previous data untouched. Real fetch (loopback HTTP and file://), real unzip, real CSV checks, real MLflow store.

The example budget comes from the Hypothesis profile (`HYPOTHESIS_PROFILE`, registered in conftest.py): `ci`
runs a fixed number per test, `fuzz` (`make fuzz`) many more. Examples Hypothesis found are kept below as
explicit regression tests.
"""

import io
import struct
import zipfile
import zlib

import mlflow
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import cli_runner, easy_reviews, leftovers
from pipeline import download_data
from pipeline.data.reviews import read_dataset

SPLITS = {split: easy_reviews(rows, seed) for split, rows, seed in (("train", 40, 1), ("valid", 10, 2), ("test", 10, 3))}
CSV_TEXT = {split: frame.to_csv(index=False) for split, frame in SPLITS.items()}


def data_zip(texts: dict[str, bytes], names: dict[str, str] | None = None, method=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip in the book's layout (`imdb/<split>.csv`), with each member's bytes and name as given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as bundle:
        for split, content in texts.items():
            bundle.writestr((names or {}).get(split, f"imdb/{split}.csv"), content)
    return buffer.getvalue()


VALID = data_zip({split: text.encode() for split, text in CSV_TEXT.items()})


def member_data_span(archive: bytes, index: int) -> tuple[int, int]:
    """(start, end) of member `index`'s compressed bytes in `archive`."""
    info = zipfile.ZipFile(io.BytesIO(archive)).infolist()[index]
    name_length, extra_length = struct.unpack("<HH", archive[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length
    return start, start + info.compress_size


@st.composite
def damaged_archives(draw) -> bytes:
    """A valid data zip, damaged in one of the ways downloads and disks damage files."""
    kind = draw(st.sampled_from(["flip", "truncate", "stream", "rename", "header", "encoding", "size", "method"]))
    if kind == "flip":
        archive = bytearray(VALID)
        for position in draw(st.lists(st.integers(0, len(VALID) - 1), min_size=1, max_size=8)):
            archive[position] ^= draw(st.integers(1, 255))
        return bytes(archive)
    if kind == "truncate":
        return VALID[:draw(st.integers(0, len(VALID) - 1))]
    if kind == "stream":  # the directory intact, one member's deflate stream damaged
        start, end = member_data_span(VALID, draw(st.integers(0, 2)))
        archive = bytearray(VALID)
        for position in draw(st.lists(st.integers(start, end - 1), min_size=1, max_size=4)):
            archive[position] ^= draw(st.integers(1, 255))
        return bytes(archive)
    texts = {split: text.encode() for split, text in CSV_TEXT.items()}
    split = draw(st.sampled_from(sorted(texts)))
    if kind == "rename":
        name = draw(st.sampled_from(["imdb/train.csv.bak", "../imdb/" + split + ".csv", "/abs/" + split + ".csv",
                                     "imdb/" + split.upper() + ".CSV", draw(st.text(min_size=1, max_size=20))]))
        return data_zip(texts, names={split: name})
    if kind == "header":
        header = draw(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"), max_size=30))
        texts[split] = (header + "\n" + CSV_TEXT[split].split("\n", 1)[1]).encode()
        return data_zip(texts)
    if kind == "encoding":
        text = CSV_TEXT[split].replace("film", draw(st.sampled_from(["fïlm", "фильм", "映画", "film\u00a0"])))
        encoding = draw(st.sampled_from(["utf-16", "latin-1", "cp1252", "utf-8-sig", "utf-32"]))
        texts[split] = text.encode(encoding, errors="replace")
        return data_zip(texts)
    if kind == "size":  # a central directory that declares a huge unpacked size
        archive = bytearray(VALID)
        directory = archive.rfind(b"PK\x01\x02")
        archive[directory + 24:directory + 28] = struct.pack("<I", draw(st.integers(2**31, 2**32 - 1)))
        return bytes(archive)
    return data_zip(texts, method=draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])))


@pytest.fixture
def data_folder(tracking, tmp_path):
    """A data folder that already holds good data (the previous download), and the runs before the fuzzing."""
    (tmp_path / "good.zip").write_bytes(VALID)
    folder = tmp_path / "data"
    assert invoke(str(tmp_path / "good.zip"), folder).exit_code == 0
    return folder


def invoke(url: str, folder):
    return cli_runner().invoke(download_data.main, ["--download-url", url, "--local-folder", str(folder)])


def run_ids() -> set[str]:
    return {run.info.run_id for run in mlflow.search_runs(experiment_names=["Default"], output_format="list")}


def assert_one_line_or_good_data(url: str, folder) -> None:
    """The property, for one archive at `url`."""
    before = {path.name: path.read_bytes() for path in (folder / "imdb").iterdir()}
    runs_before = run_ids()
    result = invoke(url, folder)
    (new_run,) = run_ids() - runs_before
    run = mlflow.get_run(new_run)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code == 0:
        assert run.info.status == "FINISHED"
        assert set(read_dataset(folder / "imdb")) == {"train", "valid", "test"}  # passes the checks again
    else:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert result.exit_code == 1 and len(errors) == 1, result.stderr
        assert run.info.status == "FAILED" and run.data.tags["pipeline.error"] == errors[0].removeprefix("error: ")
        assert {path.name: path.read_bytes() for path in (folder / "imdb").iterdir()} == before
    assert leftovers(folder) == []


FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(archive=damaged_archives())
def test_damaged_archives_from_a_file_are_one_line_or_good_data(data_folder, tmp_path, archive):
    path = tmp_path / "damaged.zip"
    path.write_bytes(archive)
    assert_one_line_or_good_data(path.as_uri(), data_folder)


@FUZZ
@given(archive=damaged_archives())
def test_damaged_archives_over_http_are_one_line_or_good_data(data_folder, http_root, archive):
    folder, base = http_root
    (folder / "fuzzed.zip").write_bytes(archive)
    assert_one_line_or_good_data(f"{base}/fuzzed.zip", data_folder)


def test_a_broken_deflate_stream_is_one_line(data_folder, tmp_path):
    """Found by hand, then by the properties above: a valid directory over a damaged deflate stream, which the zip
    module reports as a `zlib.error` (here a reserved block type), was a traceback."""
    start, _ = member_data_span(VALID, 0)
    archive = bytearray(VALID)
    archive[start] = 0xFF  # the first block's header: final block, type 11 (reserved)
    with pytest.raises(zlib.error, match="invalid block type"):
        zipfile.ZipFile(io.BytesIO(bytes(archive))).read("imdb/train.csv")
    path = tmp_path / "broken-deflate.zip"
    path.write_bytes(bytes(archive))
    result = invoke(path.as_uri(), data_folder)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {path.as_uri()}: corrupt zip archive (")
    assert_one_line_or_good_data(path.as_uri(), data_folder)
