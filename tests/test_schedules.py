"""Training options: early stopping, learning rate schedules and gradient clipping (rnnbench/train.py)."""

import json
import math
from pathlib import Path

import pytest

from rnnbench import train
from rnnbench.config import config_from_mapping
from rnnbench.train import cosine_learning_rate, patience_ran_out, plateau_learning_rate, run_experiment


def tiny_config(**train_settings):
    raw = {
        "name": "tiny_schedule",
        "model": {"cell": "ann", "dense_units": 8},
        "data": {"num_words": 50, "maxlen": 24},
        "train": {"epochs": 3, "batch_size": 32, "seed": 3, **train_settings},
    }
    return config_from_mapping(raw)


def history_of(record):
    return [json.loads(line) for line in Path(record.run_dir, "history.jsonl").read_text().splitlines()]


def quiet(line):
    pass


@pytest.fixture
def optimizers(monkeypatch):
    """The optimizers that runs in this test compile their models with."""
    made = []
    real_optimizer = train._optimizer

    def recorded(settings, steps_per_epoch):
        made.append(real_optimizer(settings, steps_per_epoch))
        return made[-1]

    monkeypatch.setattr(train, "_optimizer", recorded)
    return made


# The pure rules, on histories written out by hand.


def test_patience_counts_epochs_since_the_first_best_validation_accuracy():
    def history(*accuracies):
        return [{"epoch": number, "val_accuracy": accuracy} for number, accuracy in enumerate(accuracies, start=1)]

    assert not patience_ran_out(history(0.6, 0.7, 0.7), None)
    assert not patience_ran_out([], 1)
    assert not patience_ran_out(history(0.6, 0.7), 1)
    # An equal accuracy is no improvement: epoch 2 stays the best.
    assert patience_ran_out(history(0.6, 0.7, 0.7), 1)
    assert not patience_ran_out(history(0.6, 0.7, 0.7), 2)
    assert patience_ran_out(history(0.6, 0.7, 0.7, 0.65), 2)
    assert not patience_ran_out(history(0.6, 0.7, 0.7, 0.71), 2)


def test_cosine_follows_keras_cosine_decay_down_to_the_floor():
    settings = tiny_config(lr_schedule="cosine", learning_rate=0.01, min_learning_rate=0.001).train
    assert cosine_learning_rate(settings, 0, 100) == 0.01
    assert cosine_learning_rate(settings, 50, 100) == pytest.approx(0.0055, rel=1e-12)
    assert cosine_learning_rate(settings, 100, 100) == pytest.approx(0.001, rel=1e-12)
    assert cosine_learning_rate(settings, 150, 100) == cosine_learning_rate(settings, 100, 100)
    import keras

    decay = keras.optimizers.schedules.CosineDecay(0.01, 100, alpha=0.1)
    for step in (0, 13, 50, 99, 100):
        assert float(decay(step)) == pytest.approx(cosine_learning_rate(settings, step, 100), rel=1e-6)


def test_plateau_multiplies_after_lr_patience_epochs_without_a_lower_validation_loss():
    settings = tiny_config(
        lr_schedule="reduce_on_plateau", learning_rate=0.008, lr_factor=0.5, lr_patience=2, min_learning_rate=0.0015
    ).train
    losses = [1.0, 0.9, 0.95, 0.9, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9]
    rates = [plateau_learning_rate(settings, losses[:count]) for count in range(len(losses) + 1)]
    # Epochs 3 and 4 don't beat 0.9 (an equal loss is no improvement): halved after epoch 4.
    # Epochs 6 and 7 don't beat 0.8: halved after epoch 7; after epoch 9 again, to the floor.
    assert rates == [0.008, 0.008, 0.008, 0.008, 0.004, 0.004, 0.004, 0.002, 0.002, 0.0015, 0.0015, 0.0015]
    assert (
        plateau_learning_rate(tiny_config(lr_schedule="reduce_on_plateau").train, [1.0, 1.1, 1.2]) == 0.001 * 0.5 * 0.5
    )


# The options in real runs.


@pytest.mark.slow
def test_defaults_record_the_constant_rate_and_change_nothing_else(tiny_data_dir, tmp_path, optimizers):
    record = run_experiment(tiny_config(), str(tiny_data_dir), tmp_path / "runs", "test", echo=quiet)
    assert [entry["learning_rate"] for entry in history_of(record)] == [0.001, 0.001, 0.001]
    assert record.result.epochs_run == 3 and record.result.stopped_early is False
    [optimizer] = optimizers
    assert optimizer.clipnorm is None and optimizer.global_clipnorm is None
    assert float(optimizer.learning_rate) == pytest.approx(0.001)


@pytest.mark.slow
def test_clipnorm_is_set_on_the_optimizer(tiny_data_dir, tmp_path, optimizers):
    run_experiment(tiny_config(epochs=1, clipnorm=0.25), str(tiny_data_dir), tmp_path / "runs", "test", echo=quiet)
    [optimizer] = optimizers
    assert optimizer.clipnorm == 0.25 and optimizer.global_clipnorm is None


@pytest.mark.slow
def test_cosine_rates_per_epoch_follow_the_formula(tiny_data_dir, tmp_path, optimizers):
    config = tiny_config(epochs=4, lr_schedule="cosine", learning_rate=0.01, min_learning_rate=0.001)
    lines = []
    record = run_experiment(config, str(tiny_data_dir), tmp_path / "runs", "test", echo=lines.append)
    # 320 training rows in batches of 32: 10 steps an epoch, 40 in all.
    expected = [0.001 + 0.009 * 0.5 * (1 + math.cos(math.pi * epoch * 10 / 40)) for epoch in range(4)]
    assert [entry["learning_rate"] for entry in history_of(record)] == pytest.approx(expected, rel=1e-12)
    assert [entry["learning_rate"] for entry in history_of(record)][0] == 0.01
    # The optimizer really followed the curve: after 40 steps it stands at the floor.
    [optimizer] = optimizers
    assert int(optimizer.iterations) == 40
    assert float(optimizer.learning_rate) == pytest.approx(0.001, rel=1e-6)
    assert any(line.startswith("epoch 2/4: ") and ", learning rate 0.00868, " in line for line in lines)


@pytest.mark.slow
def test_plateau_rates_per_epoch_follow_the_rule_and_reach_the_optimizer(tiny_data_dir, tmp_path, monkeypatch):
    # A rate far too high for SGD makes validation loss jump about, so some epochs don't improve it.
    config = tiny_config(
        epochs=6,
        optimizer="sgd",
        lr_schedule="reduce_on_plateau",
        learning_rate=8.0,
        lr_factor=0.25,
        min_learning_rate=0.1,
    )
    used = []
    real_fit = train.keras.Model.fit

    def fit(network, *arguments, **keywords):
        used.append(float(network.optimizer.learning_rate))
        return real_fit(network, *arguments, **keywords)

    monkeypatch.setattr(train.keras.Model, "fit", fit)
    record = run_experiment(config, str(tiny_data_dir), tmp_path / "runs", "test", echo=quiet)
    history = history_of(record)
    rates = [entry["learning_rate"] for entry in history]
    expected = [8.0]
    lowest = math.inf
    for entry in history[:-1]:
        if entry["val_loss"] < lowest:
            lowest = entry["val_loss"]
            expected.append(expected[-1])
        else:
            expected.append(max(expected[-1] * 0.25, 0.1))
    assert rates == expected
    assert len(set(rates)) > 1, "the data must make the rule reduce the rate at least once"
    assert used == pytest.approx(rates, rel=1e-6)


@pytest.mark.slow
def test_early_stopping_ends_when_the_best_accuracy_is_patience_epochs_old(tiny_data_dir, tmp_path):
    # The synthetic cues are learnt within a few epochs at this rate; validation accuracy then stalls.
    config = tiny_config(epochs=20, learning_rate=0.05, early_stopping_patience=2)
    lines = []
    record = run_experiment(config, str(tiny_data_dir), tmp_path / "runs", "test", echo=lines.append)
    history = history_of(record)
    accuracies = [entry["val_accuracy"] for entry in history]
    best_epoch = accuracies.index(max(accuracies)) + 1
    result = record.result.to_json()
    assert result["epochs_run"] == len(history) == best_epoch + 2 < 20
    assert result["stopped_early"] is True and result["best_epoch"] == best_epoch
    # No earlier epoch had a best two epochs old.
    assert not any(patience_ran_out(history[:count], 2) for count in range(len(history)))
    assert (
        f"stopping early after epoch {best_epoch + 2} of 20: val_accuracy has not improved on epoch {best_epoch}'s"
        f" {max(accuracies):.4f} for 2 epochs (train.early_stopping_patience)"
    ) in lines


@pytest.mark.slow
def test_patience_longer_than_the_run_trains_every_epoch(tiny_data_dir, tmp_path):
    record = run_experiment(
        tiny_config(epochs=2, early_stopping_patience=5), str(tiny_data_dir), tmp_path / "runs", "test", echo=quiet
    )
    assert record.result.epochs_run == 2 and record.result.stopped_early is False
