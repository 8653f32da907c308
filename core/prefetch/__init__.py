"""Adaptive prefetch for the short-video feed (pure; `now` passed in, randomness injected).

`model` holds the feed (videos, renditions), the events and the `Fetch` decision; `bandwidth`
the throughput estimate; `swipe` a viewer's learned swipe-time distribution; `state` what every
policy shares and the `PrefetchPolicy` interface; `planner` the adaptive planner; `baseline` the
TikTok-style fixed policy; `evaluate` the trace-driven session simulation both are compared in.
"""

from core.prefetch.bandwidth import BandwidthEstimator
from core.prefetch.baseline import FixedPolicy
from core.prefetch.evaluate import (
    Row,
    Session,
    SessionResult,
    Trace,
    compare,
    format_table,
    simulate,
    synthetic_session,
)
from core.prefetch.model import (
    DownloadCompleted,
    Event,
    FeedAppended,
    Fetch,
    PlaybackProgress,
    Rendition,
    Swiped,
    Video,
)
from core.prefetch.planner import AdaptivePlanner, PlannerSettings
from core.prefetch.state import FeedState, PrefetchPolicy, choose_rendition
from core.prefetch.swipe import DEFAULT_PRIOR_HAZARD, SwipeModel

__all__ = [
    "DEFAULT_PRIOR_HAZARD",
    "AdaptivePlanner",
    "BandwidthEstimator",
    "DownloadCompleted",
    "Event",
    "FeedAppended",
    "FeedState",
    "Fetch",
    "FixedPolicy",
    "PlannerSettings",
    "PlaybackProgress",
    "PrefetchPolicy",
    "Rendition",
    "Row",
    "Session",
    "SessionResult",
    "SwipeModel",
    "Swiped",
    "Trace",
    "Video",
    "choose_rendition",
    "compare",
    "format_table",
    "simulate",
    "synthetic_session",
]
