"""Text analysis shared by lexical strategies and features.

The default analyzer is the one the reference BM25 numbers use: lowercase, tokens are the
regex ``\\w+``, no stemming, no stop words. Stemming and stop words are options.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

_TOKEN = re.compile(r"\w+")

#: A small English stop list (articles, pronouns, auxiliaries, prepositions).
ENGLISH_STOP_WORDS = frozenset(
    """a an the and or but if of at by for with about against between into through during
    before after above below to from up down in out on off over under again further then once
    here there when where why how all any both each few more most other some such no nor not
    only own same so than too very s t can will just don should now i me my we our you your he
    him his she her it its they them their what which who whom this that these those am is are
    was were be been being have has had having do does did doing would could ought""".split()
)


@lru_cache(maxsize=65536)
def _light_stem(token: str) -> str:
    """A light English suffix stripper (plural and common inflections); cached per token."""
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            if suffix == "s" and token.endswith("ss"):
                return token
            return token[: len(token) - len(suffix)] + keep
    return token


@dataclass(frozen=True)
class Analyzer:
    """Turns text into tokens.

    Parameters
    ----------
    lowercase
        Fold case before tokenizing.
    stem
        Apply a light English suffix stripper.
    stop_words
        Drop English stop words.
    strip_accents
        Fold accented letters to their base letter ("Amélie" matches "amelie").
    """

    lowercase: bool = True
    stem: bool = False
    stop_words: bool = False
    strip_accents: bool = False

    def __call__(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        if self.strip_accents:
            text = fold_accents(text)
        tokens = _TOKEN.findall(text)
        if self.stop_words:
            tokens = [t for t in tokens if t not in ENGLISH_STOP_WORDS]
        if self.stem:
            tokens = [_light_stem(t) for t in tokens]
        return tokens

    def many(self, texts: Iterable[str]) -> list[list[str]]:
        return [self(t) for t in texts]


def fold_accents(text: str) -> str:
    """Remove combining marks: 'Amélie' -> 'Amelie'."""
    if text.isascii():  # NFKD leaves ASCII as it is, and ASCII has no combining marks
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalize_query(text: str) -> str:
    """The key under which the click memory stores a query: folded, tokenized, single-spaced."""
    return " ".join(_TOKEN.findall(fold_accents(text.lower())))
