"""Conditional requests (RFC 9110 section 13), decided on header values and plain validators.

`evaluate_preconditions` applies If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since
and If-Range in the order of section 13.2.2 and says what to do: proceed (200, or 206 when a
Range is to be honoured), 304 Not Modified, or 412 Precondition Failed.

Section 13.2.1: preconditions are evaluated only when the response without them would be 2xx or
412, so the caller evaluates them once it has found the selected representation; a missing
object is a 404 whatever the preconditions say.

Also here: entity-tag parsing and comparison (section 8.8.3) and HTTP-dates (section 5.6.7), both
parsing (all three formats) and formatting. Nothing reads a clock: the one rule that needs the
current time (two-digit years of the obsolete RFC 850 format) takes it as an argument.
"""

import calendar
import enum
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Section 5.6.7. The names are case-sensitive (%s"..." in the grammar); each format fixes its
# separators exactly, and asctime pads a one-digit day with a space.
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
_MONTH = "(" + "|".join(_MONTHS) + ")"
_IMF_FIXDATE = re.compile(
    rf"(?:{'|'.join(_DAY_NAMES)}), ([0-9]{{2}}) {_MONTH} ([0-9]{{4}}) {_TIME} GMT"
)
_RFC850_DATE = re.compile(
    rf"(?:{'|'.join(_LONG_DAY_NAMES)}), ([0-9]{{2}})-{_MONTH}-([0-9]{{2}}) {_TIME} GMT"
)
_ASCTIME_DATE = re.compile(
    rf"(?:{'|'.join(_DAY_NAMES)}) {_MONTH} ([0-9]{{2}}| [0-9]) {_TIME} ([0-9]{{4}})"
)
_OWS = " \t"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Section 8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text.
# A comma is a valid etagc, so a list of tags cannot be split on commas; it is scanned instead.
_ENTITY_TAG = re.compile(r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"')
# One element of a `1#entity-tag` list: the tag, OWS, then a comma or the end of the field.
_LIST_ELEMENT = re.compile(r'((?:W/)?"[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|\Z)')

# Fields longer than this are not a real client's validators; they are treated as malformed
# (which, per the rules below, never lets a request through that a valid field would stop).
MAX_CONDITIONAL_FIELD_LENGTH = 8192


class Precondition(enum.Enum):
    """What the evaluated preconditions require of the response."""

    PROCEED = "proceed"
    """Serve the representation: 200, or 206 if `Evaluation.honour_range` and a range applies."""
    NOT_MODIFIED = "not_modified"
    """304 Not Modified (section 15.4.5): no content, but the validators and Cache-Control."""
    PRECONDITION_FAILED = "precondition_failed"
    """412 Precondition Failed (section 15.5.13)."""


@dataclass(frozen=True)
class Evaluation:
    outcome: Precondition
    honour_range: bool
    """Whether a Range field may be acted on: only for GET (section 14.2) and only when any
    If-Range condition is true (section 13.1.5); otherwise the whole representation is sent."""


@dataclass(frozen=True)
class Validators:
    """The selected representation's validators, as sent in ETag and Last-Modified."""

    etag: str | None
    """The entity tag as it goes on the wire, quotes included (and `W/` if weak)."""
    last_modified: float | None
    """POSIX seconds. HTTP-dates have one-second resolution, so comparisons use the whole second
    that the Last-Modified field shows (the value rounded down)."""


@dataclass(frozen=True)
class ConditionalHeaders:
    """The request's conditional fields, None when absent.

    A field sent on several lines is passed as its lines joined with ", " (section 5.3). For the
    list-valued If-Match and If-None-Match that is the combined list; for a date field it makes
    the value invalid, which is exactly how section 13.1.3 and 13.1.4 want a list of dates read.
    """

    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_unmodified_since: str | None = None
    if_range: str | None = None


@dataclass(frozen=True)
class EntityTag:
    opaque_tag: str
    """The tag including its double quotes, as it appears on the wire."""
    weak: bool


def parse_entity_tag(value: str) -> EntityTag | None:
    """One entity-tag (section 8.8.3), or None if `value` is not exactly one valid tag."""
    match = _ENTITY_TAG.fullmatch(value.strip(_OWS))
    return None if match is None else _entity_tag(match[0])


def _entity_tag(text: str) -> EntityTag:
    """The EntityTag of text already matched as one entity-tag."""
    weak = text.startswith("W/")
    return EntityTag(text[2:] if weak else text, weak)


def parse_entity_tag_list(value: str) -> list[EntityTag] | None:
    """The tags of an If-Match or If-None-Match list (`1#entity-tag`), or None if malformed.

    Empty list elements are skipped (section 5.6.1.2). The `*` form is not a list; callers check
    for it first.
    """
    if len(value) > MAX_CONDITIONAL_FIELD_LENGTH:
        return None
    tags: list[EntityTag] = []
    index = 0
    while True:
        # Section 5.6.1.2: recipients skip empty list elements (runs of commas and OWS).
        while index < len(value) and value[index] in " \t,":
            index += 1
        if index == len(value):
            return tags
        element = _LIST_ELEMENT.match(value, index)
        if element is None:
            return None
        tags.append(_entity_tag(element[1]))
        index = element.end()


def strong_match(a: EntityTag, b: EntityTag) -> bool:
    """Section 8.8.3.2: both tags are strong and their opaque-tags are identical."""
    return not a.weak and not b.weak and a.opaque_tag == b.opaque_tag


def weak_match(a: EntityTag, b: EntityTag) -> bool:
    """Section 8.8.3.2: the opaque-tags are identical, whether either tag is weak or not."""
    return a.opaque_tag == b.opaque_tag


def parse_http_date(value: str, *, now: float) -> int | None:
    """POSIX seconds of an HTTP-date in any of the three formats of section 5.6.7, else None.

    `now` (POSIX seconds) is needed only for the obsolete RFC 850 format's two-digit year: section
    5.6.7 reads a year that would be more than 50 years in the future as the most recent past year
    with the same two digits. Surrounding whitespace is ignored; anything else that is not exactly
    one of the formats, or names a day that does not exist, is invalid. The day name is not
    checked against the date: section 5.6.7 gives no rule for a mismatch, and ignoring the date
    instead would be a guess of what the sender meant.
    """
    text = value.strip(_OWS)
    if match := _IMF_FIXDATE.fullmatch(text):
        day, month, year, hour, minute, second = match.groups()
        return _timestamp(int(year), month, int(day), hour, minute, second)
    if match := _RFC850_DATE.fullmatch(text):
        day, month, two_digit_year, hour, minute, second = match.groups()
        year = _rfc850_year(int(two_digit_year), now)
        return _timestamp(year, month, int(day), hour, minute, second)
    if match := _ASCTIME_DATE.fullmatch(text):
        month, day, hour, minute, second, year = match.groups()
        return _timestamp(int(year), month, int(day), hour, minute, second)
    return None


def http_date(posix_seconds: float) -> str:
    """The IMF-fixdate form of a time (section 5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.

    Fractions of a second are dropped (rounded down), as HTTP-dates cannot carry them.
    """
    try:
        moment = _EPOCH + timedelta(seconds=math.floor(posix_seconds))
    except OverflowError as exc:
        raise ValueError(f"{posix_seconds} is after year 9999: not an HTTP-date") from exc
    if moment.year < 1000:
        raise ValueError(f"{posix_seconds} is before year 1000: not an HTTP-date (4 year digits)")
    return (
        f"{_DAY_NAMES[moment.weekday()]}, {moment.day:02d} {_MONTHS[moment.month - 1]} "
        f"{moment.year:04d} {moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} GMT"
    )


def evaluate_preconditions(
    method: str,
    headers: ConditionalHeaders,
    validators: Validators,
    *,
    has_range: bool,
    now: float,
) -> Evaluation:
    """Evaluate the preconditions for an existing representation in section 13.2.2's order.

    `has_range` says whether the request carries a Range field (If-Range is ignored without one,
    section 13.1.5); `now` is the current POSIX time, used only to read RFC 850 dates.
    """
    is_get_or_head = method in ("GET", "HEAD")
    # Step 1: If-Match. Step 2: If-Unmodified-Since, only when there is no If-Match.
    if headers.if_match is not None:
        if not _if_match(headers.if_match, validators):
            return Evaluation(Precondition.PRECONDITION_FAILED, honour_range=False)
    elif headers.if_unmodified_since is not None and not _if_unmodified_since(
        headers.if_unmodified_since, validators, now
    ):
        return Evaluation(Precondition.PRECONDITION_FAILED, honour_range=False)
    # Step 3: If-None-Match; a false condition is 304 for GET and HEAD, 412 for other methods.
    # Step 4: If-Modified-Since, only for GET and HEAD and only without If-None-Match.
    if headers.if_none_match is not None:
        if not _if_none_match(headers.if_none_match, validators):
            outcome = (
                Precondition.NOT_MODIFIED if is_get_or_head else Precondition.PRECONDITION_FAILED
            )
            return Evaluation(outcome, honour_range=False)
    elif (
        is_get_or_head
        and headers.if_modified_since is not None
        and not _if_modified_since(headers.if_modified_since, validators, now)
    ):
        return Evaluation(Precondition.NOT_MODIFIED, honour_range=False)
    # Step 5: Range is defined for GET only (section 14.2), and If-Range, when present with a
    # Range, decides whether the range or the whole representation is sent.
    honour_range = method == "GET" and (
        not has_range or headers.if_range is None or _if_range(headers.if_range, validators, now)
    )
    return Evaluation(Precondition.PROCEED, honour_range=honour_range)


def _if_match(field_value: str, validators: Validators) -> bool:
    """Section 13.1.1: true for `*` (the representation exists) or a strongly matching tag.

    A malformed field matches nothing, so it fails: the client asked for a guarantee that cannot
    be given.
    """
    if field_value.strip(_OWS) == "*":
        return True
    current = _current_tag(validators)
    tags = parse_entity_tag_list(field_value)
    if current is None or tags is None:
        return False
    return any(strong_match(tag, current) for tag in tags)


def _if_none_match(field_value: str, validators: Validators) -> bool:
    """Section 13.1.2: false for `*` (the representation exists) or a weakly matching tag.

    A malformed field is ignored (true): it names no tag the representation could match.
    """
    if field_value.strip(_OWS) == "*":
        return False
    current = _current_tag(validators)
    tags = parse_entity_tag_list(field_value)
    if current is None or tags is None:
        return True
    return not any(weak_match(tag, current) for tag in tags)


def _if_modified_since(field_value: str, validators: Validators, now: float) -> bool:
    """Section 13.1.3: false when the representation was not modified after the date.

    An invalid date, or a representation without a modification date, is ignored (true).
    """
    since = parse_http_date(field_value, now=now)
    if since is None or validators.last_modified is None:
        return True
    return math.floor(validators.last_modified) > since


def _if_unmodified_since(field_value: str, validators: Validators, now: float) -> bool:
    """Section 13.1.4: false when the representation was modified after the date.

    An invalid date, or a representation without a modification date, is ignored (true).
    """
    since = parse_http_date(field_value, now=now)
    if since is None or validators.last_modified is None:
        return True
    return math.floor(validators.last_modified) <= since


def _if_range(field_value: str, validators: Validators, now: float) -> bool:
    """Section 13.1.5: true if the entity-tag matches strongly or the date is Last-Modified.

    Anything else, including a weak tag and a malformed value, is false, so the whole
    representation is sent: a client must never splice a range of a different version. A date is
    trusted as a strong validator (section 8.8.2.2) on the caller's word that the representation
    does not change twice within one second; callers with an ETag should rely on it instead.
    """
    value = field_value.strip(_OWS)
    if value.startswith(('"', "W/")):
        tag = parse_entity_tag(value)
        current = _current_tag(validators)
        return tag is not None and current is not None and strong_match(tag, current)
    date = parse_http_date(value, now=now)
    if date is None or validators.last_modified is None:
        return False
    return math.floor(validators.last_modified) == date


def _current_tag(validators: Validators) -> EntityTag | None:
    return None if validators.etag is None else parse_entity_tag(validators.etag)


def _rfc850_year(two_digit_year: int, now: float) -> int:
    """Section 5.6.7: the year with these last two digits that lies within the next 50 years or,
    failing that, the most recent one in the past. Years are compared, not instants: the
    format's resolution makes the difference immaterial."""
    current_year = (_EPOCH + timedelta(seconds=math.floor(now))).year
    year = current_year - current_year % 100 + two_digit_year
    if year > current_year + 50:
        year -= 100
    elif year <= current_year - 50:
        year += 100
    return year


def _timestamp(
    year: int, month_name: str, day: int, hour: str, minute: str, second: str
) -> int | None:
    month = _MONTHS.index(month_name) + 1
    if year < 1:
        return None
    # Section 5.6.7 allows a leap second (60), which is read as the next second's start.
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    if int(hour) > 23 or int(minute) > 59 or int(second) > 60:
        return None
    return calendar.timegm((year, month, day, int(hour), int(minute), int(second), 0, 0, 0))


__all__ = [
    "MAX_CONDITIONAL_FIELD_LENGTH",
    "ConditionalHeaders",
    "EntityTag",
    "Evaluation",
    "Precondition",
    "Validators",
    "evaluate_preconditions",
    "http_date",
    "parse_entity_tag",
    "parse_entity_tag_list",
    "parse_http_date",
    "strong_match",
    "weak_match",
]
