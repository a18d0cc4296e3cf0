import numpy as np
import pytest

from rnnbench import tokenize
from rnnbench.tokenize import OOV_INDEX, PADDING_INDEX, build_vocabulary, encode, split_words

TEXTS = [
    "The movie was GREAT, great fun!",
    "A dull, dull film... I hated it.",
    "don't miss: 영화가 정말 재미있다!",
    "",
    "rare words only: zebra",
]


def test_split_words_lowercases_and_strips_keras_filters():
    assert split_words("The movie was GREAT, great fun!") == ["the", "movie", "was", "great", "great", "fun"]
    # Apostrophes stay (as in Keras' Tokenizer); Korean is kept and split on spaces.
    assert split_words("don't miss: 영화가 정말 재미있다!") == ["don't", "miss", "영화가", "정말", "재미있다"]
    assert split_words("tab\there\nnewline") == ["tab", "here", "newline"]


def test_corpus_rows_match_split_words():
    corpus = tokenize.tokenize(TEXTS, workers=1)
    assert len(corpus) == len(TEXTS)
    for row, text in enumerate(TEXTS):
        assert corpus.tokens(row) == split_words(text)
    assert corpus.lengths.tolist() == [6, 7, 5, 0, 4]


@pytest.mark.slow
def test_parallel_tokenize_equals_single_process(monkeypatch):
    texts = [f"review {i} says {'good' if i % 3 else 'bad'} things about film {i % 17}" for i in range(3000)]
    monkeypatch.setitem(tokenize._PARALLEL_MIN_CHARACTERS, "word", 1000)
    single = tokenize.tokenize(texts, workers=1)
    # With three processes, two pool processes share the pieces in whatever way they finish.
    for workers in (2, 3):
        parallel = tokenize.tokenize(texts, workers=workers)
        assert single.words == parallel.words
        np.testing.assert_array_equal(single.token_ids, parallel.token_ids)
        np.testing.assert_array_equal(single.offsets, parallel.offsets)


def test_encode_reports_each_block_of_rows_and_equals_encoding_row_by_row():
    corpus = tokenize.tokenize([f"w{i % 7} x{i % 3} y z{i}" for i in range(50)], workers=1)
    vocabulary = build_vocabulary(corpus, np.arange(50), 12, ngrams=2)
    reports = []
    encoded = encode(
        corpus, vocabulary, np.arange(50)[::-1], 3, progress=lambda done, total: reports.append((done, total))
    )
    one_by_one = np.concatenate([encode(corpus, vocabulary, np.array([row]), 3) for row in range(50)[::-1]])
    np.testing.assert_array_equal(encoded, one_by_one)
    # PIECES (20) blocks of rows: ten of 3 rows, then ten of 2.
    assert reports == [(0, 50)] + [(3 * block, 50) for block in range(1, 11)] + [
        (30 + 2 * block, 50) for block in range(1, 11)
    ]


def test_vocabulary_counts_only_the_given_rows():
    corpus = tokenize.tokenize(["alpha alpha beta", "beta gamma", "delta delta delta delta"], workers=1)
    vocabulary = build_vocabulary(corpus, np.array([0, 1]), num_words=10)
    # "delta" occurs only in row 2, which is not a training row.
    assert vocabulary.words == ("alpha", "beta", "gamma")
    assert "delta" not in vocabulary.index
    assert vocabulary.index == {"alpha": 2, "beta": 3, "gamma": 4}
    assert vocabulary.distinct_words == 3


def test_vocabulary_keeps_num_words_minus_two_most_frequent_ties_alphabetical():
    corpus = tokenize.tokenize(["b b b a a c c d"], workers=1)
    vocabulary = build_vocabulary(corpus, np.array([0]), num_words=4)
    assert vocabulary.words == ("b", "a")
    assert vocabulary.size == 4


def test_encode_pre_padding_and_truncation_match_keras_pad_sequences():
    from keras.utils import pad_sequences

    corpus = tokenize.tokenize(["one two three four five", "six", "two rare one"], workers=1)
    vocabulary = build_vocabulary(corpus, np.array([0, 1]), num_words=20)
    index = vocabulary.index
    rows = np.array([0, 1, 2])
    raw = [[index.get(word, OOV_INDEX) for word in corpus.tokens(row)] for row in rows]
    for padding in ("pre", "post"):
        for truncating in ("pre", "post"):
            expected = pad_sequences(raw, maxlen=3, padding=padding, truncating=truncating, value=PADDING_INDEX)
            actual = encode(corpus, vocabulary, rows, 3, padding, truncating)
            np.testing.assert_array_equal(actual, expected)
    # Pre truncation keeps a text's end; pre padding puts zeros first.
    default = encode(corpus, vocabulary, rows, 3)
    assert [vocabulary.words[i - 2] for i in default[0]] == ["three", "four", "five"]
    assert default[1].tolist() == [0, 0, index["six"]]
    assert default[2].tolist() == [index["two"], OOV_INDEX, index["one"]]


def test_unknown_words_map_to_the_oov_index():
    corpus = tokenize.tokenize(["known words", "unknown novelty"], workers=1)
    vocabulary = build_vocabulary(corpus, np.array([0]), num_words=10)
    assert encode(corpus, vocabulary, np.array([1]), 2).tolist() == [[OOV_INDEX, OOV_INDEX]]


def test_encode_rejects_bad_padding():
    corpus = tokenize.tokenize(["a"], workers=1)
    with pytest.raises(ValueError, match="padding and truncating must be 'pre' or 'post'"):
        encode(corpus, build_vocabulary(corpus, np.array([0]), 5), np.array([0]), 2, padding="left")


@pytest.mark.slow
def test_real_imdb_vocabulary_and_shapes(real_data_dir):
    from rnnbench.config import DataConfig
    from rnnbench.data import load_dataset

    dataset = load_dataset(DataConfig(), str(real_data_dir))
    corpus = tokenize.tokenize(dataset.train_texts + dataset.test_texts)
    assert len(corpus) == 50_000
    vocabulary = build_vocabulary(corpus, np.arange(25_000), 10_000)
    assert vocabulary.size == 10_000
    assert vocabulary.words[:5] == ("the", "and", "a", "of", "to")
    # <br /> tags are removed when IMDB is read.
    assert "br" not in vocabulary.index
    sequences = encode(corpus, vocabulary, np.arange(25_000, 50_000), 200)
    assert sequences.shape == (25_000, 200) and sequences.dtype == np.int32
    assert sequences.max() == 9_999 and sequences.min() == 0


def test_char_tokenizer():
    corpus = tokenize.tokenize(["Ab, c!", "  영화  좋다 "], "char", workers=1)
    assert corpus.tokens(0) == ["a", "b", " ", "c"]
    assert corpus.tokens(1) == ["영", "화", " ", "좋", "다"]


def test_morpheme_tokenizer_splits_korean_particles_and_drops_punctuation():
    pytest.importorskip("kiwipiepy")
    corpus = tokenize.tokenize(["영화가 정말 재미있다!", "영화를 봤어?"], "morpheme", workers=1, analyzer="kiwi")
    assert corpus.tokens(0) == ["영화", "가", "정말", "재미있", "다"]
    # The noun is one token whatever particle follows it, unlike with the word tokenizer.
    assert corpus.tokens(1)[:2] == ["영화", "를"]


def test_morpheme_tokenizer_without_kiwipiepy_says_how_to_install(monkeypatch):
    real_find_spec = tokenize.importlib.util.find_spec
    monkeypatch.setattr(
        tokenize.importlib.util, "find_spec", lambda name: None if name == "kiwipiepy" else real_find_spec(name)
    )
    with pytest.raises(tokenize.TokenizerError) as caught:
        tokenize.tokenize(["영화"], "morpheme", analyzer="kiwi")
    assert str(caught.value) == (
        "data.morpheme_analyzer='kiwi' needs kiwipiepy: pip install 'rnnbench[ko]' (or pip install kiwipiepy, or choose data.morpheme_analyzer: mecab)"
    )


def test_cache_returns_the_same_corpus_and_survives_damage(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNBENCH_CACHE_DIR", str(tmp_path / "cache"))
    first, cached = tokenize.load_or_tokenize(TEXTS, "word")
    assert not cached
    second, cached = tokenize.load_or_tokenize(TEXTS, "word")
    assert cached and second.words == first.words
    np.testing.assert_array_equal(second.token_ids, first.token_ids)
    np.testing.assert_array_equal(second.offsets, first.offsets)
    # The key covers the tokenizer and every text's content and boundaries.
    assert not tokenize.load_or_tokenize(TEXTS, "char")[1]
    assert not tokenize.load_or_tokenize(TEXTS[:-1] + [TEXTS[-1] + "!"], "word")[1]
    assert (
        not tokenize.load_or_tokenize(["ab", "c"], "word")[1] and not tokenize.load_or_tokenize(["a", "bc"], "word")[1]
    )
    # A damaged or deleted entry is rebuilt, never trusted.
    entries = list((tmp_path / "cache" / "corpora").glob("*.npz"))
    assert len(entries) == 5
    for entry in entries:
        entry.write_bytes(b"not a cache file")
    rebuilt, cached = tokenize.load_or_tokenize(TEXTS, "word")
    assert not cached and rebuilt.words == first.words
    assert tokenize.load_or_tokenize(TEXTS, "word")[1]


def test_an_unwritable_cache_only_costs_time(tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("RNNBENCH_CACHE_DIR", str(blocker))
    corpus, cached = tokenize.load_or_tokenize(TEXTS, "word")
    assert not cached and corpus.tokens(0) == split_words(TEXTS[0])
    assert not tokenize.load_or_tokenize(TEXTS, "word")[1]


def test_bigrams_are_counted_on_training_rows_and_encoded_as_a_second_block():
    corpus = tokenize.tokenize(["a b c a b", "b c d", "x y a b"], "word")
    vocabulary = build_vocabulary(corpus, np.array([0, 1]), 6, ngrams=2)
    assert vocabulary.words == ("b", "a", "c", "d")
    # Counted on rows 0 and 1 only: "x y" and "y a" occur only in row 2, so they get no id.
    # Ties (count 1) are broken alphabetically by the first word, then the second.
    assert vocabulary.bigrams == (("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"))
    assert vocabulary.first_bigram_index == 6
    # maxlen 4 words, then the 3 pairs of adjacent kept words: ids from 6 on, a pair not kept is padding.
    assert encode(corpus, vocabulary, np.arange(3), 4).tolist() == [
        [2, 4, 3, 2, 7, 8, 6],
        [0, 2, 4, 5, 0, 7, 9],
        [1, 1, 3, 2, 0, 0, 6],
    ]
    assert encode(corpus, vocabulary, np.arange(3), 4, padding="post", truncating="post").tolist() == [
        [3, 2, 4, 3, 6, 7, 8],
        [2, 4, 5, 0, 7, 9, 0],
        [1, 1, 3, 2, 0, 0, 6],
    ]


def test_without_bigrams_encoding_is_unchanged():
    corpus = tokenize.tokenize(["a b c a b", "b c d"], "word")
    vocabulary = build_vocabulary(corpus, np.array([0, 1]), 6)
    assert vocabulary.bigrams == () and vocabulary.first_bigram_index is None
    assert encode(corpus, vocabulary, np.arange(2), 4).tolist() == [[2, 4, 3, 2], [0, 2, 4, 5]]


def test_bigrams_of_a_cached_corpus_are_the_same(tmp_path):
    texts = ["a b c a b", "b c d", "x y a b"]
    fresh, cached = tokenize.load_or_tokenize(texts)
    again, cached_again = tokenize.load_or_tokenize(texts)
    assert (cached, cached_again) == (False, True)
    encoded = [
        encode(corpus, build_vocabulary(corpus, np.array([0, 1]), 6, ngrams=2), np.arange(3), 4)
        for corpus in (fresh, again)
    ]
    np.testing.assert_array_equal(*encoded)


def test_inverse_document_frequencies_follow_the_smooth_formula():
    sequences = np.array([[0, 2, 2, 3], [2, 4, 4, 4]])
    # 2 rows: id 2 in both, ids 0, 3 and 4 in one, ids 1 and 5 in none.
    expected = [np.log(3 / 2) + 1, np.log(3) + 1, 1.0, np.log(3 / 2) + 1, np.log(3 / 2) + 1, np.log(3) + 1]
    np.testing.assert_allclose(tokenize.inverse_document_frequencies(sequences, 6), expected, rtol=1e-6)
