"""User errors, exit codes and the top-level handler of every command line entry point.

A `UserError` is a mistake the user can fix (a missing file, a bad value, a locked run directory): the command
prints one line naming the file/key/value and what was expected, and exits with `EXIT_USAGE`. Every other
exception is a bug or a crash: the traceback is printed and the exit code is `EXIT_FAILED`. `--debug` on the
command line (or `HYDRA_FULL_ERROR=1`) shows the traceback of a user error too.

Exit codes (README: "Exit codes"):

    0  EXIT_OK       everything asked for happened (a run that trained and was gated, even if the gate failed)
    1  EXIT_FAILED   nothing asked for happened: a crash, every combination failed, a population member failed
    2  EXIT_USAGE    a user error, before anything trained: bad value, missing file, locked run dir, refused backtest
    3  EXIT_PARTIAL  some of the work happened: a combo runner with some combinations done and some failed
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
DEBUG_FLAG = "--debug"
DEBUG_ENV = "JAXRL_DEBUG"


class UserError(ValueError):
    """A mistake in what the user asked for; its message names the file/key/value and what is expected."""


def take_debug_flag(argv: list[str] | None = None) -> bool:
    """Remove `--debug` from `argv` (sys.argv: Hydra would reject it) and remember it for `user_errors`."""
    argv = sys.argv if argv is None else argv
    if DEBUG_FLAG in argv:
        argv.remove(DEBUG_FLAG)
        os.environ[DEBUG_ENV] = "1"
    return debugging()


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV) == "1" or os.environ.get("HYDRA_FULL_ERROR") == "1"


@contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Turn a `UserError` into one line on stderr and exit code 2 (the traceback with --debug)."""
    try:
        yield
    except UserError as error:
        if debugging():
            raise
        message = " ".join(str(error).split())  # one line, even for a message that spans several
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USAGE)


def outcome_code(done: int, failed: int) -> int:
    """0 when nothing failed, 1 when nothing was done, 3 (partial) when some of each."""
    if not failed:
        return EXIT_OK
    return EXIT_PARTIAL if done else EXIT_FAILED
