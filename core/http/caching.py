"""HTTP caching for a shared cache (RFC 9111, plus RFC 5861's stale-while-revalidate and
stale-if-error), decided on header values, status codes and times passed in.

Header fields are a `Mapping[str, str]` with lowercase names, a field sent on several lines
combined into one value joined by ", " (RFC 9110 section 5.3; `combine_fields` builds one). Times
are POSIX seconds from the caller's clock: `request_time` and `response_time` are when the cache
sent the request and received the response that it stored (RFC 9111 section 4.2.3), `now` is the
time of the decision. Nothing here reads a clock.

How a cache node uses this module:

- miss: `is_storable` says whether the response may be kept; `vary_field_names` and
  `secondary_key` give the variant's secondary key (section 4.1) stored in `StoredResponseMeta`.
- lookup: `vary_matches` selects a stored variant; `evaluate_stored` says whether it is fresh,
  may be served stale while revalidating, or must be revalidated first, and until when it may be
  served if the upstream fails (stale-if-error). `age_header_value` formats its Age (section 5.1).
- revalidation: `validators_for_revalidation` builds the conditional request (section 4.3.1); on
  a 304, `selects_stored` picks the stored responses it applies to and `freshen_headers` updates
  them (sections 4.3.4 and 3.2); the freshened response gets the 304 exchange's request and
  response times.
- unsafe methods: `invalidated_uris` lists the keys a response invalidates (section 4.4).

Decisions this module makes where the RFCs leave a choice (each repeated where it applies):

- Only GET responses are stored. HEAD responses are cacheable (RFC 9110 section 9.3.2) but a
  stored GET response can answer a HEAD, so a separate HEAD entry buys nothing.
- 206 responses are not stored (section 3.3 makes it a MAY): ranges are served from complete
  stored objects. 304 is never stored; it only freshens (section 4.3.4).
- Responses with Set-Cookie are not stored. Section 7.3 notes that Set-Cookie does not inhibit
  caching, but a shared cache that stores one hands one user's cookie to everyone; Varnish
  refuses them by default, and a cache is never obliged to store.
- `Vary: *` is not stored: section 4.1 says it never matches, so it would only take space. A
  Vary field that is not a list of tokens, or names too many fields, is treated as `*`.
- The qualified forms `no-cache="field"` and `private="field"` are treated as their unqualified
  forms, as the notes in sections 5.2.2.4 and 5.2.2.7 say most caches do: more restrictive, and no
  per-field surgery on stored responses.
- Duplicated directives with different values, and malformed values, are invalid, and an invalid
  directive takes its most restrictive meaning (section 4.2.1); see `parse_cache_control`.
- A stale response is never served when must-revalidate, proxy-revalidate or s-maxage is present
  (sections 4.2.4, 5.2.2.2, 5.2.2.8, 5.2.2.10), not even on error: RFC 5861's stale-if-error
  does not override a MUST of RFC 9111.
- Request directives are honoured (section 5.2.1 makes that a MAY): no-cache, max-age and
  min-fresh force a revalidation, max-stale allows serving stale. `Pragma` is ignored: section 5.4
  deprecates it and gives a cache no rule for it.
"""

import functools
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urljoin, urlsplit

from core.http.conditional import (
    EntityTag,
    parse_entity_tag,
    parse_http_date,
    strong_match,
    weak_match,
)
from core.http.fields import CONNECTION_SPECIFIC, connection_options

Fields = Mapping[str, str]
"""Header fields: lowercase names, several field lines combined with ", " (RFC 9110 5.3)."""

MAX_DELTA_SECONDS = 2**31
"""RFC 9111 section 1.2.2: a larger delta-seconds, or an overflowing calculation, is 2^31."""
MAX_FIELD_LENGTH = 4096
"""Cache-Control and Vary values longer than this are hostile or broken; they are treated as
their most restrictive reading (`parse_cache_control`, `vary_field_names`)."""
MAX_VARY_FIELDS = 32
"""A Vary naming more request fields than this is treated as `Vary: *`."""
DEFAULT_HEURISTIC_FRACTION = 0.1
"""Section 4.2.2: a heuristic lifetime of "some fraction" of the time since Last-Modified; "a
typical setting of this fraction might be 10%"."""
DEFAULT_HEURISTIC_MAX = 86400.0
"""Cap of a heuristic lifetime: one day, the threshold at which RFC 7234 section 5.5.4 had caches
warn that a heuristic was stretched (Warning 113)."""

HEURISTICALLY_CACHEABLE_STATUSES = frozenset(
    {200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501}
)
"""RFC 9110 section 15.1: status codes a cache may store without explicit freshness."""
STORABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 302, 307, 308, 404, 405, 410, 414, 501})
"""The final status codes this cache understands and stores (section 3): the heuristically
cacheable ones except 206 (see the module docstring), plus 302 and 307, which are stored only with
explicit freshness. Everything else (1xx, 206, 304, other 4xx and 5xx, ...) is never stored."""

_OWS = " \t"
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # RFC 9110 section 5.6.2
_TOKEN_RE = re.compile(_TOKEN)
# RFC 9110 section 5.6.4: quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE.
_QUOTED_STRING = r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)"'
# RFC 9111 section 5.2: cache-directive = token [ "=" ( token / quoted-string ) ].
_DIRECTIVE = re.compile(rf"({_TOKEN})(?:=(?:({_TOKEN})|{_QUOTED_STRING}))?")
_QUOTED_PAIR = re.compile(r"\\(.)")
_DIGITS = re.compile("[0-9]+")  # RFC 9111 section 1.2.2: delta-seconds = 1*DIGIT, ASCII only
_LETTERS = re.compile("[A-Za-z]+")
# Date, Expires, Last-Modified and Age values are under 40 characters when valid.
_MAX_SHORT_FIELD_LENGTH = 64
_PARAMETER_OWS = re.compile(r"[ \t]*;[ \t]*")

# RFC 9110 section 9.2.1: the safe methods. Every other method, known or not, is unsafe for
# section 4.4.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Section 3.1: fields that are not stored: the connection-specific and proxy-specific ones.
_NOT_STORED = CONNECTION_SPECIFIC
# Section 3.2: not updated from a 304 either: Content-Length, and Content-Range ("automatically
# processed" fields). Vary is kept too: the stored response's secondary key was computed from
# the stored Vary ("header fields that the cache's stored response depends upon").
_NOT_UPDATED = _NOT_STORED | {"content-length", "content-range", "vary"}
# Request fields whose values are lists of case-insensitive tokens, so that their secondary keys
# can be normalised further than whitespace (section 4.1): content-codings (RFC 9110 8.4.1),
# charsets (8.3.2) and language tags (8.5.1).
_CASE_INSENSITIVE_LISTS = frozenset({"accept-encoding", "accept-charset", "accept-language"})


# --- Header fields (RFC 9110 section 5.3) --------------------------------------------------------


def combine_fields(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header field lines as this module's mapping: names lowercased, each value stripped of
    surrounding whitespace (RFC 9110 section 5.5), lines of one name joined with ", " in order
    (section 5.3).

    Set-Cookie is the one field that cannot be combined this way (section 5.3); that does not
    matter here because responses carrying it are never stored (`is_storable`).
    """
    combined: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        value = value.strip(_OWS)
        combined[key] = f"{combined[key]}, {value}" if key in combined else value
    return combined


# --- Cache-Control (RFC 9111 section 5.2, RFC 5861) ------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheDirectives:
    """The Cache-Control directives a shared cache acts on; unknown ones are ignored (5.2.3).

    Seconds are delta-seconds clamped to `MAX_DELTA_SECONDS`; None means absent.
    """

    max_age: int | None = None
    """Response (5.2.2.1) or request (5.2.1.1) max-age."""
    s_maxage: int | None = None
    """5.2.2.10: overrides max-age and Expires for a shared cache, implies proxy-revalidate."""
    no_store: bool = False
    """5.2.1.5 / 5.2.2.5."""
    no_cache: bool = False
    """5.2.1.4 / 5.2.2.4, the qualified form `no-cache="f"` included (treated as unqualified)."""
    private: bool = False
    """5.2.2.7, the qualified form included: a shared cache never stores the response."""
    public: bool = False
    """5.2.2.9."""
    must_revalidate: bool = False
    """5.2.2.2."""
    proxy_revalidate: bool = False
    """5.2.2.8."""
    must_understand: bool = False
    """5.2.2.3: with a status code the cache understands, no-store is ignored."""
    immutable: bool = False
    """RFC 8246. Parsed for callers; it does not change a shared cache's decisions here."""
    no_transform: bool = False
    """5.2.1.6 / 5.2.2.6. The cache never transforms content anyway."""
    stale_while_revalidate: int | None = None
    """RFC 5861 section 3 (response)."""
    stale_if_error: int | None = None
    """RFC 5861 section 4 (request or response)."""
    min_fresh: int | None = None
    """5.2.1.3 (request)."""
    max_stale: int | None = None
    """5.2.1.2 (request); `max-stale` without a value (any staleness) is `MAX_DELTA_SECONDS`."""
    only_if_cached: bool = False
    """5.2.1.7 (request): answer from the cache or with 504; the caller acts on it."""

    @property
    def forbids_stale(self) -> bool:
        """Whether a shared cache may never serve the response stale: must-revalidate (5.2.2.2),
        proxy-revalidate (5.2.2.8), or s-maxage, which implies proxy-revalidate (5.2.2.10)."""
        return self.must_revalidate or self.proxy_revalidate or self.s_maxage is not None


# A Cache-Control field too long to be genuine: read as max-age=0, no-cache, no-store, which for
# a response means "do not store, never fresh" and for a request "revalidate, do not store".
_UNREADABLE = CacheDirectives(max_age=0, no_store=True, no_cache=True)

# One directive occurrence: its argument (unescaped; None when absent) and whether it was
# well-formed.
_Occurrence = tuple[str | None, bool]


@functools.lru_cache(maxsize=1024)
def parse_cache_control(value: str | None) -> CacheDirectives:
    """The directives of a Cache-Control field value (None when the field is absent).

    Robust to hostile input:

    - Names are case-insensitive, arguments may be tokens or quoted strings (section 5.2:
      recipients ought to accept both forms), commas inside quoted strings do not split, empty
      list elements are skipped (RFC 9110 section 5.6.1.2), unknown directives are ignored.
    - delta-seconds are ASCII digits only; values beyond 2^31 are clamped to 2^31 (1.2.2).
    - An invalid directive takes its most restrictive meaning (section 4.2.1: invalid freshness
      information means stale; when values conflict, honour the most restrictive). A directive is
      invalid when its argument is missing or malformed, or when it appears more than once with
      different values. Invalid max-age, s-maxage, stale-while-revalidate or stale-if-error is 0
      (stale at once, no stale window); invalid min-fresh is 2^31 (never fresh enough); invalid
      max-stale is absent (no staleness accepted).
    - Restrictive flags (no-store, no-cache, private, must-revalidate, proxy-revalidate,
      no-transform) count in any form, with or without a stray argument; permissive ones (public,
      immutable, must-understand, only-if-cached) only when every occurrence is well-formed and
      has no argument.
    - A value longer than `MAX_FIELD_LENGTH` is read as `max-age=0, no-cache, no-store`.

    Results are memoised (a few distinct values recur on every request and every stored
    response); `CacheDirectives` is immutable, so a shared result is safe.
    """
    if value is None:
        return CacheDirectives()
    if len(value) > MAX_FIELD_LENGTH:
        return _UNREADABLE
    seen: dict[str, list[_Occurrence]] = {}
    for element in _list_elements(value):
        element = element.strip(_OWS)
        if not element:
            continue
        match = _DIRECTIVE.fullmatch(element)
        if match is not None:
            name, token, quoted = match.groups()
            argument = token if quoted is None else _QUOTED_PAIR.sub(r"\1", quoted)
            seen.setdefault(name.lower(), []).append((argument, True))
            continue
        # Malformed (stray text, whitespace around "=", an unterminated quote, ...): the
        # directive it names, if any, is recorded as invalid.
        lead = _TOKEN_RE.match(element)
        if lead is not None:
            seen.setdefault(lead[0].lower(), []).append((None, False))
    return CacheDirectives(
        max_age=_seconds(seen.get("max-age"), invalid=0),
        s_maxage=_seconds(seen.get("s-maxage"), invalid=0),
        no_store="no-store" in seen,
        no_cache="no-cache" in seen,
        private="private" in seen,
        public=_plain_flag(seen.get("public")),
        must_revalidate="must-revalidate" in seen,
        proxy_revalidate="proxy-revalidate" in seen,
        must_understand=_plain_flag(seen.get("must-understand")),
        immutable=_plain_flag(seen.get("immutable")),
        no_transform="no-transform" in seen,
        stale_while_revalidate=_seconds(seen.get("stale-while-revalidate"), invalid=0),
        stale_if_error=_seconds(seen.get("stale-if-error"), invalid=0),
        min_fresh=_seconds(seen.get("min-fresh"), invalid=MAX_DELTA_SECONDS),
        max_stale=_max_stale(seen.get("max-stale")),
        only_if_cached=_plain_flag(seen.get("only-if-cached")),
    )


def _list_elements(value: str) -> Iterator[str]:
    """The elements of a comma-separated list, commas inside quoted strings not splitting
    (RFC 9110 sections 5.6.1 and 5.6.4). An unterminated quoted string runs to the end."""
    start = 0
    in_quotes = escaped = False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif in_quotes:
            if char == "\\":
                escaped = True
            elif char == '"':
                in_quotes = False
        elif char == '"':
            in_quotes = True
        elif char == ",":
            yield value[start:index]
            start = index + 1
    yield value[start:]


def _delta_seconds(text: str | None) -> int | None:
    """Section 1.2.2: 1*DIGIT, clamped to 2^31; None if `text` is not delta-seconds."""
    if text is None or _DIGITS.fullmatch(text) is None:
        return None
    digits = text.lstrip("0") or "0"
    # Checked before int(): no huge integer is built from a hostile value.
    if len(digits) > len(str(MAX_DELTA_SECONDS)):
        return MAX_DELTA_SECONDS
    return min(int(digits), MAX_DELTA_SECONDS)


def _seconds(occurrences: list[_Occurrence] | None, *, invalid: int) -> int | None:
    if not occurrences:
        return None
    values = {_delta_seconds(argument) if ok else None for argument, ok in occurrences}
    if len(values) != 1 or None in values:
        return invalid
    return values.pop()


def _max_stale(occurrences: list[_Occurrence] | None) -> int | None:
    if not occurrences:
        return None
    values = {
        (MAX_DELTA_SECONDS if argument is None else _delta_seconds(argument)) if ok else None
        for argument, ok in occurrences
    }
    if len(values) != 1 or None in values:
        return None
    return values.pop()


def _plain_flag(occurrences: list[_Occurrence] | None) -> bool:
    if not occurrences:
        return False
    return all(ok and argument is None for argument, ok in occurrences)


# --- Storing responses (RFC 9111 section 3) ----------------------------------------------------


def is_storable(
    method: str, status: int, request_headers: Fields, response_headers: Fields
) -> bool:
    """Whether a shared cache may store this response (section 3), with this module's choices.

    Stored: a response to GET with a status in `STORABLE_STATUSES`, without no-store in the
    request (5.2.1.5) or the response (5.2.2.5; ignored with must-understand, 5.2.2.3, since the
    status is understood), without private (5.2.2.7), to a request without Authorization unless
    the response says public, s-maxage or must-revalidate (3.5), without Set-Cookie, with a Vary
    that can match (4.1), and with explicit freshness (Expires, max-age, s-maxage), public, or a
    heuristically cacheable status (4.2.2).

    Storable is not the same as useful: a heuristically cacheable response without Last-Modified
    gets a heuristic lifetime of 0 and is stale at once (the caller may give it a configured
    `StoredResponseMeta.lifetime_floor`).
    """
    if method != "GET" or status not in STORABLE_STATUSES:
        return False
    request = parse_cache_control(request_headers.get("cache-control"))
    response = parse_cache_control(response_headers.get("cache-control"))
    if request.no_store or (response.no_store and not response.must_understand):
        return False
    if response.private:
        return False
    if "authorization" in request_headers and not (
        response.public or response.s_maxage is not None or response.must_revalidate
    ):
        return False
    if "set-cookie" in response_headers or vary_field_names(response_headers) is None:
        return False
    return (
        response.public
        or has_explicit_freshness(response_headers)
        or status in HEURISTICALLY_CACHEABLE_STATUSES
    )


def has_explicit_freshness(response_headers: Fields) -> bool:
    """Whether the response has an explicit expiration time (section 4.2): s-maxage, max-age or
    Expires, valid or not (an invalid one is an expiry in the past, never a licence to guess)."""
    directives = parse_cache_control(response_headers.get("cache-control"))
    return (
        directives.s_maxage is not None
        or directives.max_age is not None
        or "expires" in response_headers
    )


# --- Freshness (RFC 9111 section 4.2) -----------------------------------------------------------


def freshness_lifetime(
    status: int,
    response_headers: Fields,
    *,
    response_time: float,
    heuristic_fraction: float = DEFAULT_HEURISTIC_FRACTION,
    heuristic_max: float = DEFAULT_HEURISTIC_MAX,
) -> float:
    """A response's freshness lifetime in seconds for a shared cache (section 4.2.1), in
    [0, 2^31].

    The first that applies: s-maxage; max-age; Expires minus Date (Date, when absent or invalid,
    is the time the response was received, `response_time`: section 4.2.1 and RFC 9110 6.6.1), an
    invalid Expires being already expired (section 5.3); otherwise a heuristic (section 4.2.2),
    only for a heuristically cacheable status or a public response: `heuristic_fraction` of the
    time between Last-Modified and Date, at most `heuristic_max`, and 0 without a valid
    Last-Modified. A heuristic is never used when an explicit expiration time is present, even an
    invalid one. `status` is needed for the heuristic, `response_time` for the Date fallback and
    for reading obsolete two-digit years.
    """
    if not 0 <= heuristic_fraction <= 1 or not heuristic_max >= 0:
        raise ValueError("heuristic_fraction must be in [0, 1] and heuristic_max non-negative")
    directives = parse_cache_control(response_headers.get("cache-control"))
    if directives.s_maxage is not None:
        return float(directives.s_maxage)
    if directives.max_age is not None:
        return float(directives.max_age)
    date = _date_or(response_headers, response_time)
    if "expires" in response_headers:
        expires = _parse_date(response_headers["expires"], now=response_time)
        if expires is None:
            return 0.0
        return float(min(max(expires - date, 0.0), MAX_DELTA_SECONDS))
    if status not in HEURISTICALLY_CACHEABLE_STATUSES and not directives.public:
        return 0.0
    last_modified = _parse_date(response_headers.get("last-modified"), now=response_time)
    if last_modified is None:
        return 0.0
    return float(min(max(heuristic_fraction * (date - last_modified), 0.0), heuristic_max))


def date_and_age(headers: Fields, *, now: float) -> tuple[int | None, int]:
    """`date_value` and `age_value` of section 4.2.3, read robustly.

    date_value: the Date as POSIX seconds, None when absent or invalid (callers then use the
    response time, RFC 9110 section 6.6.1). Dates are matched case-insensitively (section 4.2);
    `now` only places the two-digit years of the obsolete RFC 850 format.

    age_value: the Age (section 5.1), clamped to 2^31; 0 when absent. Several values (lines
    combined with ", ") count as the largest, the most conservative reading; a value that is not
    delta-seconds makes the whole field ignored (0), as RFC 9111 gives no rule for it and the
    apparent age from Date still bounds the age.
    """
    date_value = _parse_date(headers.get("date"), now=now)
    age_value = 0
    text = headers.get("age")
    if text is not None and len(text) <= _MAX_SHORT_FIELD_LENGTH:
        ages = [_delta_seconds(part.strip(_OWS)) for part in text.split(",")]
        if ages and all(age is not None for age in ages):
            age_value = max(age for age in ages if age is not None)
    return date_value, age_value


def current_age(
    *,
    date_value: float | None,
    age_value: float,
    request_time: float,
    response_time: float,
    now: float,
) -> float:
    """A stored response's current age in seconds (section 4.2.3), never negative.

        apparent_age = max(0, response_time - date_value)
        response_delay = response_time - request_time
        corrected_age_value = age_value + response_delay
        corrected_initial_age = max(apparent_age, corrected_age_value)
        resident_time = now - response_time
        current_age = corrected_initial_age + resident_time

    A missing `date_value` counts as `response_time` (RFC 9110 section 6.6.1: a cache adds a Date
    to a response without one). The three differences are taken as no less than 0, which changes
    nothing for consistent times and keeps a clock that stepped backwards (or a simulator) from
    producing a negative age.
    """
    apparent_age = 0.0 if date_value is None else max(0.0, response_time - date_value)
    response_delay = max(0.0, response_time - request_time)
    corrected_age_value = max(0.0, age_value) + response_delay
    corrected_initial_age = max(apparent_age, corrected_age_value)
    resident_time = max(0.0, now - response_time)
    return corrected_initial_age + resident_time


def age_header_value(age: float) -> str:
    """The Age field value for a current age (section 5.1): whole seconds, rounded down, at most
    2^31 (section 1.2.2: an overflowing age is sent as 2147483648)."""
    if math.isnan(age) or age >= MAX_DELTA_SECONDS:
        return str(MAX_DELTA_SECONDS)
    return "0" if age <= 0 else str(math.floor(age))


@dataclass(frozen=True)
class StoredResponseMeta:
    """What a cache keeps about a stored response besides its content."""

    status: int
    headers: Fields
    """The stored response's header fields (lowercase names)."""
    request_time: float
    """When the request that produced (or last validated) the response was sent (4.2.3)."""
    response_time: float
    """When that response was received (4.2.3)."""
    secondary_key: tuple[str | None, ...] = ()
    """The request's values of the fields its Vary names (4.1), from `secondary_key`."""
    lifetime_floor: float | None = None
    """A configured heuristic (4.2.2), e.g. negative caching of a 404: the least freshness
    lifetime in seconds when the response has no explicit expiration time. Ignored when it has
    one: a configured heuristic may not override the origin's explicit choice."""


def freshness_lifetime_of(
    stored: StoredResponseMeta,
    *,
    heuristic_fraction: float = DEFAULT_HEURISTIC_FRACTION,
    heuristic_max: float = DEFAULT_HEURISTIC_MAX,
) -> float:
    """`freshness_lifetime` of a stored response, its `lifetime_floor` applied."""
    lifetime = freshness_lifetime(
        stored.status,
        stored.headers,
        response_time=stored.response_time,
        heuristic_fraction=heuristic_fraction,
        heuristic_max=heuristic_max,
    )
    if stored.lifetime_floor is not None and not has_explicit_freshness(stored.headers):
        lifetime = max(lifetime, min(stored.lifetime_floor, MAX_DELTA_SECONDS))
    return lifetime


def current_age_of(stored: StoredResponseMeta, now: float) -> float:
    """`current_age` of a stored response at `now`, its Date and Age read by `date_and_age`."""
    date_value, age_value = date_and_age(stored.headers, now=stored.response_time)
    return current_age(
        date_value=date_value,
        age_value=age_value,
        request_time=stored.request_time,
        response_time=stored.response_time,
        now=now,
    )


class FreshnessState(Enum):
    """How a stored response may be used for a request (sections 4 and 4.2.4, RFC 5861)."""

    FRESH = "fresh"
    """Serve it without contacting the upstream."""
    STALE_WHILE_REVALIDATE = "stale_while_revalidate"
    """Stale, but serving it now is allowed (response stale-while-revalidate, or request
    max-stale); revalidate in the background so the next request finds it fresh."""
    STALE_REVALIDATE = "stale_revalidate"
    """Validate with the upstream before using it (stale, or revalidation demanded by a no-cache,
    max-age or min-fresh directive)."""


@dataclass(frozen=True)
class Freshness:
    """`evaluate_stored`'s verdict."""

    state: FreshnessState
    current_age: float
    """Seconds (4.2.3); `age_header_value` formats it for the Age field."""
    freshness_lifetime: float
    """Seconds (4.2.1, 4.2.2, with the stored response's `lifetime_floor`)."""
    usable_if_error_until: float | None
    """Until when (exclusive, POSIX seconds) the stored response may answer this request if
    fetching or revalidating fails (no upstream answers, or it answers 500, 502, 503 or 504: RFC
    5861 section 4). It is the end of freshness, extended by the larger of the response's and
    the request's stale-if-error unless stale serving is forbidden. None when the response may
    never be used without validation (no-cache, 5.2.2.4). The time may be in the past."""

    def usable_if_error(self, now: float) -> bool:
        """Whether the stored response may answer the request at `now` after an upstream error."""
        return self.usable_if_error_until is not None and now < self.usable_if_error_until


def evaluate_stored(
    request_headers: Fields,
    stored: StoredResponseMeta,
    now: float,
    *,
    heuristic_fraction: float = DEFAULT_HEURISTIC_FRACTION,
    heuristic_max: float = DEFAULT_HEURISTIC_MAX,
) -> Freshness:
    """Whether `stored` may answer a request at `now` (sections 4, 4.2, 4.2.4, 5.2; RFC 5861).

    The caller has already selected `stored` for the request (same key, `vary_matches`).
    In order:

    1. A response with no-cache (5.2.2.4), or no-store or private (which a 304 may have added
       since it was stored), is never used without validation: STALE_REVALIDATE, and never on
       error.
    2. Request no-cache (5.2.1.4), an age above the request's max-age (5.2.1.1), or less
       remaining freshness than its min-fresh (5.2.1.3): STALE_REVALIDATE.
    3. Fresh (freshness_lifetime > current_age, section 4.2): FRESH.
    4. Stale with must-revalidate, proxy-revalidate or s-maxage: STALE_REVALIDATE (4.2.4).
    5. Staleness (current_age - freshness_lifetime) below the request's max-stale (5.2.1.2) or
       the response's stale-while-revalidate (RFC 5861 section 3): STALE_WHILE_REVALIDATE.
    6. Otherwise STALE_REVALIDATE.

    Windows are exclusive like freshness itself: `max-stale=0` and `stale-while-revalidate=0`
    allow nothing. Only-if-cached (5.2.1.7) is the caller's: it answers 504 unless FRESH or
    STALE_WHILE_REVALIDATE.
    """
    request = parse_cache_control(request_headers.get("cache-control"))
    response = parse_cache_control(stored.headers.get("cache-control"))
    lifetime = freshness_lifetime_of(
        stored, heuristic_fraction=heuristic_fraction, heuristic_max=heuristic_max
    )
    age = current_age_of(stored, now)
    remaining = lifetime - age
    if response.no_cache or response.no_store or response.private:
        return Freshness(FreshnessState.STALE_REVALIDATE, age, lifetime, None)
    fresh_until = now + remaining
    if response.forbids_stale:
        usable_if_error_until = fresh_until
    else:
        window = max(response.stale_if_error or 0, request.stale_if_error or 0)
        usable_if_error_until = fresh_until + window
    state = _reuse_state(request, response, age, remaining)
    return Freshness(state, age, lifetime, usable_if_error_until)


def _reuse_state(
    request: CacheDirectives, response: CacheDirectives, age: float, remaining: float
) -> FreshnessState:
    if (
        request.no_cache
        or (request.max_age is not None and age > request.max_age)
        or (request.min_fresh is not None and remaining < request.min_fresh)
    ):
        return FreshnessState.STALE_REVALIDATE
    if remaining > 0:
        return FreshnessState.FRESH
    if response.forbids_stale:
        return FreshnessState.STALE_REVALIDATE
    staleness = -remaining
    if (request.max_stale is not None and staleness < request.max_stale) or (
        response.stale_while_revalidate is not None and staleness < response.stale_while_revalidate
    ):
        return FreshnessState.STALE_WHILE_REVALIDATE
    return FreshnessState.STALE_REVALIDATE


# --- Vary (RFC 9111 section 4.1) ----------------------------------------------------------------


def vary_field_names(response_headers: Fields) -> tuple[str, ...] | None:
    """The request fields a response's Vary names: lowercase, deduplicated and sorted (so that
    `Vary: Origin, Accept-Encoding` and its reordering give the same secondary key), () without
    Vary, None for `*` (section 4.1: never matches).

    A member that is not a token, a value longer than `MAX_FIELD_LENGTH` or more than
    `MAX_VARY_FIELDS` names are treated as `*`: a response that cannot be keyed reliably is not
    shared.
    """
    value = response_headers.get("vary")
    if value is None:
        return ()
    if len(value) > MAX_FIELD_LENGTH:
        return None
    names: set[str] = set()
    for element in value.split(","):
        name = element.strip(_OWS).lower()
        if not name:
            continue  # RFC 9110 section 5.6.1.2: empty list elements are skipped
        if _TOKEN_RE.fullmatch(name) is None or name == "*":
            return None
        names.add(name)
    if len(names) > MAX_VARY_FIELDS:
        return None
    return tuple(sorted(names))


def secondary_key(request_headers: Fields, names: Sequence[str]) -> tuple[str | None, ...]:
    """The request's normalised values of the fields `names` (from `vary_field_names`), None
    for an absent field (section 4.1: absent only matches absent).

    Normalisation (section 4.1 allows whitespace changes where the syntax allows them, combining
    field lines, and semantics-preserving normalisation):

    - every value: field lines combined with ", " (the caller's mapping does that) and
      surrounding whitespace removed;
    - Accept-Encoding, Accept-Charset, Accept-Language: lists of case-insensitive tokens, so each
      element is also stripped of whitespace around it and around ";" (RFC 9110 5.6.6), empty
      elements are dropped and everything is lowercased. Elements are not reordered.

    Nothing else is normalised: other fields compare byte for byte after trimming, which can only
    cost a cache miss, never serve a wrong variant.
    """
    return tuple(_normalised(name, request_headers.get(name)) for name in names)


def _normalised(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip(_OWS)
    if name not in _CASE_INSENSITIVE_LISTS:
        return value
    elements = (_PARAMETER_OWS.sub(";", part.strip(_OWS)).lower() for part in value.split(","))
    return ", ".join(element for element in elements if element)


def vary_matches(stored: StoredResponseMeta, request_headers: Fields) -> bool:
    """Whether `stored` may be selected for a request by its Vary (section 4.1)."""
    names = vary_field_names(stored.headers)
    return names is not None and secondary_key(request_headers, names) == stored.secondary_key


# --- Validation (RFC 9111 section 4.3) ----------------------------------------------------------


def validators_for_revalidation(stored_headers: Fields) -> dict[str, str]:
    """The precondition fields of a request that revalidates a stored response (section 4.3.1).

    If-None-Match with the stored ETag (sent whenever the stored response has a valid one: a MUST
    of 4.3.1), and If-Modified-Since with the stored Last-Modified when it is a valid HTTP-date
    (the SHOULD of 4.3.1 for a single, complete stored response; both are sent, as 4.3.1
    recommends, for intermediaries that do not understand entity tags). The Last-Modified value
    is sent exactly as the origin wrote it (RFC 9110 section 13.1.3: caches use the stored
    value), so no obsolete date format is rewritten with a guessed century.
    """
    conditions: dict[str, str] = {}
    etag = stored_headers.get("etag")
    if etag is not None and parse_entity_tag(etag) is not None:
        conditions["if-none-match"] = etag.strip(_OWS)
    last_modified = stored_headers.get("last-modified")
    if last_modified is not None and _parse_date(last_modified, now=0.0) is not None:
        conditions["if-modified-since"] = last_modified.strip(_OWS)
    return conditions


def selects_stored(
    stored: Sequence[StoredResponseMeta], not_modified_headers: Fields, *, now: float
) -> list[int]:
    """The indexes of the stored responses a 304 applies to (section 4.3.4), from `stored`, the
    responses that could have been chosen for the request (same key and Vary match).

    The first rule that applies:

    1. The 304 has a strong ETag: every stored response whose ETag matches it strongly (RFC 9110
       section 8.8.3.2); none when none does (then the 304 updates nothing).
    2. The 304 has weak validators only (a weak ETag and/or Last-Modified; Last-Modified is
       treated as weak, as RFC 9110 section 8.8.2.2 makes it unless strength can be deduced):
       the most recent stored response (by Date, then receipt) whose validators match every one
       the 304 carries (weak ETag comparison, equal Last-Modified).
    3. The 304 has no validator: the only stored response, if there is exactly one and it has no
       validator either.

    A validator field in the 304 that cannot be parsed identifies nothing: no update. `now`
    places two-digit years of obsolete dates.
    """
    etag_text = not_modified_headers.get("etag")
    new_tag = None if etag_text is None else parse_entity_tag(etag_text)
    if etag_text is not None and new_tag is None:
        return []
    if new_tag is not None and not new_tag.weak:
        return [
            index
            for index, meta in enumerate(stored)
            if (tag := _stored_tag(meta)) is not None and strong_match(tag, new_tag)
        ]
    lm_text = not_modified_headers.get("last-modified")
    new_lm = None if lm_text is None else _parse_date(lm_text, now=now)
    if lm_text is not None and new_lm is None:
        return []
    if new_tag is not None or new_lm is not None:
        matching = [
            index
            for index, meta in enumerate(stored)
            if _matches_weakly(meta, new_tag, new_lm, now=now)
        ]
        if not matching:
            return []
        return [max(matching, key=lambda index: (_recency(stored[index]), index))]
    if len(stored) == 1 and not _has_validator(stored[0]):
        return [0]
    return []


def freshen_headers(stored_headers: Fields, not_modified_headers: Fields) -> dict[str, str]:
    """The stored response's header fields updated by a 304 (sections 4.3.4 and 3.2).

    Every field of the 304 replaces or adds to the stored ones, except those section 3.2 excepts:
    fields not stored (Connection and the fields it names, the other connection-specific fields,
    Proxy-Authenticate, Proxy-Authentication-Info, Proxy-Authorization: 3.1), Content-Length, and
    Content-Range; and Vary, because the stored response's secondary key was computed from it.

    Date and Age describe the message they arrive in, so stored values the 304 does not replace
    are dropped: the freshened response is then aged from the 304's receipt (its `response_time`,
    which the caller records with the 304 exchange's `request_time`), exactly as if the cache had
    added a Date at receipt (RFC 9110 section 6.6.1).
    """
    excluded = _NOT_UPDATED | connection_options(not_modified_headers)
    freshened = {
        name: value
        for name, value in stored_headers.items()
        if name not in ("date", "age") or name in not_modified_headers
    }
    for name, value in not_modified_headers.items():
        if name not in excluded:
            freshened[name] = value
    return freshened


def _stored_tag(meta: StoredResponseMeta) -> EntityTag | None:
    text = meta.headers.get("etag")
    return None if text is None else parse_entity_tag(text)


def _matches_weakly(
    meta: StoredResponseMeta,
    new_tag: EntityTag | None,
    new_lm: int | None,
    *,
    now: float,
) -> bool:
    if new_tag is not None:
        tag = _stored_tag(meta)
        if tag is None or not weak_match(tag, new_tag):
            return False
    if new_lm is not None:
        last_modified = _parse_date(meta.headers.get("last-modified"), now=now)
        if last_modified != new_lm:
            return False
    return True


def _recency(meta: StoredResponseMeta) -> tuple[float, float]:
    return _date_or(meta.headers, meta.response_time), meta.response_time


def _has_validator(meta: StoredResponseMeta) -> bool:
    return "etag" in meta.headers or "last-modified" in meta.headers


# --- Invalidation (RFC 9111 section 4.4) --------------------------------------------------------


def invalidated_uris(
    method: str, status: int, request_uri: str, response_headers: Fields
) -> list[str]:
    """The URIs whose stored responses a response to an unsafe method invalidates (section 4.4).

    Nothing for safe methods (RFC 9110 section 9.2.1: GET, HEAD, OPTIONS, TRACE) or for an error
    status (only 2xx and 3xx invalidate). Otherwise the target URI, then the URIs in Location and
    Content-Location, which section 4.4 allows, when they have the same origin as the target.

    URIs are in origin-form (`/path?query`), as cache keys are: `request_uri` is the request
    target, and a Location or Content-Location that is relative or path-absolute is resolved
    against it (RFC 3986 section 5.2, dot segments removed) and kept with its query and without
    its fragment. An absolute or network-path reference (`https://...`, `//host/...`) is not
    followed: this module does not know the cache's own scheme and authority, and section 4.4
    forbids invalidating another origin's URIs. A target that is not in origin-form is returned
    alone.
    """
    if method in _SAFE_METHODS or not 200 <= status < 400:
        return []
    uris = [request_uri]
    if not request_uri.startswith("/"):
        return uris
    for name in ("location", "content-location"):
        reference = response_headers.get(name)
        if reference is None:
            continue
        target = _same_origin_path(request_uri, reference.strip(_OWS))
        if target is not None and target not in uris:
            uris.append(target)
    return uris


def _same_origin_path(base: str, reference: str) -> str | None:
    if not reference or len(reference) > MAX_FIELD_LENGTH:
        return None
    try:
        parts = urlsplit(reference)
        if parts.scheme or parts.netloc:
            return None
        resolved = urlsplit(urljoin(base, reference))
    except ValueError:
        return None
    path = resolved.path or "/"
    return f"{path}?{resolved.query}" if resolved.query else path


# --- Dates ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _parse_date(value: str | None, *, now: float) -> int | None:
    """An HTTP-date (RFC 9110 section 5.6.7), matched case-insensitively as section 4.2 asks of
    a cache, or None. Memoised: a stored response's dates are read with the same `now` (its
    response time) on every hit."""
    if value is None or len(value) > _MAX_SHORT_FIELD_LENGTH:
        return None
    parsed = parse_http_date(value, now=now)
    if parsed is None:
        parsed = parse_http_date(_LETTERS.sub(_canonical_case, value), now=now)
    return parsed


def _canonical_case(word: re.Match[str]) -> str:
    text = word[0]
    return "GMT" if text.upper() == "GMT" else text.capitalize()


def _date_or(headers: Fields, response_time: float) -> float:
    """The Date, or the time the response was received when it has none (RFC 9110 6.6.1)."""
    date = _parse_date(headers.get("date"), now=response_time)
    return response_time if date is None else float(date)


__all__ = [
    "DEFAULT_HEURISTIC_FRACTION",
    "DEFAULT_HEURISTIC_MAX",
    "HEURISTICALLY_CACHEABLE_STATUSES",
    "MAX_DELTA_SECONDS",
    "MAX_FIELD_LENGTH",
    "MAX_VARY_FIELDS",
    "STORABLE_STATUSES",
    "CacheDirectives",
    "Fields",
    "Freshness",
    "FreshnessState",
    "StoredResponseMeta",
    "age_header_value",
    "combine_fields",
    "current_age",
    "current_age_of",
    "date_and_age",
    "evaluate_stored",
    "freshen_headers",
    "freshness_lifetime",
    "freshness_lifetime_of",
    "has_explicit_freshness",
    "invalidated_uris",
    "is_storable",
    "parse_cache_control",
    "secondary_key",
    "selects_stored",
    "validators_for_revalidation",
    "vary_field_names",
    "vary_matches",
]
