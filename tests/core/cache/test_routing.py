"""Parent selection: rendezvous hashing, passive health with exponential back-off, probes."""

import hashlib
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.cache.routing import (
    ParentRouter,
    ParentState,
    ParentStats,
    rendezvous_order,
    rendezvous_score,
)

PARENTS = ("http://r1:8080", "http://r2:8080", "http://r3:8080", "http://r4:8080")
ORIGIN = "http://origin:8090"
KEY = "/v/abc/720p/seg_00001.m4s"

names = st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=12)


def router(parents: tuple[str, ...] = PARENTS, origin: str | None = ORIGIN) -> ParentRouter:
    return ParentRouter(parents, origin, backoff_initial=1.0, backoff_max=30.0, probe_interval=5.0)


def state(r: ParentRouter, parent: str, now: float) -> ParentState:
    return next(s.state for s in r.stats(now) if s.parent == parent)


# --- rendezvous hashing --------------------------------------------------------------------------


def test_score_is_the_documented_blake2b_formula() -> None:
    # Pinned so that every implementation (and every version) computes the same order.
    digest = hashlib.blake2b(b"http://r1:8080\x00/v/x", digest_size=8).digest()
    assert rendezvous_score("http://r1:8080", "/v/x") == int.from_bytes(digest, "big")


def test_the_same_key_gets_the_same_order_on_every_node() -> None:
    # Two nodes (two routers), parents listed in different orders: one order per key.
    a = router(PARENTS)
    b = router(tuple(reversed(PARENTS)))
    for n in range(200):
        key = f"/v/{n}/master.m3u8"
        assert a.candidates(key, 0.0) == b.candidates(key, 0.0)


def test_the_order_is_a_permutation_of_the_parents_then_the_origin() -> None:
    candidates = router().candidates(KEY, 0.0)
    assert sorted(candidates[:-1]) == sorted(PARENTS)
    assert candidates[-1] == ORIGIN


def test_different_keys_get_different_first_parents() -> None:
    firsts = {router().candidates(f"/v/{n}/seg.m4s", 0.0)[0] for n in range(100)}
    assert firsts == set(PARENTS)


@given(
    st.lists(names, min_size=2, max_size=8, unique=True),
    st.lists(st.text(max_size=30), min_size=1, max_size=30),
    st.data(),
)
def test_removing_a_parent_moves_only_that_parents_keys(
    parents: list[str], keys: list[str], data: st.DataObject
) -> None:
    removed = data.draw(st.sampled_from(parents))
    remaining = [p for p in parents if p != removed]
    for key in keys:
        before = rendezvous_order(key, parents)
        after = rendezvous_order(key, remaining)
        # The survivors keep their relative order, so a key whose first parent survives stays.
        assert after == [p for p in before if p != removed]
        if before[0] != removed:
            assert after[0] == before[0]


@given(st.lists(names, min_size=1, max_size=8, unique=True), st.text(max_size=30), names)
def test_adding_a_parent_only_takes_keys_for_itself(
    parents: list[str], key: str, added: str
) -> None:
    if added in parents:
        return
    before = rendezvous_order(key, parents)[0]
    after = rendezvous_order(key, [*parents, added])[0]
    assert after in (before, added)


def test_keys_are_balanced_across_parents() -> None:
    keys = 20_000
    counts = Counter(
        rendezvous_order(f"/v/{n % 997}/{n}/seg_{n:05d}.m4s", PARENTS)[0] for n in range(keys)
    )
    expected = keys / len(PARENTS)
    for parent in PARENTS:
        assert abs(counts[parent] - expected) < 0.05 * expected, counts


def test_keys_that_are_not_valid_utf8_still_hash() -> None:
    assert len(rendezvous_order("/v/\udcff", PARENTS)) == len(PARENTS)


# --- construction --------------------------------------------------------------------------------


def test_no_parents_means_only_the_origin() -> None:
    assert router(()).candidates(KEY, 0.0) == [ORIGIN]
    assert router((), None).candidates(KEY, 0.0) == []


def test_without_an_origin_the_parents_are_the_last_resort() -> None:
    assert router(origin=None).candidates(KEY, 0.0) == rendezvous_order(KEY, PARENTS)


def test_an_origin_that_is_also_a_parent_is_listed_once() -> None:
    r = router((ORIGIN,), ORIGIN)
    assert r.candidates(KEY, 0.0) == [ORIGIN]
    assert r.origin is None
    assert r.parents == (ORIGIN,)


@pytest.mark.parametrize(
    ("parents", "options"),
    [
        (("a", "a"), {}),
        (("",), {}),
        (("a\x00b",), {}),
        (("a",), {"backoff_initial": 0}),
        (("a",), {"backoff_initial": 10, "backoff_max": 5}),
        (("a",), {"probe_interval": 0}),
        (("a",), {"backoff_initial": float("nan")}),
    ],
)
def test_bad_settings_are_refused(parents: tuple[str, ...], options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ParentRouter(parents, None, **options)


# --- failover and back-off ---------------------------------------------------------------------


def test_a_failed_parent_is_skipped_and_the_rest_keep_their_order() -> None:
    r = router()
    first, *rest = rendezvous_order(KEY, PARENTS)
    r.report_failure(first, 10.0)
    assert r.candidates(KEY, 10.0) == [*rest, ORIGIN]
    assert r.candidates(KEY, 10.9) == [*rest, ORIGIN]


def test_failover_walks_the_rendezvous_order() -> None:
    r = router()
    order = rendezvous_order(KEY, PARENTS)
    for failed in range(1, len(order)):
        r.report_failure(order[failed - 1], 0.0)
        assert r.candidates(KEY, 0.5) == [*order[failed:], ORIGIN]


def test_when_every_parent_is_in_back_off_all_are_tried_before_the_origin() -> None:
    r = router()
    for parent in PARENTS:
        r.report_failure(parent, 0.0)
    assert r.candidates(KEY, 0.5) == [*rendezvous_order(KEY, PARENTS), ORIGIN]
    assert r.is_usable(0.5)  # the origin is always there
    no_origin = router(origin=None)
    for parent in PARENTS:
        no_origin.report_failure(parent, 0.0)
    assert no_origin.candidates(KEY, 0.5) == rendezvous_order(KEY, PARENTS)
    assert not no_origin.is_usable(0.5)


def test_back_off_doubles_on_each_failure_after_it_ran_out_up_to_the_maximum() -> None:
    r = router()
    parent = PARENTS[0]
    now = 0.0
    seen = []
    for _ in range(8):
        r.report_failure(parent, now)
        (stats,) = [s for s in r.stats(now) if s.parent == parent]
        seen.append(stats.backoff)
        assert stats.retry_at == now + stats.backoff
        now = stats.retry_at  # the next failure comes when the back-off has run out (a probe)
    assert seen == [1, 2, 4, 8, 16, 30, 30, 30]


def test_failures_of_requests_already_in_flight_do_not_extend_the_back_off() -> None:
    r = router()
    parent = PARENTS[0]
    r.report_failure(parent, 0.0)
    for moment in (0.1, 0.2, 0.9):
        r.report_failure(parent, moment)
    (stats,) = [s for s in r.stats(0.95) if s.parent == parent]
    assert (stats.backoff, stats.retry_at, stats.consecutive_failures) == (1, 1.0, 4)


def test_a_success_resets_the_back_off() -> None:
    r = router()
    parent = PARENTS[0]
    for now in (0.0, 1.0, 3.0, 7.0):
        r.report_failure(parent, now)
    r.report_success(parent, 8.0)
    assert state(r, parent, 8.0) is ParentState.HEALTHY
    assert r.candidates(KEY, 8.0)[:-1] == rendezvous_order(KEY, PARENTS)
    r.report_failure(parent, 9.0)
    (stats,) = [s for s in r.stats(9.0) if s.parent == parent]
    assert (stats.backoff, stats.consecutive_failures) == (1.0, 1)


def test_reports_about_the_origin_are_ignored_and_unknown_names_refused() -> None:
    r = router()
    r.report_failure(ORIGIN, 0.0)
    r.report_success(ORIGIN, 0.0)
    assert r.candidates(KEY, 0.0)[-1] == ORIGIN
    with pytest.raises(ValueError):
        r.report_failure("http://stranger", 0.0)


# --- probes and timers ---------------------------------------------------------------------------


def test_nothing_to_probe_while_every_parent_is_healthy() -> None:
    r = router()
    assert r.next_deadline() is None
    assert r.probes_due(100.0) == []


def test_a_parent_is_due_for_a_probe_when_its_back_off_runs_out() -> None:
    r = router()
    parent = PARENTS[1]
    r.report_failure(parent, 10.0)
    assert r.next_deadline() == 11.0
    assert r.probes_due(10.5) == []
    assert r.probes_due(11.0) == [parent]
    # Probing: out of rotation and not handed out again while the probe is outstanding.
    assert state(r, parent, 11.0) is ParentState.PROBING
    assert parent not in r.candidates(KEY, 12.0)
    assert r.probes_due(12.0) == []
    assert r.next_deadline() == 16.0


def test_a_successful_probe_brings_the_parent_back() -> None:
    r = router()
    parent = PARENTS[1]
    r.report_failure(parent, 0.0)
    assert r.probes_due(1.0) == [parent]
    r.report_success(parent, 1.2)
    assert parent in r.candidates(KEY, 1.2)
    assert r.next_deadline() is None
    assert r.stats(1.2)[1] == ParentStats(parent, ParentState.HEALTHY, 0, 0.0, None, 1.2)


def test_a_failed_probe_doubles_the_back_off() -> None:
    r = router()
    parent = PARENTS[1]
    r.report_failure(parent, 0.0)
    assert r.probes_due(1.0) == [parent]
    r.report_failure(parent, 1.3)
    assert state(r, parent, 1.3) is ParentState.BACKOFF
    assert r.next_deadline() == 3.3
    assert r.probes_due(3.3) == [parent]


def test_an_unanswered_probe_is_retried_and_the_parent_half_opened() -> None:
    r = router()
    parent = PARENTS[2]
    r.report_failure(parent, 0.0)
    assert r.probes_due(1.0) == [parent]
    assert state(r, parent, 5.9) is ParentState.PROBING
    assert state(r, parent, 6.0) is ParentState.PROBE_DUE
    assert parent in r.candidates(KEY, 6.0)
    assert r.probes_due(6.0) == [parent]


def test_without_probes_a_parent_returns_half_open_after_its_back_off() -> None:
    r = router()
    parent = PARENTS[0]
    r.report_failure(parent, 0.0)
    assert parent not in r.candidates(KEY, 0.99)
    assert parent in r.candidates(KEY, 1.0)
    assert state(r, parent, 1.0) is ParentState.PROBE_DUE
    r.report_failure(parent, 1.5)  # the request let through failed: back off longer
    assert parent not in r.candidates(KEY, 3.4)


def test_next_deadline_is_the_earliest_of_all_parents() -> None:
    r = router()
    r.report_failure(PARENTS[0], 0.0)
    r.report_failure(PARENTS[0], 1.0)  # back-off 2: retry at 3
    r.report_failure(PARENTS[1], 0.5)  # retry at 1.5
    assert r.next_deadline() == 1.5
    assert r.probes_due(2.0) == [PARENTS[1]]
    assert r.next_deadline() == 3.0
    assert r.probes_due(3.0) == [PARENTS[0]]
    assert r.next_deadline() == 7.0


def test_stats_report_every_parent_in_configuration_order() -> None:
    r = router()
    r.report_failure(PARENTS[3], 4.0)
    stats = r.stats(4.5)
    assert [s.parent for s in stats] == list(PARENTS)
    assert [s.state for s in stats] == [ParentState.HEALTHY] * 3 + [ParentState.BACKOFF]
    assert stats[3] == ParentStats(PARENTS[3], ParentState.BACKOFF, 1, 1.0, 5.0, 4.0)
