"""TF-IDF features: the vectorized fit over token ids equals the dictionary fit over strings."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.xmr import features
from strategies.xmr.features import TfidfFeaturizer

TEXTS = [
    "The Godfather", "the godfather part ii", "Godfahter", "", "Café crème brûlée",
    "naïve café", "a b a b a", "star wars the empire strikes back", "star wars", "   ",
    "back to the future", "the future is now", "wars of the worlds", "x",
]


@pytest.mark.parametrize(("word_n", "char_n", "min_df", "max_features", "max_terms"), [
    (3, 3, 1, None, None), (3, 3, 2, None, None), (3, 3, 1, 7, None), (2, 0, 1, None, None),
    (0, 3, 1, 5, None), (1, 4, 1, None, None), (3, 3, 1, None, 3), (3, 3, 1, 20, 2),
])
def test_vectorized_fit_equals_the_string_fit(word_n, char_n, min_df, max_features, max_terms,
                                              monkeypatch):
    monkeypatch.setattr(TfidfFeaturizer, "CHUNK", 4)  # several chunks: df merged across them
    monkeypatch.setattr(features, "_KEYS_PER_PASS", 40)  # several hash partitions of the n-grams
    fast = TfidfFeaturizer(word_n, char_n, min_df, max_features, max_terms)
    x_fast = fast.fit_transform(TEXTS)
    slow = TfidfFeaturizer(word_n, char_n, min_df, max_features, max_terms).fit_slow(TEXTS)
    assert fast.word_vocab_ == slow.word_vocab_ and fast.char_vocab_ == slow.char_vocab_
    np.testing.assert_allclose(fast.idf_, slow.idf_)
    x_slow = slow.transform(TEXTS)
    assert x_fast.shape == x_slow.shape and (x_fast != x_slow).nnz == 0
    assert (fast.transform(TEXTS) != x_fast).nnz == 0
    if max_features is not None:
        assert len(fast.word_vocab_) <= max_features and len(fast.char_vocab_) <= max_features
    if max_terms is not None:  # per text and block: words, then characters
        assert np.diff(x_fast.indptr).max() <= 2 * max_terms
        assert np.diff(TfidfFeaturizer(word_n, char_n).fit_transform(TEXTS).indptr).max() > 2 * max_terms


def test_max_terms_keeps_the_largest_tfidf_terms():
    f = TfidfFeaturizer(1, 0, max_terms=1).fit(["rare common", "common", "common x"])
    x = f.transform(["rare common"])
    assert x.nnz == 1 and x.indices[0] == f.word_vocab_["rare"]


def test_max_features_keeps_the_most_frequent_terms():
    f = TfidfFeaturizer(1, 0, max_features=2).fit(["a b c", "a b", "a d", "e"])
    assert sorted(f.word_vocab_) == ["a", "b"]


def test_word_ngrams_beyond_three_use_the_string_fit():
    f = TfidfFeaturizer(4, 0)
    x = f.fit_transform(["one two three four", "one two three"])
    assert "one two three four" in f.word_vocab_ and x.shape == (2, f.n_features)


def test_bad_max_features_names_the_value():
    with pytest.raises(ValueError, match=r"'max_features' parameter must be an int in \[1, inf\) or None. Got 0"):
        TfidfFeaturizer(max_features=0)


@pytest.mark.parametrize("min_df", [2, 3])
def test_frequent_ngram_filter_is_exact_when_every_key_collides(min_df, monkeypatch):
    """The candidate pass of ``_frequent_grams``: collisions only add candidates, which the
    counting pass drops, so the vocabulary equals the string fit's even if all keys share a bit."""
    monkeypatch.setattr(TfidfFeaturizer, "CHUNK", 3)
    monkeypatch.setattr(features, "_KEYS_PER_PASS", 40)
    calls = []

    def one_slot(keys, log2_slots):
        calls.append(keys.size)
        return np.zeros(keys.size, dtype=np.int64)

    monkeypatch.setattr(features, "_seen_slots", one_slot)
    texts = TEXTS * 2 + ["star wars the empire", "the empire strikes"]
    fast = TfidfFeaturizer(3, 3, min_df)
    x_fast = fast.fit_transform(texts)
    slow = TfidfFeaturizer(3, 3, min_df).fit_slow(texts)
    assert calls and fast.word_vocab_ == slow.word_vocab_
    assert "star wars the" in fast.word_vocab_ and ("back to the" in fast.word_vocab_) == (min_df == 2)
    assert (x_fast != slow.transform(texts)).nnz == 0


@pytest.mark.parametrize("long_row", [False, True])
def test_top_terms_keeps_the_k_largest_ties_to_lower_columns(long_row, monkeypatch):
    """Both layouts (padded partition, and the sort for very unequal rows) pick the same
    entries as a per-row sort by (-value, column)."""
    rng = np.random.default_rng(4)
    rows = [rng.choice(30, size=int(s), replace=False) for s in rng.integers(0, 12, size=40)]
    if long_row:
        rows.append(np.arange(400))
    vals = [rng.integers(1, 4, size=r.size).astype(float) for r in rows]  # many ties
    import scipy.sparse as sp
    m = sp.csr_matrix((np.concatenate(vals), np.concatenate(rows),
                       np.r_[0, np.cumsum([r.size for r in rows])]), shape=(len(rows), 400))
    m.sort_indices()
    keep = features._top_terms(m, 4)
    monkeypatch.setattr(features, "_TOP_BLOCK", 30)  # a few rows per padded block
    assert np.array_equal(features._top_terms(m, 4), keep)
    for i in range(m.shape[0]):
        a, b = m.indptr[i], m.indptr[i + 1]
        want = np.zeros(b - a, dtype=bool)
        want[np.lexsort((m.indices[a:b], -m.data[a:b]))[:4]] = True
        assert np.array_equal(keep[a:b], want), i


def test_threads_give_the_same_features(monkeypatch):
    monkeypatch.setattr(TfidfFeaturizer, "CHUNK", 3)  # several chunks in flight at once
    monkeypatch.setattr(features, "_KEYS_PER_PASS", 40)
    texts = TEXTS * 3 + ["star wars the empire", "the empire strikes"]
    one = TfidfFeaturizer(3, 3, 2, None, 4)
    two = TfidfFeaturizer(3, 3, 2, None, 4)
    x1, x2 = one.fit_transform(texts), two.fit_transform(texts, threads=2)
    assert one.word_vocab_ == two.word_vocab_ and one.char_vocab_ == two.char_vocab_
    assert np.array_equal(one.idf_, two.idf_) and x1.shape == x2.shape and (x1 != x2).nnz == 0


def test_save_reuses_the_vocabulary_file_until_a_refit(tmp_path):
    """Serving snapshots save the featurizer every few seconds: the vocabulary's JSON is encoded
    once per fit, and a refit's new vocabulary is what the next save writes."""
    f = TfidfFeaturizer(2, 3).fit(TEXTS[:8])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    f.save(tmp_path / "a")
    first = f._vocab_file
    f.save(tmp_path / "b")
    assert f._vocab_file is first  # not encoded again
    assert (tmp_path / "a" / "vocabulary.json").read_bytes() == (tmp_path / "b" / "vocabulary.json").read_bytes()
    f.fit(TEXTS)  # new dictionaries: the next save encodes them
    f.save(tmp_path / "c")
    loaded = TfidfFeaturizer.load(tmp_path / "c")
    assert loaded.word_vocab_ == f.word_vocab_ and loaded.char_vocab_ == f.char_vocab_
    assert loaded.word_vocab_ != TfidfFeaturizer.load(tmp_path / "a").word_vocab_
    assert (loaded.transform(TEXTS) != f.transform(TEXTS)).nnz == 0


def test_load_reuses_the_featurizer_of_identical_files(tmp_path):
    """A follower adopting each snapshot of an unchanged model does not parse it again; any
    changed byte of either file (vocabulary or IDF) loads afresh."""
    f = TfidfFeaturizer(2, 3).fit(TEXTS)
    for d in ("a", "b", "c"):
        (tmp_path / d).mkdir()
        f.save(tmp_path / d)
    first = TfidfFeaturizer.load(tmp_path / "a")
    second = TfidfFeaturizer.load(tmp_path / "b")
    assert second.word_vocab_ is first.word_vocab_ and second.idf_ is first.idf_  # not parsed again
    assert (second.transform(TEXTS) != f.transform(TEXTS)).nnz == 0
    del first  # a follower drops the instance it replaced: the newest one is reused next
    first = TfidfFeaturizer.load(tmp_path / "a")
    assert first.word_vocab_ is second.word_vocab_
    second.fit(TEXTS[:5])  # a refit builds its own: the other keeps its vocabulary
    assert first.word_vocab_ == f.word_vocab_ and second.word_vocab_ != f.word_vocab_
    np.save(tmp_path / "c" / "idf.npy", f.idf_ * 2.0, allow_pickle=False)  # same vocabulary, other IDF
    other = TfidfFeaturizer.load(tmp_path / "c")
    assert other is not first
    np.testing.assert_array_equal(other.idf_, f.idf_ * 2.0)
    np.testing.assert_array_equal(first.idf_, f.idf_)


def test_a_featurizer_saved_after_a_refit_does_not_change_what_its_old_files_load_as(tmp_path):
    f = TfidfFeaturizer(2, 3).fit(TEXTS)
    for d in ("a", "b", "c"):
        (tmp_path / d).mkdir()
    f.save(tmp_path / "a")
    first = TfidfFeaturizer.load(tmp_path / "a")
    first.fit(TEXTS[:4])
    first.save(tmp_path / "b")  # its saved bytes are now the refit's
    f.save(tmp_path / "c")  # the original files again
    again = TfidfFeaturizer.load(tmp_path / "c")
    assert again.word_vocab_ == f.word_vocab_ and again.char_vocab_ == f.char_vocab_
    np.testing.assert_array_equal(again.idf_, f.idf_)
    assert TfidfFeaturizer.load(tmp_path / "b").word_vocab_ == first.word_vocab_


def test_tokenizing_in_worker_processes_gives_the_same_ids_in_the_same_order(monkeypatch):
    monkeypatch.setattr(TfidfFeaturizer, "CHUNK", 3)  # several chunks, several in flight
    monkeypatch.setattr(features, "PROCESS_TEXTS", 1)
    started = []

    class Spy(features.ProcessPoolExecutor):
        def __init__(self, *a, **kw):
            started.append(a[0])
            super().__init__(*a, **kw)

    monkeypatch.setattr(features, "ProcessPoolExecutor", Spy)
    texts = TEXTS * 3 + ["star wars the empire", "the empire strikes", "Ωmega naïve wars"]
    serial = list(features._token_chunks(texts, 3, 1))
    forked = list(features._token_chunks(texts, 3, 2))
    assert started == [2]
    assert len(serial) == len(forked) == -(-len(texts) // 3)
    for (w1, i1, l1), (w2, i2, l2) in zip(serial, forked, strict=True):
        assert w1 == w2 and np.array_equal(i1, i2) and np.array_equal(l1, l2)
    # the chunk's words in order of first appearance; each token's index among them
    words, ids, lens = serial[0]
    assert words == ["the", "godfather", "part", "ii", "godfahter"]
    assert ids.tolist() == [0, 1, 0, 1, 2, 3, 4] and lens.tolist() == [2, 4, 1]
    one = TfidfFeaturizer(3, 3, 2, None, 4)
    two = TfidfFeaturizer(3, 3, 2, None, 4)
    x1, x2 = one.fit_transform(texts), two.fit_transform(texts, threads=2)
    assert started == [2, 2]
    assert list(one.word_vocab_.items()) == list(two.word_vocab_.items())
    assert list(one.char_vocab_.items()) == list(two.char_vocab_.items())
    assert np.array_equal(one.idf_, two.idf_) and (x1 != x2).nnz == 0
    assert np.array_equal(x1.indices, x2.indices) and np.array_equal(x1.data, x2.data)


def test_few_texts_are_tokenized_in_process(monkeypatch):
    monkeypatch.setattr(features, "ProcessPoolExecutor", None)  # would fail if used
    assert len(list(features._token_chunks(TEXTS, 3, 2))) == 5


def test_bulk_decoding_equals_decoding_each_key():
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}é" for i in range(50)], dtype=object)
    ids = rng.integers(0, 50, size=(300, 3)) + 1
    b = features._WORD_BITS
    keys = np.concatenate([ids[:100, 0], (ids[100:200, 0] << b) | ids[100:200, 1],
                           (((ids[200:, 0] << b) | ids[200:, 1]) << b) | ids[200:, 2]]).astype(np.int64)
    keys = keys[rng.permutation(keys.size)]
    got = features._decode_all(keys, words)
    assert got == [features._decode(int(k), words) for k in keys]
    assert sorted({len(g.split()) for g in got}) == [1, 2, 3]
    assert features._decode_all(np.empty(0, np.int64), words) == []


def test_the_tokenizing_workers_end_when_the_fit_gives_up_on_ids(monkeypatch):
    # more distinct words than packed keys hold: the string fit takes over, the worker pool
    # already shut down
    monkeypatch.setattr(TfidfFeaturizer, "CHUNK", 3)
    monkeypatch.setattr(features, "PROCESS_TEXTS", 1)
    monkeypatch.setattr(features, "_WORD_LIMIT", 6)
    pools = []

    class Spy(features.ProcessPoolExecutor):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            pools.append(self)

    monkeypatch.setattr(features, "ProcessPoolExecutor", Spy)
    shut_when_falling_back = []
    fit_slow = TfidfFeaturizer.fit_slow

    def spy_fit_slow(self, texts):
        shut_when_falling_back.append(pools[0]._shutdown_thread)
        return fit_slow(self, texts)

    monkeypatch.setattr(TfidfFeaturizer, "fit_slow", spy_fit_slow)
    fast = TfidfFeaturizer(2, 3)
    x = fast.fit_transform(TEXTS, threads=2)
    assert len(pools) == 1 and shut_when_falling_back == [True]
    slow = TfidfFeaturizer(2, 3).fit_slow(TEXTS)
    assert fast.word_vocab_ == slow.word_vocab_ and (x != slow.transform(TEXTS)).nnz == 0
