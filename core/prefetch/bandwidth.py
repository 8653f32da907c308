"""Throughput estimate from completed downloads, as hls.js computes its default one.

Two exponentially weighted averages of the samples, with half-lives measured in seconds of
download (a long download says more about the link than a short one), each corrected for its
zero start; the estimate is the lower of the fast and the slow one, so a drop is believed at once
and a spike only once it lasts. Before any sample the estimate is `default_bps`.
"""

from dataclasses import dataclass, field


@dataclass
class _Ewma:
    """An EWMA whose weight per sample is its duration, with zero-bias correction."""

    half_life_s: float
    value: float = 0.0
    total_weight_s: float = 0.0

    def add(self, duration_s: float, sample: float) -> None:
        alpha: float = 0.5 ** (duration_s / self.half_life_s)
        self.value = alpha * self.value + (1.0 - alpha) * sample
        self.total_weight_s += duration_s

    def estimate(self) -> float:
        decayed: float = 0.5 ** (self.total_weight_s / self.half_life_s)
        return self.value / (1.0 - decayed)


@dataclass
class BandwidthEstimator:
    """min(fast, slow) duration-weighted EWMA of throughput (bits/s); hls.js's 3 s / 9 s."""

    fast_half_life_s: float = 3.0
    slow_half_life_s: float = 9.0
    default_bps: float = 500_000.0
    _fast: _Ewma = field(init=False)
    _slow: _Ewma = field(init=False)
    last_sample_bps: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._fast = _Ewma(self.fast_half_life_s)
        self._slow = _Ewma(self.slow_half_life_s)

    def add(self, size_bytes: int, elapsed_s: float) -> None:
        """One download's throughput sample; a zero-length timing cannot say anything."""
        if elapsed_s <= 0 or size_bytes <= 0:
            return
        sample = size_bytes * 8 / elapsed_s
        self._fast.add(elapsed_s, sample)
        self._slow.add(elapsed_s, sample)
        self.last_sample_bps = sample

    def estimate_bps(self) -> float:
        if self.last_sample_bps is None:
            return self.default_bps
        return min(self._fast.estimate(), self._slow.estimate())
