"""Recommendation (pure; `now` passed in, randomness injected): what each viewer sees next.

`events` holds the interaction events and video metadata, `history` what the log says about
viewers and videos (kept incrementally), `factors` the implicit-ALS embeddings, `ranker` the
logistic watch-fraction model, `rules` the filters, diversity and freshness every page obeys,
`popularity` the popularity-only baseline (and cold start), `recommender` the personalised
recommender that puts them together.
"""

from core.recs.events import (
    Completion,
    Event,
    Follow,
    Impression,
    Like,
    PlayStart,
    Share,
    Skip,
    Video,
    VideoEvent,
    WatchTime,
)
from core.recs.popularity import PopularityRecommender
from core.recs.recommender import FEATURES, Recommender, RecommenderSettings
from core.recs.rules import PageRules

__all__ = [
    "FEATURES",
    "Completion",
    "Event",
    "Follow",
    "Impression",
    "Like",
    "PageRules",
    "PlayStart",
    "PopularityRecommender",
    "Recommender",
    "RecommenderSettings",
    "Share",
    "Skip",
    "Video",
    "VideoEvent",
    "WatchTime",
]
