"""Secrets masked in every shape they take in text: plain, embedded, JSON-escaped, repr-ed,
URL-encoded, in nested values — and a property test over random secrets and surroundings."""

from __future__ import annotations

import json
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_core.credentials.masking import MASK, Masker

SECRET = 'p@ss "wörd"\\42'


def test_every_shape_of_a_secret_is_masked() -> None:
    masker = Masker([SECRET])
    samples = [
        SECRET,
        f"connecting with {SECRET} now",
        json.dumps({"password": SECRET}),
        json.dumps({"password": SECRET}, ensure_ascii=False),
        repr(SECRET),
        f"postgresql://user:{quote(SECRET, safe='')}@db/x",
        f"error: {SECRET!r} rejected",
    ]
    for sample in samples:
        masked = masker.mask(sample)
        assert MASK in masked, sample
        for form in (SECRET, json.dumps(SECRET)[1:-1], quote(SECRET, safe="")):
            assert form not in masked, (sample, masked)


def test_values_are_masked_all_through_and_short_ones_are_left_and_named() -> None:
    masker = Masker(["token-123456", "abc", "", None])  # type: ignore[list-item]
    value = {"token-123456": ["x token-123456 y", {"k": "token-123456"}], "n": 3, "t": None}
    assert masker.mask_value(value) == {MASK: [f"x {MASK} y", {"k": MASK}], "n": 3, "t": None}
    assert masker.too_short == {"abc"}
    assert masker.mask("abc") == "abc"
    assert not Masker() and Masker().mask("anything") == "anything"


def test_the_longest_secret_wins_when_one_contains_another() -> None:
    masker = Masker(["secret", "secret-longer"])
    assert masker.mask("a secret-longer b secret c") == f"a {MASK} b {MASK} c"


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(secret=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=4,
                      max_size=20), before=TEXT, after=TEXT)  # fmt: skip
def test_no_shape_of_a_secret_survives(secret: str, before: str, after: str) -> None:
    masker = Masker([secret])
    for text in (before + secret + after, json.dumps(before + secret + after),
                 repr(before + secret + after)):  # fmt: skip
        assert secret not in masker.mask(text)
