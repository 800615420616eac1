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

import hashlib
import io
import json
import math
import multiprocessing
import re
import unicodedata
import weakref
from collections import deque
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import closing, nullcontext
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from strategies.xmr.heap import release_free_heap
from strategies.xmr.parallel import ordered_map, row_split

_TOKEN = re.compile(r"\w+")
#: the featurizer last loaded, by the SHA-1s of its two files (see :meth:`TfidfFeaturizer.load`)
_LOADED: dict[str, weakref.ref] = {}


def _normalize(text: str) -> str:
    if text.isascii():
        return text.lower()
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
    max_features
        Keep at most this many terms per block, those in the most training texts (ties:
        alphabetical); ``None`` keeps all. Bounds the vocabulary of large catalogs, whose long
        texts are mostly word n-grams seen once.
    max_terms
        Keep at most this many terms of each text per block, those of the largest TF-IDF (ties:
        lower column); ``None`` keeps all. Bounds the nonzeros of long item texts used as
        pseudo-queries (a few distinctive terms, as a user would type), hence training time.

    Fitting large corpora runs vectorized over integer token ids, ``CHUNK`` texts at a time
    (see :meth:`fit_transform`); :meth:`transform` of a few queries stays on dictionaries.
    """

    CHUNK = 2_500

    def __init__(self, word_ngrams: int = 3, char_ngrams: int = 3, min_df: int = 1,
                 max_features: int | None = None, max_terms: int | None = None):
        if word_ngrams <= 0 and char_ngrams <= 0:
            raise ValueError("TfidfFeaturizer needs word_ngrams > 0 or char_ngrams > 0; got 0 and 0.")
        if max_features is not None and max_features < 1:
            raise ValueError(f"The 'max_features' parameter must be an int in [1, inf) or None. "
                             f"Got {max_features!r} instead.")
        self.word_n = int(word_ngrams)
        self.char_n = int(char_ngrams)
        self.min_df = int(min_df)
        if max_terms is not None and max_terms < 1:
            raise ValueError(f"The 'max_terms' parameter must be an int in [1, inf) or None. "
                             f"Got {max_terms!r} instead.")
        self.max_features = max_features
        self.max_terms = max_terms
        self.word_vocab_: dict[str, int] = {}
        self.char_vocab_: dict[str, int] = {}
        self.idf_: np.ndarray = np.empty(0)
        #: (word vocabulary, char vocabulary, their JSON file's bytes): see :meth:`save`
        self._vocab_file: tuple[dict, dict, bytes] | None = None
        #: what :meth:`load` read (files' digest, settings, vocabularies, IDF), shared with
        #: featurizers loaded from identical files; never changed by a later fit or save
        self._loaded_from: tuple[str, dict, dict, dict, np.ndarray] | None = None

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
        try:
            self._fit_ids(texts)
        except _TooManyWords:
            return self.fit_slow(texts)
        return self

    def _fit_ids(self, texts: Sequence[str], pool: ThreadPoolExecutor | None = None,
                 procs: int = 1) -> dict[str, Any]:
        """Fit on integer ids: words get ids in order of appearance, word n-grams are packed
        into one int64 (21 bits a word), a word's character n-grams are listed once per
        distinct word; document frequencies are counted per chunk of texts and merged (chunks
        counted on ``pool``'s threads, if given: the counts are the same). ``procs`` > 1
        tokenizes chunks in that many forked processes when there are at least
        :data:`PROCESS_TEXTS` texts (see :func:`_token_chunks`: the same ids in the same order).
        Returns the texts' token ids and lookup tables, for :meth:`fit_transform`."""
        wid: dict[str, int] = {}
        cid: dict[str, int] = {}
        # character n-gram ids of word id w: c_flat[c_ptr[w]:c_ptr[w + 1]], listed chunk by chunk
        c_lens: list[np.ndarray] = []
        c_flats: list[np.ndarray] = []
        ids_chunks: list[tuple[np.ndarray, np.ndarray]] = []
        cdf = np.zeros(0, dtype=np.int64)
        n_tokens = 0
        if self.word_n > 3:
            raise _TooManyWords
        # closed on the way out, a raise included: the worker processes end with the loop
        with closing(_token_chunks(texts, self.CHUNK, procs)) as token_chunks:
            for local_words, local_ids, lens_a in token_chunks:
                n_before = len(wid)
                new = [w for w in local_words if w not in wid]  # in order of first appearance
                wid.update(zip(new, range(n_before, n_before + len(new)), strict=True))
                del new
                remap = np.fromiter(map(wid.__getitem__, local_words), dtype=np.int64, count=len(local_words))
                ids = remap[local_ids]
                del local_words, local_ids, remap
                if len(wid) >= _WORD_LIMIT - 1:
                    raise _TooManyWords
                ids_chunks.append((ids.astype(np.int32), lens_a))
                n_tokens += ids.size
                if self.char_n > 0:
                    grams = [[cid.setdefault(g, len(cid)) for g in char_ngrams([w], self.char_n)]
                             for w in islice(wid, n_before, None)]
                    glen = np.fromiter(map(len, grams), dtype=np.int64, count=len(grams))
                    c_lens.append(glen)
                    c_flats.append(np.fromiter(chain.from_iterable(grams), dtype=np.int64, count=int(glen.sum())))
        c_ptr = np.r_[0, np.cumsum(np.concatenate(c_lens))].astype(np.int64) if c_lens else np.zeros(1, np.int64)
        c_flat = np.concatenate(c_flats) if c_flats else np.zeros(0, np.int64)
        del c_lens, c_flats
        if self.char_n > 0:
            cdf = np.zeros(len(cid), dtype=np.int64)
            n_words = len(wid)

            def char_df(chunk: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
                ids, lens_a = chunk[0].astype(np.int64), chunk[1]
                doc = np.repeat(np.arange(lens_a.size, dtype=np.int64), lens_a)
                pairs = _distinct(doc * n_words + ids)  # distinct (text, word)
                d_doc, d_word = pairs // n_words, pairs % n_words
                cnt = c_ptr[d_word + 1] - c_ptr[d_word]
                cval = c_flat[np.arange(int(cnt.sum())) + np.repeat(c_ptr[d_word] - np.cumsum(cnt) + cnt, cnt)]
                return _doc_freq(np.repeat(d_doc, cnt), cval)

            for k, c in ordered_map(char_df, ids_chunks, pool):
                cdf[k] += c
        # word n-gram frequencies: most n-grams of long texts occur once. With min_df >= 2 a
        # first pass finds the candidates (see _frequent_grams) and a second counts them; else
        # they are counted in hash partitions of the key space, each pass holding ~1/parts of
        # the distinct n-grams
        wkeys, wdfs = [], []
        if self.word_n > 0:
            parts = max(1, -(-n_tokens * self.word_n // _KEYS_PER_PASS))
            if parts > 1 and self.min_df >= 2:
                k, c = _frequent_grams(ids_chunks, self.word_n, self.min_df, n_tokens * self.word_n, pool)
                wkeys, wdfs, parts = [k], [c], 0
            for part in range(parts):
                keys, counts = [], []
                for ids, lens_a in ids_chunks:
                    gk, gd = _chunk_grams(ids, lens_a, self.word_n)
                    if parts > 1:
                        sel = _partition(gk, parts) == part
                        gk, gd = gk[sel], gd[sel]
                    k, c = _doc_freq(gd, gk)
                    keys.append(k)
                    counts.append(c)
                uk, df = _merge_counts(keys, counts)
                keep = df >= self.min_df
                wkeys.append(uk[keep])
                wdfs.append(df[keep])
        n = len(texts)
        words = np.array(list(wid), dtype=object) if wid else np.empty(0, dtype=object)
        chars = np.array(list(cid), dtype=object) if cid else np.empty(0, dtype=object)
        w_keep, w_df = (np.concatenate(wkeys), np.concatenate(wdfs)) if wkeys else (
            np.empty(0, np.int64), np.empty(0, np.int64))
        order = np.argsort(w_keep)
        w_keep, w_df = self._cap_terms(w_keep[order], w_df[order], lambda k: _decode(int(k), words))
        c_all = np.flatnonzero(cdf >= self.min_df)
        c_keep, c_df = self._cap_terms(c_all, cdf[c_all], lambda k: str(chars[k]))
        w_str = _decode_all(w_keep, words)
        c_str = chars[c_keep].tolist()
        w_order = sorted(range(len(w_str)), key=w_str.__getitem__)
        c_order = sorted(range(len(c_str)), key=c_str.__getitem__)
        self.word_vocab_ = dict(zip(map(w_str.__getitem__, w_order), range(len(w_order)), strict=True))
        offset = len(w_order)
        self.char_vocab_ = dict(zip(map(c_str.__getitem__, c_order), range(offset, offset + len(c_order)),
                                    strict=True))
        del w_str, c_str
        df = np.concatenate([w_df[w_order], c_df[c_order]]).astype(np.float64)
        self.idf_ = np.log((1.0 + n) / (1.0 + df)) + 1.0
        # returned: what the vectorized transform of the same texts needs
        wcol = np.full(w_keep.size, -1, dtype=np.int64)
        wcol[w_order] = np.arange(len(w_order))
        korder = np.argsort(w_keep)
        ccol = np.full(max(len(cid), 1), -1, dtype=np.int64)
        ccol[c_keep[c_order]] = offset + np.arange(len(c_order))
        return {"chunks": ids_chunks, "wkeys": w_keep[korder], "wcols": wcol[korder],
                "ccol": ccol, "w2c": (c_ptr, c_flat), "n_words": len(wid)}

    def _cap_terms(self, keys: np.ndarray, df: np.ndarray, decode) -> tuple[np.ndarray, np.ndarray]:
        """``max_features`` of the terms: the most frequent; at the cut, ties go to the
        alphabetically first terms."""
        if self.max_features is None or keys.size <= self.max_features:
            return keys, df
        cut = np.sort(df)[::-1][self.max_features - 1]
        above = np.flatnonzero(df > cut)
        tied = np.flatnonzero(df == cut)
        tied = tied[np.argsort([decode(keys[i]) for i in tied], kind="stable")]
        keep = np.sort(np.concatenate([above, tied[: self.max_features - above.size]]))
        return keys[keep], df[keep]

    def fit_transform(self, texts: Sequence[str], threads: int = 1) -> sp.csr_matrix:
        """:meth:`fit` then :meth:`transform` of the same texts, both vectorized over token ids
        (the same matrix as ``fit(texts).transform(texts)``). ``threads`` count and transform
        chunks of texts at once (numpy's sorts and scipy's kernels release the GIL) and, from
        :data:`PROCESS_TEXTS` texts on, tokenize them in as many forked processes (Python under
        the GIL); the result does not depend on it."""
        with ThreadPoolExecutor(threads) if threads > 1 else nullcontext() as pool:
            return self._fit_transform(texts, pool, threads)

    def _fit_transform(self, texts: Sequence[str], pool: ThreadPoolExecutor | None,
                       procs: int = 1) -> sp.csr_matrix:
        try:
            st = self._fit_ids(texts, pool, procs)
            release_free_heap()  # the n-gram counts
        except _TooManyWords:  # packed keys hold 3 words of < 2**21 ids: beyond, use strings
            return self.fit_slow(texts).transform(texts)

        def block(chunk: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
            ids32, lens = chunk
            ids = ids32.astype(np.int64)
            doc = np.repeat(np.arange(lens.size, dtype=np.int64), lens)
            parts = []
            if self.word_n > 0 and st["wkeys"].size:
                keys, kdoc = _word_gram_keys(ids, doc, self.word_n)
                pos = np.minimum(np.searchsorted(st["wkeys"], keys), st["wkeys"].size - 1)
                hit = st["wkeys"][pos] == keys
                parts.append(_tfidf_block(kdoc[hit], st["wcols"][pos[hit]], lens.size,
                                          self.idf_, self.max_terms))
            if self.char_n > 0 and len(self.char_vocab_):
                ptr, flat = st["w2c"]
                cnt = ptr[ids + 1] - ptr[ids]
                cdoc = np.repeat(doc, cnt)
                cval = flat[np.arange(int(cnt.sum())) + np.repeat(ptr[ids] - np.cumsum(cnt) + cnt, cnt)]
                col = st["ccol"][cval]
                hit = col >= 0
                parts.append(_tfidf_block(cdoc[hit], col[hit], lens.size, self.idf_, self.max_terms))
            mat = parts[0]
            for other in parts[1:]:
                mat = mat + other
            mat.sort_indices()
            return [mat.data.astype(np.float32), mat.indices.astype(np.int32), np.diff(mat.indptr)]

        blocks = list(ordered_map(block, st["chunks"], pool))
        st.clear()  # the token ids and lookup tables
        release_free_heap()  # the chunks' transients, before the matrix is assembled
        # one array at a time, each block's part dropped once copied: the peak is the matrix
        # plus one of its arrays, not two matrices
        data = np.concatenate([b.pop(0) for b in blocks]) if blocks else np.empty(0, np.float32)
        indices = np.concatenate([b.pop(0) for b in blocks]) if blocks else np.empty(0, np.int32)
        lens = np.concatenate([b.pop(0) for b in blocks]) if blocks else np.zeros(len(texts), np.int64)
        del blocks
        out = sp.csr_matrix((data, indices, np.r_[0, np.cumsum(lens)].astype(np.int64)),
                            shape=(len(texts), self.n_features))
        return _normalize_rows32(out)

    def fit_slow(self, texts: Sequence[str]) -> TfidfFeaturizer:
        """The dictionary fit over n-gram strings (any vocabulary size; slower, more memory)."""
        wdf: dict[str, int] = {}
        cdf: dict[str, int] = {}
        for text in texts:
            words, chars = self._grams(text)
            for g in set(words):
                wdf[g] = wdf.get(g, 0) + 1
            for g in set(chars):
                cdf[g] = cdf.get(g, 0) + 1
        n = len(texts)
        words_kept = self._cap(sorted(g for g, c in wdf.items() if c >= self.min_df), wdf)
        chars_kept = self._cap(sorted(g for g, c in cdf.items() if c >= self.min_df), cdf)
        self.word_vocab_ = {g: i for i, g in enumerate(words_kept)}
        offset = len(words_kept)
        self.char_vocab_ = {g: offset + i for i, g in enumerate(chars_kept)}
        df = np.array([wdf[g] for g in words_kept] + [cdf[g] for g in chars_kept], dtype=np.float64)
        self.idf_ = np.log((1.0 + n) / (1.0 + df)) + 1.0
        return self

    def _cap(self, kept: list[str], df: dict[str, int]) -> list[str]:
        """``max_features`` of the sorted ``kept`` terms: most frequent, ties alphabetical."""
        if self.max_features is None or len(kept) <= self.max_features:
            return kept
        return sorted(sorted(kept, key=lambda g: -df[g])[: self.max_features])

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
                if self.max_terms is not None and cols.size > self.max_terms:
                    top = np.lexsort((cols, -vals))[: self.max_terms]
                    cols, vals = cols[top], vals[top]
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
        return _normalize_rows32(mat)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        """Vocabularies as JSON lists (ordered by column), IDF as ``.npy``.

        The vocabulary file's bytes are kept after the first save or a load (a fitted
        vocabulary never changes; a refit builds new dictionaries, which invalidates them): a
        serving learner saves this strategy in every snapshot, and encoding a vocabulary of
        ~10^6 n-grams is ~300 ms of CPU in which ``json.dumps`` holds the GIL for 100 ms or more
        at a stretch, stalling every search of the process (docs/speed.md). The cost: the
        file's bytes stay in memory (17 MB for the movie catalog's XR-Linear).
        """
        cached = self._vocab_file
        if cached is None or cached[0] is not self.word_vocab_ or cached[1] is not self.char_vocab_:
            words = sorted(self.word_vocab_, key=self.word_vocab_.__getitem__)
            chars = sorted(self.char_vocab_, key=self.char_vocab_.__getitem__)
            blob = json.dumps({"word_ngrams": self.word_n, "char_ngrams": self.char_n,
                               "min_df": self.min_df, "max_features": self.max_features,
                               "max_terms": self.max_terms,
                               "words": words, "chars": chars},
                              ensure_ascii=False).encode("utf-8")
            cached = self._vocab_file = (self.word_vocab_, self.char_vocab_, blob)
        (directory / "vocabulary.json").write_bytes(cached[2])
        np.save(directory / "idf.npy", self.idf_, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> TfidfFeaturizer:
        """Load a saved featurizer. Files byte-identical to those loaded last (a serving
        follower adopting each snapshot of an unchanged model) share that featurizer's
        vocabularies and IDF instead of parsing ~10^6 n-grams again (a single ``json.loads``
        holding the GIL for ~100 ms): a new object over the same dictionaries and read-only
        array, which a fit never edits (it builds new ones), so refitting either leaves the
        other as it was."""
        raw = (directory / "vocabulary.json").read_bytes()
        idf_raw = (directory / "idf.npy").read_bytes()
        digest = hashlib.sha1(raw).hexdigest() + hashlib.sha1(idf_raw).hexdigest()
        ref = _LOADED.get(digest)
        previous = ref() if ref is not None else None
        if previous is not None and previous._loaded_from is not None and previous._loaded_from[0] == digest:
            _, meta, words, chars, idf = previous._loaded_from
        else:
            meta = json.loads(raw)
            word_list = meta.pop("words")
            words = {g: i for i, g in enumerate(word_list)}
            chars = {g: len(word_list) + i for i, g in enumerate(meta.pop("chars"))}
            idf = np.load(io.BytesIO(idf_raw), allow_pickle=False)
            idf.setflags(write=False)
        obj = cls(meta["word_ngrams"], meta["char_ngrams"], meta["min_df"], meta.get("max_features"),
                  meta.get("max_terms"))
        obj.word_vocab_, obj.char_vocab_, obj.idf_ = words, chars, idf
        obj._vocab_file = (words, chars, raw)
        obj._loaded_from = (digest, meta, words, chars, idf)
        _LOADED.clear()  # the newest: the previous instance goes once a follower swaps it out
        _LOADED[digest] = weakref.ref(obj)
        return obj


# ---------------------------------------------------------------------- vectorized helpers
_WORD_BITS = 21
_WORD_LIMIT = 1 << _WORD_BITS
_TOP_BLOCK = 2_000_000  # padded entries per block of rows in _top_terms
_KEYS_PER_PASS = 6_000_000  # word n-gram occurrences whose frequencies are counted in one pass


class _TooManyWords(Exception):
    """More distinct words than the packed n-gram keys can hold."""


def _word_gram_keys(ids: np.ndarray, doc: np.ndarray, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Packed keys of every word 1..``n_max``-gram inside one text, and the text of each.

    A key holds ``word id + 1`` in 21 bits per word, so a unigram key is below ``2**21``, a
    bigram's below ``2**42`` and a trigram's above: lengths never collide.
    """
    w = ids + 1
    keys, docs = [w], [doc]
    for n in range(2, n_max + 1):
        m = ids.size - n + 1
        if m <= 0:
            break
        same = doc[n - 1:] == doc[:m]
        k = w[:m].copy()
        for j in range(1, n):
            k = (k << _WORD_BITS) | w[j:m + j]
        keys.append(k[same])
        docs.append(doc[:m][same])
    return np.concatenate(keys), np.concatenate(docs)


def _decode(key: int, words: np.ndarray) -> str:
    """The n-gram string of a packed key (see :func:`_word_gram_keys`)."""
    mask = _WORD_LIMIT - 1
    n = 1
    while key >> (_WORD_BITS * n):
        n += 1
    return " ".join(str(words[((key >> (_WORD_BITS * j)) & mask) - 1]) for j in range(n - 1, -1, -1))


def _decode_all(keys: np.ndarray, words: np.ndarray) -> list[str]:
    """:func:`_decode` of every key, in bulk: the words of each n-gram length gathered as
    arrays and joined by elementwise string concatenation (no Python call per key)."""
    mask = _WORD_LIMIT - 1
    out = np.empty(keys.size, dtype=object)
    lo = 0
    n = 1
    while True:
        hi = 1 << (_WORD_BITS * n)
        sel = (keys >= lo) & (keys < hi) if n < 3 else keys >= lo
        if sel.any():
            k = keys[sel]
            joined = words[((k >> (_WORD_BITS * (n - 1))) & mask) - 1]
            for j in range(n - 2, -1, -1):
                joined = joined + " " + words[((k >> (_WORD_BITS * j)) & mask) - 1]
            out[sel] = joined
        if n >= 3:
            break
        lo, n = hi, n + 1
    return out.tolist()


#: texts from which :meth:`TfidfFeaturizer.fit_transform` with ``threads`` > 1 tokenizes in
#: forked worker processes (tokenizing is Python under the GIL: threads would not help)
PROCESS_TEXTS = 50_000
_WORKER_TEXTS: Sequence[str] = ()  # in a forked tokenizing worker: the texts (inherited, never sent)


def _tokenize(texts: Sequence[str], c0: int, c1: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Tokens of ``texts[c0:c1]``: the chunk's distinct words in order of first appearance, each
    token's index among them (``int32``) and the tokens of each text (``int64``)."""
    toks: list[str] = []
    lens = []
    for text in texts[c0:c1]:
        tt = _TOKEN.findall(_normalize(text))
        lens.append(len(tt))
        toks.extend(tt)
    local = {w: i for i, w in enumerate(dict.fromkeys(toks))}
    ids = np.fromiter(map(local.__getitem__, toks), dtype=np.int32, count=len(toks))
    return list(local), ids, np.asarray(lens, dtype=np.int64)


def _set_worker_texts(texts: Sequence[str]) -> None:
    global _WORKER_TEXTS
    _WORKER_TEXTS = texts


def _tokenize_in_worker(c0: int, c1: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    return _tokenize(_WORKER_TEXTS, c0, c1)


def _token_chunks(texts: Sequence[str], chunk: int,
                  procs: int) -> Generator[tuple[list[str], np.ndarray, np.ndarray], None, None]:
    """:func:`_tokenize` of every ``chunk`` texts, in order. With ``procs`` > 1 and at least
    :data:`PROCESS_TEXTS` texts, chunks are tokenized in ``procs`` forked processes (which
    inherit the texts; only the chunks' distinct words and ids come back), at most
    ``2 * procs`` chunks ahead of the one consumed."""
    bounds = [(c0, min(c0 + chunk, len(texts))) for c0 in range(0, len(texts), chunk)]
    if procs <= 1 or len(texts) < PROCESS_TEXTS or len(bounds) < 2:
        for c0, c1 in bounds:
            yield _tokenize(texts, c0, c1)
        return
    ex = ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("fork"),
                             initializer=_set_worker_texts, initargs=(texts,))
    try:
        pending: deque[Future] = deque()
        for c0, c1 in bounds:
            pending.append(ex.submit(_tokenize_in_worker, c0, c1))
            if len(pending) > 2 * procs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _partition(keys: np.ndarray, parts: int) -> np.ndarray:
    """A well-mixed partition index in ``[0, parts)`` of packed keys (multiplicative hash)."""
    with np.errstate(over="ignore"):
        return ((keys * np.int64(-7046029254386353131)) >> np.int64(33)) % parts


def _merge_counts(keys: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Sum the counts of equal keys across chunks; keys sorted."""
    if not keys:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    uk, inv = np.unique(np.concatenate(keys), return_inverse=True)
    return uk, np.bincount(inv, weights=np.concatenate(counts), minlength=uk.size).astype(np.int64)


def _distinct(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values (``np.unique`` without its hash table, several times faster on
    millions of integers)."""
    a = np.sort(a)
    return a[np.r_[True, a[1:] != a[:-1]]] if a.size else a


def _doc_freq(doc: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys and the number of distinct texts each occurs in.

    The occurrences of any one key must come in nondecreasing ``doc`` order (true of every
    caller: keys are listed text by text), so a stable sort by key alone groups them by text.
    """
    if key.size == 0:
        return key, np.empty(0, np.int64)
    order = np.argsort(key, kind="stable")
    k, dd = key[order], doc[order]
    first = np.r_[True, (k[1:] != k[:-1]) | (dd[1:] != dd[:-1])]
    k = k[first]
    start = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    return k[start], np.diff(np.r_[start, k.size])


def _chunk_grams(ids32: np.ndarray, lens: np.ndarray, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_word_gram_keys` of one chunk of texts (token ids and token counts per text)."""
    doc = np.repeat(np.arange(lens.size, dtype=np.int64), lens)
    return _word_gram_keys(ids32.astype(np.int64), doc, n_max)


def _seen_slots(keys: np.ndarray, log2_slots: int) -> np.ndarray:
    """Slot of each packed key in a table of ``2**log2_slots`` bits (multiplicative hash)."""
    with np.errstate(over="ignore"):
        h = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return (h >> np.uint64(64 - log2_slots)).astype(np.int64)


def _frequent_grams(chunks: list[tuple[np.ndarray, np.ndarray]], n_max: int, min_df: int,
                    n_keys: int, pool: ThreadPoolExecutor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Word n-gram keys in at least ``min_df`` (>= 2) texts and their document frequencies.

    Two passes over the texts instead of one per hash partition: the first keeps as candidates
    the n-grams in two texts of one chunk or whose bit in a table of ~8 bits per occurrence was
    set by an earlier chunk (every n-gram in two texts, plus the few whose bit collided); the
    second counts the candidates exactly. Exact for any collisions; memory follows the
    candidates, not the distinct n-grams. Chunks are counted on ``pool``'s threads, the table
    is read and set chunk by chunk in order.
    """
    log2 = int(min(max(math.ceil(math.log2(max(8 * n_keys, 2))), 16), 32))
    bits = np.zeros(1 << (log2 - 3), dtype=np.uint8)

    def count(chunk: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        gk, gd = _chunk_grams(chunk[0], chunk[1], n_max)
        return _doc_freq(gd, gk)

    def first_pass(chunk: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k, c = count(chunk)
        return k, c, _seen_slots(k, log2)

    cands = []
    for k, c, slot in ordered_map(first_pass, chunks, pool):
        byte, bit = slot >> 3, (slot & 7).astype(np.uint8)
        seen = ((bits[byte] >> bit) & 1).astype(bool)
        cands.append(k[seen | (c >= 2)])
        for b in range(8):  # per bit position: repeated bytes then write the same value
            bits[byte[bit == b]] |= np.uint8(1 << b)
    del bits
    cand = _distinct(np.concatenate(cands)) if cands else np.empty(0, np.int64)
    del cands
    df = np.zeros(cand.size, dtype=np.int64)

    def second_pass(chunk: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        k, c = count(chunk)
        pos = np.minimum(np.searchsorted(cand, k), cand.size - 1)
        hit = cand[pos] == k
        return pos[hit], c[hit]

    if cand.size:
        for pos, c in ordered_map(second_pass, chunks, pool):
            df[pos] += c
    keep = df >= min_df
    return cand[keep], df[keep]


def _tfidf_block(doc: np.ndarray, col: np.ndarray, n_docs: int, idf: np.ndarray,
                 max_terms: int | None = None) -> sp.csr_matrix:
    """Counts of ``col`` per text times IDF (the ``max_terms`` largest per text, ties to the
    lower column), each text's block scaled to unit L2 norm."""
    m = sp.csr_matrix((np.ones(doc.size), (doc, col)), shape=(n_docs, idf.size))
    m.sum_duplicates()
    m.data *= idf[m.indices]
    if max_terms is not None and np.diff(m.indptr).max(initial=0) > max_terms:
        keep = _top_terms(m, max_terms)
        row = np.repeat(np.arange(n_docs), np.diff(m.indptr))[keep]
        m = sp.csr_matrix((m.data[keep], m.indices[keep], np.r_[0, np.cumsum(np.bincount(row, minlength=n_docs))]),
                          shape=m.shape)
    norms = np.sqrt(np.bincount(np.repeat(np.arange(n_docs), np.diff(m.indptr)),
                                weights=m.data * m.data, minlength=n_docs))
    norms[norms == 0] = 1.0
    m.data /= np.repeat(norms, np.diff(m.indptr))
    return m


def _top_terms(m: sp.csr_matrix, k: int) -> np.ndarray:
    """Mask of each row's ``k`` largest entries, ties to the lower column (indices sorted).

    Each row's ``k``-th largest value comes from one partition of the rows laid out padded;
    the entries above it are kept, and of those equal to it the first ones (lowest columns)
    up to ``k`` in all. Rows of very unequal length are ranked by a sort instead.
    """
    lens = np.diff(m.indptr)
    n, width = lens.size, int(lens.max(initial=0))
    row = np.repeat(np.arange(n), lens)
    if n * width > 4 * m.nnz + 4096:
        order = np.lexsort((m.indices, -m.data, row))
        keep = np.zeros(m.nnz, dtype=bool)
        keep[order[np.arange(m.nnz) - m.indptr[row[order]] < k]] = True
        return keep
    kk = min(k, width)
    kth = np.empty(n)
    step = max(1, _TOP_BLOCK // max(width, 1))  # rows per padded block: bounded memory
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        a, b = int(m.indptr[r0]), int(m.indptr[r1])
        neg = np.full((r1 - r0, width), np.inf)
        neg[row[a:b] - r0, np.arange(a, b) - m.indptr[row[a:b]]] = -m.data[a:b]
        kth[r0:r1] = -np.partition(neg, kk - 1, axis=1)[:, kk - 1]
    above = m.data > kth[row]
    tie = m.data == kth[row]
    need = k - np.bincount(row, weights=above, minlength=n).astype(np.int64)
    seen = np.cumsum(tie)
    tie_rank = seen - tie - np.r_[0, seen][m.indptr[:-1]][row]
    return above | (tie & (tie_rank < need[row]))


def _normalize_rows32(mat: sp.csr_matrix) -> sp.csr_matrix:
    """The per-block unit vectors are concatenated; normalize the whole row once more."""
    # a few million nonzeros at a time: the squares are a transient copy of the data
    sq = [np.asarray(part.multiply(part).sum(axis=1)).ravel() for _, part in row_split(mat, -(-mat.nnz // (1 << 23)))]
    norms = np.sqrt(np.concatenate(sq)) if sq else np.zeros(mat.shape[0], dtype=np.float32)
    norms[norms == 0] = 1.0
    mat.data /= np.repeat(norms, np.diff(mat.indptr)).astype(np.float32)
    return mat
