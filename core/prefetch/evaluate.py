"""Trace-driven evaluation of a prefetch policy: one viewer's session over a bandwidth trace.

A fixed-step simulation (the simulator issue will run the same policies on its own clock). The
link delivers the trace's throughput (piecewise constant, looped, from a start offset) to one
download at a time, each paying a request latency first; the policy is asked for the next fetch
whenever the link is idle and something changed (a download, a swipe, or half a second of
playback). The viewer plays the feed in order, watching each video for its planned watch time of
playback, and waits whenever the segment under the playhead is not held: at position 0 that is
startup delay, later it is a stall. An unfinished download at the end counts as downloaded and
wasted; a segment counts as played once the playhead enters it, so downloaded bytes are always
exactly played plus wasted bytes.
"""

import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from core.prefetch.model import (
    DownloadCompleted,
    FeedAppended,
    Fetch,
    PlaybackProgress,
    Rendition,
    Swiped,
    Video,
)
from core.prefetch.state import PrefetchPolicy

Trace = Sequence[tuple[float, float]]
"""(time in seconds, throughput in Mbit/s) samples, as the Pensieve cooked traces hold them."""

LADDER_BPS = (400_000, 1_000_000, 2_200_000)


@dataclass(frozen=True)
class Session:
    """A feed and how long the viewer watches each video (its duration: watched to the end)."""

    videos: tuple[Video, ...]
    watch_s: tuple[float, ...]


@dataclass(frozen=True)
class SessionResult:
    stall_s: float
    startup_s: tuple[float, ...]
    downloaded_bytes: int
    played_bytes: int
    wasted_bytes: int
    played_s: float


@dataclass(frozen=True)
class Row:
    """One policy's figures summed over sessions (startup median over every video started)."""

    policy: str
    stall_s: float
    startup_p50_s: float
    startup_mean_s: float
    wasted_mb: float
    downloaded_mb: float
    played_kbps: float


def synthetic_session(
    rng: random.Random,
    count: int = 30,
    segment_s: float = 2.0,
    ladder_bps: Sequence[int] = LADDER_BPS,
    quick_swipe: float = 0.3,
    watch_to_end: float = 0.2,
) -> Session:
    """`count` videos of 10-60 s (short ones likelier), a `ladder_bps` ladder of `segment_s`
    segments whose sizes vary ±30 % with the scene (alike across rungs), and a viewer who leaves
    within 2 s with probability `quick_swipe`, watches to the end with `watch_to_end`, and
    otherwise leaves at a uniform time in between."""
    videos, watch = [], []
    for index in range(count):
        duration = round(10.0 + 50.0 * rng.random() ** 2, 1)
        segments = int(-(-duration // segment_s))
        lengths = [min(segment_s, duration - i * segment_s) for i in range(segments)]
        scene = [(length, rng.uniform(0.7, 1.3)) for length in lengths]
        renditions = tuple(
            Rendition(rate, tuple(int(rate / 8 * s * f) for s, f in scene)) for rate in ladder_bps
        )
        videos.append(Video(f"v{index}", duration, segment_s, renditions))
        u = rng.random()
        if u < quick_swipe:
            watch.append(rng.uniform(0.1, 2.0))
        elif u < quick_swipe + watch_to_end:
            watch.append(duration)
        else:
            watch.append(rng.uniform(2.0, duration))
    return Session(tuple(videos), tuple(watch))


class _Link:
    """The trace's throughput at a time, looped, in bytes per second."""

    def __init__(self, trace: Trace, offset_s: float) -> None:
        if not trace or max(mbps for _, mbps in trace) <= 0:
            raise ValueError("a trace needs at least one sample with positive throughput")
        self._times = [t - trace[0][0] for t, _ in trace]
        self._rates = [mbps * 1e6 / 8 for _, mbps in trace]
        # The last sample lasts one mean interval (1 s for a single sample), then the trace loops.
        step = self._times[-1] / (len(trace) - 1) if len(trace) > 1 else 1.0
        self._period = self._times[-1] + step
        self._offset = offset_s
        self._index = 0

    def rate(self, t: float) -> float:
        t = (t + self._offset) % self._period
        if t < self._times[self._index]:
            self._index = 0
        while self._index + 1 < len(self._times) and self._times[self._index + 1] <= t:
            self._index += 1
        return self._rates[self._index]


def simulate(
    policy: PrefetchPolicy,
    trace: Trace,
    session: Session,
    offset_s: float = 0.0,
    latency_s: float = 0.08,
    tick_s: float = 0.05,
    recheck_s: float = 0.5,
) -> SessionResult:
    """Play `session` over `trace` with `policy` deciding the downloads."""
    link = _Link(trace, offset_s)
    videos, watch = session.videos, session.watch_s
    policy.handle(FeedAppended(videos))
    policy.handle(PlaybackProgress(0, 0.0, 0.0))
    held: dict[tuple[int, int], Fetch] = {}
    played: set[tuple[int, int]] = set()
    startup: list[float] = []
    flight: Fetch | None = None
    flight_start = flight_wait = flight_got = 0.0
    now = stall = arrived = played_s = 0.0
    current, position, started = 0, 0.0, False
    asked_at: float | None = None
    while current < len(videos):
        rate, left = link.rate(now), tick_s
        while left > 1e-12:
            if flight is None:
                if asked_at is not None and now - asked_at < recheck_s:
                    break
                flight = policy.next_fetch(now + tick_s - left)
                if flight is None:
                    asked_at = now
                    break
                if (flight.video, flight.segment) in held:
                    raise AssertionError(f"{flight} asks again for a held chunk")
                flight_start, flight_wait, flight_got = now + tick_s - left, latency_s, 0.0
            waited = min(flight_wait, left)
            flight_wait -= waited
            left -= waited
            if flight_wait > 0 or rate <= 0:
                break
            need = (flight.size - flight_got) / rate
            if need > left:
                flight_got += rate * left
                break
            left -= need
            done = now + tick_s - left
            held[flight.video, flight.segment] = flight
            policy.handle(DownloadCompleted(flight, done - flight_start, done))
            flight, asked_at = None, None
        now += tick_s
        video = videos[current]
        chunk = (current, video.segment_at(position))
        if chunk in held:
            if not started:
                startup.append(now - tick_s - arrived)
                started = True
            played.add(chunk)
            step = min(tick_s, watch[current] - position)
            position += step
            played_s += step
        elif started:
            stall += tick_s
        if position >= watch[current] - 1e-9:
            policy.handle(Swiped(current, position, watch[current] >= video.duration_s, now))
            current, position, started, arrived, asked_at = current + 1, 0.0, False, now, None
        else:
            policy.handle(PlaybackProgress(current, position, now))
    partial = int(flight_got) if flight is not None else 0
    downloaded = sum(f.size for f in held.values()) + partial
    useful = sum(f.size for key, f in held.items() if key in played)
    return SessionResult(stall, tuple(startup), downloaded, useful, downloaded - useful, played_s)


def compare(
    traces: Sequence[Trace],
    policies: Mapping[str, Callable[[], PrefetchPolicy]],
    rng: random.Random,
    videos: int = 30,
) -> list[Row]:
    """Every policy over the same sessions: one per trace, fresh policy, random start offset."""
    runs: dict[str, list[SessionResult]] = {name: [] for name in policies}
    for trace in traces:
        session = synthetic_session(rng, videos)
        offset = rng.uniform(0.0, trace[-1][0] - trace[0][0])
        for name, make in policies.items():
            runs[name].append(simulate(make(), trace, session, offset))
    return [_row(name, results) for name, results in runs.items()]


def _row(policy: str, results: Sequence[SessionResult]) -> Row:
    played_s = sum(r.played_s for r in results)
    startups = [s for r in results for s in r.startup_s]
    return Row(
        policy,
        round(sum(r.stall_s for r in results), 2),
        round(statistics.median(startups), 3),
        round(statistics.mean(startups), 3),
        round(sum(r.wasted_bytes for r in results) / 1e6, 2),
        round(sum(r.downloaded_bytes for r in results) / 1e6, 2),
        round(sum(r.played_bytes for r in results) * 8 / 1e3 / played_s, 1),
    )


def format_table(rows: Sequence[Row]) -> str:
    head = f"{'policy':<10} {'stall s':>9} {'startup p50 s':>14} {'mean s':>7} {'wasted MB':>10} "
    head += f"{'downloaded MB':>14} {'played kbps':>12}"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r.policy:<10} {r.stall_s:>9.2f} {r.startup_p50_s:>14.3f} {r.startup_mean_s:>7.3f} "
            f"{r.wasted_mb:>10.2f} "
            f"{r.downloaded_mb:>14.2f} {r.played_kbps:>12.1f}"
        )
    return "\n".join(lines)
