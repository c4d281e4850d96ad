"""Fetching the data archive (HTTP(S), file:// or a local path) and unpacking it safely and atomically."""

import errno
import hashlib
import os
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TypeVar
from urllib.parse import unquote, urlparse

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from tqdm.auto import tqdm

from pipeline.errors import PipelineError, first_line

T = TypeVar("T")
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}  # the folder, not the archive
MAX_ARCHIVE_BYTES = 4 * 1024**3  # unpacked; IMDB is ~130 MB, so anything near this is not our data


class DownloadError(PipelineError):
    """The archive could not be fetched, or is not what was expected."""


def fetch(url: str, destination: Path, retries: int = 3, backoff_s: float = 1.0) -> Path:
    """Copy `url` to `destination` (a file), streaming with a progress bar; retry transient HTTP failures."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        attempts = Retrying(retry=retry_if_exception_type(_Transient), stop=stop_after_attempt(retries + 1),
                            wait=wait_exponential(multiplier=backoff_s), reraise=True)  # waits backoff_s, 2x, 4x, ...
        try:
            return attempts(_http_get, url, destination)
        except _Transient as error:
            raise DownloadError(f"{url}: {error} (gave up after {retries + 1} attempts)") from None
    source = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(url)
    if parsed.scheme not in ("", "file") and len(parsed.scheme) > 1:
        raise DownloadError(f"{url}: unsupported URL scheme {parsed.scheme!r} (use http(s)://, file:// or a local path)")
    if not source.is_file():
        raise DownloadError(f"{url}: no such file")
    shutil.copyfile(source, destination)
    return destination


class _Transient(Exception):
    pass


def _http_get(url: str, destination: Path) -> Path:
    try:
        with requests.get(url, stream=True, timeout=(10, 60)) as response:
            if response.status_code in TRANSIENT_STATUS:
                raise _Transient(f"HTTP {response.status_code} {response.reason}")
            if response.status_code != 200:
                raise DownloadError(f"{url}: HTTP {response.status_code} {response.reason}")
            total = int(response.headers.get("content-length") or 0) or None
            with open(destination, "wb") as out, tqdm(
                total=total, unit="B", unit_scale=True, desc=f"download {Path(urlparse(url).path).name}"
            ) as bar:
                try:
                    for chunk in response.iter_content(chunk_size=1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
                except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError) as error:
                    # The body broke off (reset, or closed before Content-Length): worth another attempt.
                    raise _Transient(f"connection broke off mid-download ({type(error).__name__})") from None
            if total is not None and destination.stat().st_size != total:
                raise _Transient(f"connection closed after {destination.stat().st_size} of {total} bytes")
    except requests.exceptions.ConnectionError as error:
        raise DownloadError(
            f"{url}: cannot connect ({type(error).__name__}); offline? pass a local copy with -P download_url=file:///path/to/imdb.zip"
        ) from None
    except requests.exceptions.Timeout:
        raise _Transient("timed out") from None
    return destination


def source_validators(url: str) -> dict[str, str] | None:
    """What identifies the archive's current version without downloading it: ETag, Last-Modified and
    Content-Length from a HEAD request (HTTP), size and modification time (a file); None when it cannot be told."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        try:
            response = requests.head(url, allow_redirects=True, timeout=(10, 30))
        except requests.exceptions.RequestException:
            return None
        found = {name: response.headers[name] for name in ("ETag", "Last-Modified", "Content-Length") if name in response.headers}
        return found if response.status_code == 200 and found else None
    source = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(url)
    if not source.is_file():
        return None
    stat = source.stat()
    return {"size": str(stat.st_size), "mtime_ns": str(stat.st_mtime_ns)}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_zip(archive: Path, target: Path, source: str, check: Callable[[Path], T]) -> T:
    """Unpack `archive` into the folder `target`, replacing it only once everything is out and `check` passed.

    Members must stay inside the target folder and the unpacked size stays under MAX_ARCHIVE_BYTES.
    A failure leaves the previous `target` (or nothing) in place. Returns what `check` returned.
    """
    if not zipfile.is_zipfile(archive):
        head = archive.read_bytes()[:60].decode("utf-8", "replace").strip().splitlines()
        hint = f" (it starts with {head[0][:40]!r})" if head else " (it is empty)"
        raise DownloadError(f"{source}: not a zip archive{hint}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _unpack(archive, staging, source)
        root = _dataset_root(staging, source)
        try:
            checked = check(root)
        except PipelineError as error:  # name the file inside the archive, not the staging folder
            raise type(error)(str(error).replace(f"{staging}/", f"{source}: ")) from None
        _replace(root, target)
        return checked
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(archive: Path, staging: Path, source: str) -> None:
    """Every member of `archive` into `staging`, after the size and path checks. The archive is untrusted input:
    whatever the zip module raises while reading it (a broken deflate stream is a `zlib.error`, an unknown
    compression method a `NotImplementedError`, ...) means a corrupt archive, except the disk refusing a write."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            unpacked = sum(member.file_size for member in members)
            if unpacked > MAX_ARCHIVE_BYTES:
                raise DownloadError(f"{source}: archive unpacks to {unpacked / 1e9:.1f} GB, over the {MAX_ARCHIVE_BYTES / 1e9:.1f} GB limit")
            for member in members:
                name = PurePosixPath(member.filename)
                if name.is_absolute() or ".." in name.parts:
                    raise DownloadError(f"{source}: member {member.filename!r} would be written outside the data folder")
            bad = bundle.testzip()
            if bad is not None:
                raise DownloadError(f"{source}: corrupt zip archive (bad CRC in {bad!r})")
            bundle.extractall(staging)
    except DownloadError:
        raise
    except OSError as error:
        if error.errno in DISK_ERRORS:
            raise DownloadError(f"{staging.parent}: cannot unpack the archive there ({error.strerror})") from None
        raise DownloadError(f"{source}: corrupt zip archive ({first_line(error)})") from None
    except Exception as error:  # noqa: BLE001 - see the docstring: any failure to read untrusted bytes
        raise DownloadError(f"{source}: corrupt zip archive ({type(error).__name__}: {first_line(error)})") from None


def _dataset_root(staging: Path, source: str) -> Path:
    """The folder holding train.csv: the archive's top folder (`imdb/`) or the archive root."""
    candidates = sorted(path.parent for path in staging.rglob("train.csv") if "__MACOSX" not in path.parts)
    if not candidates:
        raise DownloadError(f"{source}: the archive has no train.csv (expected imdb/train.csv, valid.csv, test.csv)")
    return min(candidates, key=lambda path: len(path.parts))


def _replace(new: Path, target: Path) -> None:
    """Make `new` the data `target` names, in one atomic step. `target` is a link to a versioned folder beside it
    (`.imdb-<id>`) and is switched with one `os.replace`: a reader, or a crash, sees the old data or the new,
    never neither. A plain folder at `target` (from before versions) is moved aside first, once."""
    version = target.with_name(f".{target.name}-{uuid.uuid4().hex[:12]}")
    new.rename(version)
    previous = target.resolve() if target.is_symlink() else None
    if target.exists() and previous is None:
        previous = target.with_name(f".{target.name}.old")
        shutil.rmtree(previous, ignore_errors=True)
        target.rename(previous)
    link = target.with_name(f".{target.name}.link-{version.name}")
    link.symlink_to(version.name)  # relative: the data folder may move
    try:
        os.replace(link, target)
    except OSError:
        link.unlink()
        shutil.rmtree(version, ignore_errors=True)
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
