"""Rewrite the URIs in a playlist's text, leaving every other character as it was.

This works on the text line by line rather than on the model, so tags the model does not know
(EXT-X-PROGRAM-DATE-TIME, vendor tags...) pass through untouched. Rewritten are the URI lines
(variant and segment URIs) and the URI attribute of the tags in `URI_ATTRIBUTE_TAGS`.
`prefix_uris` and `add_query` make the usual rewriters.
"""

import re
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from manifests.build import _quoted, _uri_line
from manifests.model import ManifestError
from manifests.parse import check_playlist_text

# Tags whose URI attribute names a resource relative to the playlist (RFC 8216 section 4.3 and
# draft-pantos-hls-rfc8216bis). EXT-X-KEY and EXT-X-SESSION-KEY are left alone on purpose: their
# URI may be a key system's identifier (FairPlay's "skd://...") that must not gain a query.
URI_ATTRIBUTE_TAGS = frozenset(
    {
        "#EXT-X-MAP",
        "#EXT-X-MEDIA",
        "#EXT-X-I-FRAME-STREAM-INF",
        "#EXT-X-SESSION-DATA",
        "#EXT-X-PART",
        "#EXT-X-PRELOAD-HINT",
        "#EXT-X-RENDITION-REPORT",
    }
)

# A line split into surrounding white space (CR included) and content.
_LINE = re.compile(r"(\s*)(\S.*?)(\s*)")
# RFC 8216 section 4.2: AttributeName=AttributeValue, comma separated; quoted-strings hold no '"'.
_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^",]*)(,|\Z)')
# RFC 3986 section 3.1: a URI starting with a scheme is absolute.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def rewrite_uris(text: str, rewrite: Callable[[str], str]) -> str:
    """`text` with each URI replaced by `rewrite(uri)`.

    The text must pass `parse.check_playlist_text`, and the rewritten URIs must still fit their
    lines (no line breaks, no quotes in attributes); otherwise `ManifestError`.
    """
    check_playlist_text(text)
    lines = text.split("\n")
    for index, line in enumerate(lines):
        parts = _LINE.fullmatch(line)
        if parts is None:
            continue  # blank
        before, content, after = parts.groups()
        if not content.startswith("#"):
            content = _uri_line(rewrite(content))
        elif content.split(":", 1)[0] in URI_ATTRIBUTE_TAGS:
            content = _rewrite_uri_attribute(content, rewrite, index + 1)
        lines[index] = before + content + after
    return "\n".join(lines)


def is_relative_reference(uri: str) -> bool:
    """Whether `uri` is relative to the playlist's own location: no scheme, no leading '/'."""
    return not uri.startswith("/") and _SCHEME.match(uri) is None


def prefix_uris(base: str) -> Callable[[str], str]:
    """A rewriter putting relative URIs under `base`, a directory path or URL.

    A '/' is added to `base` if missing; absolute URIs (`is_relative_reference`) stay as they are.
    """
    if not base:
        raise ValueError("the base of prefix_uris must not be empty")
    directory = base if base.endswith("/") else base + "/"

    def prefix(uri: str) -> str:
        return directory + uri if is_relative_reference(uri) else uri

    return prefix


def add_query(params: Mapping[str, str]) -> Callable[[str], str]:
    """A rewriter appending `params`, percent-encoded, to each URI's query (before any fragment)."""
    query = urlencode(params)  # encoded now: later changes to `params` do not leak in

    def append(uri: str) -> str:
        if not query:
            return uri
        before_fragment, hash_mark, fragment = uri.partition("#")
        if before_fragment.endswith(("?", "&")):
            separator = ""
        else:
            separator = "&" if "?" in before_fragment else "?"
        return f"{before_fragment}{separator}{query}{hash_mark}{fragment}"

    return append


def _rewrite_uri_attribute(tag_line: str, rewrite: Callable[[str], str], line_number: int) -> str:
    tag, _, attribute_list = tag_line.partition(":")
    rewritten: list[str] = []
    position = 0
    while position < len(attribute_list):
        attribute = _ATTRIBUTE.match(attribute_list, position)
        if attribute is None:
            raise ManifestError(f"line {line_number}: malformed attribute list in {tag}")
        name, value, separator = attribute.groups()
        if name == "URI":
            if not value.startswith('"'):
                raise ManifestError(f"line {line_number}: URI of {tag} is not a quoted-string")
            value = _quoted(rewrite(value[1:-1]))
        rewritten.append(f"{name}={value}{separator}")
        position = attribute.end()
    return f"{tag}:{''.join(rewritten)}"
