"""Properties over random logs and catalogs: no page ever holds a seen, held, excluded or
not-yet-uploaded video or more than `per_creator` videos of one creator, and a seeded
recommender is deterministic."""

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.recs import (
    Completion,
    Event,
    Follow,
    Impression,
    Like,
    PageRules,
    PopularityRecommender,
    Recommender,
    RecommenderSettings,
    Skip,
    Video,
    WatchTime,
)

NOW = 1000.0
USERS = [f"u{n}" for n in range(6)]
SMALL = RecommenderSettings(dims=4, iterations=3, page=PageRules(per_creator=2, min_fresh=1))

videos_st = st.lists(
    st.builds(
        lambda n, creator, uploaded, held: Video(
            id=f"v{n}",
            creator=f"c{creator}",
            uploaded_at=uploaded,
            tags=frozenset({f"t{creator % 3}"}),
            held=held,
        ),
        st.integers(0, 40),
        st.integers(0, 5),
        st.floats(0.0, 1200.0),
        st.booleans(),
    ),
    min_size=1,
    max_size=30,
    unique_by=lambda v: v.id,
)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[Video], list[Event]]:
    videos = draw(videos_st)
    ids = st.sampled_from([v.id for v in videos])
    common = {"user": st.sampled_from(USERS), "at": st.floats(0.0, NOW), "region": st.just("eu")}
    event = st.one_of(
        st.builds(Impression, video=ids, **common),
        st.builds(Completion, video=ids, **common),
        st.builds(Like, video=ids, **common),
        st.builds(Skip, video=ids, **common),
        st.builds(WatchTime, video=ids, seconds=st.floats(0, 60), duration=st.just(30.0), **common),
        st.builds(Follow, creator=st.sampled_from([v.creator for v in videos]), **common),
    )
    return videos, draw(st.lists(event, max_size=60))


def make(kind: str, seed: int = 0) -> Recommender | PopularityRecommender:
    if kind == "recommender":
        return Recommender(SMALL, np.random.default_rng(seed))
    return PopularityRecommender(SMALL.page)


@pytest.mark.parametrize("kind", ["recommender", "popularity"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    world=worlds(),
    user=st.sampled_from([*USERS, "stranger"]),
    exclude=st.sets(st.sampled_from([f"v{n}" for n in range(41)])),
    k=st.integers(1, 12),
)
def test_pages_obey_the_filters_and_the_creator_cap(
    kind: str, world: tuple[list[Video], list[Event]], user: str, exclude: set[str], k: int
) -> None:
    videos, events = world
    recommender = make(kind)
    recommender.fit(events, videos)
    page = recommender.recommend(user, NOW, k, "eu", "", exclude, trending=[v.id for v in videos])
    catalog = {video.id: video for video in videos}
    seen = {e.video for e in events if e.user == user and not isinstance(e, Follow)}
    assert len(page) == len(set(page)) <= k
    for video_id in page:
        video = catalog[video_id]
        assert not video.held and video.uploaded_at <= NOW
        assert video_id not in seen and video_id not in exclude
    assert max(Counter(catalog[v].creator for v in page).values(), default=0) <= 2


@settings(max_examples=25, deadline=None)
@given(world=worlds(), seed=st.integers(0, 2**32 - 1))
def test_a_seeded_recommender_is_deterministic(
    world: tuple[list[Video], list[Event]], seed: int
) -> None:
    videos, events = world
    pages = []
    for _ in range(2):
        recommender = make("recommender", seed)
        recommender.fit(events[: len(events) // 2], videos)
        for event in events[len(events) // 2 :]:
            recommender.observe(event)
        pages.append([recommender.recommend(user, NOW, 10, "eu") for user in USERS])
    assert pages[0] == pages[1]
