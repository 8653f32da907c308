"""The personalised recommender: candidates from several sources, a learned ranking, the rules.

Per request (`recommend`), candidates come from five sources, `per_source` each:

- **followed**: the followed creators' videos uploaded within `follow_window`;
- **trending**: the caller's trending list for the viewer's region (from `core.viral`);
- **taste**: similar viewers, via the embeddings: the videos whose factor vectors best match
  the viewer's (`core.recs.factors`; viewers who engaged with the same videos get similar
  vectors, so this surfaces what viewers of like taste engaged with);
- **content**: the videos most similar (cosine over embedding and tags) to the viewer's content
  profile, the engagement-weighted sum of what they engaged with; this is how a video nobody
  has watched yet can reach the viewers who will like it;
- **popular**: what is popular in the viewer's region and device class.

Each eligible candidate gets the `FEATURES` below and the ranker's predicted watched fraction;
the page follows `core.recs.rules`. A viewer with no events and no follows is a cold start:
the page is the popularity ranking of their region and device class.

`fit` trains on the log in two passes so the ranker learns from features it would really have
seen: the factors are fitted on the earlier part of the log, the ranker on how the later part's
shown videos were watched (features from the earlier state), and then the factors are refitted
on the whole log. `observe` folds one event in: the history is updated and the viewer's vector
re-solved against the fixed video vectors (one small linear solve), so the next page already
reflects it; video vectors and the ranker change only at the next `fit`.
"""

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
from numpy.typing import NDArray

from core.recs import factors
from core.recs.events import Event, Follow, Video, VideoEvent
from core.recs.history import Engagement, History, replay
from core.recs.popularity import popular_ranked
from core.recs.ranker import LogisticRanker
from core.recs.rules import PageRules, compose_page, eligible

FEATURES = ("taste", "creator", "follows", "popularity", "freshness", "content")
"""Per candidate: factor match with the viewer, the viewer's share of engagement with its
creator, whether they follow the creator, log popularity in their scope (relative to uniform),
exp(-age / freshness_tau), cosine with their content profile."""

Vector = NDArray[np.float64]
Matrix = NDArray[np.float64]


@dataclass(frozen=True)
class RecommenderSettings:
    """Model sizes, signal weights, candidate budget and rules; the defaults suit a catalog of
    thousands of videos, and the offline evaluation pins their effect."""

    dims: int = 16
    iterations: int = 8
    reg: float = 0.1
    alpha: float = 10.0
    """Confidence per unit of engagement score for a positive pair."""
    negative: float = 1.0
    """Extra confidence in the zero of a pair the viewer skipped or barely watched."""
    ranker_share: float = 0.2
    """The latest share of the log the ranker learns from (the factors see the rest first)."""
    ranker_l2: float = 1.0
    per_source: int = 100
    follow_window: float = 7 * 86400.0
    freshness_tau: float = 3 * 86400.0
    page: PageRules = field(default_factory=PageRules)


def _content_row(video: Video, vocabulary: Mapping[str, int], width: int) -> Vector:
    """The video's embedding followed by its tags one-hot, unit length (zeros if neither)."""
    row = np.zeros(width + len(vocabulary))
    if video.embedding is not None:
        if len(video.embedding) != width:
            raise ValueError(f"video {video.id}: embedding of {len(video.embedding)}, not {width}")
        row[:width] = video.embedding
    for tag in video.tags & vocabulary.keys():
        row[width + vocabulary[tag]] = 1.0
    norm = float(np.linalg.norm(row))
    return row / norm if norm else row


def _unit(vector: Vector) -> Vector:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


@dataclass
class _Model:
    """Everything fitted from one history: video rows, their factors and content vectors."""

    history: History
    settings: RecommenderSettings
    ids: list[str]
    index: dict[str, int]
    video_factors: Matrix
    gram: Matrix
    """video_factors' Gram matrix, for the online re-solves (fixed until the next fit: a video
    added since has a zero vector, which adds nothing to it)."""
    content: Matrix
    vocabulary: dict[str, int]
    embedding_width: int
    user_factors: dict[str, Vector]
    by_creator: dict[str, list[str]]
    ranker: LogisticRanker

    @classmethod
    def build(
        cls, history: History, settings: RecommenderSettings, rng: np.random.Generator
    ) -> "_Model":
        videos = sorted(history.videos.values(), key=lambda v: v.id)
        index = {video.id: n for n, video in enumerate(videos)}
        vocabulary = {tag: n for n, tag in enumerate(sorted({t for v in videos for t in v.tags}))}
        width = next((len(v.embedding) for v in videos if v.embedding is not None), 0)
        users = sorted(history.engagements)
        rows = [_observed(history.engagements[u], index, settings) for u in users]
        user_matrix, video_factors = factors.train(
            rows, _transpose(rows, len(videos)), settings.dims, settings.reg,
            settings.iterations, rng,
        )  # fmt: skip
        by_creator: dict[str, list[str]] = defaultdict(list)
        for video in videos:
            by_creator[video.creator].append(video.id)
        content = np.array([_content_row(v, vocabulary, width) for v in videos])
        return cls(
            history=history,
            settings=settings,
            ids=[video.id for video in videos],
            index=index,
            video_factors=video_factors,
            gram=video_factors.T @ video_factors,
            content=content.reshape(len(videos), width + len(vocabulary)),
            vocabulary=vocabulary,
            embedding_width=width,
            user_factors=dict(zip(users, user_matrix, strict=True)),
            by_creator=by_creator,
            ranker=LogisticRanker.fit(np.zeros((0, len(FEATURES))), np.zeros(0), 1.0),
        )

    def add_video(self, video: Video) -> None:
        if video.id not in self.index:
            self.index[video.id] = len(self.ids)
            self.ids.append(video.id)
            self.by_creator[video.creator].append(video.id)
            self.video_factors = np.vstack([self.video_factors, np.zeros((1, self.settings.dims))])
            row = _content_row(video, self.vocabulary, self.embedding_width)
            self.content = np.vstack([self.content, row[None, :]])
        self.history.videos[video.id] = video

    def refold(self, user: str) -> None:
        """Re-solves the viewer's vector from their engagements against the fixed videos."""
        observed = _observed(self.history.engagements.get(user, {}), self.index, self.settings)
        self.user_factors[user] = factors.solve_row(
            self.video_factors, self.gram, observed, self.settings.reg
        )

    def profile(self, user: str) -> Vector:
        """The engagement-weighted sum of the content vectors of what the viewer liked."""
        pairs = [
            (self.index[video], engagement.score)
            for video, engagement in self.history.engagements.get(user, {}).items()
            if engagement.positive and video in self.index
        ]
        if not pairs:
            return np.zeros(self.content.shape[1])
        rows, weights = zip(*pairs, strict=True)
        return _unit(np.asarray(weights) @ self.content[list(rows)])

    def taste(self, user: str) -> Vector:
        return self.user_factors.get(user, np.zeros(self.settings.dims))

    def features(
        self, user: str, rows: Sequence[int], now: float, region: str, device: str
    ) -> Matrix:
        """The `FEATURES` of the videos at `rows` for this viewer at `now`, one row each."""
        popularity = self.history.popularity(region, device)
        follows = self.history.follows.get(user, set())
        videos = [self.history.videos[self.ids[row]] for row in rows]
        picked = np.asarray(rows, dtype=np.intp)
        ages = np.array([max(0.0, now - video.uploaded_at) for video in videos])
        columns = [
            self.video_factors[picked] @ self.taste(user),
            np.array([self.history.creator_affinity(user, v.creator) for v in videos]),
            np.array([float(v.creator in follows) for v in videos]),
            np.log1p(len(self.ids) * np.array([popularity.get(v.id, 0.0) for v in videos])),
            np.exp(-ages / self.settings.freshness_tau),
            self.content[picked] @ self.profile(user),
        ]
        return np.column_stack(columns).reshape(len(rows), len(FEATURES))


def _observed(
    engagements: Mapping[str, Engagement], index: Mapping[str, int], settings: RecommenderSettings
) -> factors.Observed:
    """The pairs ALS learns from: positives (confidence by score) and skips or glances."""
    triples = [
        (index[video], 1.0 + settings.alpha * e.score, 1.0)
        if e.positive
        else (index[video], 1.0 + settings.negative, 0.0)
        for video, e in engagements.items()
        if video in index and (e.positive or e.skipped or e.watched > 0)
    ]
    columns = list(zip(*triples, strict=True)) or [(), (), ()]
    return factors.Observed(
        np.asarray(columns[0], dtype=np.intp),
        np.asarray(columns[1], dtype=np.float64),
        np.asarray(columns[2], dtype=np.float64),
    )


def _transpose(rows: list[factors.Observed], width: int) -> list[factors.Observed]:
    """The same pairs grouped by the other side."""
    grouped: list[list[tuple[int, float, float]]] = [[] for _ in range(width)]
    for n, row in enumerate(rows):
        for column, confidence, preference in zip(
            row.index, row.confidence, row.preference, strict=True
        ):
            grouped[int(column)].append((n, float(confidence), float(preference)))
    return [
        factors.Observed(
            np.array([n for n, _, _ in pairs], dtype=np.intp),
            np.array([c for _, c, _ in pairs], dtype=np.float64),
            np.array([p for _, _, p in pairs], dtype=np.float64),
        )
        for pairs in grouped
    ]


class Recommender:
    """Personalised pages; see the module docstring for the sources, model and rules."""

    def __init__(self, settings: RecommenderSettings, rng: np.random.Generator) -> None:
        self.settings = settings
        self._rng = rng
        self._model = _Model.build(History(), settings, rng)

    def fit(self, events: Iterable[Event], videos: Iterable[Video]) -> None:
        """Trains the factors and the ranker on a log (see the module docstring)."""
        log = sorted(events, key=lambda e: e.at)
        catalog = {video.id: video for video in videos}
        cut = log[int(len(log) * (1.0 - self.settings.ranker_share))].at if log else 0.0
        early = _Model.build(
            replay(History(videos=dict(catalog)), (e for e in log if e.at < cut)),
            self.settings,
            self._rng,
        )
        later = replay(History(videos=dict(catalog)), (e for e in log if e.at >= cut))
        features, labels = _ranker_examples(early, later, log, cut)
        self._model = _Model.build(replay(History(videos=catalog), log), self.settings, self._rng)
        self._model.ranker = LogisticRanker.fit(features, labels, self.settings.ranker_l2)

    def add_video(self, video: Video) -> None:
        """A new upload, or new metadata (a hold placed or lifted) for a known video."""
        self._model.add_video(video)

    def observe(self, event: Event) -> None:
        """Folds one event in; the viewer's next page reflects it (no retrain)."""
        self._model.history.record(event)
        if isinstance(event, VideoEvent) and event.video in self._model.index:
            self._model.refold(event.user)

    def user_vector(self, user: str) -> Vector:
        """The viewer's current taste vector (zeros for an unknown viewer)."""
        return self._model.taste(user).copy()

    def recommend(
        self,
        user: str,
        now: float,
        k: int = 10,
        region: str = "",
        device: str = "",
        exclude: Collection[str] = frozenset(),
        trending: Sequence[str] = (),
    ) -> list[str]:
        """A page of up to `k` video ids for the viewer at `now`."""
        model, history = self._model, self._model.history
        popular = popular_ranked(history, user, now, region, device, exclude)
        if user not in history.engagements and not history.follows.get(user):
            return compose_page(popular, k, now, self.settings.page)
        seen = history.seen(user)

        def allowed(ids: Iterable[str]) -> Iterator[int]:
            for video_id in ids:
                video = history.videos.get(video_id)
                if video is not None and eligible(video, now, seen, exclude):
                    yield model.index[video_id]

        def best(scores: Vector) -> list[int]:
            ordered = (model.ids[n] for n in np.argsort(-scores, kind="stable"))
            return list(islice(allowed(ordered), self.settings.per_source))

        followed = [
            video_id
            for creator in sorted(history.follows.get(user, set()))
            for video_id in model.by_creator.get(creator, [])
            if now - history.videos[video_id].uploaded_at <= self.settings.follow_window
        ]
        candidates = sorted(
            set(allowed(followed))
            | set(allowed(trending[: self.settings.per_source]))
            | set(best(model.video_factors @ model.taste(user)))
            | set(best(model.content @ model.profile(user)))
            | set(allowed(v.id for v in popular[: self.settings.per_source]))
        )
        if not candidates:
            return []
        features = model.features(user, candidates, now, region, device)
        scores = model.ranker.predict(features)
        popularity = features[:, FEATURES.index("popularity")]
        order = np.lexsort((np.asarray(candidates), -popularity, -scores))
        ranked = [history.videos[model.ids[candidates[n]]] for n in order]
        return compose_page(ranked, k, now, self.settings.page)


def _ranker_examples(
    early: _Model, later: History, log: Sequence[Event], cut: float
) -> tuple[Matrix, Vector]:
    """Features (from the earlier state) and watched fractions of the later shown videos.

    Only videos a viewer had not seen before the cut count: those are what recommendations are
    made of. Each viewer's features are taken at their first later event (its time, region and
    device), as a page served then would have seen them."""
    contexts: dict[tuple[str, str], VideoEvent] = {}
    for event in log:
        if event.at >= cut and not isinstance(event, Follow):
            contexts.setdefault((event.user, event.video), event)
    by_user: dict[str, list[VideoEvent]] = defaultdict(list)
    for (user, video), context in contexts.items():
        if video in early.index and video not in early.history.seen(user):
            by_user[user].append(context)
    features: list[Matrix] = [np.zeros((0, len(FEATURES)))]
    labels: list[float] = []
    for user, events in by_user.items():
        first = events[0]
        rows = [early.index[event.video] for event in events]
        features.append(early.features(user, rows, first.at, first.region, first.device))
        labels += [later.engagements[user][event.video].watched for event in events]
    return np.vstack(features), np.asarray(labels, dtype=np.float64)
