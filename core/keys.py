"""Object keys: the one place that decides which names may address the content store.

A key is a relative, slash-separated path whose segments are drawn from a small safe alphabet.
Everything that reaches a store (HTTP paths, CLI arguments, upload names) goes through
`validate_key`, so no backend ever sees `..`, an absolute path, a NUL byte or a backslash.
"""

import re

MAX_KEY_LENGTH = 512
MAX_SEGMENT_LENGTH = 128
# Starting with an alphanumeric excludes ".", ".." and hidden files in one rule.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class InvalidKey(ValueError):
    """The name cannot address an object: it is malformed or tries to leave the store."""


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a safe object key, else raise `InvalidKey`."""
    if not key:
        raise InvalidKey("empty key")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"key longer than {MAX_KEY_LENGTH} characters")
    for segment in key.split("/"):
        if not segment:
            raise InvalidKey("empty path segment (absolute path or '//')")
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise InvalidKey(f"path segment longer than {MAX_SEGMENT_LENGTH} characters")
        if not _SEGMENT.fullmatch(segment):
            raise InvalidKey(f"path segment {segment[:40]!r} has characters outside [A-Za-z0-9._-]")
    return key


def validate_prefix(prefix: str) -> str:
    """Return a listing prefix ('' or a valid key followed by '/') or raise `InvalidKey`."""
    if prefix == "":
        return prefix
    if not prefix.endswith("/"):
        raise InvalidKey("a listing prefix must be empty or end with '/'")
    validate_key(prefix[:-1])
    return prefix
