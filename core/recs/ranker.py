"""The ranking model: logistic regression on a candidate's features, fitted with numpy.

It predicts the watched fraction of a video (a completion is 1), which is what the feed is
for: the features (see `core.recs.recommender.FEATURES`) are standardised and the weights
fitted by Newton's method with an L2 penalty. Why Newton: a handful of features converge in a
few exact steps with no learning rate to tune, and the fit is deterministic. The labels may be
fractions (soft labels); the cross-entropy is still convex. With no examples at all (an empty
log) the weights stay zero and every candidate scores the same, so the caller's tie-break
(popularity) decides: a cold system ranks by popularity.
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Matrix = NDArray[np.float64]


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    result: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))
    return result


@dataclass(frozen=True)
class LogisticRanker:
    """Standardisation plus weights (the last one is the bias)."""

    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    weights: NDArray[np.float64]

    @classmethod
    def fit(
        cls, features: Matrix, labels: NDArray[np.float64], l2: float, steps: int = 12
    ) -> "LogisticRanker":
        width = features.shape[1]
        if len(features):
            mean = features.mean(axis=0)
            scale = np.where(features.std(axis=0) > 1e-9, features.std(axis=0), 1.0)
        else:
            mean, scale = np.zeros(width), np.ones(width)
        design = np.hstack([(features - mean) / scale, np.ones((len(features), 1))])
        weights = np.zeros(width + 1)
        for _ in range(steps):
            predicted = _sigmoid(design @ weights)
            gradient = design.T @ (predicted - labels) + l2 * weights
            curvature = design.T @ (design * (predicted * (1.0 - predicted))[:, None])
            weights = weights - np.linalg.solve(curvature + l2 * np.eye(width + 1), gradient)
        return cls(mean, scale, weights)

    def predict(self, features: Matrix) -> NDArray[np.float64]:
        """The predicted watched fraction of each row."""
        standard = (features - self.mean) / self.scale
        return _sigmoid(standard @ self.weights[:-1] + self.weights[-1])
