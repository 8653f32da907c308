"""Locality-aware peer choice: offers go to the nearest peers first.

Plain WebTorrent trackers pick offer recipients at random, so a viewer in Paris may be paired
with one in Sydney while a neighbour on the same ISP waits (bittorrent-tracker #279). Here each
peer carries a `Location` (PoP, ASN, country, region; any may be unknown) and candidates are
ranked by the first field they share with the announcer, in that order: same PoP, then same
ASN, then same country, then same region, then anyone. An unknown field never matches, not even
another unknown one. Within a rank the choice is uniformly random (an injected `random.Random`),
so load still spreads across the swarm as it does with bittorrent-tracker's random iteration.
"""

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Location:
    """Where a peer is, as far as the tracker knows."""

    pop: str | None = None
    """The edge PoP serving the peer (from the MaxMind DB or the edge)."""
    asn: int | None = None
    country: str | None = None
    """ISO 3166-1 alpha-2."""
    region: str | None = None
    """A subdivision or a continent code: whatever the deployment's DB calls a region."""


UNKNOWN = Location()

FARTHEST = 4
"""Rank of a candidate sharing nothing with the announcer (ranks run from 0, the same PoP)."""


def rank(origin: Location, other: Location) -> int:
    """0 when `other` shares the PoP with `origin`, 1 the ASN, 2 the country, 3 the region,
    else `FARTHEST`: the first shared field decides, in that order of closeness."""
    pairs = (
        (origin.pop, other.pop),
        (origin.asn, other.asn),
        (origin.country, other.country),
        (origin.region, other.region),
    )
    for position, (mine, theirs) in enumerate(pairs):
        if mine is not None and mine == theirs:
            return position
    return FARTHEST


def nearest(
    origin: Location,
    candidates: Iterable[tuple[T, Location]],
    count: int,
    rng: random.Random,
) -> list[T]:
    """Up to `count` candidates, closest rank first, chosen at random within a rank.

    O(len(candidates)): candidates are bucketed by rank and only the last bucket needed is
    sampled, so a swarm of thousands costs no sort per announce."""
    if count <= 0:
        return []
    if origin == UNKNOWN:
        # Shares nothing with anyone (no geo DB, no PoP): a single rank, nothing to compare.
        pool = [candidate for candidate, _ in candidates]
        return pool if len(pool) <= count else rng.sample(pool, count)
    buckets: list[list[T]] = [[] for _ in range(FARTHEST + 1)]
    for candidate, location in candidates:
        buckets[rank(origin, location)].append(candidate)
    chosen: list[T] = []
    for bucket in buckets:
        wanted = count - len(chosen)
        if len(bucket) <= wanted:
            chosen.extend(bucket)
        else:
            chosen.extend(rng.sample(bucket, wanted))
        if len(chosen) == count:
            break
    return chosen


__all__ = ["FARTHEST", "UNKNOWN", "Location", "nearest", "rank"]
