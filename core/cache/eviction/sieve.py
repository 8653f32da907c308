"""SIEVE (Zhang et al., "SIEVE is Simpler than LRU", NSDI'24).

One FIFO queue of objects in insertion order, one "visited" bit per object and a hand. A hit only
sets the bit (no reordering, which is what makes SIEVE cheap). To evict, the hand moves from the
oldest object towards the newest: a visited object has its bit cleared and stays where it is; the
first unvisited object is the victim, and the hand stays at the next object for the following
eviction. Past the newest object the hand wraps around to the oldest. New objects go in at the
newest end, which the hand reaches last in its current sweep.

Representation: the hand splits the queue into the part it has already swept in this round
(`_swept`, from the oldest object up to the hand) and the part it has yet to reach (`_ahead`,
from the hand to the newest object). Both are `OrderedDict`s of key -> visited bit in queue order.
Moving the hand past a retained object moves that object from the front of `_ahead` to the back of
`_swept`, which keeps the queue order; wrapping around makes `_swept` the new `_ahead`. Every step
is O(1) without a hand-written linked list, and each object is passed at most once per sweep, so
eviction is O(1) amortised. `_ahead` is empty only when the whole queue is.
"""

from collections import OrderedDict

from core.cache.eviction import EvictionPolicy, register_eviction_policy


class SievePolicy(EvictionPolicy):
    __slots__ = ("_ahead", "_swept")
    name = "sieve"

    def __init__(self, capacity_bytes: int) -> None:
        self._ahead: OrderedDict[str, bool] = OrderedDict()
        self._swept: OrderedDict[str, bool] = OrderedDict()

    def on_insert(self, key: str, size: int, now: float) -> None:
        self._ahead[key] = False

    def on_hit(self, key: str, now: float) -> None:
        # Assigning to an existing key keeps its place in the queue.
        if key in self._ahead:
            self._ahead[key] = True
        else:
            self._swept[key] = True

    def on_remove(self, key: str) -> None:
        if self._ahead.pop(key, None) is None:
            del self._swept[key]
        elif not self._ahead:
            self._wrap()

    def evict(self, now: float) -> str:
        while True:
            key, visited = self._ahead.popitem(last=False)
            if visited:
                self._swept[key] = False
            if not self._ahead:
                self._wrap()
            if not visited:
                return key

    def _wrap(self) -> None:
        """The hand went past the newest object: it goes back to the oldest at once.

        At once, not at the next eviction: objects inserted in between belong behind the hand,
        or the next eviction would take the newest object before it could be hit.
        """
        self._ahead, self._swept = self._swept, self._ahead

    def __len__(self) -> int:
        return len(self._ahead) + len(self._swept)


register_eviction_policy(SievePolicy.name, SievePolicy)
