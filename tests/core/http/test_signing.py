"""Signed URLs: the token format, verification verdicts, key rotation and token stripping."""

import hmac
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.http import signing
from core.http.signing import SigningError, Verdict, sign, strip_token, verify, verify_target

NOW = 1_700_000_000
EXP = NOW + 3600
PREFIX = "/v/abc/"
PATH = "/v/abc/720p/seg_00001.m4s"
NEW, OLD = "key-2025-new", b"key-2024-old"


def query(token: dict[str, str]) -> str:
    return urlencode(token)


def test_a_signed_url_verifies_until_it_expires() -> None:
    token = sign(PREFIX, EXP, NEW)
    assert set(token) == {"exp", "pfx", "sig"}
    assert token["exp"] == str(EXP) and token["pfx"] == PREFIX and len(token["sig"]) == 43
    assert verify(PATH, query(token), NOW, [NEW]) is Verdict.OK
    assert verify(PATH, query(token), EXP - 1, [NEW]) is Verdict.OK
    assert verify(PATH, query(token), EXP, [NEW]) is Verdict.EXPIRED
    assert verify(PATH, query(token), EXP + 10**6, [NEW]) is Verdict.EXPIRED


def test_both_encodings_of_the_prefix_and_other_parameters_are_accepted() -> None:
    token = sign(PREFIX, EXP, NEW)
    assert verify(PATH, signing.query_string(token), NOW, [NEW]) is Verdict.OK
    assert "pfx=/v/abc/&" in signing.query_string(token)
    mixed = f"_HLS_msn=3&{query(token)}&player=x"
    assert verify(PATH, mixed, NOW, [NEW]) is Verdict.OK
    assert verify_target(f"{PATH}?{mixed}", NOW, [NEW]) is Verdict.OK


def test_missing_token() -> None:
    assert verify(PATH, "", NOW, [NEW]) is Verdict.MISSING
    assert verify(PATH, "foo=1&bar", NOW, [NEW]) is Verdict.MISSING
    assert verify_target(PATH, NOW, [NEW]) is Verdict.MISSING


def test_a_token_for_another_prefix_does_not_cover_the_path() -> None:
    token = sign("/v/other/", EXP, NEW)
    assert verify(PATH, query(token), NOW, [NEW]) is Verdict.FORGED
    # A prefix covers whole segments only: "/v/ab/" is no prefix of "/v/abc/...".
    assert verify(PATH, query(sign("/v/ab/", EXP, NEW)), NOW, [NEW]) is Verdict.FORGED
    # A narrower token covers less: the 720p directory, not the master playlist.
    narrow = query(sign("/v/abc/720p/", EXP, NEW))
    assert verify(PATH, narrow, NOW, [NEW]) is Verdict.OK
    assert verify("/v/abc/master.m3u8", narrow, NOW, [NEW]) is Verdict.FORGED


def test_a_path_that_would_escape_the_prefix_once_decoded_is_refused() -> None:
    token = query(sign(PREFIX, EXP, NEW))
    assert verify("/v/abc/../xyz/seg.m4s", token, NOW, [NEW]) is Verdict.MALFORMED
    assert verify("/v/abc/%2e%2e/xyz/seg.m4s", token, NOW, [NEW]) is Verdict.MALFORMED


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: {**t, "exp": str(int(t["exp"]) + 1)},  # a longer life
        lambda t: {**t, "pfx": "/v/"},  # a wider prefix
        lambda t: {**t, "sig": ("A" if t["sig"][0] != "A" else "B") + t["sig"][1:]},
        lambda t: {**t, "sig": t["sig"][:-1] + ("A" if t["sig"][-1] != "A" else "Q")},
    ],
)
def test_tampered_tokens_are_forged(tamper: object) -> None:
    token = sign(PREFIX, EXP, NEW)
    tampered = tamper(token)  # type: ignore[operator]
    assert verify(PATH, query(tampered), NOW, [NEW]) is Verdict.FORGED


def test_a_token_signed_with_an_unknown_key_is_forged() -> None:
    token = query(sign(PREFIX, EXP, "someone-else"))
    assert verify(PATH, token, NOW, [NEW, OLD]) is Verdict.FORGED


def test_forged_beats_expired() -> None:
    """An expired token is reported as expired only if it is genuine."""
    token = sign(PREFIX, NOW - 10, "someone-else")
    assert verify(PATH, query(token), NOW, [NEW]) is Verdict.FORGED
    assert verify(PATH, query(sign(PREFIX, NOW - 10, NEW)), NOW, [NEW]) is Verdict.EXPIRED


def test_key_rotation() -> None:
    """Sign with the new key while the old one still verifies; then retire the old one."""
    old_token = query(sign(PREFIX, EXP, OLD))
    new_token = query(sign(PREFIX, EXP, NEW))
    assert verify(PATH, old_token, NOW, [OLD]) is Verdict.OK
    # During the rotation both keys are active (in either order).
    rotations: list[list[signing.Key]] = [[NEW, OLD], [OLD, NEW]]
    for keys in rotations:
        assert verify(PATH, old_token, NOW, keys) is Verdict.OK
        assert verify(PATH, new_token, NOW, keys) is Verdict.OK
    # After it, the old key's tokens are refused.
    assert verify(PATH, old_token, NOW, [NEW]) is Verdict.FORGED
    assert verify(PATH, new_token, NOW, [NEW]) is Verdict.OK


def test_str_and_bytes_keys_are_the_same_secret() -> None:
    token = query(sign(PREFIX, EXP, "secret"))
    assert verify(PATH, token, NOW, [b"secret"]) is Verdict.OK


def good() -> dict[str, str]:
    return sign(PREFIX, EXP, NEW)


@pytest.mark.parametrize(
    "raw",
    [
        # Some parameters only.
        f"exp={EXP}",
        urlencode({k: v for k, v in good().items() if k != "sig"}),
        urlencode({k: v for k, v in good().items() if k != "pfx"}),
        # A parameter twice (even with the same value).
        urlencode(good()) + f"&exp={EXP}",
        urlencode(good()) + "&sig=" + good()["sig"],
        # exp: digits only, no sign, no leading zero, no escapes, bounded.
        urlencode({**good(), "exp": f"0{EXP}"}),
        urlencode({**good(), "exp": f"+{EXP}"}),
        urlencode({**good(), "exp": f"{EXP}.0"}),
        urlencode({**good(), "exp": "1e10"}),
        urlencode({**good(), "exp": ""}),
        urlencode({**good(), "exp": "9" * 13}),
        urlencode({**good(), "exp": "%31%37"}),
        urlencode({**good(), "exp": "\u0661\u0667" + "\u0660" * 8}),  # Arabic-Indic digits
        # sig: exactly 43 base64url characters.
        urlencode({**good(), "sig": good()["sig"] + "="}),
        urlencode({**good(), "sig": good()["sig"][:-1]}),
        urlencode({**good(), "sig": good()["sig"] + "A"}),
        urlencode({**good(), "sig": good()["sig"][:-1] + "+"}),
        urlencode({**good(), "sig": "x" * 5000}),
        # pfx: rooted, ending with '/', safe, key alphabet, bounded.
        urlencode({**good(), "pfx": "v/abc/"}),
        urlencode({**good(), "pfx": "/v/abc"}),
        urlencode({**good(), "pfx": "/v/../"}),
        urlencode({**good(), "pfx": "/v//abc/"}),
        urlencode({**good(), "pfx": "/v/a%2e/"}),
        urlencode({**good(), "pfx": "/v/a b/"}),
        urlencode({**good(), "pfx": "/v/é/"}),
        urlencode({**good(), "pfx": "/v/" + "a" * 600 + "/"}),
        urlencode({**good(), "pfx": ""}),
        "exp=1&pfx=%ZZ&sig=" + "A" * 43,
        # Oversized query.
        urlencode(good()) + "&pad=" + "x" * 5000,
    ],
)
def test_malformed_tokens(raw: str) -> None:
    assert verify(PATH, raw, NOW, [NEW]) is Verdict.MALFORMED


def test_verdicts_say_what_is_wrong() -> None:
    assert "missing" in Verdict.MISSING.message or "no token" in Verdict.MISSING.message
    assert "expired" in Verdict.EXPIRED.message
    assert "forged" in Verdict.FORGED.message
    assert "malformed" in Verdict.MALFORMED.message


@pytest.mark.parametrize(
    "prefix", ["", "/", "v/abc/", "/v/abc", "/v/../", "/v//", "/v/a%2e/", "/v/a b/", "/v/é/"]
)
def test_sign_refuses_bad_prefixes(prefix: str) -> None:
    with pytest.raises(SigningError):
        sign(prefix, EXP, NEW)


@pytest.mark.parametrize("expires", [0, -1, 10**12, True])
def test_sign_refuses_bad_expiries(expires: int) -> None:
    with pytest.raises(SigningError):
        sign(PREFIX, expires, NEW)


def test_empty_keys_are_refused() -> None:
    with pytest.raises(SigningError):
        sign(PREFIX, EXP, "")
    with pytest.raises(SigningError):
        verify(PATH, "", NOW, [])
    with pytest.raises(SigningError):
        verify(PATH, query(good()), NOW, [b""])


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every active key's signature goes through `hmac.compare_digest`, even after a match."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    token = good()
    assert verify(PATH, query(token), NOW, [NEW, OLD]) is Verdict.OK
    assert len(calls) == 2
    assert all(given == token["sig"].encode() for _, given in calls)


def test_strip_token_keeps_everything_else() -> None:
    token = query(good())
    assert strip_token(f"{PATH}?{token}") == PATH
    assert strip_token(f"{PATH}?a=1&{token}&b=%20") == f"{PATH}?a=1&b=%20"
    assert strip_token(f"{PATH}?{token}&a=1") == f"{PATH}?a=1"
    assert strip_token(PATH) == PATH
    assert strip_token(f"{PATH}?a=1") == f"{PATH}?a=1"
    # Exactly the names verify reads: an escaped name is some other parameter.
    assert strip_token(f"{PATH}?%65xp=1") == f"{PATH}?%65xp=1"
    assert strip_token(f"{PATH}?exp&sig=&pfx=x") == PATH


_SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
_PREFIX = st.lists(_SEGMENT, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts) + "/")


@given(
    prefix=_PREFIX,
    rest=st.lists(_SEGMENT, min_size=1, max_size=3).map("/".join),
    other=_PREFIX,
    key=st.binary(min_size=1, max_size=64),
    lifetime=st.integers(min_value=1, max_value=10**6),
)
def test_a_token_covers_exactly_the_paths_under_its_prefix(
    prefix: str, rest: str, other: str, key: bytes, lifetime: int
) -> None:
    token = sign(prefix, NOW + lifetime, key)
    raw = query(token)
    assert verify(prefix + rest, raw, NOW, [key]) is Verdict.OK
    assert verify(prefix + rest, signing.query_string(token), NOW, [key]) is Verdict.OK
    assert strip_token(f"{prefix}{rest}?{raw}") == prefix + rest
    # Judge the whole path: "/0/" + "0/x" is under "/0/0/" even though "/0/" is not.
    if not (other + rest).startswith(prefix):
        assert verify(other + rest, raw, NOW, [key]) is Verdict.FORGED
    assert verify(prefix + rest, raw, NOW + lifetime, [key]) is Verdict.EXPIRED
