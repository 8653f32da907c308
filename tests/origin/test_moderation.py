"""Moderation rules: blocked sources and words, matched however the text is dressed up, and
checks combined in order."""

import hashlib

import pytest

from origin.moderation import (
    ALLOW,
    Allow,
    DefaultRules,
    Hold,
    ModerationCheck,
    Submission,
    Verdict,
    combine,
    normalise,
)

BLOCKED_SOURCE = hashlib.sha256(b"a known bad video").hexdigest()
CLEAN_SOURCE = hashlib.sha256(b"a holiday video").hexdigest()
RULES = DefaultRules(["Forbidden", "very bad", "bad"], [BLOCKED_SOURCE.upper()])


def submission(caption: str = "", music: str = "", source: str = CLEAN_SOURCE) -> Submission:
    return Submission(caption=caption, music=music, creator="alice", source_sha256=source)


def test_a_clean_submission_is_allowed() -> None:
    assert RULES.review(submission("sunset at the beach", "waves")) == ALLOW == Allow()


@pytest.mark.parametrize(
    "caption",
    [
        "this is forbidden",
        "FORBIDDEN!",
        "\uff46\uff4f\uff52\uff42\uff49\uff44\uff44\uff45\uff4e",  # fullwidth letters
        "forb\u200bidden",  # zero-width space
        "for\u00adbid\u2060den",  # soft hyphen, word joiner
        "forbi\u034fdden",  # combining grapheme joiner
        "(forbidden)",
        "#forbidden",
    ],
)
def test_a_blocked_word_is_found_however_it_is_written(caption: str) -> None:
    assert RULES.review(submission(caption)) == Hold("caption contains blocked word 'forbidden'")


@pytest.mark.parametrize("caption", ["forbiddenness", "unforbidden", "forbid den", "badge"])
def test_only_whole_words_match(caption: str) -> None:
    assert RULES.review(submission(caption)) == ALLOW


def test_a_phrase_matches_across_any_whitespace_and_is_named_whole() -> None:
    verdict = RULES.review(submission("it was very \n\t  bad indeed"))
    assert verdict == Hold("caption contains blocked word 'very bad'")


def test_the_music_title_is_checked_too() -> None:
    assert RULES.review(submission("fine", "Bad Romance")) == Hold(
        "music contains blocked word 'bad'"
    )


def test_the_source_is_checked_first_then_the_caption_then_the_music() -> None:
    assert RULES.review(submission("forbidden", "bad", source=BLOCKED_SOURCE)) == Hold(
        "the source file is on the block list"
    )
    assert RULES.review(submission("forbidden", "bad")) == Hold(
        "caption contains blocked word 'forbidden'"
    )
    assert RULES.review(submission("", "bad", source=BLOCKED_SOURCE.upper())) == Hold(
        "the source file is on the block list"
    )


@pytest.mark.parametrize("digest", ["", "abc", "g" * 64, "a" * 63, "a" * 65, f"{'a' * 63} "])
def test_a_malformed_blocked_hash_is_refused(digest: str) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        DefaultRules([], ["a" * 64, digest])


def test_no_rules_allow_everything() -> None:
    rules = DefaultRules(["", "  "], [])
    assert rules.review(submission("anything forbidden", "bad")) == ALLOW


def test_normalise() -> None:
    assert normalise("  \uff28\u200bello\u00a0\n WORLD\u2003 ") == "hello world"
    assert normalise("\ufb01ne Stra\u00dfe") == "fine strasse"  # ligature, sharp s


class Fixed:
    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.calls = 0

    def review(self, submission: Submission) -> Verdict:
        self.calls += 1
        return self.verdict


def test_combine_holds_with_the_first_check_that_holds() -> None:
    first, second, third = Fixed(ALLOW), Fixed(Hold("second")), Fixed(Hold("third"))
    combined: ModerationCheck = combine(first, second, third)
    assert combined.review(submission()) == Hold("second")
    assert (first.calls, second.calls, third.calls) == (1, 1, 0)
    assert combine(Fixed(ALLOW), RULES).review(submission("forbidden")) == Hold(
        "caption contains blocked word 'forbidden'"
    )
    assert combine(Fixed(ALLOW), Fixed(ALLOW)).review(submission()) == ALLOW
    assert combine().review(submission()) == ALLOW
