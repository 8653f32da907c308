"""Conditional requests (RFC 9110 section 13): validators, HTTP-dates and evaluation order."""

import calendar
import time
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.http.conditional import (
    MAX_CONDITIONAL_FIELD_LENGTH,
    ConditionalHeaders,
    EntityTag,
    Evaluation,
    Precondition,
    Validators,
    evaluate_preconditions,
    http_date,
    parse_entity_tag,
    parse_entity_tag_list,
    parse_http_date,
    strong_match,
    weak_match,
)

# The example instant of RFC 9110 section 5.6.7: Sun, 06 Nov 1994 08:49:37 GMT.
EXAMPLE = 784111777
# 2025-06-01T00:00:00Z, the "current time" for the two-digit years of RFC 850 dates.
NOW_2025 = 1748736000.0
NOW_2090 = float(calendar.timegm((2090, 6, 1, 0, 0, 0)))

ETAG = '"v1-abc"'
LAST_MODIFIED = EXAMPLE + 0.75  # a store's sub-second mtime; its HTTP-date is EXAMPLE
CURRENT = Validators(etag=ETAG, last_modified=LAST_MODIFIED)

PROCEED = Evaluation(Precondition.PROCEED, honour_range=True)
PROCEED_FULL = Evaluation(Precondition.PROCEED, honour_range=False)
NOT_MODIFIED = Evaluation(Precondition.NOT_MODIFIED, honour_range=False)
FAILED = Evaluation(Precondition.PRECONDITION_FAILED, honour_range=False)


def evaluate(
    method: str = "GET",
    validators: Validators = CURRENT,
    has_range: bool = False,
    **fields: str,
) -> Evaluation:
    return evaluate_preconditions(
        method, ConditionalHeaders(**fields), validators, has_range=has_range, now=NOW_2025
    )


# --- HTTP-dates (section 5.6.7) ----------------------------------------------------------------


class TestHttpDate:
    def test_formats_the_rfc_example(self) -> None:
        assert http_date(EXAMPLE) == "Sun, 06 Nov 1994 08:49:37 GMT"

    def test_drops_fractions_of_a_second(self) -> None:
        assert http_date(EXAMPLE + 0.999) == "Sun, 06 Nov 1994 08:49:37 GMT"

    def test_formats_the_epoch_and_times_before_it(self) -> None:
        assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
        assert http_date(-1) == "Wed, 31 Dec 1969 23:59:59 GMT"

    def test_matches_the_standard_library(self) -> None:
        # email.utils formats the same IMF-fixdate; it is the independent reference here.
        for moment in (0, EXAMPLE, 951782400, 1709164800, 4102444799):
            assert http_date(moment) == formatdate(moment, usegmt=True)

    @pytest.mark.parametrize("moment", [-(10**12), 10**12])
    def test_rejects_years_without_four_digits(self, moment: int) -> None:
        with pytest.raises(ValueError, match="HTTP-date"):
            http_date(moment)


class TestParseHttpDate:
    @pytest.mark.parametrize(
        "value",
        [
            "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
            "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850 format
            "Sun Nov  6 08:49:37 1994",  # ANSI C's asctime() format
            "  Sun, 06 Nov 1994 08:49:37 GMT\t",  # OWS around a field value is not part of it
        ],
    )
    def test_all_three_formats(self, value: str) -> None:
        assert parse_http_date(value, now=NOW_2025) == EXAMPLE

    def test_asctime_with_a_two_digit_day(self) -> None:
        assert parse_http_date("Thu Nov 16 08:49:37 1994", now=NOW_2025) == EXAMPLE + 10 * 86400

    @pytest.mark.parametrize(
        ("two_digits", "now", "year"),
        [
            ("94", NOW_2025, 1994),
            ("25", NOW_2025, 2025),
            ("30", NOW_2025, 2030),
            ("75", NOW_2025, 2075),  # 50 years ahead: not *more* than 50, so the future
            ("76", NOW_2025, 1976),  # 51 years ahead: the most recent past year instead
            ("00", NOW_2025, 2000),
            ("10", NOW_2090, 2110),  # 20 years ahead of 2090
            ("41", NOW_2090, 2041),
        ],
    )
    def test_rfc850_two_digit_years(self, two_digits: str, now: float, year: int) -> None:
        parsed = parse_http_date(f"Monday, 01-Jan-{two_digits} 00:00:00 GMT", now=now)
        assert parsed == calendar.timegm((year, 1, 1, 0, 0, 0))

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("Thu, 29 Feb 2024 12:00:00 GMT", calendar.timegm((2024, 2, 29, 12, 0, 0))),
            ("Fri, 31 Dec 9999 23:59:59 GMT", calendar.timegm((9999, 12, 31, 23, 59, 59))),
            # A leap second is allowed by the grammar; it is the next minute's first second.
            ("Wed, 31 Dec 2008 23:59:60 GMT", calendar.timegm((2009, 1, 1, 0, 0, 0))),
            # The day name is not checked against the date (there is no rule for a mismatch).
            ("Mon, 06 Nov 1994 08:49:37 GMT", EXAMPLE),
        ],
    )
    def test_edge_values(self, value: str, expected: int) -> None:
        assert parse_http_date(value, now=NOW_2025) == expected

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "yesterday",
            "784111777",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",  # names are case-sensitive (%s"..." in the grammar)
            "sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06 Nov 1994 08:49:37 GMT",
            "Sun,  06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",  # asctime pads a one-digit day with a space
            "Sun Nov 06 08:49:37 1994 GMT",
            "Thu, 29 Feb 2023 12:00:00 GMT",  # 2023 is not a leap year
            "Mon, 31 Apr 2024 12:00:00 GMT",
            "Mon, 00 Apr 2024 12:00:00 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 08:49:61 GMT",
            "Sat, 01 Jan 0000 00:00:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",  # a list of dates
            "Sun, \u0660\u0666 Nov 1994 08:49:37 GMT",  # non-ASCII digits
        ],
    )
    def test_invalid_dates(self, value: str) -> None:
        assert parse_http_date(value, now=NOW_2025) is None

    @given(st.integers(min_value=-30610224000, max_value=253402300799))
    def test_formatted_dates_round_trip(self, moment: int) -> None:
        assert parse_http_date(http_date(moment), now=NOW_2025) == moment

    @given(st.integers(min_value=-30610224000, max_value=253402300799))
    def test_asctime_dates_parse_like_the_c_library_formats_them(self, moment: int) -> None:
        asctime = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(moment))
        assert parse_http_date(asctime, now=NOW_2025) == moment

    @given(st.integers(min_value=calendar.timegm((1976, 1, 1, 0, 0, 0)), max_value=3313526399))
    def test_rfc850_dates_within_the_window_round_trip(self, moment: int) -> None:
        # 1976-01-01 to 2074-12-31: the years that two digits name, seen from mid-2025.
        rfc850 = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(moment))
        assert parse_http_date(rfc850, now=NOW_2025) == moment

    @given(st.text(max_size=60), st.floats(min_value=-1e10, max_value=1e11))
    def test_arbitrary_text_never_raises(self, value: str, now: float) -> None:
        parsed = parse_http_date(value, now=now)
        assert parsed is None or isinstance(parsed, int)


# --- entity tags (section 8.8.3) ---------------------------------------------------------------


class TestEntityTags:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ('"xyzzy"', EntityTag('"xyzzy"', weak=False)),
            ('W/"xyzzy"', EntityTag('"xyzzy"', weak=True)),
            ('""', EntityTag('""', weak=False)),
            ('"a,b"', EntityTag('"a,b"', weak=False)),
            (' "x" ', EntityTag('"x"', weak=False)),
        ],
    )
    def test_parse(self, value: str, expected: EntityTag) -> None:
        assert parse_entity_tag(value) == expected

    @pytest.mark.parametrize(
        "value", ["xyzzy", '"xyzzy', 'w/"x"', 'W/ "x"', '"x" "y"', '"a"b"', '"sp ace"', "*", ""]
    )
    def test_parse_rejects(self, value: str) -> None:
        assert parse_entity_tag(value) is None

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ('"a"', ['"a"']),
            ('"a", "b",W/"c"', ['"a"', '"b"', 'W/"c"']),
            ('"a,b", "c"', ['"a,b"', '"c"']),  # a comma is a valid etagc
            (' , "a" ,, "b" , ', ['"a"', '"b"']),  # empty elements are skipped
            ("", []),
            (" , ", []),
        ],
    )
    def test_parse_list(self, value: str, expected: list[str]) -> None:
        tags = parse_entity_tag_list(value)
        assert tags is not None
        assert [("W/" if tag.weak else "") + tag.opaque_tag for tag in tags] == expected

    @pytest.mark.parametrize(
        "value", ['"a" "b"', '"a"b', "a, b", '"a", b', '"a", "b', '"a",W/', '*, "a"']
    )
    def test_parse_list_rejects(self, value: str) -> None:
        assert parse_entity_tag_list(value) is None

    def test_parse_list_rejects_overlong_fields(self) -> None:
        value = ", ".join(['"x"'] * (MAX_CONDITIONAL_FIELD_LENGTH // 5 + 1))
        assert len(value) > MAX_CONDITIONAL_FIELD_LENGTH
        assert parse_entity_tag_list(value) is None

    # The comparison table of section 8.8.3.2.
    @pytest.mark.parametrize(
        ("a", "b", "strong", "weak"),
        [
            ('W/"1"', 'W/"1"', False, True),
            ('W/"1"', 'W/"2"', False, False),
            ('W/"1"', '"1"', False, True),
            ('"1"', '"1"', True, True),
        ],
    )
    def test_comparison_table(self, a: str, b: str, strong: bool, weak: bool) -> None:
        tag_a, tag_b = parse_entity_tag(a), parse_entity_tag(b)
        assert tag_a is not None and tag_b is not None
        assert strong_match(tag_a, tag_b) is strong
        assert strong_match(tag_b, tag_a) is strong
        assert weak_match(tag_a, tag_b) is weak
        assert weak_match(tag_b, tag_a) is weak

    @given(st.text(alphabet='ab"W/', max_size=8), st.text(alphabet='ab"W/', max_size=8))
    def test_strong_match_implies_weak_match(self, a: str, b: str) -> None:
        tag_a, tag_b = parse_entity_tag(a), parse_entity_tag(b)
        if tag_a is not None and tag_b is not None and strong_match(tag_a, tag_b):
            assert weak_match(tag_a, tag_b)


# --- evaluation (sections 13.1 and 13.2) -------------------------------------------------------


class TestNoPreconditions:
    def test_get_proceeds_and_may_use_a_range(self) -> None:
        assert evaluate() == PROCEED
        assert evaluate(has_range=True) == PROCEED

    def test_range_is_for_get_only(self) -> None:
        # Section 14.2: GET is the only method for which range handling is defined.
        assert evaluate("HEAD", has_range=True) == PROCEED_FULL
        assert evaluate("POST", has_range=True) == PROCEED_FULL


class TestIfMatch:
    @pytest.mark.parametrize("value", [ETAG, "*", f'"other", {ETAG}', f" {ETAG} "])
    def test_true_proceeds(self, value: str) -> None:
        assert evaluate(if_match=value) == PROCEED

    @pytest.mark.parametrize(
        "value",
        [
            '"other"',
            f"W/{ETAG}",  # If-Match uses the strong comparison
            "v1-abc",  # malformed: matches nothing
            "",
        ],
    )
    def test_false_fails(self, value: str) -> None:
        assert evaluate(if_match=value) == FAILED
        assert evaluate("HEAD", if_match=value) == FAILED

    def test_weak_current_tag_never_matches(self) -> None:
        weak = Validators(etag=f"W/{ETAG}", last_modified=LAST_MODIFIED)
        assert evaluate(validators=weak, if_match=ETAG) == FAILED
        assert evaluate(validators=weak, if_match="*") == PROCEED

    def test_representation_without_etag_fails_unless_star(self) -> None:
        untagged = Validators(etag=None, last_modified=LAST_MODIFIED)
        assert evaluate(validators=untagged, if_match=ETAG) == FAILED
        assert evaluate(validators=untagged, if_match="*") == PROCEED

    def test_if_unmodified_since_is_ignored_when_if_match_is_present(self) -> None:
        long_ago = http_date(EXAMPLE - 3600)
        assert evaluate(if_unmodified_since=long_ago) == FAILED
        assert evaluate(if_match=ETAG, if_unmodified_since=long_ago) == PROCEED

    def test_a_failed_if_match_beats_if_none_match(self) -> None:
        # Step 1 comes before step 3: 412, not 304.
        assert evaluate(if_match='"other"', if_none_match=ETAG) == FAILED


class TestIfUnmodifiedSince:
    @pytest.mark.parametrize("date", [http_date(EXAMPLE), http_date(EXAMPLE + 60)])
    def test_unmodified_since_proceeds(self, date: str) -> None:
        # The sub-second mtime counts as the whole second that Last-Modified shows.
        assert evaluate(if_unmodified_since=date) == PROCEED

    def test_modified_since_fails(self) -> None:
        assert evaluate(if_unmodified_since=http_date(EXAMPLE - 1)) == FAILED

    @pytest.mark.parametrize("value", ["not a date", "784111777", ""])
    def test_invalid_date_is_ignored(self, value: str) -> None:
        assert evaluate(if_unmodified_since=value) == PROCEED

    def test_ignored_without_a_modification_date(self) -> None:
        undated = Validators(etag=ETAG, last_modified=None)
        assert evaluate(validators=undated, if_unmodified_since=http_date(0)) == PROCEED

    def test_failure_beats_if_none_match_and_if_modified_since(self) -> None:
        assert (
            evaluate(
                if_unmodified_since=http_date(EXAMPLE - 1),
                if_none_match=ETAG,
                if_modified_since=http_date(EXAMPLE),
            )
            == FAILED
        )


class TestIfNoneMatch:
    @pytest.mark.parametrize(
        "value",
        [
            ETAG,
            f"W/{ETAG}",  # If-None-Match uses the weak comparison
            "*",
            f'"a", "b", {ETAG}',
        ],
    )
    def test_match_is_not_modified_for_get_and_head(self, value: str) -> None:
        assert evaluate(if_none_match=value) == NOT_MODIFIED
        assert evaluate("HEAD", if_none_match=value) == NOT_MODIFIED
        assert evaluate(has_range=True, if_none_match=value) == NOT_MODIFIED

    def test_match_fails_other_methods(self) -> None:
        assert evaluate("DELETE", if_none_match=ETAG) == FAILED

    @pytest.mark.parametrize("value", ['"other"', 'W/"other"', "v1-abc", ""])
    def test_no_match_proceeds(self, value: str) -> None:
        assert evaluate(if_none_match=value) == PROCEED

    def test_weak_current_tag_matches_weakly(self) -> None:
        weak = Validators(etag=f"W/{ETAG}", last_modified=LAST_MODIFIED)
        assert evaluate(validators=weak, if_none_match=ETAG) == NOT_MODIFIED

    def test_if_modified_since_is_ignored_when_if_none_match_is_present(self) -> None:
        # Section 13.1.3: If-None-Match, a more accurate validator, takes over.
        assert evaluate(if_modified_since=http_date(EXAMPLE)) == NOT_MODIFIED
        assert evaluate(if_none_match='"other"', if_modified_since=http_date(EXAMPLE)) == PROCEED


class TestIfModifiedSince:
    @pytest.mark.parametrize("date", [http_date(EXAMPLE), http_date(EXAMPLE + 3600)])
    def test_not_modified_since(self, date: str) -> None:
        assert evaluate(if_modified_since=date) == NOT_MODIFIED
        assert evaluate("HEAD", if_modified_since=date) == NOT_MODIFIED

    def test_modified_since_proceeds(self) -> None:
        assert evaluate(if_modified_since=http_date(EXAMPLE - 1)) == PROCEED

    def test_all_date_formats_are_accepted(self) -> None:
        assert evaluate(if_modified_since="Sunday, 06-Nov-94 08:49:37 GMT") == NOT_MODIFIED
        assert evaluate(if_modified_since="Sun Nov  6 08:49:37 1994") == NOT_MODIFIED

    @pytest.mark.parametrize(
        "value",
        ["garbage", "", f"{http_date(EXAMPLE)}, {http_date(EXAMPLE)}"],  # a list is invalid too
    )
    def test_invalid_date_is_ignored(self, value: str) -> None:
        assert evaluate(if_modified_since=value) == PROCEED

    def test_only_for_get_and_head(self) -> None:
        assert evaluate("POST", if_modified_since=http_date(EXAMPLE)) == PROCEED_FULL

    def test_ignored_without_a_modification_date(self) -> None:
        undated = Validators(etag=ETAG, last_modified=None)
        assert evaluate(validators=undated, if_modified_since=http_date(EXAMPLE)) == PROCEED


class TestIfRange:
    @pytest.mark.parametrize(
        "value",
        [ETAG, http_date(EXAMPLE), "Sunday, 06-Nov-94 08:49:37 GMT", f" {ETAG} "],
    )
    def test_true_honours_the_range(self, value: str) -> None:
        assert evaluate(has_range=True, if_range=value) == PROCEED

    @pytest.mark.parametrize(
        "value",
        [
            '"other"',
            f"W/{ETAG}",  # a weak tag never passes the strong comparison
            http_date(EXAMPLE - 1),  # the date must match Last-Modified exactly...
            http_date(EXAMPLE + 1),  # ... a later date is not good enough either
            "garbage",
            f"{ETAG}, {ETAG}",  # If-Range holds one validator, not a list
            "",
        ],
    )
    def test_false_sends_the_whole_representation(self, value: str) -> None:
        assert evaluate(has_range=True, if_range=value) == PROCEED_FULL

    def test_without_validators_the_range_is_not_honoured(self) -> None:
        bare = Validators(etag=None, last_modified=None)
        assert evaluate(validators=bare, has_range=True, if_range=ETAG) == PROCEED_FULL
        assert evaluate(validators=bare, has_range=True, if_range=http_date(0)) == PROCEED_FULL

    def test_ignored_without_a_range(self) -> None:
        assert evaluate(if_range='"other"') == PROCEED

    def test_comes_after_the_other_preconditions(self) -> None:
        assert evaluate(has_range=True, if_range=ETAG, if_none_match=ETAG) == NOT_MODIFIED
        assert evaluate(has_range=True, if_range=ETAG, if_match='"other"') == FAILED
