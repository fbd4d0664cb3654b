"""Recognising a failed Keras download (offline, DNS, HTTP error), for the one-line errors that say what to do.

Keras's ``get_file`` (used by ``keras.applications`` weights and ``keras.datasets``) wraps urllib's
``URLError`` and ``HTTPError`` in a bare ``Exception("URL fetch failure on URL: CODE -- REASON")``; other
transport errors (a socket timeout) reach the caller as an ``OSError``. Callers catch ``Exception``, keep
what :func:`is_download_failure` recognises as a user-facing message built with :func:`download_failure_text`,
and re-raise the rest.

This module imports only the standard library.

Example:
    >>> err = Exception("URL fetch failure on https://example.org/w.h5: None -- "
    ...                 "[Errno -3] Temporary failure in name resolution")
    >>> is_download_failure(err), is_download_failure(ValueError("bad shape"))
    (True, False)
    >>> download_failure_text(err, width=40)
    '-3] Temporary failure in name resolution'
"""
from __future__ import annotations

__all__ = ["download_failure_text", "is_download_failure"]

#: The start of the message Keras's ``get_file`` raises when urllib cannot fetch a file.
KERAS_FETCH_FAILURE = "URL fetch failure"


def is_download_failure(error: BaseException) -> bool:
    """True when ``error`` is what Keras raises for a download that could not be made (offline included)."""
    return KERAS_FETCH_FAILURE in str(error) or isinstance(error, OSError)


def download_failure_text(error: BaseException, *, width: int = 90) -> str:
    """``error``'s message on one line (whitespace collapsed), its last ``width`` characters: the reason."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text[-width:].strip()
