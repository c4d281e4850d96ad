"""pipeline.data.fetch: real HTTP downloads from 127.0.0.1, retries, and safe, atomic unpacking."""

import http.server
import io
import threading
import zipfile

import pytest

from conftest import leftovers, zip_folder
from pipeline.data.reviews import read_dataset
from pipeline.data.fetch import DownloadError, extract_zip, fetch


class Scripted(http.server.BaseHTTPRequestHandler):
    """Answers each path from a script of (status, body[, promised length]) replies, the last one repeating.
    A promised length above the body's is a connection that closes mid-body."""

    script: dict[str, list[tuple]] = {}
    hits: dict[str, int] = {}

    def do_GET(self):
        replies = self.script.get(self.path, [(404, b"not found")])
        count = self.hits.get(self.path, 0)
        self.hits[self.path] = count + 1
        status, body, *promised = replies[min(count, len(replies) - 1)]
        self.send_response(status)
        self.send_header("Content-Length", str(promised[0] if promised else len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Scripted.script, Scripted.hits = {}, {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield Scripted, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_download_retries_transient_errors(server, tmp_path):
    handler, base = server
    handler.script["/imdb.zip"] = [(503, b"busy"), (503, b"busy"), (200, b"PK-payload")]
    path = fetch(f"{base}/imdb.zip", tmp_path / "a.zip", backoff_s=0.01)
    assert path.read_bytes() == b"PK-payload"
    assert handler.hits["/imdb.zip"] == 3


def test_body_cut_off_mid_download_is_retried_then_one_line(server, tmp_path):
    handler, base = server
    handler.script["/cut.zip"] = [(200, b"PK-part", 1000), (200, b"PK-payload")]
    assert fetch(f"{base}/cut.zip", tmp_path / "a.zip", backoff_s=0.01).read_bytes() == b"PK-payload"
    assert handler.hits["/cut.zip"] == 2
    handler.script["/always-cut.zip"] = [(200, b"PK-part", 1000)]
    with pytest.raises(DownloadError, match=r"^http://127\.0\.0\.1:\d+/always-cut\.zip: connection broke off mid-download "
                                            r"\(ChunkedEncodingError\) \(gave up after 3 attempts\)$"):
        fetch(f"{base}/always-cut.zip", tmp_path / "b.zip", retries=2, backoff_s=0.01)
    assert handler.hits["/always-cut.zip"] == 3


def test_http_404_is_not_retried(server, tmp_path):
    handler, base = server
    with pytest.raises(DownloadError, match=r"imdb\.zip: HTTP 404"):
        fetch(f"{base}/imdb.zip", tmp_path / "a.zip", backoff_s=0.01)
    assert handler.hits["/imdb.zip"] == 1


def test_gives_up_after_retries(server, tmp_path):
    handler, base = server
    handler.script["/x.zip"] = [(502, b"bad gateway")]
    with pytest.raises(DownloadError, match=r"HTTP 502 .*gave up after 3 attempts"):
        fetch(f"{base}/x.zip", tmp_path / "a.zip", retries=2, backoff_s=0.01)


def test_unreachable_host_says_how_to_work_offline(tmp_path):
    with pytest.raises(DownloadError, match="cannot connect.*download_url=file://"):
        fetch("http://127.0.0.1:9/imdb.zip", tmp_path / "a.zip", retries=0)


def test_file_url_and_plain_path(tmp_path):
    source = tmp_path / "src.zip"
    source.write_bytes(b"zip bytes")
    assert fetch(source.as_uri(), tmp_path / "a").read_bytes() == b"zip bytes"
    assert fetch(str(source), tmp_path / "b").read_bytes() == b"zip bytes"
    with pytest.raises(DownloadError, match="no such file"):
        fetch(str(tmp_path / "missing.zip"), tmp_path / "c")
    with pytest.raises(DownloadError, match="unsupported URL scheme 'ftp'"):
        fetch("ftp://example.org/imdb.zip", tmp_path / "d")


def test_extracts_book_layout_and_replaces_old_data(tmp_path, easy_data):
    archive = zip_folder(easy_data, tmp_path / "imdb.zip")
    target = tmp_path / "data" / "imdb"
    target.mkdir(parents=True)
    (target / "stale.txt").write_text("old")
    frames = extract_zip(archive, target, "imdb.zip", check=read_dataset)
    assert sorted(p.name for p in target.iterdir()) == ["test.csv", "train.csv", "valid.csv"]
    assert len(frames["train"]) == 400
    (version,) = [p.name for p in target.parent.iterdir() if p.name != "imdb"]  # no staging or backup folders left
    assert target.is_symlink() and target.resolve().name == version and version.startswith(".imdb-")
    extract_zip(archive, target, "imdb.zip", check=read_dataset)  # a second download replaces the first version
    (second,) = [p.name for p in target.parent.iterdir() if p.name != "imdb"]
    assert second != version and target.resolve().name == second


def test_the_switch_to_new_data_is_one_atomic_step(tmp_path, easy_data, monkeypatch):
    """The new data become visible in one `os.replace` of the link: where it fails, the old data stay whole."""
    archive = zip_folder(easy_data, tmp_path / "imdb.zip")
    target = tmp_path / "data" / "imdb"
    extract_zip(archive, target, "imdb.zip", check=read_dataset)
    old = target.resolve()

    def failing_replace(source, destination):
        raise OSError("disk gone")

    monkeypatch.setattr("pipeline.data.fetch.os.replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        extract_zip(archive, target, "imdb.zip", check=read_dataset)
    assert target.resolve() == old and (target / "train.csv").is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(["imdb", old.name])  # nothing half-written left


def make_zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda p: p.write_bytes(b"<!DOCTYPE html><html>Access denied</html>"), "not a zip archive (it starts with '<!DOCTYPE html>"),
        (lambda p: make_zip(p, {"../evil.csv": b"x"}), "would be written outside the data folder"),
        (lambda p: make_zip(p, {"/etc/evil.csv": b"x"}), "would be written outside the data folder"),
        (lambda p: make_zip(p, {"imdb/readme.txt": b"x"}), "has no train.csv"),
        (lambda p: make_zip(p, {"imdb/train.csv": b"review,sentiment\nok,positive\nno,negative\n"}), "bad.zip: imdb/valid.csv: file not found"),
    ],
)
def test_bad_archives_leave_previous_data(tmp_path, easy_data, build, message):
    target = tmp_path / "data" / "imdb"
    extract_zip(zip_folder(easy_data, tmp_path / "good.zip"), target, "good.zip", check=read_dataset)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    archive = tmp_path / "bad.zip"
    build(archive)
    with pytest.raises(Exception) as error:
        extract_zip(archive, target, "bad.zip", check=read_dataset)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert leftovers(target.parent) == []


def test_truncated_zip_is_rejected(tmp_path, easy_data):
    whole = zip_folder(easy_data, tmp_path / "whole.zip").read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DownloadError, match="not a zip archive|corrupt zip"):
        extract_zip(truncated, tmp_path / "data" / "imdb", "truncated.zip", check=read_dataset)
    assert not (tmp_path / "data" / "imdb").exists()


def test_corrupt_member_is_rejected(tmp_path):
    buffer = io.BytesIO()
    make_zip(buffer, {"imdb/train.csv": b"review,sentiment\n" + b"good,positive\n" * 200})
    data = bytearray(buffer.getvalue())
    data[60] ^= 0xFF  # inside the compressed member
    archive = tmp_path / "corrupt.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="corrupt zip"):
        extract_zip(archive, tmp_path / "data" / "imdb", "corrupt.zip", check=read_dataset)


def test_huge_archive_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.data.fetch.MAX_ARCHIVE_BYTES", 1000)
    archive = make_zip(tmp_path / "big.zip", {"imdb/train.csv": b"x" * 5000})
    with pytest.raises(DownloadError, match="over the .* GB limit"):
        extract_zip(archive, tmp_path / "data" / "imdb", "big.zip", check=read_dataset)
