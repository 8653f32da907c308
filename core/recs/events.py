"""Viewer interaction events and video metadata, as the recommender consumes them.

One frozen dataclass per kind rather than a kind string: each carries exactly the fields its
kind has (a watch time has the seconds watched and the video's duration, a follow names a
creator, not a video), so the recommender never has to guess what a field means. Fields are
keyword-only because most share their types and a positional mix-up would pass type checks.
Every event carries the viewer's region and device class when known: popularity, and so the
cold start, is counted per region and device class.
"""

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Video:
    """A catalog entry: what the rules and the content-similarity source need to know."""

    id: str
    creator: str
    uploaded_at: float
    region: str = ""
    tags: frozenset[str] = frozenset()
    embedding: tuple[float, ...] | None = None
    held: bool = False
    """Held by moderation: never recommended until approved (see `Recommender.add_video`)."""


@dataclass(frozen=True, kw_only=True)
class VideoEvent:
    """What every event about one video says: who, which video, when, and from where."""

    user: str
    video: str
    at: float
    region: str = ""
    device: str = ""


@dataclass(frozen=True, kw_only=True)
class Impression(VideoEvent):
    """The video was shown in the viewer's feed (seen, whether or not it played)."""


@dataclass(frozen=True, kw_only=True)
class PlayStart(VideoEvent):
    """Playback started."""


@dataclass(frozen=True, kw_only=True)
class WatchTime(VideoEvent):
    """The viewer watched `seconds` of a `duration`-second video (loops may exceed it)."""

    seconds: float
    duration: float


@dataclass(frozen=True, kw_only=True)
class Completion(VideoEvent):
    """The video was watched to its end."""


@dataclass(frozen=True, kw_only=True)
class Skip(VideoEvent):
    """The viewer swiped away early: an explicit, if weak, "not this"."""


@dataclass(frozen=True, kw_only=True)
class Like(VideoEvent):
    """The viewer liked the video."""


@dataclass(frozen=True, kw_only=True)
class Share(VideoEvent):
    """The viewer shared the video."""


@dataclass(frozen=True, kw_only=True)
class Follow:
    """The viewer followed a creator: their recent videos become candidates."""

    user: str
    creator: str
    at: float
    region: str = ""
    device: str = ""


Event = Impression | PlayStart | WatchTime | Completion | Skip | Like | Share | Follow
