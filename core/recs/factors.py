"""Viewer and video embeddings by implicit-feedback matrix factorisation (ALS), with numpy.

Hu, Koren and Volinsky's implicit ALS: every (viewer, video) pair has a preference p (1 for a
positive engagement, else 0) and a confidence c; an unobserved pair is p = 0 with c = 1. A
watched-to-the-end, liked video is a confident 1 (c = 1 + alpha * score); a skip is a
somewhat confident 0 (c = 1 + negative). The factors minimise

    sum c * (p - x_u . y_v)^2 + reg * (|x_u|^2 + |y_v|^2)

by alternating exact least-squares solves. Why ALS rather than SGD: each half-step is exact and
needs no learning rate, and the same single-row solve is the online update: a viewer's vector
is re-solved against the fixed video vectors after each of their events (`solve_row`, one
dims x dims system: microseconds), so the next page reflects what they just did, no retrain.
Only observed pairs cost anything per row, via the Gram trick: Y'CuY = Y'Y + Y'(Cu - I)Y.
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Matrix = NDArray[np.float64]


@dataclass(frozen=True)
class Observed:
    """One row's observed pairs: the other side's indices, confidences and preferences."""

    index: NDArray[np.intp]
    confidence: NDArray[np.float64]
    preference: NDArray[np.float64]


def solve_row(fixed: Matrix, gram: Matrix, observed: Observed, reg: float) -> NDArray[np.float64]:
    """The least-squares vector of one row given the other side's fixed vectors and Gram."""
    rows = fixed[observed.index]
    weighted = rows * (observed.confidence - 1.0)[:, None]
    system = gram + rows.T @ weighted + reg * np.eye(gram.shape[0])
    target = rows.T @ (observed.confidence * observed.preference)
    return np.asarray(np.linalg.solve(system, target), dtype=np.float64)


def _solve_side(fixed: Matrix, rows: list[Observed], reg: float) -> Matrix:
    gram = fixed.T @ fixed
    return np.array([solve_row(fixed, gram, row, reg) for row in rows]).reshape(
        len(rows), fixed.shape[1]
    )


def train(
    users: list[Observed],
    videos: list[Observed],
    dims: int,
    reg: float,
    iterations: int,
    rng: np.random.Generator,
) -> tuple[Matrix, Matrix]:
    """Viewer and video factors; `users[i]` indexes videos and `videos[j]` indexes users."""
    user_factors = rng.normal(0.0, 0.1, (len(users), dims))
    video_factors = rng.normal(0.0, 0.1, (len(videos), dims))
    for _ in range(iterations):
        user_factors = _solve_side(video_factors, users, reg)
        video_factors = _solve_side(user_factors, videos, reg)
    return user_factors, video_factors
