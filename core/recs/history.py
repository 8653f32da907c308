"""What the event log says about viewers and videos, kept up to date one event at a time.

Both recommenders read the same history, so its bookkeeping is incremental: `record` is O(1)
per event, which is what lets a viewer's next page reflect an event within seconds.

Every (viewer, video) pair folds its events into one `Engagement`: the largest watched
fraction (a completion counts as 1), plus a like and a share. Its `score` is the implicit
feedback the models learn from: watch completion first, explicit signals on top, so a
finished video outweighs a glance and a liked one outweighs a finished one. A pair's score only
grows, and each increase is added to the video's popularity in the viewer's scopes (region and
device class, region, everyone) and to the viewer's affinity for the video's creator.
"""

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from core.recs.events import (
    Completion,
    Event,
    Follow,
    Like,
    Share,
    Skip,
    Video,
    WatchTime,
)

LIKE_WEIGHT = 1.0
SHARE_WEIGHT = 1.0
POSITIVE = 0.5
"""An engagement scoring at least this (half watched, or liked) counts as a positive."""
SCOPE_WEIGHTS = ((True, True, 1.0), (True, False, 0.5), (False, False, 0.25))
"""Popularity back-off: (by region?, by device?, weight). The narrowest scope leads, and the
wider ones fill in where it has little data (a new region, a rare device class)."""

Scope = tuple[str, str]


@dataclass
class Engagement:
    """One viewer's engagement with one video, over all their events about it."""

    watched: float = 0.0
    liked: bool = False
    shared: bool = False
    skipped: bool = False

    @property
    def score(self) -> float:
        return self.watched + LIKE_WEIGHT * self.liked + SHARE_WEIGHT * self.shared

    @property
    def positive(self) -> bool:
        return self.score >= POSITIVE


def _scopes(region: str, device: str) -> list[Scope]:
    return [(region if r else "", device if d else "") for r, d, _ in SCOPE_WEIGHTS]


@dataclass
class History:
    """Per-viewer engagements, follows and creator affinities; per-scope video popularity."""

    videos: dict[str, Video] = field(default_factory=dict)
    engagements: dict[str, dict[str, Engagement]] = field(default_factory=lambda: defaultdict(dict))
    follows: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _creator_scores: dict[str, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    _user_totals: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _popularity: dict[Scope, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    _scope_totals: dict[Scope, float] = field(default_factory=lambda: defaultdict(float))

    def record(self, event: Event) -> None:
        """Folds one event in. Events about videos not in the catalog still mark them seen."""
        if isinstance(event, Follow):
            self.follows[event.user].add(event.creator)
            return
        engagement = self.engagements[event.user].setdefault(event.video, Engagement())
        before = engagement.score
        if isinstance(event, WatchTime) and event.duration > 0:
            engagement.watched = max(engagement.watched, min(1.0, event.seconds / event.duration))
        elif isinstance(event, Completion):
            engagement.watched = 1.0
        elif isinstance(event, Like):
            engagement.liked = True
        elif isinstance(event, Share):
            engagement.shared = True
        elif isinstance(event, Skip):
            engagement.skipped = True
        gain = engagement.score - before
        video = self.videos.get(event.video)
        if gain <= 0 or video is None:
            return
        self._creator_scores[event.user][video.creator] += gain
        self._user_totals[event.user] += gain
        for scope in _scopes(event.region, event.device):
            self._popularity[scope][event.video] += gain
            self._scope_totals[scope] += gain

    def seen(self, user: str) -> Collection[str]:
        """Every video the viewer has any event about (shown counts as seen)."""
        return self.engagements.get(user, {}).keys()

    def creator_affinity(self, user: str, creator: str) -> float:
        """The share of the viewer's engagement that went to this creator's videos."""
        total = self._user_totals.get(user, 0.0)
        return self._creator_scores.get(user, {}).get(creator, 0.0) / total if total else 0.0

    def popularity(self, region: str, device: str) -> dict[str, float]:
        """Each engaged-with video's share of engagement, blended over the back-off scopes."""
        blended: dict[str, float] = defaultdict(float)
        for scope, (_, _, weight) in zip(_scopes(region, device), SCOPE_WEIGHTS, strict=True):
            total = self._scope_totals.get(scope, 0.0)
            for video, score in self._popularity.get(scope, {}).items():
                blended[video] += weight * score / total
        return blended


def replay(history: History, events: Iterable[Event]) -> History:
    """`history` with `events` recorded in time order (a log need not arrive sorted)."""
    for event in sorted(events, key=lambda e: e.at):
        history.record(event)
    return history
