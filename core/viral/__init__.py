"""Viral detection: decayed per-video aggregates and a trending detector (pure; `now` passed in).

`counters` holds the decayed counters and their hot-key splitting, `detector` the per-video
windows and the acceleration test that marks a video trending.
"""

from core.viral.counters import DecayedCounter, ShardedCounter
from core.viral.detector import (
    ENGAGEMENTS,
    Aggregates,
    DetectorSettings,
    Trend,
    TrendingDetector,
)

__all__ = [
    "ENGAGEMENTS",
    "Aggregates",
    "DecayedCounter",
    "DetectorSettings",
    "ShardedCounter",
    "Trend",
    "TrendingDetector",
]
