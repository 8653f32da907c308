"""Byte ranges (RFC 9110 section 14): parsing, satisfiability, multi-range policy, limits."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.http.ranges import (
    MAX_RANGE_FIELD_LENGTH,
    MAX_RANGES,
    IgnoredRange,
    NoRange,
    SatisfiableRange,
    UnsatisfiableRange,
    content_range,
    parse_range,
)


def test_absent_field_is_no_range() -> None:
    assert parse_range(None, 100) == NoRange()


@pytest.mark.parametrize(
    ("field", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=0-99", 0, 99),
        ("bytes=10-19", 10, 19),
        ("bytes=10-", 10, 99),
        ("bytes=99-", 99, 99),
        ("bytes=-1", 99, 99),
        ("bytes=-10", 90, 99),
        # Section 14.1.2: a suffix longer than the representation selects all of it.
        ("bytes=-500", 0, 99),
        # Section 14.1.2: a last-pos beyond the end is clamped to the last byte.
        ("bytes=50-1000", 50, 99),
        ("bytes=0-99999999999999999999999999", 0, 99),
    ],
)
def test_single_satisfiable_range(field: str, start: int, end: int) -> None:
    decision = parse_range(field, 100)
    assert decision == SatisfiableRange(start, end, 100)
    assert isinstance(decision, SatisfiableRange)
    assert decision.length == end - start + 1
    assert decision.content_range == f"bytes {start}-{end}/100"


@pytest.mark.parametrize(
    "field",
    [
        "BYTES=10-19",
        "Bytes=10-19",
        " bytes=10-19 ",
        "bytes = 10-19",
        "bytes=\t10-19",
        "bytes=10 - 19",
        # Section 5.6.1.2: empty list elements are skipped.
        "bytes=,10-19",
        "bytes=10-19,",
        "bytes= , 10-19 , ,",
    ],
)
def test_whitespace_case_and_empty_elements_are_tolerated(field: str) -> None:
    assert parse_range(field, 100) == SatisfiableRange(10, 19, 100)


@pytest.mark.parametrize(
    "field",
    [
        # Section 14.1.2: unsatisfiable when first-pos is not less than the length...
        "bytes=100-",
        "bytes=100-200",
        "bytes=5000-5001",
        # ... or when a suffix-range has a zero suffix-length.
        "bytes=-0",
        # A set is unsatisfiable only if every range in it is.
        "bytes=100-150,200-",
        "bytes=-0,100-",
    ],
)
def test_unsatisfiable(field: str) -> None:
    decision = parse_range(field, 100)
    assert decision == UnsatisfiableRange(100)
    assert isinstance(decision, UnsatisfiableRange)
    assert decision.content_range == "bytes */100"


@pytest.mark.parametrize(
    "field",
    [
        "",
        "bytes",
        "bytes=",
        "bytes=,",
        "bytes=abc",
        "bytes=1-2-3",
        "bytes=--5",
        "bytes=-",
        "bytes=+5-10",
        "bytes=0x10-20",
        "bytes=1.5-3",
        # Section 14.1.2: last-pos less than first-pos is invalid, not unsatisfiable.
        "bytes=20-10",
        # One invalid spec invalidates the whole ranges-specifier (section 14.1.1).
        "bytes=0-10,oops",
        "bytes=0-10,20-5",
        "bytes=0-10;20-30",
        # Non-ASCII digits are not DIGIT.
        "bytes=\u0661-\u0662",
        "=0-10",
    ],
)
def test_syntactically_invalid_field_is_ignored(field: str) -> None:
    assert isinstance(parse_range(field, 100), IgnoredRange)


@pytest.mark.parametrize("field", ["items=0-10", "none", "lines=1-2", "bytesx=0-1", "byte=0-1"])
def test_unknown_units_are_ignored(field: str) -> None:
    decision = parse_range(field, 100)
    assert isinstance(decision, IgnoredRange)


def test_invalid_spec_beats_unsatisfiable() -> None:
    # Invalid syntax is ignored (200) even when the other specs would all be unsatisfiable.
    assert isinstance(parse_range("bytes=500-,x", 100), IgnoredRange)


@pytest.mark.parametrize("field", ["bytes=0-0", "bytes=0-", "bytes=-1", "bytes=5-10", "bytes=-0"])
def test_zero_length_representation_ignores_the_range(field: str) -> None:
    assert isinstance(parse_range(field, 0), IgnoredRange)


def test_zero_length_representation_still_ignores_invalid_fields() -> None:
    assert isinstance(parse_range("bytes=junk", 0), IgnoredRange)


class TestMultipleRanges:
    """The documented policy: coalesce into one span if possible, else 200, never first-only."""

    @pytest.mark.parametrize(
        ("field", "start", "end"),
        [
            ("bytes=0-9,10-19", 0, 19),  # adjacent
            ("bytes=10-19,0-9", 0, 19),  # adjacent, out of order
            ("bytes=0-15,10-19", 0, 19),  # overlapping
            ("bytes=0-50,10-20", 0, 50),  # contained
            ("bytes=0-9,0-9", 0, 9),  # duplicate
            ("bytes=90-,-5", 90, 99),  # int-range and suffix-range overlap
            ("bytes=0-9,100-200", 0, 9),  # the unsatisfiable range contributes nothing
            ("bytes=0-9,10-19,20-29,30-", 0, 99),
        ],
    )
    def test_contiguous_ranges_coalesce_into_one(self, field: str, start: int, end: int) -> None:
        assert parse_range(field, 100) == SatisfiableRange(start, end, 100)

    @pytest.mark.parametrize(
        "field", ["bytes=0-9,20-29", "bytes=0-0,-1", "bytes=50-59,0-9", "bytes=0-9,11-19"]
    )
    def test_disjoint_ranges_are_answered_with_the_whole_representation(self, field: str) -> None:
        assert isinstance(parse_range(field, 100), IgnoredRange)


class TestHostileInput:
    def test_too_many_ranges_are_ignored(self) -> None:
        field = "bytes=" + ",".join("0-0" for _ in range(MAX_RANGES + 1))
        assert len(field) <= MAX_RANGE_FIELD_LENGTH
        assert isinstance(parse_range(field, 100), IgnoredRange)

    def test_up_to_the_limit_of_ranges_is_served(self) -> None:
        field = "bytes=" + ",".join("0-0" for _ in range(MAX_RANGES))
        assert parse_range(field, 100) == SatisfiableRange(0, 0, 100)

    def test_overlong_field_is_ignored(self) -> None:
        field = "bytes=0-" + "9" * MAX_RANGE_FIELD_LENGTH
        assert isinstance(parse_range(field, 100), IgnoredRange)

    def test_huge_field_is_rejected_quickly(self) -> None:
        assert isinstance(parse_range("bytes=" + "0-0," * 1_000_000, 100), IgnoredRange)


def test_negative_length_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_range("bytes=0-1", -1)


@pytest.mark.parametrize(
    ("start", "end", "length", "expected"),
    [(0, 0, 1, "bytes 0-0/1"), (0, 99, 100, "bytes 0-99/100"), (5, 9, 10, "bytes 5-9/10")],
)
def test_content_range(start: int, end: int, length: int, expected: str) -> None:
    assert content_range(start, end, length) == expected


@pytest.mark.parametrize(("start", "end", "length"), [(-1, 0, 10), (5, 4, 10), (0, 10, 10)])
def test_content_range_rejects_impossible_ranges(start: int, end: int, length: int) -> None:
    with pytest.raises(ValueError, match="invalid byte range"):
        content_range(start, end, length)


# --- properties --------------------------------------------------------------------------------

_positions = st.integers(min_value=0, max_value=10**12)
_lengths = st.integers(min_value=0, max_value=10**12)


@given(first=_positions, last=_positions, length=_lengths)
def test_int_range_property(first: int, last: int, length: int) -> None:
    first, last = min(first, last), max(first, last)
    decision = parse_range(f"bytes={first}-{last}", length)
    if length == 0:
        assert isinstance(decision, IgnoredRange)
    elif first >= length:
        assert decision == UnsatisfiableRange(length)
    else:
        assert isinstance(decision, SatisfiableRange)
        assert 0 <= decision.start <= decision.end < length
        assert decision.start == first
        assert decision.length == min(last, length - 1) - first + 1


@given(suffix=_positions, length=_lengths)
def test_suffix_range_property(suffix: int, length: int) -> None:
    decision = parse_range(f"bytes=-{suffix}", length)
    if length == 0:
        assert isinstance(decision, IgnoredRange)
    elif suffix == 0:
        assert decision == UnsatisfiableRange(length)
    else:
        assert isinstance(decision, SatisfiableRange)
        assert 0 <= decision.start <= decision.end == length - 1
        assert decision.length == min(suffix, length)


def _specs(positions: st.SearchStrategy[int]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(positions, positions).map(lambda p: f"{min(p)}-{max(p)}"),
        positions.map(lambda first: f"{first}-"),
        positions.map(lambda suffix: f"-{suffix}"),
    )


@given(specs=st.lists(_specs(_positions), min_size=1, max_size=MAX_RANGES), length=_lengths)
def test_any_satisfiable_decision_lies_inside_the_representation(
    specs: list[str], length: int
) -> None:
    decision = parse_range("bytes=" + ",".join(specs), length)
    if isinstance(decision, SatisfiableRange):
        assert 0 <= decision.start <= decision.end < length
        assert decision.complete_length == length
        assert decision.length == decision.end - decision.start + 1
        assert content_range(decision.start, decision.end, length) == decision.content_range
    else:
        assert isinstance(decision, IgnoredRange | UnsatisfiableRange)


@given(
    specs=st.lists(_specs(st.integers(0, 300)), min_size=1, max_size=MAX_RANGES),
    length=st.integers(0, 250),
)
def test_multi_range_policy_matches_a_byte_set_model(specs: list[str], length: int) -> None:
    """206 exactly when the requested bytes form one span, 416 when there are none, else 200."""
    wanted: set[int] = set()
    for spec in specs:
        # The bytes each spec selects, by the definitions of section 14.1.2.
        first_text, _, last_text = spec.partition("-")
        if first_text:
            low, high = int(first_text), int(last_text) if last_text else length - 1
        else:
            low, high = length - int(last_text), length - 1
        wanted.update(range(max(low, 0), min(high, length - 1) + 1))
    decision = parse_range("bytes=" + ",".join(specs), length)
    if length == 0:
        assert isinstance(decision, IgnoredRange)
    elif not wanted:
        assert decision == UnsatisfiableRange(length)
    elif wanted == set(range(min(wanted), max(wanted) + 1)):
        assert decision == SatisfiableRange(min(wanted), max(wanted), length)
    else:
        assert isinstance(decision, IgnoredRange)


@given(
    field=st.one_of(
        st.text(max_size=200),
        st.text(alphabet="0123456789-=, \t", max_size=60).map(lambda tail: "bytes=" + tail),
    ),
    length=_lengths,
)
def test_arbitrary_text_never_raises(field: str, length: int) -> None:
    decision = parse_range(field, length)
    if isinstance(decision, SatisfiableRange):
        assert 0 <= decision.start <= decision.end < length
