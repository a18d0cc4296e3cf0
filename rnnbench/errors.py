"""The errors rnnbench reports to a user: one line on standard error and a non-zero exit code.

Every module's error class derives from one of these two, and the command line catches
`RnnbenchError` in one place, so no command can let a user's mistake through as a traceback:

- `InputError` (exit code 2): what the user gave is wrong — a config or `--set` override, a data
  file, a path, a backend that is not installed. Fix the input and run the same command again.
- `RnnbenchError` itself (exit code 1): the work could not be done — the runs folder can't be
  written or its index is damaged, a worker process died, a run did not complete.
"""

from __future__ import annotations


class RnnbenchError(Exception):
    """Work that could not be done, described in one line; exit code 1."""

    exit_code = 1


class InputError(RnnbenchError):
    """A mistake in the user's input (config, override, data, path), described in one line; exit code 2."""

    exit_code = 2
