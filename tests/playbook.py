"""Playbook tests for sans-IO nodes (after mitmproxy's): feed events, expect commands, in order.

    playbook = Playbook(node)
    playbook >> RequestReceived(...)               # the node handles the event
    playbook << Expect(FetchUpstream, target=URL)  # the next command must match
    playbook.done()                                # and nothing else was commanded

`Expect` compares only the fields it names, so a test states what it is about and no more; a
field given as a callable is a predicate on that field's value.
"""

from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol


class Node(Protocol):
    def handle(self, event: Any) -> list[Any]: ...


class Expect:
    def __init__(self, kind: type, **fields: object) -> None:
        self.kind = kind
        self.fields = fields

    def mismatch(self, command: object) -> str | None:
        if not isinstance(command, self.kind):
            return f"expected {self.kind.__name__}, got {command!r}"
        for name, wanted in self.fields.items():
            actual = getattr(command, name)
            ok = (
                wanted(actual)
                if callable(wanted) and not isinstance(wanted, type)
                else (actual == wanted)
            )
            if not ok:
                return f"{self.kind.__name__}.{name}: expected {wanted!r}, got {actual!r}"
        return None


@dataclass
class Playbook:
    node: Node

    def __post_init__(self) -> None:
        self.pending: deque[object] = deque()
        self.history: list[object] = []

    def __rshift__(self, event: object) -> "Playbook":
        commands = self.node.handle(event)
        self.pending.extend(commands)
        self.history.append(event)
        return self

    def __lshift__(self, expected: Expect) -> Any:
        assert self.pending, f"expected {expected.kind.__name__}, but no command is pending"
        command = self.pending.popleft()
        problem = expected.mismatch(command)
        assert problem is None, problem
        self.history.append(command)
        return command

    def take(self, kind: type) -> Any:
        """The next pending command, which must be a `kind`."""
        return self << Expect(kind)

    def drain(self) -> list[object]:
        """Every pending command, taken unchecked (what the test does not look at)."""
        taken = list(self.pending)
        self.pending.clear()
        self.history.extend(taken)
        return taken

    def done(self) -> None:
        assert not self.pending, f"unexpected commands: {list(self.pending)!r}"
