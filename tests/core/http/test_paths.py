"""Raw request paths: anything that could mean something else once decoded is refused."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.http.paths import MAX_PATH_LENGTH, UnsafePath, check_raw_path


@pytest.mark.parametrize(
    "raw",
    [
        "/v/abc/master.m3u8",
        "/v/abc/720p/seg_00001.m4s?token=a.b-c&exp=1",
        "/healthz",
        "/v/abc/",
        "/",
    ],
)
def test_ordinary_paths_pass_without_their_query(raw: str) -> None:
    assert check_raw_path(raw) == raw.split("?")[0]


@pytest.mark.parametrize(
    "raw",
    [
        "/v/../secret",
        "/v/./x",
        "/v/abc/..",
        "/v/%2e%2e/secret",
        "/v/%2E%2E%2Fsecret",
        "/v/abc%2fdef",
        "/v/abc%5c..%5csecret",
        "/v/a/%00",
        "/v/a/\x00",
        "/v//etc/passwd",
        "/v/a\\b",
        "/v/a b",
        "v/abc",
        "//etc/passwd",
        "/v/" + "a" * MAX_PATH_LENGTH,
    ],
)
def test_unsafe_paths_are_refused(raw: str) -> None:
    with pytest.raises(UnsafePath):
        check_raw_path(raw)


@given(st.text(max_size=200))
def test_accepted_paths_have_no_dot_segments_or_encoded_separators(raw: str) -> None:
    try:
        path = check_raw_path(raw)
    except UnsafePath:
        return
    segments = path.split("/")
    assert ".." not in segments and "." not in segments
    assert "%2f" not in path.lower() and "%2e" not in path.lower() and "\x00" not in path
