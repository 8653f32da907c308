"""Signed URLs: an HMAC-SHA256 token over a path prefix and an expiry, carried in the query.

A signed URL is the object's URL plus three query parameters:

    /v/abc/720p/seg_00001.m4s?exp=1700003600&pfx=%2Fv%2Fabc%2F&sig=<43 characters>

- `exp`: the expiry in POSIX seconds, decimal digits without a leading zero; the token is valid
  while `now < exp`.
- `pfx`: the path prefix the token covers, percent-encoded as a query value (or not: `/` is
  legal in a query). Decoded, it starts and ends with `/`, passes `paths.check_raw_path`, uses
  only the object-key alphabet `[A-Za-z0-9._-]` in its segments, and must be a prefix of the
  request path. One token signs a whole video (`/v/abc/`): a playlist's URIs all share it.
- `sig`: base64url without padding of HMAC-SHA256(key, "shoal-url-v1\\n" pfx "\\n" exp).

Verification (`verify`) tries every active key (two during a rotation: sign with the new one,
keep verifying the old one until every URL it signed has expired), and compares signatures with
`hmac.compare_digest`, on their canonical text, so that a non-canonical base64 spelling of a
valid signature is refused too. Parsing is strict: each of the three parameters at most once,
bounded lengths, no stray characters; other query parameters are ignored (players add their own).

`strip_token` removes the three parameters from a request target, so that a cache keys an
object by its URL without the token: every viewer of a video shares one cache entry.
"""

import base64
import enum
import hashlib
import hmac
import re
from collections.abc import Sequence
from urllib.parse import quote, unquote

from core.http.paths import UnsafePath, check_raw_path

EXPIRES_PARAM = "exp"
PREFIX_PARAM = "pfx"
SIGNATURE_PARAM = "sig"
TOKEN_PARAMS = frozenset({EXPIRES_PARAM, PREFIX_PARAM, SIGNATURE_PARAM})

MAX_PREFIX_LENGTH = 512
"""Longest decoded `pfx` accepted (the object keys' own limit)."""
MAX_EXPIRES_DIGITS = 12
"""`exp` has at most this many digits (POSIX seconds well past the year 30000)."""
SIGNATURE_LENGTH = 43
"""base64url of 32 bytes, without padding."""
MAX_QUERY_LENGTH = 4096
"""A longer query is refused as malformed before it is parsed."""

_DOMAIN = b"shoal-url-v1"
_EXPIRES = re.compile(rf"[1-9][0-9]{{0,{MAX_EXPIRES_DIGITS - 1}}}")
_SIGNATURE = re.compile(rf"[A-Za-z0-9_-]{{{SIGNATURE_LENGTH}}}")
_PREFIX = re.compile(r"/(?:[A-Za-z0-9._-]+/)+")
# What `pfx` may look like on the wire before it is decoded: the decoded alphabet plus escapes.
_RAW_PREFIX = re.compile(r"[A-Za-z0-9._%/-]+")

Key = bytes | str


class Verdict(enum.Enum):
    """What `verify` found; only `OK` lets a request through."""

    OK = "ok"
    MISSING = "missing"
    """No token parameter at all."""
    EXPIRED = "expired"
    """A genuine token whose `exp` has passed."""
    FORGED = "forged"
    """Well-formed, but no active key signed it, or it does not cover the request path."""
    MALFORMED = "malformed"
    """Some but not all parameters, a repeated one, or a value that breaks the format."""

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Verdict.OK: "signed URL valid",
    Verdict.MISSING: "signed URL required: the request has no token (exp, pfx, sig)",
    Verdict.EXPIRED: "signed URL expired",
    Verdict.FORGED: "signed URL forged: the signature does not match, or the token does not "
    "cover this path",
    Verdict.MALFORMED: "signed URL malformed: exp, pfx and sig must each appear exactly once "
    "and be well-formed",
}


class SigningError(ValueError):
    """A token cannot be made from these arguments (bad prefix, expiry or key)."""


def check_prefix(prefix: str) -> str:
    """Return `prefix` if a token may cover it (see the module docstring), else raise."""
    if len(prefix) > MAX_PREFIX_LENGTH or not _PREFIX.fullmatch(prefix):
        raise SigningError(
            "a signed prefix is '/', then segments of [A-Za-z0-9._-] each ending with '/'"
        )
    try:
        check_raw_path(prefix)
    except UnsafePath as exc:
        raise SigningError(f"unsafe prefix: {exc}") from None
    return prefix


def sign(prefix: str, expires: int, key: Key) -> dict[str, str]:
    """The token's query parameters (unencoded values) for URLs under `prefix` until `expires`.

    `manifests.rewrite.add_query(sign(...))` appends them to URIs; `query_string` renders them.
    """
    check_prefix(prefix)
    exp = str(expires)
    if isinstance(expires, bool) or not _EXPIRES.fullmatch(exp):
        raise SigningError(
            f"expires must be a positive integer of at most {MAX_EXPIRES_DIGITS} digits"
        )
    return {
        EXPIRES_PARAM: exp,
        PREFIX_PARAM: prefix,
        SIGNATURE_PARAM: _signature(_key_bytes(key), prefix, exp),
    }


def query_string(token: dict[str, str]) -> str:
    """`token` as a query string, the prefix's slashes left as they are (they are legal there)."""
    return "&".join(f"{name}={quote(value, safe='/')}" for name, value in token.items())


def verify(path: str, query: str, now: float, keys: Sequence[Key]) -> Verdict:
    """Whether the token in `query` (the raw query, without '?') lets a request for `path` (the
    raw path, without query) through at time `now` under one of `keys`."""
    if not keys:
        raise SigningError("verify needs at least one key")
    if len(query) > MAX_QUERY_LENGTH:
        return Verdict.MALFORMED
    try:
        check_raw_path(path)
    except UnsafePath:
        return Verdict.MALFORMED  # "/v/abc/../xyz/" must not pass as under "/v/abc/"
    found: dict[str, str] = {}
    for name, value in _params(query):
        if name in TOKEN_PARAMS:
            if name in found:
                return Verdict.MALFORMED
            found[name] = value
    if not found:
        return Verdict.MISSING
    if len(found) != len(TOKEN_PARAMS):
        return Verdict.MALFORMED
    exp, raw_prefix, signature = found[EXPIRES_PARAM], found[PREFIX_PARAM], found[SIGNATURE_PARAM]
    if not _EXPIRES.fullmatch(exp) or not _SIGNATURE.fullmatch(signature):
        return Verdict.MALFORMED
    if len(raw_prefix) > 3 * MAX_PREFIX_LENGTH or not _RAW_PREFIX.fullmatch(raw_prefix):
        return Verdict.MALFORMED
    prefix = unquote(raw_prefix, errors="strict") if "%" in raw_prefix else raw_prefix
    try:
        check_prefix(prefix)
    except (SigningError, UnicodeDecodeError):
        return Verdict.MALFORMED
    if not path.startswith(prefix):
        return Verdict.FORGED
    given = signature.encode("ascii")
    # Every key is tried, even after a match: the time taken does not say which key matched.
    matched = False
    for key in keys:
        expected = _signature(_key_bytes(key), prefix, exp).encode("ascii")
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        return Verdict.FORGED
    if now >= int(exp):
        return Verdict.EXPIRED
    return Verdict.OK


def verify_target(target: str, now: float, keys: Sequence[Key]) -> Verdict:
    """`verify` for a raw request target (path and query)."""
    path, _, query = target.partition("?")
    return verify(path, query, now, keys)


def strip_token(target: str) -> str:
    """`target` without the token parameters, every other character as it was.

    A query left empty loses its '?'. Parameters are recognised exactly as `verify` does (by
    their raw names), so whatever `verify` read is what is removed.
    """
    path, question, query = target.partition("?")
    if not question:
        return target
    kept = [part for part in query.split("&") if part.partition("=")[0] not in TOKEN_PARAMS]
    rest = "&".join(kept)
    return f"{path}?{rest}" if rest else path


def _params(query: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for part in query.split("&") if query else ():
        name, _, value = part.partition("=")
        pairs.append((name, value))
    return pairs


def _key_bytes(key: Key) -> bytes:
    secret = key.encode("utf-8") if isinstance(key, str) else key
    if not secret:
        raise SigningError("a signing key must not be empty")
    return secret


def _signature(key: bytes, prefix: str, exp: str) -> str:
    message = b"\n".join((_DOMAIN, prefix.encode("ascii"), exp.encode("ascii")))
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


__all__ = [
    "EXPIRES_PARAM",
    "PREFIX_PARAM",
    "SIGNATURE_PARAM",
    "TOKEN_PARAMS",
    "Key",
    "SigningError",
    "Verdict",
    "check_prefix",
    "query_string",
    "sign",
    "strip_token",
    "verify",
    "verify_target",
]
