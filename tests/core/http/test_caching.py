"""HTTP caching for a shared cache (RFC 9111, RFC 5861), tested section by section.

Each test's name starts with the RFC 9111 section it checks (`rfc9110_...` and `rfc5861_...`
for the other two documents); decisions of `core.http.caching` where the RFCs leave a choice are
named `decision_...`.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.http.caching import (
    MAX_DELTA_SECONDS,
    MAX_FIELD_LENGTH,
    MAX_VARY_FIELDS,
    CacheDirectives,
    Freshness,
    FreshnessState,
    StoredResponseMeta,
    age_header_value,
    combine_fields,
    current_age,
    current_age_of,
    date_and_age,
    evaluate_stored,
    freshen_headers,
    freshness_lifetime,
    freshness_lifetime_of,
    has_explicit_freshness,
    invalidated_uris,
    is_storable,
    parse_cache_control,
    secondary_key,
    selects_stored,
    validators_for_revalidation,
    vary_field_names,
    vary_matches,
)
from core.http.conditional import http_date

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
FRESH = FreshnessState.FRESH
SWR = FreshnessState.STALE_WHILE_REVALIDATE
REVALIDATE = FreshnessState.STALE_REVALIDATE


def d(seconds: float) -> str:
    """The HTTP-date `seconds` after T0."""
    return http_date(T0 + seconds)


def lifetime(headers: dict[str, str], status: int = 200, received: float = T0) -> float:
    return freshness_lifetime(status, headers, response_time=received)


def stored(
    cache_control: str | None = None,
    *,
    status: int = 200,
    request_time: float = T0,
    response_time: float = T0,
    lifetime_floor: float | None = None,
    **fields: str,
) -> StoredResponseMeta:
    """A response stored at T0 with Date T0, plus `fields` (underscores become dashes)."""
    headers = {"date": http_date(response_time)}
    if cache_control is not None:
        headers["cache-control"] = cache_control
    headers.update({name.replace("_", "-"): value for name, value in fields.items()})
    return StoredResponseMeta(
        status=status,
        headers=headers,
        request_time=request_time,
        response_time=response_time,
        lifetime_floor=lifetime_floor,
    )


def evaluate(meta: StoredResponseMeta, at: float, request_cc: str | None = None) -> Freshness:
    request = {} if request_cc is None else {"cache-control": request_cc}
    return evaluate_stored(request, meta, T0 + at)


# --- RFC 9110 section 5.3: field lines -----------------------------------------------------------


def test_rfc9110_5_3_field_lines_are_combined_in_order_with_comma_space() -> None:
    pairs = [("Cache-Control", "max-age=5"), ("Vary", " Origin "), ("cache-control", "public")]
    assert combine_fields(pairs) == {"cache-control": "max-age=5, public", "vary": "Origin"}


def test_rfc9110_5_3_two_date_lines_combine_into_an_invalid_date() -> None:
    # The combined value is not one HTTP-date, so it counts as invalid (section 4.2.1: multiple
    # values may make the response stale).
    headers = combine_fields([("Date", d(0)), ("Expires", d(60)), ("Expires", d(120))])
    assert lifetime(headers) == 0


# --- Section 5.2: Cache-Control parsing ----------------------------------------------------------


def test_5_2_absent_field_has_no_directives() -> None:
    assert parse_cache_control(None) == CacheDirectives()
    assert parse_cache_control("") == CacheDirectives()


def test_5_2_directive_names_are_case_insensitive() -> None:
    parsed = parse_cache_control("MAX-AGE=5, No-Store, S-MaxAge=7")
    assert (parsed.max_age, parsed.no_store, parsed.s_maxage) == (5, True, 7)


def test_5_2_recipients_accept_the_quoted_form_of_arguments() -> None:
    assert parse_cache_control('max-age="60"').max_age == 60
    assert parse_cache_control('s-maxage="0"').s_maxage == 0


def test_5_2_commas_inside_quoted_strings_do_not_split_directives() -> None:
    parsed = parse_cache_control('no-cache="set-cookie, x-secret", max-age=5')
    assert parsed.no_cache
    assert parsed.max_age == 5


def test_5_2_escaped_quote_inside_quoted_string() -> None:
    parsed = parse_cache_control(r'x-ext="a\", max-age=1", max-age=9')
    assert parsed.max_age == 9


def test_rfc9110_5_6_1_2_empty_list_elements_are_skipped() -> None:
    assert parse_cache_control(" , ,max-age=5,, ,public,").max_age == 5


def test_5_2_3_unknown_directives_are_ignored() -> None:
    parsed = parse_cache_control('community="UCI", private-ish, max-age=3')
    assert parsed == CacheDirectives(max_age=3)


def test_5_2_every_directive_is_recognised() -> None:
    parsed = parse_cache_control(
        "max-age=1, s-maxage=2, no-store, no-cache, private, public, must-revalidate, "
        "proxy-revalidate, must-understand, immutable, no-transform, stale-while-revalidate=3, "
        "stale-if-error=4, min-fresh=5, max-stale=6, only-if-cached"
    )
    assert parsed == CacheDirectives(
        max_age=1,
        s_maxage=2,
        no_store=True,
        no_cache=True,
        private=True,
        public=True,
        must_revalidate=True,
        proxy_revalidate=True,
        must_understand=True,
        immutable=True,
        no_transform=True,
        stale_while_revalidate=3,
        stale_if_error=4,
        min_fresh=5,
        max_stale=6,
        only_if_cached=True,
    )


def test_1_2_2_delta_seconds_beyond_2_31_are_2_31() -> None:
    assert parse_cache_control("max-age=2147483648").max_age == MAX_DELTA_SECONDS
    assert parse_cache_control("max-age=99999999999999999999").max_age == MAX_DELTA_SECONDS
    # Far more digits than int() accepts by default: no huge integer is ever built.
    assert parse_cache_control("max-age=" + "9" * 4000).max_age == MAX_DELTA_SECONDS


def test_1_2_2_leading_zeros_are_digits_like_any_other() -> None:
    assert parse_cache_control("max-age=" + "0" * 50 + "42").max_age == 42


@pytest.mark.parametrize(
    "value",
    [
        "max-age",
        "max-age=",
        "max-age=abc",
        "max-age=-1",
        "max-age=1.5",
        "max-age=1e3",
        "max-age = 60",  # no whitespace around "=" in the grammar
        "max-age=60 s",
        "max-age=\uff16\uff10",  # fullwidth digits are not DIGIT
        'max-age="6',  # unterminated quoted string
    ],
)
def test_4_2_1_invalid_max_age_means_stale(value: str) -> None:
    assert parse_cache_control(value).max_age == 0
    assert lifetime({"cache-control": value, "date": d(0), "expires": d(600)}) == 0


def test_4_2_1_conflicting_duplicate_directives_are_invalid_so_stale() -> None:
    assert parse_cache_control("max-age=5, max-age=10").max_age == 0
    assert parse_cache_control("max-age=5, Max-Age=5").max_age == 5
    assert parse_cache_control("s-maxage=5, s-maxage=6").s_maxage == 0


def test_4_2_1_invalid_request_directives_take_the_most_restrictive_meaning() -> None:
    assert parse_cache_control("min-fresh=soon").min_fresh == MAX_DELTA_SECONDS
    assert parse_cache_control("max-stale=much").max_stale is None
    assert parse_cache_control("max-stale, max-stale=5").max_stale is None
    assert parse_cache_control("stale-if-error=x").stale_if_error == 0
    assert parse_cache_control("stale-while-revalidate").stale_while_revalidate == 0


def test_5_2_1_2_max_stale_without_a_value_accepts_any_staleness() -> None:
    assert parse_cache_control("max-stale").max_stale == MAX_DELTA_SECONDS
    assert parse_cache_control("max-stale=10").max_stale == 10


def test_5_2_2_4_and_5_2_2_7_qualified_forms_count_as_unqualified() -> None:
    parsed = parse_cache_control('no-cache="set-cookie", private="x-user"')
    assert parsed.no_cache and parsed.private
    assert parse_cache_control("no-cache=set-cookie").no_cache  # token form, not recommended


def test_decision_restrictive_flags_count_in_any_form_permissive_ones_only_when_valid() -> None:
    assert parse_cache_control("no-store junk").no_store
    assert parse_cache_control("must-revalidate=1").must_revalidate
    assert not parse_cache_control("public=yes").public
    assert not parse_cache_control("public, public=1").public
    assert not parse_cache_control("immutable forever").immutable
    assert not parse_cache_control('only-if-cached="1"').only_if_cached


def test_decision_overlong_cache_control_is_read_most_restrictively() -> None:
    parsed = parse_cache_control("public, max-age=60, " + "x" * MAX_FIELD_LENGTH)
    assert parsed.no_store and parsed.no_cache and parsed.max_age == 0
    assert not parsed.public


def test_rfc5861_3_and_4_extension_directives_are_parsed() -> None:
    parsed = parse_cache_control("max-age=600, stale-while-revalidate=30, stale-if-error=86400")
    assert (parsed.stale_while_revalidate, parsed.stale_if_error) == (30, 86400)


def test_5_2_2_10_s_maxage_implies_proxy_revalidate_for_a_shared_cache() -> None:
    assert parse_cache_control("s-maxage=10").forbids_stale
    assert parse_cache_control("must-revalidate").forbids_stale
    assert parse_cache_control("proxy-revalidate").forbids_stale
    assert not parse_cache_control("max-age=10").forbids_stale


@given(st.text(max_size=300))
def test_5_2_parsing_never_fails_and_seconds_stay_in_range(value: str) -> None:
    parsed = parse_cache_control(value)
    for seconds in (
        parsed.max_age,
        parsed.s_maxage,
        parsed.stale_while_revalidate,
        parsed.stale_if_error,
        parsed.min_fresh,
        parsed.max_stale,
    ):
        assert seconds is None or 0 <= seconds <= MAX_DELTA_SECONDS


@given(st.lists(st.sampled_from(["max-age=5", "public", "no-store", ",", " ", '"', "="])))
def test_5_2_parsing_never_fails_on_directive_soup(parts: list[str]) -> None:
    parse_cache_control("".join(parts))


# --- Section 3: storing responses ----------------------------------------------------------------

OK_HEADERS = {"cache-control": "max-age=60", "date": d(0)}


def test_3_a_get_200_with_max_age_is_stored() -> None:
    assert is_storable("GET", 200, {}, OK_HEADERS)


@pytest.mark.parametrize("method", ["HEAD", "POST", "PUT", "DELETE", "get", "OPTIONS"])
def test_3_decision_only_get_responses_are_stored(method: str) -> None:
    assert not is_storable(method, 200, {}, OK_HEADERS)


@pytest.mark.parametrize("status", [100, 103, 206, 304, 303, 400, 403, 500, 502, 503, 504, 999])
def test_3_status_must_be_final_and_understood(status: int) -> None:
    assert not is_storable("GET", status, {}, OK_HEADERS)


@pytest.mark.parametrize("status", [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501])
def test_3_heuristically_cacheable_statuses_need_no_explicit_freshness(status: int) -> None:
    assert is_storable("GET", status, {}, {"date": d(0)})


@pytest.mark.parametrize("status", [302, 307])
def test_3_other_statuses_need_explicit_freshness_or_public(status: int) -> None:
    assert not is_storable("GET", status, {}, {"date": d(0)})
    assert is_storable("GET", status, {}, {"cache-control": "max-age=5"})
    assert is_storable("GET", status, {}, {"cache-control": "s-maxage=5"})
    assert is_storable("GET", status, {}, {"expires": d(60)})
    assert is_storable("GET", status, {}, {"expires": "0"})  # an Expires field, even invalid
    assert is_storable("GET", status, {}, {"cache-control": "public"})


def test_3_decision_partial_content_is_not_stored() -> None:
    assert not is_storable("GET", 206, {}, {"cache-control": "public, max-age=60"})


def test_5_2_2_5_no_store_response_is_not_stored() -> None:
    assert not is_storable("GET", 200, {}, {"cache-control": "max-age=60, no-store"})


def test_5_2_1_5_no_store_request_prevents_storing_the_response() -> None:
    assert not is_storable("GET", 200, {"cache-control": "no-store"}, OK_HEADERS)


def test_5_2_2_3_must_understand_overrides_no_store_for_an_understood_status() -> None:
    headers = {"cache-control": "max-age=60, must-understand, no-store"}
    assert is_storable("GET", 200, {}, headers)
    assert not is_storable("GET", 206, {}, headers)
    assert not is_storable("GET", 299, {}, headers)


def test_5_2_2_7_private_responses_are_not_stored_by_a_shared_cache() -> None:
    assert not is_storable("GET", 200, {}, {"cache-control": "private, max-age=60"})
    assert not is_storable("GET", 200, {}, {"cache-control": 'private="x-user", max-age=60'})
    assert not is_storable("GET", 200, {}, {"cache-control": "public, private"})


def test_3_5_authorization_needs_a_directive_that_allows_shared_caching() -> None:
    auth = {"authorization": "Bearer abc"}
    assert not is_storable("GET", 200, auth, OK_HEADERS)
    assert is_storable("GET", 200, auth, {"cache-control": "public, max-age=60"})
    assert is_storable("GET", 200, auth, {"cache-control": "s-maxage=60"})
    assert is_storable("GET", 200, auth, {"cache-control": "must-revalidate, max-age=60"})
    # must-revalidate only lifts the Authorization rule; a 302 still needs explicit freshness.
    assert not is_storable("GET", 302, auth, {"cache-control": "must-revalidate"})


def test_decision_responses_with_set_cookie_are_not_stored() -> None:
    assert not is_storable("GET", 200, {}, {**OK_HEADERS, "set-cookie": "id=1"})


def test_4_1_decision_vary_star_is_not_stored() -> None:
    assert not is_storable("GET", 200, {}, {**OK_HEADERS, "vary": "Accept-Encoding, *"})
    assert is_storable("GET", 200, {}, {**OK_HEADERS, "vary": "Accept-Encoding"})


def test_4_2_has_explicit_freshness() -> None:
    assert has_explicit_freshness({"cache-control": "max-age=0"})
    assert has_explicit_freshness({"cache-control": "s-maxage=1"})
    assert has_explicit_freshness({"expires": "garbage"})
    assert not has_explicit_freshness({"cache-control": "public, immutable"})
    assert not has_explicit_freshness({})


@given(
    st.sampled_from(["GET", "HEAD", "POST"]),
    st.integers(100, 599),
    st.dictionaries(st.sampled_from(["cache-control", "authorization"]), st.text(max_size=40)),
    st.dictionaries(
        st.sampled_from(["cache-control", "expires", "vary", "set-cookie", "date"]),
        st.text(max_size=40),
    ),
)
def test_3_storability_never_fails(
    method: str, status: int, request: dict[str, str], response: dict[str, str]
) -> None:
    is_storable(method, status, request, response)


# --- Section 4.2.1: freshness lifetime -----------------------------------------------------------


def test_4_2_1_s_maxage_overrides_max_age_and_expires() -> None:
    headers = {"cache-control": "max-age=60, s-maxage=600", "date": d(0), "expires": d(5)}
    assert lifetime(headers) == 600


def test_4_2_1_max_age_overrides_expires() -> None:
    assert lifetime({"cache-control": "max-age=60", "date": d(0), "expires": d(3600)}) == 60


def test_4_2_1_expires_minus_date() -> None:
    assert lifetime({"date": d(0), "expires": d(3600)}, received=T0 + 5) == 3600


def test_4_2_1_expires_without_date_uses_the_time_the_response_was_received() -> None:
    assert lifetime({"expires": d(3600)}, received=T0 + 600) == 3000


def test_4_2_1_an_invalid_date_counts_as_absent() -> None:
    assert lifetime({"date": "yesterday", "expires": d(3600)}, received=T0 + 600) == 3000


def test_4_2_1_expires_before_date_is_already_stale() -> None:
    assert lifetime({"date": d(0), "expires": d(-60)}) == 0


@pytest.mark.parametrize("value", ["0", "-1", "never", "", "Thu, 01 Jan 1970 00:00:00 UTC"])
def test_5_3_an_invalid_expires_is_already_expired_and_allows_no_heuristic(value: str) -> None:
    headers = {"date": d(0), "expires": value, "last-modified": d(-86400 * 30)}
    assert lifetime(headers) == 0


def test_4_2_a_cache_matches_dates_case_insensitively() -> None:
    headers = {"date": d(0).upper(), "expires": d(120).lower()}
    assert lifetime(headers) == 120


def test_4_2_1_explicit_zero_lifetime() -> None:
    assert lifetime({"cache-control": "max-age=0", "last-modified": d(-86400)}) == 0


@given(st.integers(0, 2**40), st.integers(0, 2**40))
def test_4_2_1_s_maxage_always_wins_over_max_age_for_a_shared_cache(s: int, m: int) -> None:
    for value in (f"max-age={m}, s-maxage={s}", f"s-maxage={s}, max-age={m}"):
        headers = {"cache-control": value, "expires": d(5), "date": d(0)}
        assert lifetime(headers) == min(s, MAX_DELTA_SECONDS)


@given(
    st.integers(100, 599),
    st.dictionaries(
        st.sampled_from(["cache-control", "expires", "date", "last-modified"]),
        st.one_of(
            st.text(max_size=60),
            st.integers(-(10**9), 10**9).map(d),
            st.integers(0, 2**33).map(lambda n: f"max-age={n}"),
        ),
    ),
    st.floats(0, 4e9),
)
def test_4_2_1_freshness_lifetime_is_never_negative_nor_beyond_2_31(
    status: int, headers: dict[str, str], received: float
) -> None:
    assert 0 <= freshness_lifetime(status, headers, response_time=received) <= MAX_DELTA_SECONDS


# --- Section 4.2.2: heuristic freshness ----------------------------------------------------------


def test_4_2_2_heuristic_is_a_fraction_of_the_time_since_last_modified() -> None:
    headers = {"date": d(0), "last-modified": d(-5 * 86400)}
    assert lifetime(headers) == pytest.approx(0.1 * 5 * 86400)
    assert freshness_lifetime(
        200, headers, response_time=T0, heuristic_fraction=0.2
    ) == pytest.approx(0.2 * 5 * 86400)


def test_4_2_2_heuristic_is_capped() -> None:
    headers = {"date": d(0), "last-modified": d(-365 * 86400)}
    assert lifetime(headers) == 86400
    assert freshness_lifetime(200, headers, response_time=T0, heuristic_max=600) == 600


def test_4_2_2_heuristic_uses_receipt_time_without_date() -> None:
    assert lifetime({"last-modified": d(-1000)}, received=T0) == pytest.approx(100)


def test_4_2_2_no_heuristic_without_last_modified() -> None:
    assert lifetime({"date": d(0)}) == 0


def test_4_2_2_no_heuristic_for_a_status_that_is_not_heuristically_cacheable() -> None:
    headers = {"date": d(0), "last-modified": d(-86400)}
    assert lifetime(headers, status=302) == 0
    # ... unless the response is marked public (section 4.2.2 and 5.2.2.9).
    assert lifetime({**headers, "cache-control": "public"}, status=302) == pytest.approx(8640)


def test_4_2_2_last_modified_in_the_future_gives_no_heuristic() -> None:
    assert lifetime({"date": d(0), "last-modified": d(600)}) == 0


def test_4_2_2_heuristic_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        freshness_lifetime(200, {}, response_time=T0, heuristic_fraction=1.5)
    with pytest.raises(ValueError):
        freshness_lifetime(200, {}, response_time=T0, heuristic_max=-1)


def test_4_2_2_configured_lifetime_floor_applies_only_without_explicit_expiry() -> None:
    assert freshness_lifetime_of(stored(status=404, lifetime_floor=10)) == 10
    assert freshness_lifetime_of(stored("max-age=0", status=404, lifetime_floor=10)) == 0
    assert freshness_lifetime_of(stored(status=404, expires="0", lifetime_floor=10)) == 0
    assert freshness_lifetime_of(stored(status=404)) == 0


# --- Section 4.2.3: age --------------------------------------------------------------------------


def test_4_2_3_age_calculation_corrected_age_value_includes_response_delay() -> None:
    # The request left at T0+1, the response (Date T0, Age 10) arrived at T0+3: it was at least
    # 10 + 2 seconds old on arrival, then stayed 100 seconds in this cache.
    age = current_age(
        date_value=T0, age_value=10, request_time=T0 + 1, response_time=T0 + 3, now=T0 + 103
    )
    assert age == 112


def test_4_2_3_apparent_age_wins_when_larger() -> None:
    age = current_age(
        date_value=T0 - 50, age_value=0, request_time=T0, response_time=T0 + 1, now=T0 + 11
    )
    assert age == 51 + 10


def test_4_2_3_apparent_age_is_never_negative() -> None:
    age = current_age(
        date_value=T0 + 999, age_value=0, request_time=T0, response_time=T0, now=T0 + 5
    )
    assert age == 5


def test_4_2_3_missing_date_counts_as_the_receipt_time() -> None:
    age = current_age(date_value=None, age_value=7, request_time=T0, response_time=T0, now=T0 + 3)
    assert age == 10


@given(
    st.one_of(st.none(), st.floats(-1e10, 1e10)),
    st.floats(0, 2**31),
    st.floats(-1e10, 1e10),
    st.floats(-1e10, 1e10),
    st.floats(-1e10, 1e10),
)
def test_4_2_3_current_age_is_never_negative(
    date_value: float | None, age_value: float, request: float, response: float, now: float
) -> None:
    age = current_age(
        date_value=date_value,
        age_value=age_value,
        request_time=request,
        response_time=response,
        now=now,
    )
    assert age >= 0
    assert age >= age_value  # an Age the upstream reported is never reduced


@given(st.floats(0, 1e6), st.floats(0, 1e6))
def test_4_2_3_current_age_grows_with_resident_time(later: float, more: float) -> None:
    def at(now: float) -> float:
        return current_age(
            date_value=T0, age_value=3, request_time=T0, response_time=T0 + 1, now=now
        )

    assert at(T0 + 1 + later + more) == pytest.approx(at(T0 + 1 + later) + more)


def test_4_2_3_date_and_age_are_read_robustly() -> None:
    assert date_and_age({"date": d(0), "age": "42"}, now=T0) == (T0, 42)
    assert date_and_age({}, now=T0) == (None, 0)
    assert date_and_age({"date": "nonsense", "age": "4.5"}, now=T0) == (None, 0)
    assert date_and_age({"age": "-5"}, now=T0) == (None, 0)
    assert date_and_age({"age": "5, 30"}, now=T0) == (None, 30)  # two lines: the larger
    assert date_and_age({"age": "5, x"}, now=T0) == (None, 0)
    assert date_and_age({"age": "9" * 30}, now=T0) == (None, MAX_DELTA_SECONDS)
    assert date_and_age({"age": "9" * 300}, now=T0) == (None, 0)  # not a sane field at all


def test_4_2_3_current_age_of_a_stored_response() -> None:
    meta = stored("max-age=60", request_time=T0 - 2, response_time=T0, age="10")
    assert current_age_of(meta, T0 + 30) == 10 + 2 + 30


# --- Section 5.1: the Age field ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "text"),
    [
        (0, "0"),
        (1.999, "1"),
        (-3, "0"),
        (2**31 - 1, "2147483647"),
        (2**31, "2147483648"),
        (1e300, "2147483648"),
        (float("inf"), "2147483648"),
        (float("nan"), "2147483648"),
    ],
)
def test_5_1_age_is_whole_seconds_capped_at_2_31(age: float, text: str) -> None:
    assert age_header_value(age) == text


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_5_1_age_is_always_delta_seconds(age: float) -> None:
    text = age_header_value(age)
    assert text.isdigit() and int(text) <= MAX_DELTA_SECONDS


# --- Sections 4, 4.2 and 4.2.4, RFC 5861: using a stored response --------------------------------


def test_4_2_a_fresh_response_is_served() -> None:
    verdict = evaluate(stored("max-age=60"), at=59.5)
    assert verdict.state is FRESH
    assert verdict.current_age == 59.5
    assert verdict.freshness_lifetime == 60


def test_4_2_a_response_whose_age_equals_its_lifetime_is_stale() -> None:
    assert evaluate(stored("max-age=60"), at=60).state is REVALIDATE


def test_4_2_4_a_stale_response_is_revalidated() -> None:
    assert evaluate(stored("max-age=60"), at=600).state is REVALIDATE


def test_4_2_heuristically_fresh_response_is_served() -> None:
    meta = stored(last_modified=d(-10 * 3600))
    assert evaluate(meta, at=3599).state is FRESH
    assert evaluate(meta, at=3601).state is REVALIDATE


def test_4_2_3_age_from_upstream_counts_towards_staleness() -> None:
    assert evaluate(stored("max-age=60", age="50"), at=11).state is REVALIDATE


def test_5_2_2_4_a_no_cache_response_is_always_revalidated_even_when_fresh() -> None:
    verdict = evaluate(stored("max-age=600, no-cache, stale-if-error=600"), at=1)
    assert verdict.state is REVALIDATE
    assert verdict.usable_if_error_until is None
    assert not verdict.usable_if_error(T0 + 1)


def test_5_2_2_5_a_response_that_became_no_store_is_never_reused() -> None:
    assert evaluate(stored("max-age=600, no-store"), at=1).state is REVALIDATE
    assert evaluate(stored("max-age=600, private"), at=1).usable_if_error_until is None


def test_5_2_1_4_request_no_cache_forces_revalidation() -> None:
    verdict = evaluate(stored("max-age=600"), at=1, request_cc="no-cache")
    assert verdict.state is REVALIDATE
    assert verdict.usable_if_error(T0 + 2)  # still fresh: usable if the upstream fails


def test_5_2_1_1_request_max_age_limits_the_age() -> None:
    meta = stored("max-age=600")
    assert evaluate(meta, at=30, request_cc="max-age=30").state is FRESH
    assert evaluate(meta, at=31, request_cc="max-age=30").state is REVALIDATE
    assert evaluate(meta, at=1, request_cc="max-age=0").state is REVALIDATE


def test_5_2_1_3_min_fresh_wants_remaining_freshness() -> None:
    meta = stored("max-age=600")
    assert evaluate(meta, at=500, request_cc="min-fresh=100").state is FRESH
    assert evaluate(meta, at=501, request_cc="min-fresh=100").state is REVALIDATE
    assert evaluate(meta, at=700, request_cc="min-fresh=0, max-stale").state is REVALIDATE


def test_5_2_1_2_max_stale_allows_serving_stale() -> None:
    meta = stored("max-age=60")
    assert evaluate(meta, at=100, request_cc="max-stale=50").state is SWR
    assert evaluate(meta, at=110, request_cc="max-stale=50").state is REVALIDATE
    assert evaluate(meta, at=10**6, request_cc="max-stale").state is SWR
    assert evaluate(meta, at=60, request_cc="max-stale=0").state is REVALIDATE


def test_5_2_1_1_max_age_still_applies_with_max_stale() -> None:
    meta = stored("max-age=60")
    assert evaluate(meta, at=100, request_cc="max-age=90, max-stale").state is REVALIDATE


def test_rfc5861_3_stale_while_revalidate_window() -> None:
    meta = stored("max-age=60, stale-while-revalidate=30")
    assert evaluate(meta, at=59).state is FRESH
    assert evaluate(meta, at=60).state is SWR
    assert evaluate(meta, at=89.9).state is SWR
    assert evaluate(meta, at=90).state is REVALIDATE


@pytest.mark.parametrize("directive", ["must-revalidate", "proxy-revalidate", "s-maxage=60"])
def test_4_2_4_revalidation_directives_forbid_serving_stale(directive: str) -> None:
    meta = stored(f"max-age=60, {directive}, stale-while-revalidate=600, stale-if-error=600")
    assert evaluate(meta, at=30).state is FRESH
    assert evaluate(meta, at=61).state is REVALIDATE
    assert evaluate(meta, at=61, request_cc="max-stale").state is REVALIDATE


def test_5_2_2_2_must_revalidate_is_not_served_stale_even_on_error() -> None:
    verdict = evaluate(stored("max-age=60, must-revalidate, stale-if-error=600"), at=10)
    assert verdict.usable_if_error_until == T0 + 60
    assert verdict.usable_if_error(T0 + 59)
    assert not verdict.usable_if_error(T0 + 61)


def test_rfc5861_4_stale_if_error_response_directive() -> None:
    verdict = evaluate(stored("max-age=60, stale-if-error=300"), at=100)
    assert verdict.state is REVALIDATE
    assert verdict.usable_if_error_until == T0 + 360
    assert verdict.usable_if_error(T0 + 359)
    assert not verdict.usable_if_error(T0 + 360)


def test_rfc5861_4_stale_if_error_request_directive() -> None:
    meta = stored("max-age=60")
    assert evaluate(meta, at=100).usable_if_error_until == T0 + 60
    verdict = evaluate(meta, at=100, request_cc="stale-if-error=120")
    assert verdict.usable_if_error_until == T0 + 180
    assert verdict.usable_if_error(T0 + 100)


def test_rfc5861_4_the_larger_stale_if_error_window_applies() -> None:
    meta = stored("max-age=60, stale-if-error=10")
    assert evaluate(meta, at=0, request_cc="stale-if-error=100").usable_if_error_until == T0 + 160


def test_4_2_2_negative_caching_floor_makes_a_404_fresh() -> None:
    meta = stored(status=404, lifetime_floor=10)
    assert evaluate(meta, at=9).state is FRESH
    assert evaluate(meta, at=10).state is REVALIDATE


@given(st.floats(0, 1e7), st.floats(0, 1e5), st.text(max_size=40), st.text(max_size=40))
def test_4_2_evaluation_never_fails_and_age_is_reported(
    at: float, max_age: float, response_cc: str, request_cc: str
) -> None:
    meta = stored(f"max-age={int(max_age)}, {response_cc}")
    verdict = evaluate(meta, at=at, request_cc=request_cc)
    assert verdict.current_age == pytest.approx(at, abs=1e-3)
    if verdict.state is FRESH:
        assert verdict.freshness_lifetime > verdict.current_age


# --- Section 4.1: Vary ---------------------------------------------------------------------------


def test_4_1_vary_names_are_lowercased_deduplicated_and_sorted() -> None:
    headers = {"vary": "Origin, accept-encoding,, ACCEPT-ENCODING"}
    assert vary_field_names(headers) == ("accept-encoding", "origin")
    assert vary_field_names({}) == ()
    assert vary_field_names({"vary": ""}) == ()


def test_4_1_vary_star_never_matches() -> None:
    assert vary_field_names({"vary": "*"}) is None
    assert vary_field_names({"vary": "Accept, *"}) is None
    meta = StoredResponseMeta(200, {"vary": "*"}, T0, T0)
    assert not vary_matches(meta, {})


def test_4_1_decision_unusable_vary_is_treated_as_star() -> None:
    assert vary_field_names({"vary": "Accept Encoding"}) is None
    assert vary_field_names({"vary": "x" * (MAX_FIELD_LENGTH + 1)}) is None
    too_many = ", ".join(f"x-field-{n}" for n in range(MAX_VARY_FIELDS + 1))
    assert vary_field_names({"vary": too_many}) is None


def test_4_1_an_absent_field_only_matches_an_absent_field() -> None:
    names = ("accept-encoding",)
    assert secondary_key({}, names) == (None,)
    assert secondary_key({"accept-encoding": ""}, names) == ("",)
    assert secondary_key({}, names) != secondary_key({"accept-encoding": ""}, names)


def test_4_1_whitespace_and_case_of_token_lists_are_normalised() -> None:
    names = ("accept-encoding", "accept-language")
    a = {"accept-encoding": "gzip,BR ;q=0.5", "accept-language": " en-US, fr;q=0.8 "}
    b = {"accept-encoding": " gzip ,  br; q=0.5,", "accept-language": "en-us,fr; q=0.8"}
    assert (
        secondary_key(a, names) == secondary_key(b, names) == ("gzip, br;q=0.5", "en-us, fr;q=0.8")
    )


def test_4_1_order_is_significant_and_other_fields_are_compared_exactly() -> None:
    names = ("accept-encoding", "user-agent")
    base = secondary_key({"accept-encoding": "gzip, br", "user-agent": "A/1"}, names)
    assert secondary_key({"accept-encoding": "br, gzip", "user-agent": "A/1"}, names) != base
    assert secondary_key({"accept-encoding": "gzip, br", "user-agent": " A/1 "}, names) == base
    assert secondary_key({"accept-encoding": "gzip, br", "user-agent": "a/1"}, names) != base


def test_4_1_vary_matches_compares_the_stored_secondary_key() -> None:
    headers = {"vary": "Accept-Encoding", "cache-control": "max-age=60"}
    key = secondary_key({"accept-encoding": "gzip"}, vary_field_names(headers) or ())
    meta = StoredResponseMeta(200, headers, T0, T0, secondary_key=key)
    assert vary_matches(meta, {"accept-encoding": " GZIP"})
    assert not vary_matches(meta, {"accept-encoding": "br"})
    assert not vary_matches(meta, {})
    assert vary_matches(StoredResponseMeta(200, {}, T0, T0), {"accept-encoding": "br"})


@given(
    st.lists(st.sampled_from(["gzip", "br", "identity", "deflate;q=0.5", "*;q=0"]), min_size=1),
    st.lists(st.sampled_from(["", " ", "\t", "  "]), min_size=20, max_size=20),
)
def test_4_1_whitespace_around_list_elements_never_changes_the_secondary_key(
    codings: list[str], spaces: list[str]
) -> None:
    plain = ", ".join(codings)
    spaced = ",".join(f"{spaces[i % 20]}{c}{spaces[(i + 7) % 20]}" for i, c in enumerate(codings))
    names = ("accept-encoding",)
    assert secondary_key({"accept-encoding": plain}, names) == secondary_key(
        {"accept-encoding": spaced}, names
    )


# --- Section 4.3.1: sending a validation request -------------------------------------------------


def test_4_3_1_etag_and_last_modified_become_preconditions() -> None:
    headers = {"etag": '"v1"', "last-modified": d(-3600)}
    assert validators_for_revalidation(headers) == {
        "if-none-match": '"v1"',
        "if-modified-since": d(-3600),
    }


def test_4_3_1_weak_etags_are_sent_too() -> None:
    assert validators_for_revalidation({"etag": ' W/"v1" '}) == {"if-none-match": 'W/"v1"'}


def test_4_3_1_invalid_validators_are_not_sent() -> None:
    assert validators_for_revalidation({"etag": "v1", "last-modified": "yesterday"}) == {}
    assert validators_for_revalidation({}) == {}


def test_4_3_1_last_modified_is_sent_as_the_origin_wrote_it() -> None:
    rfc850 = "Sunday, 06-Nov-94 08:49:37 GMT"
    assert validators_for_revalidation({"last-modified": rfc850}) == {"if-modified-since": rfc850}


# --- Section 4.3.4: which stored responses a 304 freshens ----------------------------------------


def variant(
    etag: str | None = None, last_modified: str | None = None, at: float = 0
) -> StoredResponseMeta:
    headers = {"date": d(at)}
    if etag is not None:
        headers["etag"] = etag
    if last_modified is not None:
        headers["last-modified"] = last_modified
    return StoredResponseMeta(200, headers, T0 + at, T0 + at)


def test_4_3_4_a_strong_validator_selects_every_stored_response_with_it() -> None:
    candidates = [variant('"a"'), variant('"b"'), variant('"a"', at=5), variant('W/"a"')]
    assert selects_stored(candidates, {"etag": '"a"'}, now=T0) == [0, 2]


def test_4_3_4_a_strong_validator_that_matches_nothing_updates_nothing() -> None:
    candidates = [variant('"a"', last_modified=d(-60))]
    assert selects_stored(candidates, {"etag": '"b"', "last-modified": d(-60)}, now=T0) == []


def test_4_3_4_weak_validators_select_the_most_recent_match() -> None:
    candidates = [variant('W/"a"', at=0), variant('"a"', at=9), variant('"b"', at=20)]
    assert selects_stored(candidates, {"etag": 'W/"a"'}, now=T0) == [1]


def test_4_3_4_last_modified_is_a_weak_validator() -> None:
    candidates = [variant(last_modified=d(-60), at=3), variant(last_modified=d(-60), at=1)]
    assert selects_stored(candidates, {"last-modified": d(-60)}, now=T0) == [0]
    assert selects_stored(candidates, {"last-modified": d(-61)}, now=T0) == []


def test_4_3_4_every_weak_validator_of_the_304_must_match() -> None:
    candidates = [variant('"a"', last_modified=d(-60))]
    assert selects_stored(candidates, {"etag": 'W/"a"', "last-modified": d(-60)}, now=T0) == [0]
    assert selects_stored(candidates, {"etag": 'W/"a"', "last-modified": d(-1)}, now=T0) == []


def test_4_3_4_without_validators_only_a_single_validatorless_response_is_selected() -> None:
    assert selects_stored([variant()], {"date": d(9)}, now=T0) == [0]
    assert selects_stored([variant(), variant()], {}, now=T0) == []
    assert selects_stored([variant('"a"')], {}, now=T0) == []


def test_4_3_4_decision_a_malformed_validator_in_the_304_selects_nothing() -> None:
    assert selects_stored([variant('"a"')], {"etag": "a"}, now=T0) == []
    assert selects_stored([variant()], {"last-modified": "soon"}, now=T0) == []


# --- Sections 4.3.4 and 3.2: freshening stored headers -------------------------------------------


def test_3_2_fields_of_the_304_replace_and_add_to_the_stored_ones() -> None:
    old = {"cache-control": "max-age=60", "etag": '"a"', "content-type": "video/mp4", "x-a": "1"}
    new = {"cache-control": "max-age=600", "etag": '"a"', "x-b": "2"}
    assert freshen_headers(old, new) == {
        "cache-control": "max-age=600",
        "etag": '"a"',
        "content-type": "video/mp4",
        "x-a": "1",
        "x-b": "2",
    }


def test_3_2_content_length_and_connection_specific_fields_are_not_updated() -> None:
    old = {"content-length": "1000", "content-range": "bytes 0-999/1000", "vary": "origin"}
    new = {
        "content-length": "0",
        "content-range": "bytes */1000",
        "connection": "close, x-hop",
        "x-hop": "1",
        "keep-alive": "timeout=5",
        "transfer-encoding": "chunked",
        "proxy-authenticate": "Basic",
        "vary": "accept-encoding",
        "x-kept": "yes",
    }
    assert freshen_headers(old, new) == {**old, "x-kept": "yes"}


def test_4_3_4_date_and_age_describe_the_304_not_the_old_response() -> None:
    old = {"date": d(0), "age": "50", "cache-control": "max-age=60"}
    assert freshen_headers(old, {"date": d(100)}) == {"date": d(100), "cache-control": "max-age=60"}
    assert freshen_headers(old, {"age": "3"}) == {"age": "3", "cache-control": "max-age=60"}


def test_4_3_4_a_freshened_response_is_fresh_again() -> None:
    meta = stored("max-age=60", age="30")
    assert evaluate(meta, at=100).state is REVALIDATE
    refreshed = StoredResponseMeta(
        meta.status,
        freshen_headers(meta.headers, {"etag": '"a"'}),
        request_time=T0 + 99,
        response_time=T0 + 100,
    )
    verdict = evaluate(refreshed, at=110)
    assert verdict.state is FRESH
    assert verdict.current_age == 11


# --- Section 4.4: invalidation -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE"])
def test_4_4_safe_methods_invalidate_nothing(method: str) -> None:
    assert invalidated_uris(method, 200, "/v/a/master.m3u8", {"location": "/x"}) == []


@pytest.mark.parametrize("status", [100, 199, 400, 404, 500, 503])
def test_4_4_error_responses_invalidate_nothing(status: int) -> None:
    assert invalidated_uris("POST", status, "/v/a", {}) == []


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "PURGE", "x-custom"])
def test_4_4_unsafe_or_unknown_methods_invalidate_the_target(method: str) -> None:
    assert invalidated_uris(method, 204, "/v/a/master.m3u8?x=1", {}) == ["/v/a/master.m3u8?x=1"]


def test_4_4_location_and_content_location_of_the_same_origin_are_invalidated() -> None:
    headers = {"location": "/v/b/master.m3u8", "content-location": "720p/index.m3u8#top"}
    assert invalidated_uris("POST", 201, "/v/a/master.m3u8", headers) == [
        "/v/a/master.m3u8",
        "/v/b/master.m3u8",
        "/v/a/720p/index.m3u8",
    ]


def test_4_4_relative_references_are_resolved_with_dot_segments_removed() -> None:
    headers = {"location": "../b/./c?q=1"}
    assert invalidated_uris("PUT", 200, "/v/a/x", headers) == ["/v/a/x", "/v/b/c?q=1"]


@pytest.mark.parametrize(
    "reference", ["https://other.example/v/a", "//other.example/v/a", "mailto:a@b", "", "http://[x"]
)
def test_4_4_decision_absolute_references_are_not_followed(reference: str) -> None:
    assert invalidated_uris("POST", 200, "/v/a", {"location": reference}) == ["/v/a"]


def test_4_4_duplicates_are_listed_once() -> None:
    headers = {"location": "/v/a", "content-location": "/v/a"}
    assert invalidated_uris("DELETE", 200, "/v/a", headers) == ["/v/a"]


def test_4_4_a_target_not_in_origin_form_is_returned_alone() -> None:
    assert invalidated_uris("POST", 200, "*", {"location": "/v/a"}) == ["*"]
