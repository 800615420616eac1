"""TF-IDF query features for the XMR tree: word n-grams plus character trigrams.

The product-search XMR paper (Chang et al., KDD 2021) found word unigrams, bigrams and character
trigrams together beat any one of them: word n-grams carry exact phrases, character trigrams with
word-boundary marks survive typos ("godfather" and "godfahter" still share " go", "god", "odf",
"fat", ...). Each block is TF-IDF weighted and L2-normalized on its own, then the concatenation is
normalized again, so neither block dominates because it has more terms.

Our own implementation (a dict vocabulary and scipy CSR), because a single query must be
vectorized in tens of microseconds on the serving path.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

_TOKEN = re.compile(r"\w+")


def _normalize(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def word_ngrams(tokens: Sequence[str], n_max: int) -> list[str]:
    """Word 1..``n_max``-grams joined by single spaces."""
    grams = list(tokens)
    for n in range(2, n_max + 1):
        grams.extend(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return grams


def char_ngrams(tokens: Sequence[str], n: int) -> list[str]:
    """Character ``n``-grams of each token padded with one space on each side (boundary marks)."""
    grams: list[str] = []
    for tok in tokens:
        padded = f" {tok} "
        if len(padded) <= n:
            grams.append(padded)
        else:
            grams.extend(padded[i:i + n] for i in range(len(padded) - n + 1))
    return grams


class TfidfFeaturizer:
    """Word 1..``word_ngrams``-gram plus character ``char_ngrams``-gram TF-IDF, CSR output.

    Parameters
    ----------
    word_ngrams
        Longest word n-gram (0 disables the word block).
    char_ngrams
        Character n-gram length with word-boundary marks (0 disables the character block).
    min_df
        Drop terms seen in fewer training texts.
    """

    def __init__(self, word_ngrams: int = 3, char_ngrams: int = 3, min_df: int = 1):
        if word_ngrams <= 0 and char_ngrams <= 0:
            raise ValueError("TfidfFeaturizer needs word_ngrams > 0 or char_ngrams > 0; got 0 and 0.")
        self.word_n = int(word_ngrams)
        self.char_n = int(char_ngrams)
        self.min_df = int(min_df)
        self.word_vocab_: dict[str, int] = {}
        self.char_vocab_: dict[str, int] = {}
        self.idf_: np.ndarray = np.empty(0)

    @property
    def n_features(self) -> int:
        return len(self.word_vocab_) + len(self.char_vocab_)

    def _grams(self, text: str) -> tuple[list[str], list[str]]:
        tokens = _TOKEN.findall(_normalize(text))
        words = word_ngrams(tokens, self.word_n) if self.word_n > 0 else []
        chars = char_ngrams(tokens, self.char_n) if self.char_n > 0 else []
        return words, chars

    def fit(self, texts: Sequence[str]) -> TfidfFeaturizer:
        """Learn the vocabularies and smoothed IDF (``log((1+n)/(1+df)) + 1``) from ``texts``."""
        wdf: dict[str, int] = {}
        cdf: dict[str, int] = {}
        for text in texts:
            words, chars = self._grams(text)
            for g in set(words):
                wdf[g] = wdf.get(g, 0) + 1
            for g in set(chars):
                cdf[g] = cdf.get(g, 0) + 1
        n = len(texts)
        words_kept = sorted(g for g, c in wdf.items() if c >= self.min_df)
        chars_kept = sorted(g for g, c in cdf.items() if c >= self.min_df)
        self.word_vocab_ = {g: i for i, g in enumerate(words_kept)}
        offset = len(words_kept)
        self.char_vocab_ = {g: offset + i for i, g in enumerate(chars_kept)}
        df = np.array([wdf[g] for g in words_kept] + [cdf[g] for g in chars_kept], dtype=np.float64)
        self.idf_ = np.log((1.0 + n) / (1.0 + df)) + 1.0
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """L2-normalized TF-IDF rows (``float32``); unseen terms are ignored."""
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        wv, cv, idf = self.word_vocab_, self.char_vocab_, self.idf_
        for text in texts:
            words, chars = self._grams(text)
            for vocab, grams in ((wv, words), (cv, chars)):
                counts: dict[int, int] = {}
                for g in grams:
                    j = vocab.get(g)
                    if j is not None:
                        counts[j] = counts.get(j, 0) + 1
                if not counts:
                    continue
                cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
                vals = np.fromiter(counts.values(), dtype=np.float64, count=len(counts)) * idf[cols]
                vals /= np.sqrt(vals @ vals)
                indices.extend(cols.tolist())
                data.extend(vals.tolist())
            indptr.append(len(indices))
        mat = sp.csr_matrix(
            (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int32),
             np.asarray(indptr, dtype=np.int64)),
            shape=(len(texts), self.n_features),
        )
        mat.sort_indices()
        # the per-block unit vectors are concatenated; normalize the whole row once more
        norms = np.sqrt(np.asarray(mat.multiply(mat).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        mat.data /= np.repeat(norms, np.diff(mat.indptr)).astype(np.float32)
        return mat

    def fit_transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self.fit(texts).transform(texts)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        """Vocabularies as JSON lists (ordered by column), IDF as ``.npy``."""
        words = sorted(self.word_vocab_, key=self.word_vocab_.__getitem__)
        chars = sorted(self.char_vocab_, key=self.char_vocab_.__getitem__)
        (directory / "vocabulary.json").write_text(
            json.dumps({"word_ngrams": self.word_n, "char_ngrams": self.char_n,
                        "min_df": self.min_df, "words": words, "chars": chars},
                       ensure_ascii=False),
            encoding="utf-8",
        )
        np.save(directory / "idf.npy", self.idf_, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> TfidfFeaturizer:
        meta = json.loads((directory / "vocabulary.json").read_text(encoding="utf-8"))
        obj = cls(meta["word_ngrams"], meta["char_ngrams"], meta["min_df"])
        obj.word_vocab_ = {g: i for i, g in enumerate(meta["words"])}
        offset = len(meta["words"])
        obj.char_vocab_ = {g: offset + i for i, g in enumerate(meta["chars"])}
        obj.idf_ = np.load(directory / "idf.npy", allow_pickle=False)
        return obj
