"""Moderation: whether an upload goes live at once or waits for a moderator.

A check is anything with `review(submission) -> Allow | Hold` (`ModerationCheck`), so a
classifier or an external service can join the built-in rules through `combine`. A check never
rejects on its own: it holds, and a person decides.

`DefaultRules` holds sources whose SHA-256 is on a block list, and captions or music titles
with a blocked word. Text is compared after `normalise` (NFKC, case folding, invisible
characters removed, whitespace runs made one space): a filter that lets fullwidth letters or
"forb<zero-width space>idden" through is no filter. Words match whole, so blocking "ass" does
not hold "class".
"""

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeAlias


@dataclass(frozen=True)
class Submission:
    """What a check sees of an upload."""

    caption: str
    music: str
    creator: str
    source_sha256: str


@dataclass(frozen=True)
class Allow:
    """The video may be published."""


@dataclass(frozen=True)
class Hold:
    """The video waits for a moderator; `reason` tells them (and the creator) why."""

    reason: str


Verdict: TypeAlias = Allow | Hold
ALLOW = Allow()


class ModerationCheck(Protocol):
    def review(self, submission: Submission) -> Verdict: ...


# Characters that render as nothing but are not format characters (Unicode category Cf, all of
# which go too): the combining grapheme joiner, Hangul and Khmer fillers.
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def normalise(text: str) -> str:
    """`text` as words are compared: NFKC, case-folded, invisible characters removed, every
    whitespace run one space, no leading or trailing space."""
    visible = "".join(
        char for char in text if char not in _INVISIBLE and unicodedata.category(char) != "Cf"
    )
    # Case folding can undo NFKC (e.g. it expands some ligatures), hence the second pass.
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", visible).casefold())
    return " ".join(folded.split())


class DefaultRules:
    """Hold blocked sources (by SHA-256) and captions or music with a blocked word or phrase."""

    def __init__(self, blocked_words: Iterable[str], blocked_hashes: Iterable[str]) -> None:
        self._hashes = frozenset(_sha256(digest) for digest in blocked_hashes)
        # Longest first: at one position, a phrase is reported rather than a word inside it.
        self._words = sorted({w for w in map(normalise, blocked_words) if w}, key=len, reverse=True)
        self._pattern = re.compile(
            "|".join(
                rf"(?P<w{number}>(?<!\w){re.escape(word)}(?!\w))"
                for number, word in enumerate(self._words)
            )
        )

    def review(self, submission: Submission) -> Verdict:
        if submission.source_sha256.lower() in self._hashes:
            return Hold("the source file is on the block list")
        for field, text in (("caption", submission.caption), ("music", submission.music)):
            word = self._blocked_word(text)
            if word is not None:
                return Hold(f"{field} contains blocked word '{word}'")
        return ALLOW

    def _blocked_word(self, text: str) -> str | None:
        if not self._words:
            return None
        found = self._pattern.search(normalise(text))
        if found is None or found.lastgroup is None:
            return None
        return self._words[int(found.lastgroup[1:])]


def _sha256(digest: str) -> str:
    normalised = digest.strip().lower()
    if not _SHA256.fullmatch(normalised):
        raise ValueError(f"not a SHA-256 (64 hexadecimal digits): {digest!r}")
    return normalised


@dataclass(frozen=True)
class _Combined:
    checks: tuple[ModerationCheck, ...]

    def review(self, submission: Submission) -> Verdict:
        for check in self.checks:
            verdict = check.review(submission)
            if isinstance(verdict, Hold):
                return verdict
        return ALLOW


def combine(*checks: ModerationCheck) -> ModerationCheck:
    """One check that holds with the first of `checks` (in order) that holds."""
    return _Combined(checks)
