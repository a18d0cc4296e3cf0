"""The errors rnnbench reports to a user: one line on standard error and a non-zero exit code.

Every module's error class derives from one of these two, and the command line catches
`RnnbenchError` in one place, so no command can let a user's mistake through as a traceback:

- `InputError` (exit code 2): what the user gave is wrong — a config or `--set` override, a data
  file, a path, a backend that is not installed. Fix the input and run the same command again.
- `RnnbenchError` itself (exit code 1): the work could not be done — the runs folder can't be
  written or its index is damaged, a worker process died, a run did not complete.

Two more say how a run ended rather than what went wrong: `RunStopped`, which an observer raises
to end a run on purpose (a pruned trial), and `RunInterrupted`, Ctrl-C naming the run it stopped.
"""

from __future__ import annotations


class RnnbenchError(Exception):
    """Work that could not be done, described in one line; exit code 1."""

    exit_code = 1


class InputError(RnnbenchError):
    """A mistake in the user's input (config, override, data, path), described in one line; exit code 2."""

    exit_code = 2


class RunStopped(RnnbenchError):
    """Raised by a run's observer to end the run on purpose: an outcome, not a failure.

    The runner records the run with the subclass's `status` (tune's `Pruned`: "pruned") and the
    message as its `error`, removes its checkpoint (a run ended on purpose is never resumed) and
    returns its record, as it does for a diverged run.
    """

    status: str = "stopped"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run whose folder exists: the run is recorded as interrupted in `run_dir`.

    A KeyboardInterrupt, so that whatever stops on Ctrl-C stops on it too; one before the run's
    folder existed stays a plain KeyboardInterrupt.
    """

    def __init__(self, run_dir: str):
        super().__init__(run_dir)
        self.run_dir = run_dir
