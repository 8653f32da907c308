"""Offline evaluation: time split, held-out positives, recall@10."""

from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

from core.recs import Completion, Event, Like, Video, VideoEvent
from tests.core.recs.synthetic import World


class Fits(Protocol):
    def fit(self, events: list[Event], videos: list[Video]) -> None: ...

    def recommend(
        self, user: str, now: float, k: int = 10, region: str = "", device: str = ""
    ) -> list[str]: ...


@dataclass(frozen=True)
class Split:
    train: list[Event]
    positives: dict[str, set[str]]
    """Per viewer: videos completed or liked after the split, uploaded and unseen before it."""
    at: float


def split(world: World, share: float = 0.8) -> Split:
    times = sorted(event.at for event in world.events)
    at = times[int(len(times) * share)]
    train = [event for event in world.events if event.at < at]
    seen: dict[str, set[str]] = defaultdict(set)
    for event in train:
        if isinstance(event, VideoEvent):
            seen[event.user].add(event.video)
    uploaded = {video.id: video.uploaded_at for video in world.videos}
    positives: dict[str, set[str]] = defaultdict(set)
    for event in world.events:
        if (
            event.at >= at
            and isinstance(event, Completion | Like)
            and uploaded[event.video] <= at
            and event.video not in seen[event.user]
        ):
            positives[event.user].add(event.video)
    return Split(train, dict(positives), at)


def recall_at(recommender: Fits, world: World, data: Split, k: int = 10) -> float:
    """Mean over viewers with held-out positives of hits / min(k, positives): 1.0 is perfect."""
    recommender.fit(data.train, world.videos)
    total = 0.0
    for viewer in world.viewers:
        wanted = data.positives.get(viewer.id)
        if wanted:
            page = recommender.recommend(viewer.id, data.at, k, viewer.region, viewer.device)
            total += len(wanted & set(page)) / min(k, len(wanted))
    return total / sum(1 for viewer in world.viewers if data.positives.get(viewer.id))
