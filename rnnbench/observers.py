"""Followers of a run: told when it opens, after each finished epoch, and when it ends.

The run's own folder and the index stay the record; observers copy what they are told elsewhere
(TensorBoard event files, an MLflow server) or act on it (a tuning study pruning a trial). This
module imports no Keras, so that observers can be built before a backend is chosen; the ones
every run gets are `train.trackers`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from rnnbench.record import RunRecord


def diverged(entry: dict[str, Any]) -> bool:
    """Whether an epoch's loss (training or validation) stopped being a number: the run's last
    epoch, recorded as diverged."""
    return not all(math.isfinite(entry.get(key, 0.0)) for key in ("loss", "val_loss"))


class RunObserver:
    """Follows one run. Every method does nothing unless overridden.

    An observer that copies the record elsewhere must never stop training: it catches its own
    failures and says what was not copied. Raising `errors.RunStopped` from `opened` or
    `epoch_ended` ends the run on purpose, recorded with that error's `status` (pruned); any other
    exception fails it.
    """

    def opened(self, run_dir: Path, record: RunRecord, history: Sequence[dict[str, Any]]) -> None:
        """The run's folder exists and is indexed as running; `history` holds epochs already
        trained before a resume (empty for a new run)."""

    def epoch_ended(self, entry: dict[str, Any], history: Sequence[dict[str, Any]]) -> None:
        """An epoch finished and is in the run's history (and checkpoint): `entry` is its line.
        A `diverged(entry)` epoch is the run's last: it is in the history, not the checkpoint, and
        the run is closed as diverged whatever this method does."""

    def closed(self, record: RunRecord) -> None:
        """The run ended and is indexed with `record.status` (completed, diverged, pruned,
        interrupted or failed); a completed record holds its `result`."""
