"""A seeded synthetic world with planted preferences, for the recommender's offline evaluation.

Viewers belong to taste clusters; creators too, and a video belongs to its creator's cluster
(tagged with it, plus a noise tag). Each video also has a global appeal. The feed that
generated the log (the "logging policy", an earlier personalised feed) showed 40% videos of
the viewer's own cluster, 30% popular ones (weighted by appeal) and 30% uniformly random ones.
A shown video is completed with probability sigmoid(-2.5 + 3.5 * same_cluster + 0.8 * appeal),
else watched partly and often skipped; completed videos are liked more often within the
cluster. Viewers follow two creators of their own cluster. A recommender that learns the
clusters should find each viewer's held-out completions far more often than one that knows
only what is popular.
"""

import math
import random
from collections import defaultdict
from dataclasses import dataclass

from core.recs import (
    Completion,
    Event,
    Follow,
    Impression,
    Like,
    PlayStart,
    Skip,
    Video,
    WatchTime,
)

DAY = 86400.0
REGIONS = ("eu", "us", "br")
DEVICES = ("phone", "tv")


@dataclass(frozen=True)
class Viewer:
    id: str
    cluster: int
    region: str
    device: str


@dataclass(frozen=True)
class World:
    videos: list[Video]
    viewers: list[Viewer]
    events: list[Event]
    cluster_of: dict[str, int]
    """Each video's cluster."""


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def make_world(
    seed: int,
    viewers: int = 240,
    videos: int = 480,
    clusters: int = 12,
    creators: int = 96,
    days: float = 30.0,
    shown: int = 70,
) -> World:
    rng = random.Random(seed)
    catalog: list[Video] = []
    cluster_of: dict[str, int] = {}
    appeal: dict[str, float] = {}
    for n in range(videos):
        creator = rng.randrange(creators)
        cluster = creator % clusters
        video = Video(
            id=f"v{n:04d}",
            creator=f"c{creator:03d}",
            uploaded_at=rng.uniform(-10 * DAY, days * DAY),
            tags=frozenset({f"topic{cluster}", f"noise{rng.randrange(20)}"}),
        )
        catalog.append(video)
        cluster_of[video.id] = cluster
        appeal[video.id] = rng.gauss(0.0, 1.0)
    people = [
        Viewer(f"u{n:04d}", rng.randrange(clusters), rng.choice(REGIONS), rng.choice(DEVICES))
        for n in range(viewers)
    ]
    by_cluster: dict[int, list[str]] = defaultdict(list)
    for creator in range(creators):
        by_cluster[creator % clusters].append(f"c{creator:03d}")
    events: list[Event] = []
    for viewer in people:
        context = {"user": viewer.id, "region": viewer.region, "device": viewer.device}
        for followed in rng.sample(by_cluster[viewer.cluster], 2):
            events.append(Follow(creator=followed, at=0.0, **context))
        already: set[str] = set()
        for at in sorted(rng.uniform(0.0, days * DAY) for _ in range(shown)):
            live = [v for v in catalog if v.uploaded_at <= at and v.id not in already]
            draw = rng.random()
            if draw < 0.4:
                own = [v for v in live if cluster_of[v.id] == viewer.cluster]
                video = rng.choice(own or live)
            elif draw < 0.7:
                video = rng.choices(live, weights=[math.exp(appeal[v.id]) for v in live])[0]
            else:
                video = rng.choice(live)
            already.add(video.id)
            events += _watch(rng, video, at, cluster_of[video.id] == viewer.cluster,
                             appeal[video.id], context)  # fmt: skip
    return World(catalog, people, events, cluster_of)


def _watch(
    rng: random.Random, video: Video, at: float, match: bool, appeal: float, context: dict[str, str]
) -> list[Event]:
    """The events of one shown video."""
    duration = 30.0
    events: list[Event] = [
        Impression(video=video.id, at=at, **context),
        PlayStart(video=video.id, at=at + 0.5, **context),
    ]
    if rng.random() < _sigmoid(-2.5 + 3.5 * match + 0.8 * appeal):
        events += [
            WatchTime(video=video.id, at=at + duration, seconds=duration, duration=duration,
                      **context),
            Completion(video=video.id, at=at + duration, **context),
        ]  # fmt: skip
        if rng.random() < (0.5 if match else 0.1):
            events.append(Like(video=video.id, at=at + duration + 1, **context))
        return events
    seconds = rng.uniform(0.5, 0.5 * duration)
    events.append(
        WatchTime(video=video.id, at=at + seconds, seconds=seconds, duration=duration, **context)
    )
    if seconds < 5.0:
        events.append(Skip(video=video.id, at=at + seconds, **context))
    return events
