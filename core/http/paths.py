"""Request paths as they arrive on the wire, checked before any routing or decoding.

Servers normalise paths (`/v/a/../b` becomes `/v/b`) and decode escapes (`%2e%2e` becomes `..`)
before a handler sees them, so a handler that only checks the decoded path can be walked out of
its tree. Every node checks the raw request target first and refuses anything that could mean
something else once decoded: dot segments, encoded dots, slashes, backslashes or NULs, control
characters, and empty segments.
"""

import re

MAX_PATH_LENGTH = 2048
# Percent-escapes that decode to '.', '/', '\\' or NUL: never needed by a legitimate Shoal URL.
_DANGEROUS_ESCAPES = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x20\x7f\\]")


class UnsafePath(ValueError):
    """The raw request path is malformed or could escape its tree; answer 400."""


def check_raw_path(raw_path: str) -> str:
    """Return the path part of a raw request target (no query) if it is safe, else raise."""
    path = raw_path.split("?", 1)[0]
    if len(raw_path) > MAX_PATH_LENGTH:
        raise UnsafePath(f"request target longer than {MAX_PATH_LENGTH} characters")
    if not path.startswith("/"):
        raise UnsafePath("request path must start with '/'")
    if _CONTROL.search(path):
        raise UnsafePath("control character, space or backslash in path")
    if _DANGEROUS_ESCAPES.search(path):
        raise UnsafePath("percent-encoded '.', '/', '\\' or NUL in path")
    segments = path[1:].split("/")
    if any(segment in (".", "..") for segment in segments):
        raise UnsafePath("dot segment in path")
    if any(not segment for segment in segments[:-1]):
        raise UnsafePath("empty segment ('//') in path")
    return path
