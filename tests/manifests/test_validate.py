from dataclasses import replace

import pytest

from manifests import (
    ByteRange,
    InitSection,
    MasterPlaylist,
    MediaPlaylist,
    Problem,
    Segment,
    Variant,
    validate_master,
    validate_media,
)

VARIANT = Variant(
    uri="360p/index.m3u8",
    bandwidth=700_000,
    average_bandwidth=600_000,
    resolution=(360, 640),
    codecs="avc1.4d401e,mp4a.40.2",
    frame_rate=30.0,
)
MASTER = MasterPlaylist(
    variants=(VARIANT, replace(VARIANT, uri="720p/index.m3u8", bandwidth=2_000_000)),
    independent_segments=True,
)
MEDIA = MediaPlaylist(
    target_duration=2,
    segments=(Segment("seg_00000.m4s", 2.0), Segment("seg_00001.m4s", 1.4)),
    init=InitSection("init.mp4"),
    playlist_type="VOD",
    endlist=True,
    version=7,
)


def test_well_formed_playlists_have_no_problems() -> None:
    assert validate_master(MASTER) == []
    assert validate_media(MEDIA) == []


def _only_problem(problems: list[Problem]) -> str:
    assert len(problems) == 1, problems
    return str(problems[0])


@pytest.mark.parametrize(
    ("master", "message"),
    [
        (MasterPlaylist(variants=()), "playlist: no variant streams"),
        (replace(MASTER, version=0), "EXT-X-VERSION 0 below the 1 needed"),
        (
            replace(MASTER, variants=(VARIANT, VARIANT)),
            "variant 2 (360p/index.m3u8): URI already used",
        ),
        (
            replace(MASTER, variants=(replace(VARIANT, bandwidth=0, average_bandwidth=None),)),
            "BANDWIDTH must be positive",
        ),
        (
            replace(MASTER, variants=(replace(VARIANT, average_bandwidth=800_000),)),
            "AVERAGE-BANDWIDTH 800000 is not within",
        ),
        (
            replace(MASTER, variants=(replace(VARIANT, average_bandwidth=0),)),
            "AVERAGE-BANDWIDTH 0 is not within",
        ),
        (replace(MASTER, variants=(replace(VARIANT, codecs=None),)), "no CODECS"),
        (replace(MASTER, variants=(replace(VARIANT, codecs=""),)), "no CODECS"),
        (
            replace(MASTER, variants=(replace(VARIANT, resolution=(0, 640)),)),
            "RESOLUTION must be positive",
        ),
        (
            replace(MASTER, variants=(replace(VARIANT, frame_rate=float("nan")),)),
            "FRAME-RATE must be positive",
        ),
        (replace(MASTER, variants=(replace(VARIANT, uri=""),)), "empty URI"),
        (
            replace(MASTER, variants=(replace(VARIANT, uri="https://elsewhere/a.m3u8"),)),
            "is absolute",
        ),
        (replace(MASTER, variants=(replace(VARIANT, uri="/v/a.m3u8"),)), "is absolute"),
        (replace(MASTER, variants=(replace(VARIANT, uri="../b/index.m3u8"),)), "climbs out"),
        (replace(MASTER, variants=(replace(VARIANT, uri="a/%2E%2E/b.m3u8"),)), "climbs out"),
        (replace(MASTER, variants=(replace(VARIANT, uri="a\\..\\..\\b.m3u8"),)), "climbs out"),
    ],
)
def test_master_problems(master: MasterPlaylist, message: str) -> None:
    assert message in _only_problem(validate_master(master))


@pytest.mark.parametrize(
    ("media", "message"),
    [
        (replace(MEDIA, version=5), "EXT-X-VERSION 5 below the 6 needed"),
        (
            replace(MEDIA, segments=(Segment("seg_00000.m4s", 2.5),)),
            "segment 1 (seg_00000.m4s): duration 2.5 rounds to 3 s, longer than"
            " EXT-X-TARGETDURATION 2",
        ),
        (
            MediaPlaylist(target_duration=0, segments=()),
            "EXT-X-TARGETDURATION 0 not positive",
        ),
        (replace(MEDIA, media_sequence=-1), "EXT-X-MEDIA-SEQUENCE -1 is negative"),
        (replace(MEDIA, endlist=False), "VOD playlist without EXT-X-ENDLIST"),
        (replace(MEDIA, playlist_type=None, segments=()), "ended playlist without segments"),
        (replace(MEDIA, init=None, version=None), "fMP4 segments without EXT-X-MAP"),
        (replace(MEDIA, segments=(Segment("a.m4s", -1.0),)), "duration must be positive"),
        (replace(MEDIA, segments=(Segment("a.m4s", 0.0),)), "duration must be positive"),
        (replace(MEDIA, segments=(Segment("a.m4s", float("inf")),)), "duration must be positive"),
        (replace(MEDIA, init=InitSection("../init.mp4")), "EXT-X-MAP (../init.mp4): URI"),
        (
            replace(MEDIA, init=InitSection("init.mp4", ByteRange(0, 0))),
            "must have a positive length",
        ),
        (replace(MEDIA, segments=(Segment("s3://bucket/a.m4s", 2.0),)), "is absolute"),
        (
            replace(
                MEDIA,
                segments=(
                    Segment("a.m4s", 2.0, byterange=ByteRange(100, 0)),
                    Segment("b.m4s", 2.0, byterange=ByteRange(100)),
                ),
            ),
            "segment 2 (b.m4s): BYTERANGE without offset after a different resource",
        ),
        (
            replace(MEDIA, segments=(Segment("a.m4s", 2.0, byterange=ByteRange(100, -1)),)),
            "must have a positive length, offset >= 0",
        ),
    ],
)
def test_media_problems(media: MediaPlaylist, message: str) -> None:
    assert message in _only_problem(validate_media(media))


@pytest.mark.parametrize("duration", [2.4999, 2.4999994])  # the latter is written 2.499999
def test_durations_rounding_down_to_the_target_are_fine(duration: float) -> None:
    assert validate_media(replace(MEDIA, segments=(Segment("a.m4s", duration),))) == []


def test_a_range_without_offset_may_continue_the_same_resource() -> None:
    segments = (
        Segment("all.m4s", 2.0, byterange=ByteRange(100, 0)),
        Segment("all.m4s", 2.0, byterange=ByteRange(100)),
    )
    assert validate_media(replace(MEDIA, segments=segments)) == []


def test_transport_stream_segments_need_no_map() -> None:
    segments = (Segment("seg_00000.ts", 2.0),)
    assert validate_media(replace(MEDIA, init=None, segments=segments)) == []


def test_absolute_uris_pass_when_self_containment_is_not_asked() -> None:
    absolute = replace(VARIANT, uri="https://cdn.example/v/a/360p/index.m3u8")
    assert validate_master(MasterPlaylist(variants=(absolute,)), self_contained=False) == []
    segments = (Segment("https://cdn.example/v/a/seg_00000.m4s", 2.0),)
    media = replace(MEDIA, segments=segments, init=InitSection("/v/a/init.mp4"))
    assert validate_media(media, self_contained=False) == []
    assert len(validate_media(media)) == 2


def test_every_problem_is_reported_at_once() -> None:
    broken = replace(MEDIA, endlist=False, segments=(Segment("../a.m4s", 9.0),))
    messages = [problem.message for problem in validate_media(broken)]
    assert len(messages) == 3
    assert any("EXT-X-ENDLIST" in m for m in messages)
    assert any("climbs out" in m for m in messages)
    assert any("rounds to 9 s" in m for m in messages)
