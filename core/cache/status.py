"""`Cache-Status` (RFC 9211): how this node handled a request, as one list member.

A member is the node's name followed by parameters: `hit`, or `fwd=<reason>` with
`fwd-status`, plus `stored`, `collapsed`, `ttl` and `detail` where they apply. Members are
immutable; each method returns a new one.
"""

import functools
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class CacheStatus:
    node: str
    is_hit: bool = False
    fwd: str | None = None
    """RFC 9211 section 2.2: bypass, method, uri-miss, vary-miss, miss, request, stale, partial."""
    fwd_status: int | None = None
    ttl: int | None = None
    is_stored: bool = False
    is_collapsed: bool = False
    detail_text: str | None = None

    @classmethod
    def hit(cls, node: str) -> "CacheStatus":
        return cls(node, is_hit=True)

    @classmethod
    def forward(cls, node: str, reason: str, status: int | None) -> "CacheStatus":
        return cls(node, fwd=reason, fwd_status=status)

    def stored(self) -> "CacheStatus":
        return replace(self, is_stored=True)

    def collapsed(self) -> "CacheStatus":
        return replace(self, is_collapsed=True)

    def with_ttl(self, seconds: float) -> "CacheStatus":
        # Section 2.4: negative when the response is stale. Integer seconds, like Age. Built
        # directly rather than by `replace`: this runs on every hit.
        return CacheStatus(
            self.node,
            self.is_hit,
            self.fwd,
            self.fwd_status,
            int(seconds // 1),
            self.is_stored,
            self.is_collapsed,
            self.detail_text,
        )

    def detail(self, text: str) -> "CacheStatus":
        return replace(self, detail_text=text)

    def __str__(self) -> str:
        parts = [_token_or_string(self.node)]
        if self.is_hit:
            parts.append("hit")
        if self.fwd is not None:
            parts.append(f"fwd={self.fwd}")
        if self.fwd_status is not None:
            parts.append(f"fwd-status={self.fwd_status}")
        if self.ttl is not None:
            parts.append(f"ttl={self.ttl}")
        if self.is_stored:
            parts.append("stored")
        if self.is_collapsed:
            parts.append("collapsed")
        if self.detail_text is not None:
            parts.append(f"detail={_token_or_string(self.detail_text)}")
        return "; ".join(parts)


@functools.lru_cache(maxsize=256)
def _token_or_string(value: str) -> str:
    # RFC 8941 structured fields: a token if it is one, else a quoted string.
    if (
        value
        and (value[0].isalpha() or value[0] == "*")
        and all(c.isalnum() or c in "!#$%&'*+-.^_`|~:/" for c in value)
    ):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
