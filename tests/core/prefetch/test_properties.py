"""Properties over random sessions and links: no chunk asked for twice, bytes conserved."""

import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from core.prefetch import (
    AdaptivePlanner,
    Event,
    Fetch,
    FixedPolicy,
    PrefetchPolicy,
    simulate,
    synthetic_session,
)


@dataclass
class Recording:
    """Passes everything through and remembers every fetch the policy asked for."""

    policy: PrefetchPolicy
    fetched: list[Fetch] = field(default_factory=list)

    def handle(self, event: Event) -> None:
        self.policy.handle(event)

    def next_fetch(self, now: float) -> Fetch | None:
        fetch = self.policy.next_fetch(now)
        if fetch is not None:
            self.fetched.append(fetch)
        return fetch


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    mbps=st.lists(st.floats(0.0, 6.0), min_size=1, max_size=40).filter(lambda r: max(r) > 0.2),
    adaptive=st.booleans(),
)
def test_no_chunk_twice_and_bytes_conserved(seed: int, mbps: list[float], adaptive: bool) -> None:
    session = synthetic_session(random.Random(seed), count=5)
    trace = [(float(i), rate) for i, rate in enumerate(mbps)]
    recording = Recording(AdaptivePlanner() if adaptive else FixedPolicy())
    result = simulate(recording, trace, session, offset_s=seed % 7)
    chunks = [(f.video, f.segment) for f in recording.fetched]
    assert len(chunks) == len(set(chunks))
    assert 0 <= result.wasted_bytes <= result.downloaded_bytes
    assert result.downloaded_bytes == result.played_bytes + result.wasted_bytes
    completed = sum(f.size for f in recording.fetched)
    assert (
        completed - max((f.size for f in recording.fetched), default=0)
        <= (result.downloaded_bytes)
        <= completed
    )
    assert len(result.startup_s) == len(session.videos)
    assert abs(result.played_s - sum(session.watch_s)) < 1e-6
