"""Golden results (libCacheSim style): every policy on one seeded Zipf workload at three sizes.

The exact hit counts and missed bytes are pinned, so any change in a policy's behaviour shows up
here and has to be re-pinned on purpose (rerun, check the orderings below, update the table).
The orderings are what the literature predicts for a Zipf workload with variable sizes (S3-FIFO,
SOSP'23; SIEVE, NSDI'24; the libCacheSim measurements in /work/shared/reference/cdn.md): the
modern policies beat LRU, GDSF has the best object hit ratio and pays for it in bytes, and no
policy beats the PFOO-L upper bound (Berger et al., SIGMETRICS'18).
"""

import pytest

from core.cache.eviction import eviction_policy_names
from tests.core.cache.workload import Outcome, Workload, simulate, zipf_workload

PERCENTS = (1, 10, 30)
"""Cache sizes, in percent of the working set's bytes."""

# (policy, percent) -> (hits, missed bytes) over the 50,000 requests of `zipf_workload()`.
GOLDEN: dict[tuple[str, int], tuple[int, int]] = {
    ("gdsf", 1): (17947, 5940186649),  # object hit ratio 0.3589
    ("lru", 1): (11568, 6233920354),  # 0.2314
    ("s3fifo", 1): (17836, 5195239200),  # 0.3567
    ("sieve", 1): (16968, 5357507082),  # 0.3394
    ("wtinylfu", 1): (17515, 5250757564),  # 0.3503
    ("gdsf", 10): (33377, 3464404818),  # 0.6675
    ("lru", 10): (26966, 3732426749),  # 0.5393
    ("s3fifo", 10): (31013, 3177951449),  # 0.6203
    ("sieve", 10): (30771, 3199613075),  # 0.6154
    ("wtinylfu", 10): (31234, 3182565102),  # 0.6247
    ("gdsf", 30): (40771, 2199929866),  # 0.8154
    ("lru", 30): (36427, 2261868169),  # 0.7285
    ("s3fifo", 30): (37733, 2049037490),  # 0.7547
    ("sieve", 30): (37596, 2074987519),  # 0.7519
    ("wtinylfu", 30): (38241, 2075351011),  # 0.7648
}
WORKING_SET_BYTES = 829_288_959
DISTINCT_OBJECTS_REQUESTED = 4_682


@pytest.fixture(scope="module")
def workload() -> Workload:
    return zipf_workload()


@pytest.fixture(scope="module")
def outcomes(workload: Workload) -> dict[tuple[str, int], Outcome]:
    return {
        (name, percent): simulate(workload, name, capacity_bytes(workload, percent))
        for name in eviction_policy_names()
        for percent in PERCENTS
    }


def capacity_bytes(workload: Workload, percent: int) -> int:
    return workload.working_set_bytes * percent // 100


def test_the_workload_is_the_pinned_one(workload: Workload) -> None:
    # If this fails, the generator changed and every golden number below is moot.
    assert len(workload.keys) == 50_000
    assert workload.working_set_bytes == WORKING_SET_BYTES
    assert len(set(workload.keys)) == DISTINCT_OBJECTS_REQUESTED


def test_every_policy_has_golden_numbers() -> None:
    assert {name for name, _ in GOLDEN} == set(eviction_policy_names())


@pytest.mark.parametrize(("name", "percent"), sorted(GOLDEN))
def test_golden_hits_and_missed_bytes(
    outcomes: dict[tuple[str, int], Outcome], name: str, percent: int
) -> None:
    outcome = outcomes[name, percent]
    assert (outcome.hits, outcome.missed_bytes) == GOLDEN[name, percent]


@pytest.mark.parametrize("percent", PERCENTS)
def test_the_orderings_the_literature_predicts(
    outcomes: dict[tuple[str, int], Outcome], percent: int
) -> None:
    hits = {name: outcomes[name, percent].hits for name in eviction_policy_names()}
    for modern in ("s3fifo", "sieve", "wtinylfu"):
        assert hits[modern] > hits["lru"], modern
    assert max(hits, key=hits.__getitem__) == "gdsf"
    # Size-aware GDSF buys its object hits by evicting large objects: more bytes missed.
    assert outcomes["gdsf", percent].missed_bytes > outcomes["s3fifo", percent].missed_bytes


@pytest.mark.parametrize("percent", PERCENTS)
def test_no_policy_beats_the_pfoo_l_bound(
    workload: Workload, outcomes: dict[tuple[str, int], Outcome], percent: int
) -> None:
    bound = pfoo_l_hit_bound(workload, capacity_bytes(workload, percent))
    assert bound <= len(workload.keys) - DISTINCT_OBJECTS_REQUESTED  # compulsory misses
    for name in eviction_policy_names():
        assert outcomes[name, percent].hits <= bound, name


def pfoo_l_hit_bound(workload: Workload, capacity: int) -> int:
    """An upper bound on any demand-fetching cache's hits (PFOO-L, Berger et al. SIGMETRICS'18).

    A hit on request t of an object last requested at t0 needs the object held for the whole
    interval, costing size * (t - t0) byte-requests; all held objects together never exceed
    `capacity` * requests. The most hits under that budget come from the cheapest intervals.
    """
    last_request: dict[str, int] = {}
    costs = []
    for time, key in enumerate(workload.keys):
        previous = last_request.get(key)
        if previous is not None:
            costs.append(workload.sizes[key] * (time - previous))
        last_request[key] = time
    budget = capacity * len(workload.keys)
    hits = 0
    for cost in sorted(costs):
        if cost > budget:
            break
        budget -= cost
        hits += 1
    return hits
