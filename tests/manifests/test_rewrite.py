from collections.abc import Callable

import pytest

from manifests import (
    ManifestError,
    add_query,
    is_relative_reference,
    parse_media,
    prefix_uris,
    rewrite_uris,
)

MASTER = """\
#EXTM3U
#EXT-X-VERSION:7
#EXT-X-SHOAL-EXPERIMENT:URI="left-alone",ID=7
# a comment, kept
#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI="skd://key-id",KEYFORMAT="com.apple.streamingkeydelivery"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="en,URI=",URI="audio/en.m3u8",DEFAULT=YES

#EXT-X-STREAM-INF:BANDWIDTH=700000,CODECS="avc1.4d401e,mp4a.40.2",AUDIO="aac"
360p/index.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI="360p/iframes.m3u8"
"""
# Only the URI lines and the URI attributes of EXT-X-MEDIA and EXT-X-I-FRAME-STREAM-INF change;
# not the unknown tag, the key (a key system's identifier) or the quoted NAME that looks like one.
MASTER_UPPER = """\
#EXTM3U
#EXT-X-VERSION:7
#EXT-X-SHOAL-EXPERIMENT:URI="left-alone",ID=7
# a comment, kept
#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI="skd://key-id",KEYFORMAT="com.apple.streamingkeydelivery"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="en,URI=",URI="AUDIO/EN.M3U8",DEFAULT=YES

#EXT-X-STREAM-INF:BANDWIDTH=700000,CODECS="avc1.4d401e,mp4a.40.2",AUDIO="aac"
360P/INDEX.M3U8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI="360P/IFRAMES.M3U8"
"""


def test_rewrites_uri_lines_and_uri_attributes_and_keeps_everything_else() -> None:
    assert rewrite_uris(MASTER, str.upper) == MASTER_UPPER


def test_rewrites_the_map_and_segments_of_a_media_playlist_with_crlf_lines() -> None:
    media = (
        "#EXTM3U\r\n#EXT-X-TARGETDURATION:2\r\n"
        '#EXT-X-MAP:URI="init.mp4"\r\n'
        "#EXTINF:2.000000,\r\n"
        "seg_00000.m4s\r\n"
        "#EXT-X-ENDLIST\r\n"
    )
    rewritten = rewrite_uris(media, prefix_uris("https://cdn.example/v/clip"))
    assert rewritten == (
        "#EXTM3U\r\n#EXT-X-TARGETDURATION:2\r\n"
        '#EXT-X-MAP:URI="https://cdn.example/v/clip/init.mp4"\r\n'
        "#EXTINF:2.000000,\r\n"
        "https://cdn.example/v/clip/seg_00000.m4s\r\n"
        "#EXT-X-ENDLIST\r\n"
    )
    assert parse_media(rewritten).segments[0].uri == "https://cdn.example/v/clip/seg_00000.m4s"


def test_the_identity_rewrite_changes_nothing() -> None:
    assert rewrite_uris(MASTER, lambda uri: uri) == MASTER


def test_the_rewriter_sees_each_uri_once_in_order() -> None:
    seen: list[str] = []

    def record(uri: str) -> str:
        seen.append(uri)
        return uri

    rewrite_uris(MASTER, record)
    assert seen == ["audio/en.m3u8", "360p/index.m3u8", "360p/iframes.m3u8"]


@pytest.mark.parametrize(
    "rewrite",
    [
        lambda uri: uri + "\n#EXT-X-ENDLIST",  # a tag injected through a URI line
        lambda uri: uri + '",BANDWIDTH="1',  # an attribute injected through a quoted URI
        lambda uri: "#" + uri,
        lambda uri: "",
    ],
)
def test_rewritten_uris_that_would_change_the_structure_are_refused(
    rewrite: Callable[[str], str],
) -> None:
    with pytest.raises(ManifestError, match="cannot be written"):
        rewrite_uris(MASTER, rewrite)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("360p/index.m3u8\n", "does not start with a #EXTM3U"),
        ('#EXTM3U\n#EXT-X-MAP:URI="init.mp4", BYTERANGE="1@0"\n', "line 2: malformed attribute"),
        ('#EXTM3U\n#EXT-X-MAP:URI="init.mp4\n', "line 2: malformed attribute"),
        ("#EXTM3U\n#EXT-X-MAP:URI=init.mp4\n", "line 2: URI of #EXT-X-MAP is not a quoted-string"),
    ],
)
def test_malformed_input_is_refused(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        rewrite_uris(text, str.upper)


@pytest.mark.parametrize(
    ("uri", "relative"),
    [
        ("seg.m4s", True),
        ("360p/index.m3u8?t=a:b", True),
        ("../x.m4s", True),  # relative, though validate refuses it in a package
        ("/v/seg.m4s", False),
        ("//cdn.example/seg.m4s", False),
        ("https://cdn.example/seg.m4s", False),
        ("data:,x", False),
    ],
)
def test_is_relative_reference(uri: str, relative: bool) -> None:
    assert is_relative_reference(uri) is relative


@pytest.mark.parametrize(
    ("base", "uri", "expected"),
    [
        (
            "https://cdn.example/v/clip",
            "360p/index.m3u8",
            "https://cdn.example/v/clip/360p/index.m3u8",
        ),
        ("https://cdn.example/v/clip/", "seg.m4s", "https://cdn.example/v/clip/seg.m4s"),
        ("/v/clip", "seg.m4s", "/v/clip/seg.m4s"),
        ("/v/clip", "/elsewhere/seg.m4s", "/elsewhere/seg.m4s"),
        ("/v/clip", "https://other.example/seg.m4s", "https://other.example/seg.m4s"),
    ],
)
def test_prefix_uris(base: str, uri: str, expected: str) -> None:
    assert prefix_uris(base)(uri) == expected


def test_prefix_uris_needs_a_base() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        prefix_uris("")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("seg.m4s", "seg.m4s?token=a%2Fb+c&exp=60"),
        ("seg.m4s?v=1", "seg.m4s?v=1&token=a%2Fb+c&exp=60"),
        ("seg.m4s?", "seg.m4s?token=a%2Fb+c&exp=60"),
        ("seg.m4s#t=2", "seg.m4s?token=a%2Fb+c&exp=60#t=2"),
    ],
)
def test_add_query(uri: str, expected: str) -> None:
    assert add_query({"token": "a/b c", "exp": "60"})(uri) == expected


def test_add_query_takes_the_parameters_as_they_were_given() -> None:
    params = {"token": "abc"}
    append = add_query(params)
    params["token"] = "changed"
    assert append("seg.m4s") == "seg.m4s?token=abc"


def test_add_query_without_parameters_leaves_uris_alone() -> None:
    assert add_query({})("seg.m4s") == "seg.m4s"
