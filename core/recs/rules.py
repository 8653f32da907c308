"""The rules every page obeys, whichever model ranked it: filters, diversity and freshness.

They live apart from the models so that the baseline and the recommender obey the very same
rules, and an offline comparison between them measures ranking only.

- **Filters**: a held video (moderation), a video not yet uploaded at `now`, one the viewer has
  already seen, and one the caller excludes (e.g. already in the client's queue) never appear.
- **Diversity**: at most `per_creator` videos of one creator in a page. The cap is strict: when
  too few creators remain the page is shorter rather than dominated by one creator.
- **Freshness**: when fresh videos (uploaded within `fresh_age`) are eligible, at least
  `min_fresh` of them make the page, the best-ranked ones, even if older videos outrank them,
  so new uploads get the exposure they need to be learned about.
"""

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from core.recs.events import Video


@dataclass(frozen=True)
class PageRules:
    per_creator: int = 2
    fresh_age: float = 2 * 86400.0
    min_fresh: int = 1


def eligible(video: Video, now: float, seen: Collection[str], exclude: Collection[str]) -> bool:
    """Whether the filters let this video into any page for this viewer."""
    return (
        not video.held
        and video.uploaded_at <= now
        and video.id not in seen
        and video.id not in exclude
    )


def compose_page(ranked: Sequence[Video], k: int, now: float, rules: PageRules) -> list[str]:
    """Up to `k` ids from `ranked` (eligible, best first), in rank order, under the rules."""
    fresh = [v for v in ranked if now - v.uploaded_at <= rules.fresh_age]
    picked: set[str] = set()
    per_creator: Counter[str] = Counter()

    def take(pool: Iterable[Video], limit: int) -> None:
        for video in pool:
            if len(picked) >= limit:
                return
            if video.id not in picked and per_creator[video.creator] < rules.per_creator:
                picked.add(video.id)
                per_creator[video.creator] += 1

    take(fresh, min(rules.min_fresh, k))
    take(ranked, k)
    return [video.id for video in ranked if video.id in picked]
