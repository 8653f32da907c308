"""The recommender's rules end to end: cold start by region and device class, filters after a
fit, followed creators' new uploads, and the online update moving the next page."""

from collections import Counter

import numpy as np
import pytest

from core.recs import (
    Completion,
    Follow,
    Impression,
    Like,
    PopularityRecommender,
    Recommender,
    RecommenderSettings,
    Video,
)
from tests.core.recs.synthetic import DAY, World, make_world

NOW = 30 * DAY


@pytest.fixture(scope="module")
def world() -> World:
    return make_world(seed=3, viewers=120, videos=240)


@pytest.fixture
def fitted(world: World) -> Recommender:
    recommender = Recommender(RecommenderSettings(), np.random.default_rng(3))
    recommender.fit(world.events, world.videos)
    return recommender


def catalog_by_region() -> tuple[list[Video], list[Completion]]:
    """Ten videos; each (region, device) scope completed its own two most."""
    videos = [Video(id=f"v{n}", creator=f"c{n}", uploaded_at=0.0) for n in range(10)]
    completions = [
        Completion(user=f"{region}-{device}-{n}", video=video, at=1.0, region=region, device=device)
        for region, device, favourites in [
            ("br", "tv", ("v0", "v1")),
            ("br", "phone", ("v2", "v3")),
            ("eu", "phone", ("v4", "v5")),
        ]
        for video in favourites
        for n in range(5)
    ]
    return videos, completions


@pytest.mark.parametrize("kind", [Recommender, PopularityRecommender])
@pytest.mark.parametrize(
    ("region", "device", "leaders"),
    [("br", "tv", {"v0", "v1"}), ("br", "phone", {"v2", "v3"}), ("eu", "phone", {"v4", "v5"})],
)
def test_a_new_viewer_starts_with_what_is_popular_in_their_region_and_device_class(
    kind: type[Recommender] | type[PopularityRecommender],
    region: str,
    device: str,
    leaders: set[str],
) -> None:
    videos, completions = catalog_by_region()
    recommender = (
        Recommender(RecommenderSettings(), np.random.default_rng(0))
        if kind is Recommender
        else PopularityRecommender()
    )
    recommender.fit(completions, videos)
    page = recommender.recommend("newcomer", now=10.0, k=6, region=region, device=device)
    assert set(page[:2]) == leaders
    # The rest backs off to the region, then to everyone: all six engaged-with videos.
    assert set(page) == {f"v{n}" for n in range(6)}


def test_held_seen_excluded_and_future_videos_never_appear(
    world: World, fitted: Recommender
) -> None:
    viewer = world.viewers[0]
    first = fitted.recommend(viewer.id, NOW, 10, viewer.region, viewer.device)
    assert len(first) == 10
    held, shown, excluded = first[0], first[1], first[2]
    video = next(v for v in world.videos if v.id == held)
    fitted.add_video(Video(id=video.id, creator=video.creator, uploaded_at=video.uploaded_at,
                           tags=video.tags, held=True))  # fmt: skip
    fitted.observe(Impression(user=viewer.id, video=shown, at=NOW))
    page = fitted.recommend(viewer.id, NOW, 10, viewer.region, viewer.device, exclude={excluded})
    assert {held, shown, excluded}.isdisjoint(page)
    seen = {e.video for e in world.events if e.user == viewer.id and not isinstance(e, Follow)}
    assert seen.isdisjoint(page)
    future = Video(id="tomorrow", creator="c000", uploaded_at=NOW + DAY, tags=video.tags)
    fitted.add_video(future)
    assert "tomorrow" not in fitted.recommend(viewer.id, NOW, 50, viewer.region, viewer.device)


def test_a_followed_creators_new_upload_reaches_the_follower(
    world: World, fitted: Recommender
) -> None:
    viewer = world.viewers[0]
    creator = next(e.creator for e in world.events if isinstance(e, Follow) and e.user == viewer.id)
    fitted.add_video(Video(id="new", creator=creator, uploaded_at=NOW - 3600.0))
    assert "new" in fitted.recommend(viewer.id, NOW, 10, viewer.region, viewer.device)


def test_the_online_update_moves_the_next_page_towards_what_was_just_enjoyed(
    world: World, fitted: Recommender
) -> None:
    viewer = world.viewers[0]
    other = (viewer.cluster + 1) % 12
    before = fitted.recommend(viewer.id, NOW, 10, viewer.region, viewer.device)
    vector = fitted.user_vector(viewer.id)
    liked = [v.id for v in world.videos if world.cluster_of[v.id] == other and v.id not in before]
    for n, video in enumerate(liked[:6]):
        fitted.observe(Completion(user=viewer.id, video=video, at=NOW + n))
        fitted.observe(Like(user=viewer.id, video=video, at=NOW + n))
    after = fitted.recommend(viewer.id, NOW + 10, 10, viewer.region, viewer.device)
    clusters_before = Counter(world.cluster_of[v] for v in before)
    clusters_after = Counter(world.cluster_of[v] for v in after)
    print(f"\ncluster {other} in page: {clusters_before[other]} -> {clusters_after[other]}")
    assert clusters_after[other] >= clusters_before[other] + 2
    assert not np.allclose(vector, fitted.user_vector(viewer.id))
