"""Event logs in object storage: URLs (``s3://``, ``gs://``, ``memory://`` ...)
read and written through fsspec.

A log path with a protocol (``scheme://``) is a URL; anything else is a local
path, handled as before. Credentials come from fsspec's usual sources
(environment, fsspec config, the cloud SDK's files); a URL that carries them
(``s3://key:secret@bucket/...``) or a query string is shown only through
:func:`show`, which hides both, in every message, header and snapshot.
"""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["check_url", "filesystem", "is_url", "join_url", "show", "under"]

#: ``scheme://`` at the start: a URL, not a local path (``C:\\`` has no ``//``).
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a place through a protocol (``s3://...``)."""
    return isinstance(path, str) and _SCHEME.match(path) is not None


def show(path: str | os.PathLike[str]) -> str:
    """``path`` as it may appear in a message: a URL without its user, password
    or query string; a local path as it is."""
    from dask_monitor.config import redact_url

    text = os.fspath(path)
    if not is_url(text):
        return text
    return redact_url(text.split("?", 1)[0].split("#", 1)[0])


def check_url(url: str, setting: str = "monitor.record.path") -> None:
    """Raise :class:`~dask_monitor.config.ConfigError` naming ``setting`` unless
    ``url`` has a protocol fsspec knows (and whose package is installed), a
    place after it, no ``..`` step, and neither credentials (``user:pass@``)
    nor a query string. Touches nothing."""
    from dask_monitor.config import ConfigError

    match = _SCHEME.match(url)
    if match is None:
        raise ConfigError(f"{setting} {show(url)!r} is not a URL")
    protocol = match.group(1).lower()
    try:
        import fsspec

        fsspec.get_filesystem_class(protocol)
    except (ValueError, ImportError) as e:
        raise ConfigError(
            f"{setting} {show(url)!r}: protocol {protocol!r} is not available "
            f"through fsspec ({type(e).__name__}: {show(str(e))})"
        ) from None
    rest = url[match.end() :]
    if "@" in rest.split("/", 1)[0] or "?" in rest or "#" in rest:
        # s3fs and others would take them as part of the bucket or the key,
        # and put them in their own errors: refused here, never echoed.
        raise ConfigError(
            f"{setting} {show(url)!r}: credentials or a query string in the "
            "URL are not taken; give credentials through fsspec's config or "
            "the environment (AWS_ACCESS_KEY_ID ...)"
        )
    steps = rest.split("/")
    if not rest.strip("/") or ".." in steps:
        raise ConfigError(f"{setting} {show(url)!r} names no log (or has '..')")


def join_url(directory: str, path: str) -> str:
    """``path`` taken inside the URL ``directory`` (a URL ``path`` as it is)."""
    if is_url(path):
        return path
    return directory.rstrip("/") + "/" + path.lstrip("/")


def under(url: str, directory: str) -> bool:
    """Whether ``url`` lies inside the URL ``directory`` (same protocol and
    place; no ``..`` step: :func:`check_url` refuses those)."""
    prefix = directory.rstrip("/") + "/"
    return url.startswith(prefix) and len(url) > len(prefix)


def filesystem(url: str) -> tuple[Any, str]:
    """``(filesystem, path inside it)`` of ``url`` (fsspec's ``url_to_fs``)."""
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(url)
    return fs, str(path)
