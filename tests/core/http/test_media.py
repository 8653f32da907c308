"""Content types and cache lifetimes of HLS objects, decided by key."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.http.media import MediaKind, cache_control, content_type, media_kind

AGES = {"playlist_max_age": 2, "segment_max_age": 31_536_000}


@pytest.mark.parametrize(
    ("key", "expected_type", "expected_kind"),
    [
        ("videos/abc/master.m3u8", "application/vnd.apple.mpegurl", MediaKind.PLAYLIST),
        ("videos/abc/720p/index.m3u8", "application/vnd.apple.mpegurl", MediaKind.PLAYLIST),
        ("videos/abc/720p/seg_00001.m4s", "video/iso.segment", MediaKind.MEDIA_SEGMENT),
        ("videos/abc/720p/init.mp4", "video/mp4", MediaKind.INIT_SEGMENT),
        ("videos/abc/audio/seg_00001.m4a", "audio/mp4", MediaKind.MEDIA_SEGMENT),
        ("videos/abc/720p/seg_00001.ts", "video/mp2t", MediaKind.MEDIA_SEGMENT),
        ("videos/abc/poster.jpg", "image/jpeg", MediaKind.POSTER),
        ("videos/abc/poster.jpeg", "image/jpeg", MediaKind.POSTER),
        ("videos/abc/subs/en_00001.vtt", "text/vtt", MediaKind.SUBTITLES),
        ("videos/abc/720p/SEG_00001.M4S", "video/iso.segment", MediaKind.MEDIA_SEGMENT),
        ("videos/abc/Master.M3U8", "application/vnd.apple.mpegurl", MediaKind.PLAYLIST),
    ],
)
def test_known_types(key: str, expected_type: str, expected_kind: MediaKind) -> None:
    assert content_type(key) == expected_type
    assert media_kind(key) == expected_kind


@pytest.mark.parametrize(
    "key",
    [
        "videos/abc/notes.txt",
        "videos/abc/README",
        "videos/abc/archive.m3u8.bak",
        "videos/abc.m3u8/readme",  # the extension is the last segment's, not a folder's
        "videos/abc/.m3u8",  # a leading dot starts a name, it is not an extension
        "videos/abc/seg.m4s.",
        "mp4",
    ],
)
def test_unknown_types_are_octet_streams(key: str) -> None:
    assert content_type(key) == "application/octet-stream"
    assert media_kind(key) == MediaKind.OTHER


@pytest.mark.parametrize(
    "key",
    [
        "videos/abc/720p/seg_00001.m4s",
        "videos/abc/720p/init.mp4",
        "videos/abc/audio/seg_00001.m4a",
        "videos/abc/720p/seg_00001.ts",
        "videos/abc/poster.jpg",
        "videos/abc/subs/en_00001.vtt",
    ],
)
def test_segments_and_posters_are_immutable(key: str) -> None:
    assert cache_control(key, **AGES) == "public, max-age=31536000, immutable"


@pytest.mark.parametrize("key", ["videos/abc/master.m3u8", "videos/abc/720p/index.m3u8"])
def test_playlists_get_the_short_lifetime(key: str) -> None:
    assert cache_control(key, **AGES) == "public, max-age=2"


def test_unknown_objects_are_not_promised_to_be_immutable() -> None:
    assert cache_control("videos/abc/notes.txt", **AGES) == "public, max-age=2"


def test_zero_max_age_is_allowed() -> None:
    ages = {"playlist_max_age": 0, "segment_max_age": 0}
    assert cache_control("videos/a/index.m3u8", **ages) == "public, max-age=0"
    assert cache_control("videos/a/s.m4s", **ages) == "public, max-age=0, immutable"


def test_negative_max_age_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        cache_control("videos/a/index.m3u8", playlist_max_age=-1, segment_max_age=1)


_segment_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True)


@given(
    name=_segment_names,
    playlist_max_age=st.integers(0, 10**9),
    segment_max_age=st.integers(0, 10**9),
)
def test_lifetimes_come_from_the_arguments(
    name: str, playlist_max_age: int, segment_max_age: int
) -> None:
    ages = {"playlist_max_age": playlist_max_age, "segment_max_age": segment_max_age}
    playlist = cache_control(f"videos/{name}/{name}.m3u8", **ages)
    segment = cache_control(f"videos/{name}/{name}.m4s", **ages)
    assert playlist == f"public, max-age={playlist_max_age}"
    assert segment == f"public, max-age={segment_max_age}, immutable"


@given(key=st.text(max_size=80))
def test_every_key_gets_a_type_and_a_policy(key: str) -> None:
    assert "/" in content_type(key)
    assert cache_control(key, **AGES).startswith("public, max-age=")
