"""The integrity list parser refuses anything but the origin's exact format."""

from __future__ import annotations

import contextlib
import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.p2p.integrity import EMPTY, MAX_LIST_BYTES, IntegrityError, parse_integrity

INIT, SEG = b"init bytes", b"segment bytes"


def document(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "version": 1,
        "algorithm": "sha256",
        "segments": {
            "init.mp4": hashlib.sha256(INIT).hexdigest(),
            "seg_00001.m4s": hashlib.sha256(SEG).hexdigest(),
        },
    }
    base.update(overrides)
    return base


def test_parses_and_verifies() -> None:
    integrity = parse_integrity(json.dumps(document(), indent=1).encode())
    assert integrity.verify("seg_00001.m4s", SEG)
    assert integrity.verify("init.mp4", INIT)
    assert not integrity.verify("seg_00001.m4s", SEG + b"x")
    assert not integrity.verify("seg_00002.m4s", SEG)  # unlisted: never verifies
    assert integrity.covers("init.mp4") and not integrity.covers("other")


def test_empty_list_verifies_nothing() -> None:
    assert not EMPTY.verify("seg_00001.m4s", SEG)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b"{", "not JSON"),
        (json.dumps(document(version=2)).encode(), "version"),
        (json.dumps(document(version=True)).encode(), "version"),
        (json.dumps(document(version="1")).encode(), "version"),
        (json.dumps(document(algorithm="md5")).encode(), "algorithm"),
        (json.dumps(document(segments=[])).encode(), "'segments'"),
        (json.dumps(document(extra=1)).encode(), "keys"),
        (json.dumps(document(segments={"a": "AB" * 32})).encode(), "hex"),
        (json.dumps(document(segments={"a": "ab" * 31})).encode(), "hex"),
        (json.dumps(document(segments={"a": 5})).encode(), "hex"),
        (json.dumps(document(segments={"": "ab" * 32})).encode(), "length"),
        (json.dumps(document(segments={"a\nb": "ab" * 32})).encode(), "control"),
        (json.dumps(document(segments={"x" * 2000: "ab" * 32})).encode(), "length"),
        (
            b'{"version":1,"algorithm":"sha256","segments":{"a":"'
            + b"0" * 64
            + b'","a":"'
            + b"1" * 64
            + b'"}}',
            "duplicate",
        ),
        (b" " * (MAX_LIST_BYTES + 1), "exceeds"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ],
)
def test_hostile_lists_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(IntegrityError, match=message):
        parse_integrity(raw)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_integrity_error(raw: bytes) -> None:
    with contextlib.suppress(IntegrityError):
        parse_integrity(raw)
