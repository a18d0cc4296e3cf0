"""Texts to padded integer sequences: tokens, a training-only vocabulary, padding.

The corpus (every text of every split) is tokenized once into a flat array of token ids; a
vocabulary is then counted over the training rows only, and each split is encoded by a
table lookup plus vectorized padding. Tokenizing is the only pure-Python step, so large
corpora are split across processes, and its result is cached on disk by the texts' content
and the tokenizer, with the morpheme analyzer and its packages' versions (RNNBENCH_CACHE_DIR,
default ~/.cache/rnnbench; safe to delete).

Tokenizers: `word` (lowercase, Keras' punctuation filters, split on ASCII whitespace),
`char` (the characters of the word tokenizer's output, one space between words) and
`morpheme` (Korean morphemes, punctuation dropped, from one of MORPHEME_ANALYZERS: mecab-ko
or kiwipiepy).

Tokenizing goes piece by piece and encoding block by block of rows (PIECES of each), so that
a long step can report its progress through a `(done, total)` callable (rnnbench.progress
shows it).

With bigrams (model.ngrams 2), the vocabulary also keeps the `num_words` most frequent pairs of
adjacent tokens of the training rows, numbered from `num_words` on, and each encoded row gains a
second block of `maxlen - 1` columns: the ids of the kept pairs among its kept tokens (the same
`maxlen` tokens its first block holds), padded like it; a pair not kept is left as padding.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import importlib.metadata
import importlib.util
import io
import itertools
import json
import multiprocessing
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from rnnbench.results import ResultsError, write_atomic
from rnnbench.errors import InputError

# Keras' old `Tokenizer` default: these characters become spaces, then text splits on whitespace.
FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
PADDING_INDEX = 0
OOV_INDEX = 1
_RESERVED = 2
# Joins the texts of a chunk; it can't survive in a text because every text has it removed first.
_SEPARATOR = "\x00"
_BYTE_TABLE = bytes.maketrans(FILTERS.encode("ascii"), b" " * len(FILTERS))
# Below this many characters a second process costs more to start than it saves. The word and
# char tokenizers do millions of characters a second; mecab-ko about half a million, so 200,000
# short Korean texts (2.6 M characters) take 5 s on one process and a second one only added its
# start. kiwipiepy spreads its work over the cores on threads of its own, and a second process
# measured no faster (None: never). docs/performance.md has the measurements.
_PARALLEL_MIN_CHARACTERS = {"word": 4_000_000, "char": 4_000_000, "mecab": 8_000_000, "kiwi": None}
# How many pieces the texts are tokenized in: one report of progress per piece.
PIECES = 20
TOKENIZERS = ("word", "char", "morpheme")
CACHE_VARIABLE = "RNNBENCH_CACHE_DIR"
# Bump when tokenizing changes, so old cache entries are no longer found.
_CACHE_FORMAT = 1


class TokenizerError(InputError):
    """A tokenizer that can't run here, described in one line."""


@dataclass(frozen=True)
class Corpus:
    """Tokenized texts: row i's tokens are `words[token_ids[offsets[i]:offsets[i + 1]]]`."""

    words: tuple[str, ...]
    token_ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @cached_property
    def index(self) -> dict[str, int]:
        """Each word's id; built once, however many splits are encoded."""
        return {word: word_id for word_id, word in enumerate(self.words)}

    def tokens(self, row: int) -> list[str]:
        return [self.words[i] for i in self.token_ids[self.offsets[row] : self.offsets[row + 1]]]


@dataclass(frozen=True)
class Vocabulary:
    """The kept words, most frequent first: `words[i]` has index i + 2 (0 pads, 1 is out-of-vocabulary)."""

    words: tuple[str, ...]
    # How many distinct words the counted rows held (kept or not).
    distinct_words: int = 0
    # With bigrams: the kept pairs of adjacent words, most frequent first; `bigrams[i]` has
    # index `first_bigram_index + i`. None: words alone, and encoded rows have no bigram block.
    bigrams: tuple[tuple[str, str], ...] = ()
    first_bigram_index: Optional[int] = None

    @property
    def size(self) -> int:
        """The Embedding's input_dim: kept words plus the padding and out-of-vocabulary indices."""
        return len(self.words) + _RESERVED

    @cached_property
    def index(self) -> dict[str, int]:
        return {word: position + _RESERVED for position, word in enumerate(self.words)}


def split_words(text: str) -> list[str]:
    """The word tokenizer on one text: lowercase, FILTERS to spaces, split on ASCII whitespace.

    Like Keras' old `Tokenizer`, it does not split on non-ASCII spaces; it works on UTF-8
    bytes, which is safe because every filter and separator is ASCII and so can never be part
    of a multi-byte character.
    """
    return [token.decode("utf-8") for token in text.lower().encode("utf-8").translate(_BYTE_TABLE).split()]


def split_characters(text: str) -> list[str]:
    """The char tokenizer on one text: the word tokenizer's words, character by character, spaces between."""
    return list(" ".join(split_words(text)))


class _Kiwi:
    """kiwipiepy's morphemes: each inflected word split into its stem and endings (봤어 -> 보, 었, 어)."""

    packages = ("kiwipiepy",)
    # kiwipiepy's tags for punctuation and brackets; the word tokenizer drops punctuation too.
    punctuation_tags = ("SF", "SP", "SS", "SE", "SO")
    # The model loads once per process, on first use (about a second).
    loaded = None

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        if _Kiwi.loaded is None:
            from kiwipiepy import Kiwi

            _Kiwi.loaded = Kiwi()
        return [
            [token.form.lower() for token in tokens if not token.tag.startswith(self.punctuation_tags)]
            for tokens in _Kiwi.loaded.tokenize(list(texts))
        ]


class _Mecab:
    """mecab-ko's morphemes with the mecab-ko-dic dictionary. An inflected word that the dictionary
    holds whole is split into the morphemes its entry lists (봤어 -> 보, 았, 어), as kiwipiepy splits
    it; a compound noun stays one token (목소리)."""

    packages = ("mecab-ko", "mecab-ko-dic")
    # mecab-ko-dic's (Sejong) tags for punctuation, brackets and other symbols (~, quotes, ^^).
    punctuation_tags = ("SF", "SE", "SSO", "SSC", "SC", "SY")
    # The dictionary loads once per process, on first use (milliseconds).
    loaded = None

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        if _Mecab.loaded is None:
            import mecab_ko

            _Mecab.loaded = mecab_ko.Tagger()
        parse = _Mecab.loaded.parse
        rows = []
        for text in texts:
            tokens = []
            # One line per dictionary entry, "form<TAB>tag,meaning,coda,reading,type,first,last,morphemes",
            # then "EOS"; the entries of types Inflect and Preanalysis list their morphemes last,
            # "가/VV/*+았/EP/*", and are split into them.
            for line in parse(text).split("\n"):
                form, tab, features = line.partition("\t")
                if not tab or features.startswith(self.punctuation_tags):
                    continue
                if ",Inflect," in features or ",Preanalysis," in features:
                    tokens.extend(part.split("/", 1)[0].lower() for part in features.rsplit(",", 1)[1].split("+"))
                else:
                    tokens.append(form.lower())
            rows.append(tokens)
        return rows


# data.morpheme_analyzer's choices.
MORPHEME_ANALYZERS = {"mecab": _Mecab, "kiwi": _Kiwi}


def check_tokenizer(tokenizer: str, analyzer: str = "mecab") -> None:
    """Raise TokenizerError, in one line, for a tokenizer or morpheme analyzer that can't run here."""
    if tokenizer not in TOKENIZERS:
        raise TokenizerError(f"unknown tokenizer {tokenizer!r} (available: {', '.join(TOKENIZERS)})")
    if tokenizer != "morpheme":
        return
    if analyzer not in MORPHEME_ANALYZERS:
        raise TokenizerError(f"unknown morpheme analyzer {analyzer!r} (available: {', '.join(MORPHEME_ANALYZERS)})")
    packages = MORPHEME_ANALYZERS[analyzer].packages
    # Each package's module is its name with '_' for '-'.
    if any(importlib.util.find_spec(package.replace("-", "_")) is None for package in packages):
        other = next(name for name in MORPHEME_ANALYZERS if name != analyzer)
        raise TokenizerError(
            f"data.morpheme_analyzer={analyzer!r} needs {' and '.join(packages)}: pip install 'rnnbench[ko]'"
            f" (or pip install {' '.join(packages)}, or choose data.morpheme_analyzer: {other})"
        )


def tokenize(
    texts: Sequence[str],
    tokenizer: str = "word",
    workers: int | None = None,
    analyzer: str = "mecab",
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Corpus:
    """Tokenize every text once, in PIECES pieces on up to `workers` processes (default: all cores)
    for a large corpus; `progress(done, total)` is told of each piece done, and of none at the start."""
    check_tokenizer(tokenizer, analyzer)
    workers = processes(texts, tokenizer, analyzer, workers)
    bounds = np.linspace(0, len(texts), min(PIECES, len(texts)) + 1).astype(int)
    pieces = [texts[start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]
    numbered: list[Any] = [None] * len(pieces)
    ids = _numbering(tokenizer)
    done = 0
    progress(0, len(texts))
    if workers == 1:
        for number, piece in enumerate(pieces):
            numbered[number] = (None, *_tokenize_piece(piece, tokenizer, analyzer, ids))
            done += len(piece)
            progress(done, len(texts))
        return _merge(numbered)
    # This process tokenizes every `workers`-th piece and the pool the others, so that no
    # process waits for another; the pool's processes start while this one works.
    # `spawn`, not `fork`: the caller may already have started TensorFlow's threads.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers - 1, mp_context=context) as pool:
        futures = {
            pool.submit(_tokenize_in_pool, piece, tokenizer, analyzer): number
            for number, piece in enumerate(pieces)
            if number % workers
        }

        def collect(future: concurrent.futures.Future) -> None:
            nonlocal done
            number = futures.pop(future)
            numbered[number] = future.result()
            done += len(pieces[number])

        for number in range(0, len(pieces), workers):
            numbered[number] = (None, *_tokenize_piece(pieces[number], tokenizer, analyzer, ids))
            done += len(pieces[number])
            for future in [future for future in futures if future.done()]:
                collect(future)
            progress(done, len(texts))
        for future in concurrent.futures.as_completed(list(futures)):
            collect(future)
            progress(done, len(texts))
    return _merge(numbered)


def processes(texts: Sequence[str], tokenizer: str, analyzer: str = "mecab", workers: int | None = None) -> int:
    """How many processes `tokenize` uses for `texts`: up to `workers` (default: all cores), one
    for each half of the characters at which a second process pays for its start."""
    if workers is None:
        workers = os.cpu_count() or 1
    enough = _PARALLEL_MIN_CHARACTERS[analyzer if tokenizer == "morpheme" else tokenizer]
    if enough is None:
        return 1
    return max(1, min(workers, len(texts), 2 * sum(map(len, texts)) // enough))


class _WordIds(dict):
    """A dict that numbers each unseen word as it is looked up (the lookup stays in C for seen words).

    One process numbers the tokens of all its pieces in one of these, so that the pieces cost no
    more to merge than one chunk per process would. The word tokenizer's holds its text
    separator as 0, and its token ids are one less than their numbers.
    """

    def __missing__(self, word: bytes) -> int:
        number = self[word] = len(self)
        return number


def _numbering(tokenizer: str) -> _WordIds:
    return _WordIds({_SEPARATOR.encode("ascii"): 0}) if tokenizer == "word" else _WordIds()


def _tokenize_piece(
    texts: Sequence[str], tokenizer: str, analyzer: str, ids: _WordIds
) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """The words `ids` first met in `texts` (UTF-8, in the order met), the texts' token ids and per-text token counts."""
    first_new = len(ids)
    token_ids, lengths = _token_ids(texts, tokenizer, analyzer, ids)
    return list(itertools.islice(ids, first_new, None)), token_ids, lengths


# A pool process's numbering, shared by every piece it tokenizes; a pool lives for one tokenize call.
_POOL_IDS: Optional[_WordIds] = None


def _tokenize_in_pool(
    texts: Sequence[str], tokenizer: str, analyzer: str
) -> tuple[int, list[bytes], np.ndarray, np.ndarray]:
    """_tokenize_piece in a pool process, named by its process id."""
    global _POOL_IDS
    if _POOL_IDS is None:
        _POOL_IDS = _numbering(tokenizer)
    return (os.getpid(), *_tokenize_piece(texts, tokenizer, analyzer, _POOL_IDS))


def _token_ids(texts: Sequence[str], tokenizer: str, analyzer: str, ids: _WordIds) -> tuple[np.ndarray, np.ndarray]:
    """Token ids in `ids`' numbering and per-text token counts."""
    if not texts:
        return np.zeros(0, np.int32), np.zeros(0, np.int64)
    if tokenizer != "word":
        split: Callable[[Sequence[str]], list[list[str]]] = (
            MORPHEME_ANALYZERS[analyzer]()
            if tokenizer == "morpheme"
            else (lambda batch: [split_characters(text) for text in batch])
        )
        rows = [[token.encode("utf-8") for token in tokens] for tokens in split(texts)]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter(
            (ids[token] for tokens in rows for token in tokens), dtype=np.int32, count=int(lengths.sum())
        )
        return flat, lengths
    # The word tokenizer's fast path: one bytes pass over the whole piece instead of one per text.
    separator = _SEPARATOR.encode("ascii")
    data = separator.join([_clean(text).lower().encode("utf-8") for text in texts])
    tokens = data.translate(_BYTE_TABLE).replace(separator, b" " + separator + b" ").split()
    flat = np.fromiter(map(ids.__getitem__, tokens), dtype=np.int32, count=len(tokens))
    separators = np.flatnonzero(flat == 0)
    starts = np.concatenate(([0], separators + 1))
    stops = np.concatenate((separators, [len(flat)]))
    return flat[flat != 0] - 1, stops - starts


def _clean(text: str) -> str:
    # The separator must not occur inside a text; the check is a fast C scan.
    return text.replace(_SEPARATOR, " ") if _SEPARATOR in text else text


def _merge(numbered: list[tuple[Optional[int], list[bytes], np.ndarray, np.ndarray]]) -> Corpus:
    """One corpus from pieces in row order, each (its process, the words that process first met
    in it, token ids in that process's numbering, per-text token counts).

    A process tokenizes its pieces in row order, so the words each piece first met, joined,
    are its numbering, and a word is first met, across the corpus, in the piece whose new words
    hold it first: the corpus numbers words in the order they first occur, however many
    processes and pieces it took.
    """
    index: dict[bytes, int] = {}
    numberings: dict[Optional[int], list[bytes]] = {}
    for process, new_words, _, _ in numbered:
        numberings.setdefault(process, []).extend(new_words)
        for word in new_words:
            # setdefault's default is evaluated first, so a new word gets the next free id.
            index.setdefault(word, len(index))
    tables = {
        process: np.fromiter(map(index.__getitem__, words), np.int32, len(words))
        for process, words in numberings.items()
    }
    ids = [tables[process][local_ids] for process, _, local_ids, _ in numbered if len(local_ids)]
    lengths = [local_lengths for _, _, _, local_lengths in numbered]
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = np.concatenate(([0], np.cumsum(all_lengths))).astype(np.int64)
    token_ids = np.concatenate(ids).astype(np.int32) if ids else np.zeros(0, np.int32)
    words = tuple(word.decode("utf-8") for word in index)
    return Corpus(words=words, token_ids=token_ids, offsets=offsets)


def cache_folder() -> Path:
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "rnnbench") / "corpora"


def load_or_tokenize(
    texts: Sequence[str],
    tokenizer: str = "word",
    analyzer: str = "mecab",
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[Corpus, bool]:
    """The tokenized corpus from the cache when these texts were tokenized this way before; (corpus, cached)."""
    check_tokenizer(tokenizer, analyzer)
    path = cache_folder() / f"{_cache_key(texts, tokenizer, analyzer)}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            words = tuple(from_json_bytes(stored["words"]))
            corpus = Corpus(words=words, token_ids=stored["token_ids"], offsets=stored["offsets"])
        if len(corpus) == len(texts):
            return corpus, True
    except (OSError, ValueError, KeyError, EOFError):
        pass  # Missing or unreadable: tokenize again and rewrite it.
    corpus = tokenize(texts, tokenizer, analyzer=analyzer, progress=progress)
    _store(path, corpus)
    return corpus, False


def _cache_key(texts: Sequence[str], tokenizer: str, analyzer: str = "mecab") -> str:
    digest = hashlib.sha256(f"format {_CACHE_FORMAT}; tokenizer {tokenizer}".encode())
    if tokenizer == "morpheme":
        # The analyzer and its packages' versions: a new dictionary or model may split differently.
        versions = " ".join(
            f"{package} {importlib.metadata.version(package)}" for package in MORPHEME_ANALYZERS[analyzer].packages
        )
        digest.update(f"; analyzer {analyzer}: {versions}".encode())
    # Lengths first, so that the joined text can't be split into texts in two ways.
    digest.update(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)).tobytes())
    digest.update("".join(texts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _store(path: Path, corpus: Corpus) -> None:
    write_cache_entry(path, words=json_bytes(corpus.words), token_ids=corpus.token_ids, offsets=corpus.offsets)


def write_cache_entry(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz cache entry atomically; a cache that can't be written only costs time."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, buffer.getvalue())
    except (OSError, ResultsError):
        pass


def json_bytes(value: Any) -> np.ndarray:
    """`value` as UTF-8 JSON in a uint8 array: words stored in an .npz without pickling."""
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def from_json_bytes(array: np.ndarray) -> Any:
    return json.loads(array.tobytes().decode("utf-8"))


def _row_token_mask(corpus: Corpus, rows: np.ndarray) -> np.ndarray:
    selected = np.zeros(len(corpus), dtype=bool)
    selected[rows] = True
    return np.repeat(selected, corpus.lengths)


def build_vocabulary(corpus: Corpus, rows: np.ndarray, num_words: int, ngrams: int = 1) -> Vocabulary:
    """Keep the `num_words - 2` most frequent words of `rows` (ties broken alphabetically), and
    with `ngrams` 2 the `num_words` most frequent pairs of adjacent words of `rows` too."""
    counts = np.bincount(corpus.token_ids[_row_token_mask(corpus, rows)], minlength=len(corpus.words))
    seen = np.flatnonzero(counts)
    alphabetical = np.argsort(np.array([corpus.words[word_id] for word_id in seen]), kind="stable")
    alphabetical_rank = np.empty(len(seen), np.int64)
    alphabetical_rank[alphabetical] = np.arange(len(seen))
    # lexsort sorts by the last key first: count descending, then the word.
    ranked = seen[np.lexsort((alphabetical_rank, -counts[seen]))][: num_words - _RESERVED]
    words = tuple(corpus.words[word_id] for word_id in ranked)
    if ngrams == 1:
        return Vocabulary(words=words, distinct_words=len(seen))
    return Vocabulary(
        words=words,
        distinct_words=len(seen),
        bigrams=_frequent_bigrams(corpus, rows, num_words),
        first_bigram_index=num_words,
    )


def _bigram_starts(corpus: Corpus) -> np.ndarray:
    """Whether each token is followed by another of the same text, i.e. starts a bigram."""
    starts = np.ones(len(corpus.token_ids), dtype=bool)
    starts[corpus.offsets[1:][corpus.lengths > 0] - 1] = False
    return starts


def _frequent_bigrams(corpus: Corpus, rows: np.ndarray, count: int) -> tuple[tuple[str, str], ...]:
    """The `count` most frequent pairs of adjacent words of `rows`; ties broken alphabetically
    by the first word, then the second."""
    positions = np.flatnonzero(_bigram_starts(corpus) & _row_token_mask(corpus, rows))
    width = np.int64(len(corpus.words))
    # Each pair as one number: first word id x vocabulary width + second word id.
    pairs, counts = np.unique(
        corpus.token_ids[positions].astype(np.int64) * width + corpus.token_ids[positions + 1], return_counts=True
    )
    first, second = pairs // width, pairs % width
    rank = np.empty(len(corpus.words), np.int64)
    rank[np.argsort(np.array(corpus.words, dtype=object), kind="stable")] = np.arange(len(corpus.words))
    ranked = np.lexsort((rank[second], rank[first], -counts))[:count]
    return tuple((corpus.words[first[i]], corpus.words[second[i]]) for i in ranked)


def encode(
    corpus: Corpus,
    vocabulary: Vocabulary,
    rows: np.ndarray,
    maxlen: int,
    padding: str = "pre",
    truncating: str = "pre",
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> np.ndarray:
    """Vocabulary indices of `rows`, padded and truncated to `maxlen` as keras.utils.pad_sequences
    does; in PIECES blocks of rows, `progress(done, total)` told of each."""
    if padding not in ("pre", "post") or truncating not in ("pre", "post"):
        raise ValueError(f"padding and truncating must be 'pre' or 'post', got {padding!r} and {truncating!r}")
    table = np.full(len(corpus.words), OOV_INDEX, dtype=np.int32)
    for word, vocabulary_index in vocabulary.index.items():
        word_id = corpus.index.get(word)
        if word_id is not None:
            table[word_id] = vocabulary_index
    bigram_table = None if vocabulary.first_bigram_index is None else _bigram_table(corpus, vocabulary)

    rows = np.asarray(rows, dtype=np.int64)
    width = maxlen if bigram_table is None else 2 * maxlen - 1
    encoded = np.empty((len(rows), width), dtype=np.int32)
    progress(0, len(rows))
    for block in np.array_split(np.arange(len(rows)), max(1, min(PIECES, len(rows)))):
        lengths = corpus.lengths[rows[block]]
        kept = np.minimum(lengths, maxlen)
        first = corpus.offsets[rows[block]] + (lengths - kept if truncating == "pre" else 0)
        encoded[block, :maxlen] = _padded(
            lambda positions: table[corpus.token_ids[positions]], first, kept, maxlen, padding
        )
        if bigram_table is not None:
            # The pairs among the kept tokens: each kept token but a row's last starts one.
            encoded[block, maxlen:] = _padded(bigram_table, first, np.maximum(kept - 1, 0), maxlen - 1, padding)
        progress(int(block[-1]) + 1 if len(block) else 0, len(rows))
    return encoded


def _padded(
    lookup: Callable[[np.ndarray], np.ndarray], first: np.ndarray, kept: np.ndarray, width: int, padding: str
) -> np.ndarray:
    """Rows of `width` columns, row i holding `lookup` of corpus positions first[i] .. first[i] + kept[i] - 1, padded."""
    # Position of each kept token within its row, without a Python loop over rows.
    row_of_token = np.repeat(np.arange(len(first)), kept)
    within_row = np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept)
    column = within_row + (np.repeat(width - kept, kept) if padding == "pre" else 0)
    sequences = np.full((len(first), width), PADDING_INDEX, dtype=np.int32)
    sequences[row_of_token, column] = lookup(np.repeat(first, kept) + within_row)
    return sequences


def _bigram_table(corpus: Corpus, vocabulary: Vocabulary) -> Callable[[np.ndarray], np.ndarray]:
    """The bigram index of the pair that starts at each given corpus position; PADDING_INDEX when not kept."""
    width = np.int64(len(corpus.words))
    codes, indices = [], []
    for position, (first_word, second_word) in enumerate(vocabulary.bigrams):
        first_id, second_id = corpus.index.get(first_word), corpus.index.get(second_word)
        if first_id is not None and second_id is not None:
            codes.append(first_id * width + second_id)
            indices.append(vocabulary.first_bigram_index + position)
    order = np.argsort(np.array(codes, dtype=np.int64))
    known = np.array(codes, dtype=np.int64)[order]
    known_indices = np.array(indices, dtype=np.int32)[order]

    def lookup(positions: np.ndarray) -> np.ndarray:
        pairs = corpus.token_ids[positions].astype(np.int64) * width + corpus.token_ids[positions + 1]
        if len(known) == 0:
            return np.full(len(pairs), PADDING_INDEX, dtype=np.int32)
        found = np.minimum(np.searchsorted(known, pairs), len(known) - 1)
        return np.where(known[found] == pairs, known_indices[found], PADDING_INDEX).astype(np.int32)

    return lookup


def inverse_document_frequencies(sequences: np.ndarray, num_tokens: int) -> np.ndarray:
    """Each token id's smooth inverse document frequency over the rows of `sequences`, as
    scikit-learn's TfidfVectorizer computes it: ln((1 + rows) / (1 + rows holding the id)) + 1.

    Every id counts, the padding and out-of-vocabulary ones included, since the model's bag
    holds them too.
    """
    ordered = np.sort(sequences, axis=1)
    # Each id once per row: where a sorted row's value changes.
    first_in_row = np.ones(ordered.shape, dtype=bool)
    first_in_row[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    document_frequency = np.bincount(ordered[first_in_row].astype(np.int64), minlength=num_tokens)[:num_tokens]
    return (np.log((1 + len(sequences)) / (1 + document_frequency)) + 1).astype(np.float32)
