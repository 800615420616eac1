"""Seeded synthetic catalogs and click queries for the XR-Linear scale benchmarks.

Items have a title (2-6 words: one rare "name" word plus words of the item's topic) and a text of
30-120 words (30% from the topic's own words, the rest from one global Zipf law over 100k
pronounceable pseudo-words, so character trigrams behave like a real language's). Topics hold
about 100 items each. A click query names one item: 2-4 words taken from its title (60%) or text,
with a typo (two adjacent letters swapped) in 10% of the words; items are clicked with Zipf
popularity. Everything is drawn from ``numpy.random.SeedSequence([seed, ...])``.
"""

from __future__ import annotations

import numpy as np

from ltrr.catalog import Catalog

VOCAB = 100_000
_ONSETS = ["", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
           "z", "br", "ch", "cl", "dr", "gr", "kr", "pl", "sh", "st", "th", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou"]
_CODAS = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "rt", "st"]


def pseudo_words(n: int, seed: int) -> np.ndarray:
    """``n`` distinct pronounceable words of 1-4 syllables (shorter words get the frequent ranks)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    syll = np.array([o + v + c for o in _ONSETS for v in _VOWELS for c in _CODAS])
    out: dict[str, None] = {}
    n_syll = 1
    while len(out) < n:
        batch = rng.integers(0, syll.size, size=(4 * n, n_syll))
        for row in syll[batch]:
            out.setdefault("".join(row), None)
            if len(out) >= n:
                break
        n_syll = min(n_syll + 1, 4)
    return np.array(list(out), dtype=object)


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** exponent
    return np.cumsum(w / w.sum())


def _draw(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, u), cdf.size - 1)


def synthetic_catalog(n_items: int, seed: int = 0) -> tuple[Catalog, np.ndarray]:
    """A catalog of ``n_items`` and its words packed as ``(words, ptr_title, title_ids, ptr_text,
    text_ids)`` for :func:`click_queries`."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, n_items, 1]))
    words = pseudo_words(VOCAB, seed)
    n_topics = max(10, n_items // 100)
    topic_words = rng.integers(1000, VOCAB, size=(n_topics, 64))
    topic = rng.integers(0, n_topics, size=n_items)
    cdf = _zipf_cdf(VOCAB, 1.05)
    # titles: one rare name word + 1-5 topic words
    t_len = rng.integers(2, 7, size=n_items)
    t_ptr = np.r_[0, np.cumsum(t_len)]
    t_item = np.repeat(np.arange(n_items), t_len)
    t_ids = topic_words[topic[t_item], rng.integers(0, 64, size=t_item.size)]
    t_ids[t_ptr[:-1]] = rng.integers(VOCAB // 2, VOCAB, size=n_items)
    # texts: 30-120 words, 30% from the topic
    x_len = rng.integers(30, 121, size=n_items)
    x_ptr = np.r_[0, np.cumsum(x_len)]
    x_item = np.repeat(np.arange(n_items), x_len)
    from_topic = rng.random(x_item.size) < 0.3
    x_ids = _draw(cdf, rng.random(x_item.size))
    x_ids[from_topic] = topic_words[topic[x_item[from_topic]],
                                    rng.integers(0, 64, size=int(from_topic.sum()))]
    titles = [" ".join(words[t_ids[a:b]]) for a, b in zip(t_ptr[:-1], t_ptr[1:], strict=True)]
    texts = [" ".join(words[x_ids[a:b]]) for a, b in zip(x_ptr[:-1], x_ptr[1:], strict=True)]
    popularity = 1.0 / (rng.permutation(n_items) + 1.0)
    catalog = Catalog(tuple(f"i{i}" for i in range(n_items)), tuple(titles), tuple(texts),
                      tuple({} for _ in range(n_items)), popularity)
    return catalog, (words, t_ptr, t_ids, x_ptr, x_ids)


def click_queries(catalog: Catalog, packed, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """``n`` (query text, clicked row) pairs, items drawn by popularity."""
    words, t_ptr, t_ids, x_ptr, x_ids = packed
    rng = np.random.default_rng(np.random.SeedSequence([seed, len(catalog), 2]))
    p = catalog.popularity / catalog.popularity.sum()
    rows = rng.choice(len(catalog), size=n, p=p)
    lens = rng.integers(2, 5, size=n)
    out = []
    for r, m in zip(rows.tolist(), lens.tolist(), strict=True):
        title = t_ids[t_ptr[r]:t_ptr[r + 1]]
        text = x_ids[x_ptr[r]:x_ptr[r + 1]]
        q = []
        for _ in range(m):
            src = title if rng.random() < 0.6 else text
            w = str(words[src[rng.integers(0, src.size)]])
            if len(w) > 3 and rng.random() < 0.1:
                j = int(rng.integers(0, len(w) - 1))
                w = w[:j] + w[j + 1] + w[j] + w[j + 2:]
            q.append(w)
        out.append(" ".join(q))
    return out, rows.astype(np.int64)
