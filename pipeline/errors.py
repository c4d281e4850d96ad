"""Errors a user can fix, reported as one line instead of a traceback."""

import re


class PipelineError(Exception):
    """A problem with the input, parameters or environment; the message says what and where."""


CREDENTIALS_IN_URL = re.compile(r"(?<=://)[^/\s@]+@")  # user:password@ of a URL a library put in its message


def without_credentials(text: str) -> str:
    """`text` with the `user:password@` of every URL in it removed (MLflow's HTTP errors repeat the tracking URI
    as given, credentials included)."""
    return CREDENTIALS_IN_URL.sub("", text)


def first_line(error: Exception) -> str:
    """What went wrong, in one line and `without_credentials`: library messages run to paragraphs (the
    exception's type when it has none)."""
    text = without_credentials(str(error).strip())
    return text.splitlines()[0] if text else type(error).__name__
