"""Byte-range requests (RFC 9110 section 14), decided on header values and plain integers.

`parse_range` turns a `Range` field value and the length of the selected representation into one
of four decisions the shell can act on without looking at the header again:

- `NoRange`: the request had no Range field; send 200 with the whole representation.
- `IgnoredRange`: the field is present but is not honoured; send 200 with the whole
  representation, exactly as if it were absent. RFC 9110 section 14.2 lets a server ignore a
  Range field, and asks it to ignore one with an unknown range unit; this module also ignores
  invalid syntax, hostile sizes, multiple disjoint ranges and ranges of an empty representation.
- `SatisfiableRange`: send 206 with `content_range(...)` and exactly `length` bytes.
- `UnsatisfiableRange`: send 416 with `Content-Range: bytes */LEN` (section 15.5.17).

Multiple ranges: Shoal never sends `multipart/byteranges`. HLS players ask for one range at a
time, and a multipart body is a different representation that every cache tier would have to
assemble and store. Section 14.2 allows a server to coalesce ranges that overlap or touch and to
ignore the Range field altogether, so a multi-range request is answered as follows:

- if no range in the set is satisfiable, 416 (section 14.2: the set as a whole is unsatisfiable);
- if the satisfiable ranges overlap or touch so that together they cover one contiguous span,
  206 with that single span (no byte is sent that was not asked for);
- otherwise, 200 with the whole representation.

A server never serves only the first range of several: that would silently drop the rest.
"""

import re
from dataclasses import dataclass

# A legitimate Range field is short: a player asks for one or two spans. Anything longer, or
# with more ranges, is a broken client or an attempt to make the server do work (section 14.2
# names "many small ranges" as a denial-of-service indication), so it is ignored: 200 full.
MAX_RANGE_FIELD_LENGTH = 1024
MAX_RANGES = 16

# Section 14.1.1: range-unit is a token compared case-insensitively; section 5.6.1 allows OWS
# (spaces and horizontal tabs) around list elements. Whitespace around "=" and "-" is not in the
# grammar but is tolerated: being lenient there is harmless because the alternative is ignoring.
_OWS = " \t"
# Positions are 1*DIGIT in ASCII only (RFC 5234 DIGIT): `\d` would also accept other scripts'
# digits. Their size needs no separate bound: the field length limit above caps it.
_INT_RANGE = re.compile(r"([0-9]+)[ \t]*-[ \t]*([0-9]+)?")
_SUFFIX_RANGE = re.compile(r"-[ \t]*([0-9]+)")


@dataclass(frozen=True)
class NoRange:
    """The request has no Range field: serve the whole representation with 200."""


@dataclass(frozen=True)
class IgnoredRange:
    """The Range field is not honoured: serve the whole representation with 200."""

    reason: str


@dataclass(frozen=True)
class SatisfiableRange:
    """Serve bytes `start` to `end` inclusive of a `complete_length`-byte representation (206)."""

    start: int
    end: int
    complete_length: int

    @property
    def length(self) -> int:
        """The number of bytes in the partial response's content (its Content-Length)."""
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return content_range(self.start, self.end, self.complete_length)


@dataclass(frozen=True)
class UnsatisfiableRange:
    """No requested range overlaps the representation: answer 416 (section 15.5.17)."""

    complete_length: int

    @property
    def content_range(self) -> str:
        """The unsatisfied-range form `bytes */LEN` that a 416 carries (section 14.4)."""
        return f"bytes */{self.complete_length}"


RangeDecision = NoRange | IgnoredRange | SatisfiableRange | UnsatisfiableRange


def content_range(start: int, end: int, complete_length: int) -> str:
    """The Content-Range value of a single-part 206 (section 14.4): `bytes START-END/LENGTH`."""
    if not 0 <= start <= end < complete_length:
        raise ValueError(f"invalid byte range {start}-{end} of a {complete_length}-byte object")
    return f"bytes {start}-{end}/{complete_length}"


def parse_range(field_value: str | None, complete_length: int) -> RangeDecision:
    """Decide how to answer a Range field (None when absent) for a representation's length.

    The caller decides first whether ranges apply at all: only to GET (section 14.2), and not when
    an If-Range condition is false (section 13.1.5); `core.http.conditional` answers both.
    """
    if complete_length < 0:
        raise ValueError(f"negative representation length {complete_length}")
    if field_value is None:
        return NoRange()
    if len(field_value) > MAX_RANGE_FIELD_LENGTH:
        return IgnoredRange(f"Range field longer than {MAX_RANGE_FIELD_LENGTH} characters")
    unit, equals, range_set = field_value.partition("=")
    if not equals:
        return IgnoredRange("Range field has no '='")
    # Section 14.2: a server MUST ignore a Range field whose unit it does not understand.
    if unit.strip(_OWS).lower() != "bytes":
        return IgnoredRange(f"unsupported range unit {unit.strip(_OWS)[:20]!r}")
    # Section 5.6.1.2: recipients accept and skip empty list elements such as "0-1, ,2-3".
    specs = [spec.strip(_OWS) for spec in range_set.split(",")]
    specs = [spec for spec in specs if spec]
    if not specs:
        return IgnoredRange("empty range set")
    if len(specs) > MAX_RANGES:
        return IgnoredRange(f"more than {MAX_RANGES} ranges")
    resolved: list[tuple[int, int]] = []
    for spec in specs:
        bounds = _resolve_spec(spec, complete_length)
        if bounds is None:
            # Section 14.1.1: one invalid range-spec makes the whole ranges-specifier invalid.
            return IgnoredRange(f"invalid range-spec {spec[:40]!r}")
        resolved.extend(bounds)
    # Section 14.2: a server MAY ignore the Range field when the representation has no content.
    # Sending 200 is also the only honest answer: no Content-Range can describe zero bytes.
    if complete_length == 0:
        return IgnoredRange("the representation is empty")
    if not resolved:
        return UnsatisfiableRange(complete_length)
    span = _coalesce(resolved)
    if span is None:
        return IgnoredRange("multiple disjoint ranges (multipart/byteranges is not offered)")
    start, end = span
    return SatisfiableRange(start, end, complete_length)


def _resolve_spec(spec: str, complete_length: int) -> list[tuple[int, int]] | None:
    """Check one range-spec: None if invalid, [] if unsatisfiable, else its clamped bounds."""
    suffix = _SUFFIX_RANGE.fullmatch(spec)
    if suffix is not None:
        suffix_length = int(suffix.group(1))
        # Section 14.1.2: a suffix-range is satisfiable if its suffix-length is non-zero; a
        # suffix longer than the representation selects the whole representation.
        if suffix_length == 0 or complete_length == 0:
            return []
        return [(max(complete_length - suffix_length, 0), complete_length - 1)]
    int_range = _INT_RANGE.fullmatch(spec)
    if int_range is None:
        return None
    first = int(int_range.group(1))
    last_text = int_range.group(2)
    last = complete_length - 1 if last_text is None else int(last_text)
    # Section 14.1.2: an int-range with last-pos less than first-pos is invalid.
    if last_text is not None and last < first:
        return None
    # Section 14.1.2: satisfiable iff first-pos is less than the length; a last-pos at or beyond
    # the end is replaced by the position of the last byte.
    if first >= complete_length:
        return []
    return [(first, min(last, complete_length - 1))]


def _coalesce(ranges: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The single span covered by overlapping or adjacent ranges, or None if there is a gap."""
    ordered = sorted(ranges)
    start, end = ordered[0]
    for next_start, next_end in ordered[1:]:
        if next_start > end + 1:
            return None
        end = max(end, next_end)
    return start, end


__all__ = [
    "MAX_RANGES",
    "MAX_RANGE_FIELD_LENGTH",
    "IgnoredRange",
    "NoRange",
    "RangeDecision",
    "SatisfiableRange",
    "UnsatisfiableRange",
    "content_range",
    "parse_range",
]
