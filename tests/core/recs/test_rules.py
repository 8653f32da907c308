"""The page rules and the history's bookkeeping, each on a hand-built case."""

from typing import TypedDict

import pytest

from core.recs import Completion, Impression, Like, PageRules, Share, Skip, Video, WatchTime
from core.recs.history import History
from core.recs.rules import compose_page, eligible

DAY = 86400.0


class Where(TypedDict):
    """Who and where an event comes from (the fields every event shares but the video)."""

    user: str
    at: float
    region: str
    device: str


NOW = 100 * DAY


def video(n: int, creator: str = "c", age: float = 10 * DAY, held: bool = False) -> Video:
    return Video(id=f"v{n}", creator=creator, uploaded_at=NOW - age, held=held)


@pytest.mark.parametrize(
    ("candidate", "seen", "exclude", "allowed"),
    [
        (video(1), set(), set(), True),
        (video(1, held=True), set(), set(), False),
        (video(1, age=-1.0), set(), set(), False),
        (video(1), {"v1"}, set(), False),
        (video(1), set(), {"v1"}, False),
    ],
    ids=["plain", "held", "not-yet-uploaded", "seen", "excluded"],
)
def test_the_filters(candidate: Video, seen: set[str], exclude: set[str], allowed: bool) -> None:
    assert eligible(candidate, NOW, seen, exclude) is allowed


def test_at_most_per_creator_videos_of_one_creator_in_a_page() -> None:
    ranked = [video(n, creator="a") for n in range(5)] + [video(n, creator="b") for n in (5, 6)]
    rules = PageRules(per_creator=2, min_fresh=0)
    assert compose_page(ranked, 4, NOW, rules) == ["v0", "v1", "v5", "v6"]


def test_the_cap_is_strict_even_when_the_page_comes_out_short() -> None:
    ranked = [video(n, creator="a") for n in range(5)]
    assert compose_page(ranked, 4, NOW, PageRules(per_creator=2, min_fresh=0)) == ["v0", "v1"]


def test_fresh_videos_get_their_minimum_even_when_outranked() -> None:
    old = [video(n, creator=f"c{n}", age=30 * DAY) for n in range(6)]
    fresh = [video(n, creator=f"c{n}", age=DAY) for n in (10, 11)]
    ranked = old + fresh
    assert compose_page(ranked, 4, NOW, PageRules(min_fresh=0)) == ["v0", "v1", "v2", "v3"]
    # The page keeps rank order: the fresh ones come last because they rank last.
    assert compose_page(ranked, 4, NOW, PageRules(min_fresh=1)) == ["v0", "v1", "v2", "v10"]
    assert compose_page(ranked, 4, NOW, PageRules(min_fresh=2)) == ["v0", "v1", "v10", "v11"]


def test_engagement_folds_watch_completion_and_explicit_signals() -> None:
    history = History(videos={"v1": video(1, creator="a"), "v2": video(2, creator="b")})
    common: Where = {"user": "u", "at": 1.0, "region": "eu", "device": "phone"}
    history.record(Impression(video="v1", **common))
    assert history.engagements["u"]["v1"].score == 0.0
    history.record(WatchTime(video="v1", seconds=6.0, duration=30.0, **common))
    assert history.engagements["u"]["v1"].score == pytest.approx(0.2)
    assert not history.engagements["u"]["v1"].positive
    history.record(Completion(video="v1", **common))
    history.record(Like(video="v1", **common))
    history.record(Share(video="v1", **common))
    assert history.engagements["u"]["v1"].score == pytest.approx(3.0)
    history.record(WatchTime(video="v2", seconds=3.0, duration=30.0, **common))
    history.record(Skip(video="v2", **common))
    assert history.engagements["u"]["v2"].skipped
    assert set(history.seen("u")) == {"v1", "v2"}
    assert history.creator_affinity("u", "a") == pytest.approx(3.0 / 3.1)


def test_popularity_backs_off_from_region_and_device_to_everyone() -> None:
    history = History(videos={f"v{n}": video(n) for n in range(3)})
    history.record(Completion(user="a", video="v0", at=1.0, region="br", device="tv"))
    history.record(Completion(user="b", video="v1", at=1.0, region="br", device="phone"))
    history.record(Completion(user="c", video="v2", at=1.0, region="eu", device="tv"))
    tv_in_brazil = history.popularity("br", "tv")
    assert tv_in_brazil["v0"] > tv_in_brazil["v1"] > tv_in_brazil["v2"] > 0
    unknown = history.popularity("jp", "car")
    assert unknown["v0"] == unknown["v1"] == unknown["v2"]
