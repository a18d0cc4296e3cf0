"""model.pretrained_encoder lm: a language model pretrained on data.unlabeled's texts (never on a
labelled text), cached, resumable after a kill to the same weights, and the classifier's start."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import synthetic_reviews
from rnnbench import lm, model as model_factory, tokenize
from rnnbench.cli import main
from rnnbench.config import config_from_mapping
from rnnbench.encoded import EncodedData
from test_unlabeled import _lines, write_unlabeled

MODEL = {"cell": "gru", "embedding_dim": 8, "units": 8, "dense_units": 8, "pretrained_encoder": "lm"}


def config_of(unlabeled: Path, model=None, seed: int = 3, **data_settings):
    return config_from_mapping(
        {
            "name": "tiny_lm",
            "model": {**MODEL, **(model or {})},
            "data": {"num_words": 60, "maxlen": 24, "unlabeled": str(unlabeled), **data_settings},
            "train": {"epochs": 1, "batch_size": 32, "seed": seed},
        }
    )


def labelled_texts(tiny_data_dir: Path) -> tuple[list[str], list[str]]:
    train = [line.split("\t")[0] for line in _lines(tiny_data_dir / "imdb" / "train.tsv.gz")]
    test = [line.split("\t")[0] for line in _lines(tiny_data_dir / "imdb" / "test.tsv.gz")]
    return train, test


@pytest.fixture
def corpus_file(tiny_data_dir: Path) -> Path:
    """900 unlabeled reviews like the labelled ones, plus 5 copies of test texts and 3 of training texts."""
    train, test = labelled_texts(tiny_data_dir)
    texts = [text for text, _ in synthetic_reviews(900, seed=7)] + test[:5] + train[:3]
    return write_unlabeled(tiny_data_dir / "unlabeled.tsv.gz", texts)


def quiet(line: str) -> None:
    pass


def run_with_corpus(tiny_data_dir: Path, tmp_path: Path, corpus: Path, train=None):
    """`rnnbench run` of MODEL with `corpus` as data.unlabeled on the tiny data, runs in tmp_path / runs."""
    path = tmp_path / "lm.yaml"
    # JSON is YAML.
    path.write_text(
        json.dumps(
            {
                "name": "tiny_lm",
                "model": MODEL,
                "data": {"num_words": 60, "maxlen": 24, "unlabeled": str(corpus)},
                "train": train or {"epochs": 1},
            }
        )
    )
    return CliRunner().invoke(
        main, ["run", str(path), "--data-dir", str(tiny_data_dir), "--runs-dir", str(tmp_path / "runs")]
    )


def test_the_corpus_holds_no_labelled_text_of_any_seed_or_limit(tiny_data_dir, corpus_file):
    found = lm.language_model_corpus(config_of(corpus_file), str(tiny_data_dir), quiet)
    assert (found.read_rows, len(found.corpus)) == (908, 900)
    assert (found.dropped_equal_to_test, found.dropped_equal_to_training) == (5, 3)
    # On the tokens pretraining reads: none is a labelled text's, whatever the split.
    train, test = labelled_texts(tiny_data_dir)
    labelled = {tuple(tokenize.split_words(text.replace("<br />", " ").lower())) for text in train + test}
    kept = {tuple(found.corpus.tokens(row)) for row in range(len(found.corpus))}
    assert len(kept & labelled) == 0
    for other in (config_of(corpus_file, seed=9), config_of(corpus_file, limit=100)):
        again = lm.language_model_corpus(other, str(tiny_data_dir), quiet)
        assert np.array_equal(again.corpus.token_ids, found.corpus.token_ids)


def test_one_artefact_serves_every_seed_and_limit_but_not_other_layers(tiny_data_dir, corpus_file):
    def plan(**changes):
        config = config_of(corpus_file, **changes)
        return lm._Plan.of(config, lm.language_model_corpus(config, str(tiny_data_dir), quiet))

    first = plan()
    assert plan(seed=11).key == first.key
    assert plan(limit=100).key == first.key
    assert plan(model={"units": 9}).key != first.key
    assert plan(model={"bidirectional": True}).key != first.key
    assert plan(num_words=61).key != first.key
    longer = plan(model={"lm_epochs": 2})
    assert longer.key != first.key and longer.state_key == first.state_key


def test_windows_predict_the_next_word_each_way():
    corpus = tokenize.Corpus(
        words=tuple(f"w{index}" for index in range(250)),
        token_ids=np.arange(250, dtype=np.int32),
        offsets=np.array([0, 250]),
    )
    plan = lm._Plan(
        None, None, None, ("forward", "backward"), np.arange(250, dtype=np.int32) + 2, corpus.offsets, "", ""
    )
    inputs, targets = plan.windows(np.array([0]), "forward")
    # 249 words to predict: windows of 100, 100 and 49.
    assert inputs.shape == targets.shape == (3, lm.WINDOW)
    assert inputs[0, :3].tolist() == [2, 3, 4] and targets[0, :3].tolist() == [3, 4, 5]
    assert (
        inputs[2, 0] == 202
        and inputs[2, 48] == 250
        and targets[2, 48] == 251
        and targets[2, 49] == 0
        and inputs[2, 49] == 0
    )
    backward_inputs, backward_targets = plan.windows(np.array([0]), "backward")
    assert backward_inputs[0, :2].tolist() == [251, 250] and backward_targets[0, :2].tolist() == [250, 249]


def test_the_sampled_softmax_is_the_corrected_cross_entropy_over_target_and_drawn_words():
    size, units = 20, 4
    rng = np.random.default_rng(0)
    layer = lm.SampledSoftmax(size, units)
    hidden = rng.normal(size=(2, lm.WINDOW, units)).astype("float32")
    targets = rng.integers(1, size, size=(2, lm.WINDOW)).astype("int32")
    targets[1, 50:] = 0
    negatives = lm.draw_negatives(rng, 2, size)
    layer.build()
    layer.bias.assign(rng.normal(size=size).astype("float32"))
    got = keras.ops.convert_to_numpy(layer(hidden, targets, negatives))
    kernel, bias = (np.asarray(weight, np.float64) for weight in layer.get_weights())

    def log_expected(ids):
        return np.log(lm.NEGATIVES * np.log((ids + 1) / ids) / np.log(size))

    wanted = []
    for row in range(2):
        total = 0.0
        for position in range(lm.WINDOW):
            target = targets[row, position]
            if target == 0:
                continue
            scores = hidden[row, position].astype(np.float64) @ kernel.T + bias
            true = scores[target] - log_expected(target)
            drawn = negatives[row]
            sampled = scores[drawn] - log_expected(drawn.astype(np.float64))
            sampled[drawn == target] = -1e9
            every = np.concatenate([[true], sampled])
            total += np.log(np.exp(every - every.max()).sum()) + every.max() - true
            total += lm.ACTIVATION_PENALTY * np.mean(hidden[row, position].astype(np.float64) ** 2)
        wanted.append(total / lm.WINDOW)
    np.testing.assert_allclose(got, wanted, rtol=1e-4)


def test_negatives_are_log_uniform_over_the_ranked_vocabulary():
    drawn = lm.draw_negatives(np.random.default_rng(1), 200, 1000)
    assert drawn.shape == (200, lm.NEGATIVES) and drawn.min() >= 1 and drawn.max() <= 999
    shares = np.bincount(drawn.ravel(), minlength=1000) / drawn.size
    expected = np.log(np.arange(2, 1001) / np.arange(1, 1000)) / np.log(1000)
    assert abs(shares[1] - expected[0]) < 0.01 and abs(shares[1:11].sum() - expected[:10].sum()) < 0.01


@pytest.mark.slow
def test_pretraining_learns_is_cached_and_starts_the_classifier(tiny_data_dir, corpus_file):
    config = config_of(corpus_file, model={"bidirectional": True, "lm_epochs": 3})
    lines: list[str] = []
    encoder = lm.pretrained_encoder(config, str(tiny_data_dir), lines.append)
    summary = encoder.summary
    assert not summary["read_from_cache"] and summary["directions"] == ["forward", "backward"]
    perplexities = [epoch["held_out_perplexity"] for epoch in summary["epochs"]]
    # 90 held-out texts; a model that learned nothing would be near the 60-word vocabulary's perplexity.
    assert summary["held_out_texts"] == 90 and len(perplexities) == 3
    assert perplexities[2] < perplexities[1] < perplexities[0] and perplexities[2] < 30
    assert summary["pretraining_seconds"] > 0
    assert any(line.startswith("pretraining a language model (forward, backward) on 810 texts") for line in lines)

    again = lm.pretrained_encoder(config, str(tiny_data_dir), quiet)
    assert again.summary["read_from_cache"]
    # The lock that made it pretrain once is the runs' own, which leaves no file behind.
    assert not list(tokenize.cache_folder().glob("*.lock"))
    assert np.array_equal(again.embedding, encoder.embedding)
    assert all(
        np.array_equal(first, second)
        for direction in ("forward", "backward")
        for first, second in zip(encoder.recurrent[direction][0], again.recurrent[direction][0])
    )

    prepared = EncodedData.prepare(config, str(tiny_data_dir), quiet)
    network = model_factory.build_model(config, config.data.num_words, 2)
    found = encoder.apply(network, prepared.vocabulary, model_factory.recurrent_layers(network, config))
    own = {word: row + 2 for row, word in enumerate(encoder.words)}
    shared = [word for word in prepared.vocabulary.words if word in own]
    assert found == len(shared) > 20
    matrix = network.get_layer("embedding").get_weights()[0]
    for word in shared:
        assert np.array_equal(matrix[prepared.vocabulary.index[word]], encoder.embedding[own[word]])
    # Words the language model never saw start where it put every word it did not know.
    missing = [prepared.vocabulary.index[word] for word in prepared.vocabulary.words if word not in own]
    assert all(np.array_equal(matrix[row], encoder.embedding[1]) for row in [1, *missing])
    wrapper = network.get_layer("bidirectional_gru_1")
    for layer, direction in ((wrapper.forward_layer, "forward"), (wrapper.backward_layer, "backward")):
        assert all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), encoder.recurrent[direction][0]))


def float64_perplexity(network, plan, held_out) -> float:
    """The held-out perplexity in NumPy float64, position by position: what lm computes on the backend."""
    kernel, bias = (np.asarray(weight, np.float64) for weight in network.get_layer("softmax").get_weights())
    losses = []
    for direction in plan.directions:
        inputs, targets = held_out[direction]
        encoder = keras.Model(
            network.get_layer(f"{direction}_tokens").output, network.get_layer(f"{direction}_1").output
        )
        hidden = np.asarray(encoder.predict(inputs, verbose=0), np.float64).reshape(-1, kernel.shape[1])
        for state, word in zip(hidden, targets.reshape(-1)):
            if word > 0:
                logits = kernel @ state + bias
                losses.append(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[word])
    return math.exp(np.mean(losses))


def test_the_held_out_perplexity_matches_a_float64_full_softmax(tiny_data_dir, corpus_file, monkeypatch):
    config = config_of(corpus_file, model={"bidirectional": True})
    plan = lm._Plan.of(config, lm.language_model_corpus(config, str(tiny_data_dir), quiet))
    keras.utils.set_random_seed(5)
    network = lm.language_model(config, plan.directions)
    # Trained a little, so that the softmax is not near uniform.
    rows, held_rows = plan.held_out_rows()
    train = [array[:256] for direction in plan.directions for array in plan.windows(rows, direction)]
    negatives = lm.draw_negatives(np.random.default_rng(0), 256, 60)
    network.fit([*train, negatives], np.zeros(256, np.float32), batch_size=64, epochs=3, verbose=0)
    held_out = {direction: plan.windows(held_rows, direction) for direction in plan.directions}
    # Batches smaller than the held-out windows, so that they add up across batches.
    monkeypatch.setattr(lm, "PERPLEXITY_WINDOWS", 3)
    assert all(len(inputs) > 3 for inputs, _ in held_out.values())
    perplexity = lm.held_out_perplexity(network, plan, held_out)
    assert perplexity < 55
    assert perplexity == pytest.approx(float64_perplexity(network, plan, held_out), rel=1e-5)


def test_a_longer_pretraining_leaves_each_shorter_ones_artefact(tiny_data_dir, corpus_file, tmp_path, monkeypatch):
    longer = lm.pretrained_encoder(config_of(corpus_file, model={"lm_epochs": 2}), str(tiny_data_dir), quiet)
    lines: list[str] = []
    shorter = config_of(corpus_file, model={"lm_epochs": 1})
    on_the_way = lm.pretrained_encoder(shorter, str(tiny_data_dir), lines.append)
    assert on_the_way.summary["read_from_cache"] and not any("pretraining a language model" in line for line in lines)
    assert on_the_way.summary["epochs"] == longer.summary["epochs"][:1]
    assert on_the_way.summary["key"] != longer.summary["key"]
    monkeypatch.setenv("RNNBENCH_CACHE_DIR", str(tmp_path / "fresh_cache"))
    alone = lm.pretrained_encoder(shorter, str(tiny_data_dir), quiet)
    assert not alone.summary["read_from_cache"] and alone.summary["key"] == on_the_way.summary["key"]
    assert np.array_equal(alone.embedding, on_the_way.embedding)
    assert not np.array_equal(alone.embedding, longer.embedding)
    assert all(np.array_equal(a, b) for a, b in zip(alone.recurrent["forward"][0], on_the_way.recurrent["forward"][0]))


@pytest.mark.slow
def test_a_killed_pretraining_goes_on_to_the_same_weights(tiny_data_dir, corpus_file, tmp_path, monkeypatch):
    settings = {"model": {"lm_epochs": 2}}
    script = (
        "import sys; from rnnbench import lm; from test_lm import config_of; from pathlib import Path;"
        f"config = config_of(Path({str(corpus_file)!r}), model={settings['model']!r});"
        f"lm.pretrained_encoder(config, {str(tiny_data_dir)!r}, lambda line: print(line, flush=True), segment_batches=2)"
    )
    cache = tmp_path / "killed_cache"
    environment = {**os.environ, "RNNBENCH_CACHE_DIR": str(cache), "PYTHONPATH": str(Path(__file__).parent)}
    process = subprocess.Popen([sys.executable, "-c", script], env=environment, stdout=subprocess.PIPE, text=True)
    saved_at = None
    for line in process.stdout:
        if line.startswith("language model: epoch 1/2, batch 4/"):
            saved_at = line
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert saved_at is not None and process.returncode == -signal.SIGKILL
    assert not list((cache / "corpora").glob("lm-[0-9a-f]*.npz")), "killed before the artefact was written"

    config = config_of(corpus_file, model=settings["model"])
    lines: list[str] = []
    monkeypatch.setenv("RNNBENCH_CACHE_DIR", str(cache))
    resumed = lm.pretrained_encoder(config, str(tiny_data_dir), lines.append, segment_batches=2)
    assert any(line.startswith("language model: going on from batch 4 of") for line in lines)
    monkeypatch.setenv("RNNBENCH_CACHE_DIR", str(tmp_path / "fresh_cache"))
    uninterrupted = lm.pretrained_encoder(config, str(tiny_data_dir), quiet, segment_batches=2)
    assert np.array_equal(resumed.embedding, uninterrupted.embedding)
    assert all(
        np.array_equal(a, b) for a, b in zip(resumed.recurrent["forward"][0], uninterrupted.recurrent["forward"][0])
    )
    assert resumed.summary["epochs"] == [
        {**epoch, "seconds": resumed.summary["epochs"][index]["seconds"]}
        for index, epoch in enumerate(uninterrupted.summary["epochs"])
    ]


@pytest.mark.slow
def test_a_run_records_the_language_model_it_started_from(tiny_data_dir, corpus_file, tmp_path):
    outcome = run_with_corpus(tiny_data_dir, tmp_path, corpus_file, {"epochs": 1, "batch_size": 32, "seeds": [1, 2]})
    runs = tmp_path / "runs"
    assert outcome.exit_code == 0, outcome.output
    assert outcome.output.count("pretraining a language model (forward) on 810 texts") == 1
    records = sorted(
        (json.loads((folder / "result.json").read_text()) for folder in runs.iterdir() if folder.is_dir()),
        key=lambda record: record["config"]["train"]["seed"],
    )
    assert [record["encoder"]["read_from_cache"] for record in records] == [False, True]
    encoder = records[0]["encoder"]
    assert encoder["corpus"]["dropped_equal_to_test"] == 5 and encoder["corpus"]["rows"] == 900
    assert 0 < encoder["coverage"] <= 1 and encoder["words_found"] > 20
    assert math.isfinite(encoder["held_out_perplexity"])


def test_too_little_text_for_a_batch_is_one_line(tiny_data_dir, tmp_path):
    few = write_unlabeled(tmp_path / "few.tsv.gz", [text for text, _ in synthetic_reviews(30, seed=8)])
    outcome = run_with_corpus(tiny_data_dir, tmp_path, few)
    assert outcome.exit_code == 2
    assert outcome.output.splitlines()[-1] == (
        f"Error: {few}: 27 windows of text after holding out 3 texts, too few for one batch of 64"
        " (data.unlabeled needs more text for model.pretrained_encoder)"
    )
    assert "Traceback" not in outcome.output


def test_the_classifier_reads_a_text_as_the_language_model_does_each_way(tmp_path):
    config = config_from_mapping(
        {
            "model": {**MODEL, "bidirectional": True, "pooling": "max", "mask_padding": True},
            "data": {"num_words": 30, "maxlen": 12, "padding": "post", "unlabeled": str(tmp_path / "any.txt")},
        }
    )
    keras.utils.set_random_seed(5)
    language = lm.language_model(config, lm.DIRECTIONS)
    words = tuple(f"w{index}" for index in range(28))
    encoder = lm.PretrainedEncoder(
        words=words,
        embedding=language.get_layer("embedding").get_weights()[0],
        recurrent={direction: [language.get_layer(f"{direction}_1").get_weights()] for direction in lm.DIRECTIONS},
        summary={},
    )
    network = model_factory.build_model(config, 30, 2)
    vocabulary = tokenize.Vocabulary(words=words, distinct_words=28)
    assert encoder.apply(network, vocabulary, model_factory.recurrent_layers(network, config)) == 28
    text = np.array([5, 9, 2, 17, 3, 11, 4], np.int32)
    padded = np.zeros((1, 12), np.int32)
    padded[0, : len(text)] = text
    both = keras.Model(network.inputs, network.get_layer("bidirectional_gru_1").output).predict(padded, verbose=0)[0]

    def read(direction, tokens):
        window = np.zeros((1, lm.WINDOW), np.int32)
        window[0, : len(tokens)] = tokens
        reader = keras.Model(
            language.get_layer(f"{direction}_tokens").output, language.get_layer(f"{direction}_1").output
        )
        return reader.predict(window, verbose=0)[0, : len(tokens)]

    units = config.model.units
    np.testing.assert_allclose(both[: len(text), :units], read("forward", text), atol=1e-5)
    # The backward layer's output at word t is the backward language model's after reading the text from its end to t.
    np.testing.assert_allclose(both[: len(text), units:], read("backward", text[::-1])[::-1], atol=1e-5)


def test_a_corpus_of_labelled_texts_only_is_one_line(tiny_data_dir, tmp_path):
    train, _ = labelled_texts(tiny_data_dir)
    copies = write_unlabeled(tmp_path / "copies.tsv.gz", train[:40])
    outcome = run_with_corpus(tiny_data_dir, tmp_path, copies)
    assert outcome.exit_code == 2 and "Traceback" not in outcome.output
    assert outcome.output.splitlines()[-1] == (
        f"Error: {copies}: no unlabeled rows left after dropping 40 equal to labelled texts (the language model"
        " reads no text the classifier is trained or judged on) (data.unlabeled)"
    )
