"""Verified segments a peer keeps to play and to share, in a bounded number of bytes.

Eviction follows what the viewer still needs: segments already played are dropped first
(oldest first), then the ones farthest ahead; a segment is never stored by evicting one that
plays sooner. p2pml keeps VOD segments until memory runs out and evicts nothing by playhead,
so a long session grows to its (multi-GiB) limit (p2pml #159); a budget fit for a phone works here.
"""

from __future__ import annotations

from collections.abc import Sequence


class SegmentStore:
    """Segment bytes by id, at most ``capacity`` bytes in total."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be non-negative, got {capacity}")
        self.capacity = capacity
        self.used = 0
        self._data: dict[int, bytes] = {}

    def __contains__(self, segment_id: object) -> bool:
        return segment_id in self._data

    def __len__(self) -> int:
        return len(self._data)

    def get(self, segment_id: int) -> bytes | None:
        return self._data.get(segment_id)

    def ids(self) -> frozenset[int]:
        return frozenset(self._data)

    def put(
        self, segment_id: int, data: bytes, *, playhead: int, starts: Sequence[float]
    ) -> tuple[bool, list[int]]:
        """Store a segment, evicting as needed; returns (stored, evicted ids).

        ``playhead`` is the id of the segment playing now and ``starts`` the play time of every
        id: segments before the playhead go first, then those playing after ``segment_id``,
        farthest first. If that does not make room, nothing is evicted and nothing stored.
        """
        if segment_id in self._data:
            return True, []
        need = self.used + len(data) - self.capacity
        victims: list[int] = []
        if need > 0:
            behind = sorted((i for i in self._data if i < playhead), key=starts.__getitem__)
            later = sorted(
                (i for i in self._data if i >= playhead and starts[i] > starts[segment_id]),
                key=starts.__getitem__,
                reverse=True,
            )
            for victim in behind + later:
                if need <= 0:
                    break
                victims.append(victim)
                need -= len(self._data[victim])
            if need > 0:
                return False, []
        for victim in victims:
            self.used -= len(self._data.pop(victim))
        self._data[segment_id] = data
        self.used += len(data)
        return True, victims
