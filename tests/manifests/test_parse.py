import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifests import (
    MAX_PLAYLIST_BYTES,
    ByteRange,
    InitSection,
    ManifestError,
    MasterPlaylist,
    MediaPlaylist,
    Segment,
    Variant,
    parse,
    parse_master,
    parse_media,
)

# What `ffmpeg -f hls -hls_segment_type fmp4 -hls_playlist_type vod -hls_time 2
# -hls_flags independent_segments -var_stream_map ...` (ffmpeg 5.1) writes for a 5 s source.
FFMPEG_MEDIA = """\
#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init_0.mp4"
#EXTINF:2.000000,
seg_00000.m4s
#EXTINF:2.000000,
seg_00001.m4s
#EXTINF:1.000000,
seg_00002.m4s
#EXT-X-ENDLIST
"""
FFMPEG_MASTER = """\
#EXTM3U
#EXT-X-VERSION:7
#EXT-X-STREAM-INF:BANDWIDTH=75900,RESOLUTION=180x320,CODECS="avc1.64000d,mp4a.40.2"
180p/index.m3u8

#EXT-X-STREAM-INF:BANDWIDTH=140800,RESOLUTION=360x640,CODECS="avc1.64001e,mp4a.40.2"
360p/index.m3u8

"""
PARSED_FFMPEG_MEDIA = MediaPlaylist(
    target_duration=2,
    segments=(
        Segment("seg_00000.m4s", 2.0),
        Segment("seg_00001.m4s", 2.0),
        Segment("seg_00002.m4s", 1.0),
    ),
    media_sequence=0,
    init=InitSection("init_0.mp4"),
    playlist_type="VOD",
    endlist=True,
    version=7,
    independent_segments=True,
)


def test_parses_an_ffmpeg_fmp4_vod_media_playlist() -> None:
    playlist = parse_media(FFMPEG_MEDIA)
    assert playlist == PARSED_FFMPEG_MEDIA
    assert playlist.total_duration == 5.0


def test_parses_an_ffmpeg_master_playlist() -> None:
    assert parse_master(FFMPEG_MASTER) == MasterPlaylist(
        variants=(
            Variant(
                uri="180p/index.m3u8",
                bandwidth=75900,
                resolution=(180, 320),
                codecs="avc1.64000d,mp4a.40.2",
            ),
            Variant(
                uri="360p/index.m3u8",
                bandwidth=140800,
                resolution=(360, 640),
                codecs="avc1.64001e,mp4a.40.2",
            ),
        ),
        version=7,
    )


def test_parse_tells_master_from_media() -> None:
    assert isinstance(parse(FFMPEG_MASTER), MasterPlaylist)
    assert parse(FFMPEG_MEDIA) == PARSED_FFMPEG_MEDIA


def test_crlf_line_endings_parse_like_lf() -> None:
    assert parse_media(FFMPEG_MEDIA.replace("\n", "\r\n")) == PARSED_FFMPEG_MEDIA


def test_a_missing_version_tag_means_version_1() -> None:
    text = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n"
    assert parse_master(text).version == 1


def test_parses_byteranges_titles_and_all_variant_attributes() -> None:
    media = parse_media(
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:3\n"
        '#EXT-X-MAP:URI="all.mp4",BYTERANGE="720@0"\n'
        "#EXTINF:4.000000,first, with a comma\n#EXT-X-BYTERANGE:1000@720\nall.mp4\n"
        "#EXT-X-BYTERANGE:900\n#EXTINF:3.5,\nall.mp4\n"  # tags before the URI in any order
    )
    assert media.init == InitSection("all.mp4", ByteRange(720, 0))
    assert media.segments == (
        Segment("all.mp4", 4.0, title="first, with a comma", byterange=ByteRange(1000, 720)),
        Segment("all.mp4", 3.5, byterange=ByteRange(900)),
    )
    assert (media.media_sequence, media.playlist_type, media.endlist) == (3, None, False)
    master = parse_master(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=900,AVERAGE-BANDWIDTH=800,"
        'FRAME-RATE=29.970,STABLE-VARIANT-ID="hd",AUDIO="aac"\nhd.m3u8\n'
    )
    assert master.variants == (
        Variant(
            uri="hd.m3u8",
            bandwidth=900,
            average_bandwidth=800,
            frame_rate=29.97,
            stable_variant_id="hd",
        ),
    )


def test_informational_and_unknown_tags_are_ignored() -> None:
    text = FFMPEG_MEDIA.replace(
        "#EXTINF:2.000000,\nseg_00001",
        "#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z\n#EXT-X-SHOAL-HINT:x=1\n"
        "# a comment\n#EXTINF:2.000000,\nseg_00001",
    )
    assert parse_media(text) == PARSED_FFMPEG_MEDIA


_STREAM = "#EXT-X-STREAM-INF:BANDWIDTH=1000\na.m3u8\n"
_SEGMENT = "#EXTINF:2.0,\na.m4s\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "does not start with a #EXTM3U"),
        ("hello\n", "does not start with a #EXTM3U"),
        ("\n#EXTM3U\n", "does not start with a #EXTM3U"),
        ("\ufeff#EXTM3U\n" + _STREAM, "byte order mark"),
        ("#EXTM3U\n" + _STREAM.replace("a.m3u8", "a\x00.m3u8"), "control character .* line 3"),
        ("#EXTM3U\n" + _STREAM.replace("\na.m3u8", "\ra.m3u8"), "control character"),
        (
            "#EXTM3U\n#EXT-X-STREAM-INF:AVERAGE-BANDWIDTH=1\na.m3u8\n",
            "malformed playlist: KeyError: 'bandwidth'",
        ),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=lots\na.m3u8\n", "malformed playlist: ValueError"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=-5\na.m3u8\n", "BANDWIDTH .* non-negative"),
        ("#EXTM3U\n#EXT-X-VERSION:-1\n" + _STREAM, "EXT-X-VERSION must be a non-negative"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=1x2x3\na.m3u8\n", "RESOLUTION"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,FRAME-RATE=inf\na.m3u8\n", "FRAME-RATE"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", "1 EXT-X-STREAM-INF tags but 0 URI"),
        ("#EXTM3U\n" + _STREAM + "b.m3u8\n", "1 EXT-X-STREAM-INF tags but 2 URI"),
        ("#EXTM3U\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1\n", "malformed playlist: KeyError"),
        ("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-VERSION:7\n" + _STREAM, "VERSION appears 2 times"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n" + _STREAM, "mixes master .* and media"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n" + _SEGMENT, "expected a master"),
    ],
)
def test_malformed_master_playlists_are_refused(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_master(text)


_HEAD = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#EXTM3U\n" + _SEGMENT, "without EXT-X-TARGETDURATION"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2.5\n" + _SEGMENT, "malformed playlist: ValueError"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:-2\n" + _SEGMENT, "TARGETDURATION .* non-negative"),
        (_HEAD + "#EXT-X-TARGETDURATION:3\n" + _SEGMENT, "TARGETDURATION appears 2 times"),
        (_HEAD + "#EXT-X-MEDIA-SEQUENCE:-1\n" + _SEGMENT, "MEDIA-SEQUENCE .* non-negative"),
        (_HEAD + "#EXTINF:two,\na.m4s\n", "malformed playlist: ValueError"),
        (_HEAD + "#EXTINF:nan,\na.m4s\n", "EXTINF of 'a.m4s' must be a non-negative decimal"),
        (_HEAD + "#EXTINF:-1.0,\na.m4s\n", "EXTINF of 'a.m4s' must be a non-negative decimal"),
        (_HEAD + "#EXTINF:2.0,\n", "1 EXTINF tags but 0 URI lines"),
        (_HEAD + "#EXTINF:2.0,\n#EXTINF:2.0,\na.m4s\n", "2 EXTINF tags but 1 URI lines"),
        (_HEAD + _SEGMENT + "b.m4s\n", "1 EXTINF tags but 2 URI lines"),
        (_HEAD + "a.m4s\n#EXTINF:2.0,\n", "1 EXTINF tags but 1 URI lines"),
        (_HEAD + "#EXT-X-BYTERANGE:12@x\n" + _SEGMENT, "EXT-X-BYTERANGE of 'a.m4s'"),
        (_HEAD + "#EXT-X-PLAYLIST-TYPE:LIVE\n" + _SEGMENT, "must be VOD or EVENT"),
        (
            _HEAD + '#EXT-X-MAP:BYTERANGE="1@0"\n' + _SEGMENT,
            "malformed playlist: TypeError: .*'uri'",
        ),
        (_HEAD + '#EXT-X-MAP:URI="a"\n#EXT-X-MAP:URI="b"\n' + _SEGMENT, "more than one EXT-X-MAP"),
        (_HEAD + _SEGMENT + '#EXT-X-MAP:URI="i.mp4"\n' + _SEGMENT, "EXT-X-MAP after the first"),
        (_HEAD + '#EXT-X-KEY:METHOD=AES-128,URI="k"\n' + _SEGMENT, "EXT-X-KEY is not supported"),
        (_HEAD + _SEGMENT + "#EXT-X-DISCONTINUITY\n" + _SEGMENT, "DISCONTINUITY is not supported"),
        (FFMPEG_MASTER, "expected a media playlist, got a master"),
    ],
)
def test_malformed_media_playlists_are_refused(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_media(text)


def test_input_beyond_the_size_limit_is_refused_before_parsing() -> None:
    padding = "# " + "x" * MAX_PLAYLIST_BYTES + "\n"
    with pytest.raises(ManifestError, match="larger than 1048576 bytes"):
        parse(FFMPEG_MEDIA + padding)
    # The limit counts UTF-8 bytes, not characters.
    multibyte = "# " + "é" * (MAX_PLAYLIST_BYTES // 2) + "\n"
    with pytest.raises(ManifestError, match="larger than"):
        parse(FFMPEG_MEDIA + multibyte)


def test_manifest_errors_are_value_errors_chained_to_the_cause() -> None:
    with pytest.raises(ValueError, match="malformed") as caught:
        parse("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=lots\na.m3u8\n")
    assert isinstance(caught.value.__cause__, ValueError)


_LINES = st.sampled_from(
    [
        "#EXTINF:",
        "#EXT-X-TARGETDURATION:",
        "#EXT-X-STREAM-INF:",
        "#EXT-X-MAP:",
        "#EXT-X-BYTERANGE:",
        "#EXT-X-MEDIA:",
        "#EXT-X-I-FRAME-STREAM-INF:",
        "#EXT-X-PLAYLIST-TYPE:",
        "#EXT-X-VERSION:",
        "seg.m4s",
    ]
)


# Control characters are refused before m3u8 sees the text; leave them out to reach m3u8.
_VALUES = st.text(st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=12)


@given(st.lists(st.tuples(_LINES, _VALUES), max_size=8))
def test_arbitrary_input_raises_only_manifest_errors(lines: list[tuple[str, str]]) -> None:
    text = "#EXTM3U\n" + "\n".join(start + rest for start, rest in lines)
    with contextlib.suppress(ManifestError):
        parse(text)
