"""What a request path names: a video's playlist, init segment, media segment or something else.

Admission and metrics treat these kinds differently (an init or first segment decides startup
time; a playlist is small and short-lived), so the path is classified once, at `recv`.
"""

import re
from dataclasses import dataclass
from enum import Enum


class ObjectKind(Enum):
    PLAYLIST = "playlist"
    INIT = "init"
    SEGMENT = "segment"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A cacheable object as admission sees it: which video, which kind, which segment."""

    path: str
    """The request path without query, e.g. `/v/abc/720p/seg_00001.m4s`."""
    video_id: str | None
    kind: ObjectKind
    segment_number: int | None = None
    """For media segments: the number in the file name (ffmpeg counts from 0)."""

    @property
    def is_startup_critical(self) -> bool:
        """Init and first segments decide how fast a swipe starts playing."""
        return self.kind is ObjectKind.INIT or (
            self.kind is ObjectKind.SEGMENT and self.segment_number == FIRST_SEGMENT_NUMBER
        )


FIRST_SEGMENT_NUMBER = 0
_VIDEO_PATH = re.compile(r"/v/(?P<video>[^/]+)/(?P<rest>.+)")
_SEGMENT_NUMBER = re.compile(r"(\d+)\.(?:m4s|ts|m4a|m4v|cmfv|cmfa)$")


def classify(path: str) -> ObjectRef:
    """Classify a request path (query already removed)."""
    match = _VIDEO_PATH.fullmatch(path)
    if match is None:
        return ObjectRef(path, None, ObjectKind.OTHER)
    video_id, rest = match["video"], match["rest"]
    name = rest.rsplit("/", 1)[-1]
    if name.endswith(".m3u8"):
        return ObjectRef(path, video_id, ObjectKind.PLAYLIST)
    if name.endswith(".mp4") and name.startswith("init"):
        return ObjectRef(path, video_id, ObjectKind.INIT)
    number = _SEGMENT_NUMBER.search(name)
    if number is not None:
        return ObjectRef(path, video_id, ObjectKind.SEGMENT, int(number.group(1)))
    return ObjectRef(path, video_id, ObjectKind.OTHER)
