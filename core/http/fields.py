"""Connection-specific header fields (RFC 9110 section 7.6.1): what a proxy never forwards.

Fields are mappings with lowercase names, field lines combined with ", ".
"""

from collections.abc import Mapping

_OWS = " \t"

# RFC 9110 section 7.6.1's connection-specific fields, and the proxy-specific ones
# (sections 11.7.1-11.7.3) that concern only the hop they were sent on.
CONNECTION_SPECIFIC = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authentication-info",
        "proxy-authorization",
    }
)


def connection_options(fields: Mapping[str, str]) -> frozenset[str]:
    """The field names listed in Connection, which are connection-specific too."""
    return frozenset(
        name.strip(_OWS).lower()
        for name in fields.get("connection", "").split(",")
        if name.strip(_OWS)
    )


def end_to_end(
    fields: Mapping[str, str], *, also_drop: frozenset[str] = frozenset()
) -> dict[str, str]:
    """`fields` without the connection-specific ones (and without `also_drop`)."""
    dropped = CONNECTION_SPECIFIC | connection_options(fields) | also_drop
    return {name: value for name, value in fields.items() if name not in dropped}
