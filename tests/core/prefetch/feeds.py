"""Small hand-made feeds and a way to run a policy's fetches to completion at once."""

from core.prefetch import DownloadCompleted, FeedAppended, Fetch, PrefetchPolicy, Rendition, Video

LADDER = (400_000, 1_000_000, 2_200_000)


def video(duration_s: float, name: str = "v", segment_s: float = 2.0) -> Video:
    """Constant-bitrate segments of the 3-rung ladder."""
    count = int(-(-duration_s // segment_s))
    lengths = [min(segment_s, duration_s - i * segment_s) for i in range(count)]
    return Video(
        name,
        duration_s,
        segment_s,
        tuple(Rendition(rate, tuple(int(rate * s / 8) for s in lengths)) for rate in LADDER),
    )


def feed(policy: PrefetchPolicy, *durations: float) -> None:
    policy.handle(FeedAppended(tuple(video(d, f"v{i}") for i, d in enumerate(durations))))


def complete(policy: PrefetchPolicy, fetch: Fetch, bps: float, now: float = 0.0) -> None:
    """Deliver `fetch` as if the link ran at `bps` (a throughput sample of exactly that)."""
    policy.handle(DownloadCompleted(fetch, fetch.size * 8 / bps, now))


def drain(policy: PrefetchPolicy, bps: float, limit: int = 1000) -> list[Fetch]:
    """Every fetch the policy asks for, each completed at once, until it waits."""
    fetches: list[Fetch] = []
    while (fetch := policy.next_fetch(0.0)) is not None and len(fetches) < limit:
        fetches.append(fetch)
        complete(policy, fetch, bps)
    return fetches
