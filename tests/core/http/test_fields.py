"""Connection-specific fields never cross a proxy (RFC 9110 section 7.6.1)."""

from core.http.fields import CONNECTION_SPECIFIC, connection_options, end_to_end


def test_fields_named_in_connection_are_connection_specific() -> None:
    fields = {"connection": "close, X-Hop ,", "x-hop": "1", "etag": '"a"', "keep-alive": "5"}
    assert connection_options(fields) == {"close", "x-hop"}
    assert end_to_end(fields) == {"etag": '"a"'}


def test_end_to_end_drops_the_standard_set_and_extras() -> None:
    fields = dict.fromkeys(CONNECTION_SPECIFIC, "x") | {"host": "h", "range": "bytes=0-1"}
    assert end_to_end(fields) == {"host": "h", "range": "bytes=0-1"}
    assert end_to_end(fields, also_drop=frozenset({"host"})) == {"range": "bytes=0-1"}
