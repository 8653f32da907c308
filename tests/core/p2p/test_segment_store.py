"""Bounded segment storage: played segments go first, then the farthest ahead."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.p2p.segment_store import SegmentStore

STARTS = [2.0 * i for i in range(20)]


def test_evicts_played_segments_first_then_farthest_ahead() -> None:
    store = SegmentStore(capacity=30)
    for i in (1, 2, 8, 9):
        assert store.put(i, b"x" * 7, playhead=0, starts=STARTS) == (True, [])
    assert store.put(5, b"y" * 7, playhead=3, starts=STARTS) == (True, [1])
    assert store.put(6, b"y" * 10, playhead=3, starts=STARTS) == (True, [2, 9])
    assert store.ids() == {5, 6, 8} and store.used == 24


def test_never_evicts_what_plays_sooner() -> None:
    store = SegmentStore(capacity=10)
    store.put(4, b"x" * 10, playhead=0, starts=STARTS)
    assert store.put(9, b"y", playhead=0, starts=STARTS) == (False, [])
    assert store.ids() == {4} and store.get(4) == b"x" * 10


def test_storing_twice_keeps_one_copy() -> None:
    store = SegmentStore(capacity=10)
    store.put(1, b"abc", playhead=0, starts=STARTS)
    assert store.put(1, b"abc", playhead=0, starts=STARTS) == (True, [])
    assert store.used == 3 and len(store) == 1 and 1 in store


@given(
    st.integers(0, 100),
    st.lists(st.tuples(st.integers(0, 19), st.integers(0, 40), st.integers(0, 19))),
)
def test_never_exceeds_capacity(capacity: int, puts: list[tuple[int, int, int]]) -> None:
    store = SegmentStore(capacity)
    for segment_id, size, playhead in puts:
        stored, evicted = store.put(segment_id, b"z" * size, playhead=playhead, starts=STARTS)
        assert store.used <= capacity
        assert store.used == sum(len(store.get(i) or b"") for i in store.ids())
        assert (segment_id in store) == stored
        assert segment_id not in evicted
