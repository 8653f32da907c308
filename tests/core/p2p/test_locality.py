"""Offer recipients by closeness: PoP, then ASN, country, region, then anyone."""

import random

from hypothesis import given
from hypothesis import strategies as st

from core.p2p.locality import FARTHEST, UNKNOWN, Location, nearest, rank

HOME = Location(pop="par1", asn=3215, country="FR", region="IDF")


def test_rank_takes_the_first_shared_field() -> None:
    assert rank(HOME, Location(pop="par1", asn=1)) == 0
    assert rank(HOME, Location(pop="par2", asn=3215)) == 1
    assert rank(HOME, Location(country="FR", region="IDF")) == 2
    assert rank(HOME, Location(region="IDF")) == 3
    assert rank(HOME, Location(pop="ams1", asn=1, country="NL", region="NH")) == FARTHEST
    assert rank(UNKNOWN, UNKNOWN) == FARTHEST  # unknown never matches unknown


_fields = st.builds(
    Location,
    pop=st.sampled_from([None, "par1", "ams1"]),
    asn=st.sampled_from([None, 3215, 1136]),
    country=st.sampled_from([None, "FR", "NL"]),
    region=st.sampled_from([None, "IDF", "EU"]),
)


@given(_fields, st.lists(_fields, max_size=30), st.integers(0, 35), st.integers())
def test_no_farther_candidate_is_chosen_over_a_closer_one(
    origin: Location, locations: list[Location], count: int, seed: int
) -> None:
    candidates = list(enumerate(locations))
    chosen = nearest(origin, candidates, count, random.Random(seed))
    assert len(chosen) == min(count, len(candidates))
    assert len(set(chosen)) == len(chosen)
    if chosen:
        worst_chosen = max(rank(origin, locations[i]) for i in chosen)
        left_out = [i for i in range(len(locations)) if i not in chosen]
        assert all(rank(origin, locations[i]) >= worst_chosen for i in left_out)


def test_ties_are_broken_at_random() -> None:
    candidates = [(i, Location(pop="par1")) for i in range(10)]
    picks = {tuple(nearest(HOME, candidates, 1, random.Random(seed))) for seed in range(50)}
    assert len(picks) > 5
