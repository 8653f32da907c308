"""Popularity-only recommendation: the baseline, and the recommender's cold start.

A viewer with no history is best served by what viewers like them watch: the videos with the
most engagement in their region and device class, backed off to the region and to everyone
(`History.popularity`). The same ranking is the baseline the offline evaluation compares the
recommender against, under the same page rules.
"""

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from core.recs.events import Event, Video
from core.recs.history import History, replay
from core.recs.rules import PageRules, compose_page, eligible


def popular_ranked(
    history: History, user: str, now: float, region: str, device: str, exclude: Collection[str]
) -> list[Video]:
    """The eligible videos anyone engaged with, most popular in the viewer's scope first."""
    scores = history.popularity(region, device)
    seen = history.seen(user)
    ranked = [
        history.videos[v]
        for v in scores
        if v in history.videos and eligible(history.videos[v], now, seen, exclude)
    ]
    ranked.sort(key=lambda video: (-scores[video.id], video.id))
    return ranked


@dataclass
class PopularityRecommender:
    """Recommends what is popular in the viewer's region and device class; nothing personal."""

    rules: PageRules = field(default_factory=PageRules)
    history: History = field(default_factory=History)

    def fit(self, events: Iterable[Event], videos: Iterable[Video]) -> None:
        self.history = replay(History(videos={v.id: v for v in videos}), events)

    def add_video(self, video: Video) -> None:
        """A new upload, or new metadata (a hold placed or lifted) for a known video."""
        self.history.videos[video.id] = video

    def observe(self, event: Event) -> None:
        self.history.record(event)

    def recommend(
        self,
        user: str,
        now: float,
        k: int = 10,
        region: str = "",
        device: str = "",
        exclude: Collection[str] = frozenset(),
        trending: Sequence[str] = (),
    ) -> list[str]:
        """A page of up to `k` video ids. `trending` is accepted for the common interface and
        ignored: this is the popularity-only baseline."""
        ranked = popular_ranked(self.history, user, now, region, device, exclude)
        return compose_page(ranked, k, now, self.rules)
