"""The verdict on configs/best/cells.yaml, alone and with the bag of bigrams, from the per-seed test
accuracies its runs recorded (docs/results.md), without training anything again.

    python scripts/rejudge_best.py

The runs were made before the verdict tested test accuracy and before run records were kept
beside the repository; their per-seed test accuracies are all the verdict needs.
"""

from rnnbench.verdict import TEST_KEY, group_runs, verdict

recorded = {  # docs/results.md, "test accuracy, seeds 1–3"
    "best-gru": [0.9069, 0.9034, 0.9034],
    "best-lstm": [0.9000, 0.8949, 0.9012],
    "best-simple_rnn": [0.8827, 0.8834, 0.8776],
    "best_ann_bigrams": [0.9044, 0.9075, 0.9061],
}


def records(names):
    return [
        {
            "name": name,
            "data": {"dataset": "imdb"},
            "config": {"name": name, "train": {"seed": seed}},
            "result": {TEST_KEY: accuracy, "best_val_accuracy": 0.0, "test_confusion": [[12500, 0], [0, 12500]]},
        }
        for name in names
        for seed, accuracy in enumerate(recorded[name], start=1)
    ]


for names in (["best-gru", "best-lstm", "best-simple_rnn"], list(recorded)):
    print("\n".join(verdict(group_runs(records(names), TEST_KEY))))
    print()
