from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifests import (
    ByteRange,
    InitSection,
    ManifestError,
    MasterPlaylist,
    MediaPlaylist,
    PlaylistType,
    Segment,
    Variant,
    media_playlist_for_segments,
    minimum_version,
    parse,
    parse_master,
    parse_media,
    render_master,
    render_media,
    validate_master,
    validate_media,
)

FMP4_VOD = MediaPlaylist(
    target_duration=2,
    segments=(Segment("seg_00000.m4s", 2.0), Segment("seg_00001.m4s", 1.5)),
    init=InitSection("init.mp4"),
    playlist_type="VOD",
    endlist=True,
    independent_segments=True,
)


def test_renders_an_fmp4_vod_media_playlist() -> None:
    assert render_media(FMP4_VOD) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:6\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXT-X-PLAYLIST-TYPE:VOD\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-MAP:URI="init.mp4"\n'
        "#EXTINF:2.000000,\n"
        "seg_00000.m4s\n"
        "#EXTINF:1.500000,\n"
        "seg_00001.m4s\n"
        "#EXT-X-ENDLIST\n"
    )


def test_renders_byteranges_titles_and_an_open_playlist() -> None:
    playlist = MediaPlaylist(
        target_duration=4,
        media_sequence=7,
        segments=(
            Segment("all.mp4", 4.0, title="first", byterange=ByteRange(1000, 720)),
            Segment("all.mp4", 3.25, byterange=ByteRange(900)),
        ),
        init=InitSection("all.mp4", ByteRange(720, 0)),
        playlist_type="EVENT",
        version=7,
    )
    assert render_media(playlist) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:7\n"
        "#EXT-X-TARGETDURATION:4\n"
        "#EXT-X-MEDIA-SEQUENCE:7\n"
        "#EXT-X-PLAYLIST-TYPE:EVENT\n"
        '#EXT-X-MAP:URI="all.mp4",BYTERANGE="720@0"\n'
        "#EXTINF:4.000000,first\n"
        "#EXT-X-BYTERANGE:1000@720\n"
        "all.mp4\n"
        "#EXTINF:3.250000,\n"
        "#EXT-X-BYTERANGE:900\n"
        "all.mp4\n"
    )


def test_renders_a_master_playlist_with_every_variant_attribute() -> None:
    master = MasterPlaylist(
        variants=(
            Variant(
                uri="360p/index.m3u8",
                bandwidth=700_000,
                average_bandwidth=600_000,
                resolution=(360, 640),
                codecs="avc1.4d401e,mp4a.40.2",
                frame_rate=29.97,
                stable_variant_id="360p",
            ),
            Variant(uri="audio/index.m3u8", bandwidth=96_000, codecs="mp4a.40.2"),
        ),
        independent_segments=True,
    )
    assert render_master(master) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:1\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=700000,AVERAGE-BANDWIDTH=600000,"
        'CODECS="avc1.4d401e,mp4a.40.2",RESOLUTION=360x640,FRAME-RATE=29.970,'
        'STABLE-VARIANT-ID="360p"\n'
        "360p/index.m3u8\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=96000,CODECS="mp4a.40.2"\n'
        "audio/index.m3u8\n"
    )


@pytest.mark.parametrize(
    ("playlist", "version"),
    [
        (MasterPlaylist(variants=(Variant(uri="a.m3u8", bandwidth=1),)), 1),
        (MediaPlaylist(target_duration=2, segments=()), 1),
        (MediaPlaylist(target_duration=2, segments=(Segment("a.ts", 2.0),)), 3),
        (
            MediaPlaylist(
                target_duration=2, segments=(Segment("a.ts", 2.0, byterange=ByteRange(10, 0)),)
            ),
            4,
        ),
        (FMP4_VOD, 6),
    ],
)
def test_minimum_version_follows_the_features_used(
    playlist: MasterPlaylist | MediaPlaylist, version: int
) -> None:
    assert minimum_version(playlist) == version


def test_an_explicit_version_is_declared_as_given() -> None:
    assert "#EXT-X-VERSION:7\n" in render_media(replace(FMP4_VOD, version=7))


def test_builds_a_vod_playlist_from_a_uri_pattern() -> None:
    playlist = media_playlist_for_segments(
        [2.0, 2.0, 1.2], "seg_{index:05d}.m4s", "init.mp4", media_sequence=1
    )
    assert [segment.uri for segment in playlist.segments] == [
        "seg_00001.m4s",
        "seg_00002.m4s",
        "seg_00003.m4s",
    ]
    assert playlist.media_sequence == 1
    assert playlist.init == InitSection("init.mp4")
    assert playlist.target_duration == 2
    assert (playlist.playlist_type, playlist.endlist) == ("VOD", True)
    assert validate_media(playlist) == []


def test_builds_a_playlist_from_a_uri_list_without_init() -> None:
    playlist = media_playlist_for_segments([4.0], ["a.ts"], None, playlist_type=None, endlist=False)
    assert playlist.segments == (Segment("a.ts", 4.0),)
    assert (playlist.init, playlist.playlist_type, playlist.endlist) == (None, None, False)


@pytest.mark.parametrize(
    ("durations", "target_duration"),
    [
        ([2.0, 2.4999], 2),
        ([2.0, 2.5], 3),  # the nearest integer, halves rounding up
        ([2.4999996], 3),  # written as 2.500000, which is what a player rounds
        ([0.3], 1),  # a target duration of 0 would be meaningless
        ([1.0, 6.0, 2.0], 6),
    ],
)
def test_target_duration_is_the_longest_rounded_duration(
    durations: list[float], target_duration: int
) -> None:
    uris = [f"s{i}.m4s" for i in range(len(durations))]
    assert media_playlist_for_segments(durations, uris, "i.mp4").target_duration == target_duration


@pytest.mark.parametrize(
    ("durations", "uris", "message"),
    [
        ([], [], "at least one segment"),
        ([2.0, 2.0], ["a.m4s"], "2 durations but 1 segment URIs"),
        ([2.0, 0.0], ["a.m4s", "b.m4s"], "positive and finite"),
        ([float("nan")], ["a.m4s"], "positive and finite"),
    ],
)
def test_building_refuses_inconsistent_segments(
    durations: list[float], uris: list[str], message: str
) -> None:
    with pytest.raises(ManifestError, match=message):
        media_playlist_for_segments(durations, uris, "init.mp4")


@pytest.mark.parametrize(
    "segment",
    [
        Segment("a.m4s\n#EXT-X-ENDLIST", 2.0),  # would inject a tag
        Segment("#a.m4s", 2.0),  # would read back as a comment
        Segment("", 2.0),
        Segment(" a.m4s", 2.0),  # parsers strip lines
        Segment("a.m4s", 2.0, title="title\r"),
        Segment("a.m4s", 2.0, title="x\u2028y"),
    ],
)
def test_rendering_refuses_values_that_would_change_the_structure(segment: Segment) -> None:
    with pytest.raises(ManifestError, match="cannot be written"):
        render_media(replace(FMP4_VOD, segments=(segment,)))


@pytest.mark.parametrize(
    "variant",
    [
        Variant(uri="a.m3u8", bandwidth=1, codecs='avc1",BANDWIDTH="9'),
        Variant(uri="a.m3u8", bandwidth=1, stable_variant_id="a\nb"),
        Variant(uri="a.m3u8\nb.m3u8", bandwidth=1),
    ],
)
def test_rendering_refuses_values_that_would_break_a_master(variant: Variant) -> None:
    with pytest.raises(ManifestError, match="cannot be written"):
        render_master(MasterPlaylist(variants=(variant,)))


def test_rendering_refuses_a_quote_in_the_map_uri() -> None:
    with pytest.raises(ManifestError, match="quoted-string"):
        render_media(replace(FMP4_VOD, init=InitSection('init".mp4')))


# Round trips: every valid playlist comes back from render + parse exactly. Values are drawn at
# the precision the text keeps: durations in microseconds, frame rates in thousandths.
_paths = st.from_regex(r"[a-z0-9_-]{1,8}(/[a-z0-9_-]{1,8}){0,2}", fullmatch=True)
_titles = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]), max_size=20)
_durations = st.integers(1, 30_000_000).map(lambda microseconds: microseconds / 1e6)
# Always with an offset, which is valid after any segment.
_byteranges = st.builds(ByteRange, st.integers(1, 10**12), st.integers(0, 10**12))
_playlist_types: list[PlaylistType | None] = ["VOD", "EVENT", None]


@st.composite
def media_playlists(draw: st.DrawFn) -> MediaPlaylist:
    fmp4 = draw(st.booleans())
    segment = st.builds(
        Segment,
        uri=_paths.map(lambda path: path + (".m4s" if fmp4 else ".ts")),
        duration=_durations,
        title=_titles.map(str.strip),
        byterange=st.none() | _byteranges,
    )
    segments = draw(st.lists(segment, min_size=1, max_size=6))
    longest = max(1, *(segment.rounded_duration for segment in segments))
    init = st.builds(InitSection, _paths.map(lambda path: path + ".mp4"), st.none() | _byteranges)
    playlist_type = draw(st.sampled_from(_playlist_types))
    playlist = MediaPlaylist(
        target_duration=longest + draw(st.integers(0, 3)),
        segments=tuple(segments),
        media_sequence=draw(st.integers(0, 2**64 - 1)),
        init=draw(init) if fmp4 else None,
        playlist_type=playlist_type,
        endlist=playlist_type == "VOD" or draw(st.booleans()),
        independent_segments=draw(st.booleans()),
    )
    return replace(playlist, version=draw(st.integers(minimum_version(playlist), 12)))


@st.composite
def variants(draw: st.DrawFn) -> Variant:
    bandwidth = draw(st.integers(1, 10**11))
    return Variant(
        uri=draw(_paths) + ".m3u8",
        bandwidth=bandwidth,
        average_bandwidth=draw(st.none() | st.integers(1, bandwidth)),
        resolution=draw(st.none() | st.tuples(st.integers(1, 8192), st.integers(1, 8192))),
        codecs=draw(st.sampled_from(["avc1.64001f", "avc1.4d401e,mp4a.40.2", "hvc1.1.6.L93.B0"])),
        frame_rate=draw(st.none() | st.integers(1, 240_000).map(lambda millis: millis / 1000)),
        stable_variant_id=draw(
            st.none() | st.from_regex(r"[A-Za-z0-9+/=._-]{1,16}", fullmatch=True)
        ),
    )


@st.composite
def master_playlists(draw: st.DrawFn) -> MasterPlaylist:
    unique_variants = st.lists(variants(), min_size=1, max_size=5, unique_by=lambda v: v.uri)
    master = MasterPlaylist(
        variants=tuple(draw(unique_variants)), independent_segments=draw(st.booleans())
    )
    return replace(master, version=draw(st.integers(minimum_version(master), 12)))


@given(media_playlists())
def test_media_playlists_round_trip_exactly(playlist: MediaPlaylist) -> None:
    assert validate_media(playlist) == []
    text = render_media(playlist)
    assert parse_media(text) == playlist
    assert parse(text) == playlist


@given(master_playlists())
def test_master_playlists_round_trip_exactly(master: MasterPlaylist) -> None:
    assert validate_master(master) == []
    text = render_master(master)
    assert parse_master(text) == master
    assert parse(text) == master


@given(media_playlists())
def test_an_undeclared_version_round_trips_as_the_minimum(playlist: MediaPlaylist) -> None:
    undeclared = replace(playlist, version=None)
    assert parse_media(render_media(undeclared)).version == minimum_version(playlist)
