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


# Config keys renamed because one word meant several things ("window": observation bars, rolling-Sharpe bars,
# backtest span, selection split). An old key on the command line stops with the new name instead of Hydra's
# "Could not override"; saved configs (candidates in a registry) are migrated by `migrate_renamed`.
RENAMED_KEYS = {"gate.window": "gate.rolling_window", "selection.window": "selection.split",
                "registry.record": "registry.enabled"}  # the backtest's switch, now named like training's


def refuse_renamed_keys(argv: list[str]) -> None:
    """Exit with code 2 and the new name when a command-line override uses a renamed key."""
    for arg in argv[1:]:
        key = arg.split("=", 1)[0].lstrip("+~")
        if "=" in arg and key in RENAMED_KEYS:
            print(f"{os.path.basename(argv[0])}: error: {key} was renamed {RENAMED_KEYS[key]}: use "
                  f"{RENAMED_KEYS[key]}={arg.split('=', 1)[1]}", file=sys.stderr, flush=True)
            sys.exit(EXIT_USAGE)


def migrate_renamed(config: dict) -> dict:
    """A saved config (plain dict) with its renamed keys under their new names (the value kept)."""
    config = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    for old, new in RENAMED_KEYS.items():
        group, key = old.split(".")
        block = config.get(group)
        if isinstance(block, dict) and key in block:
            block.setdefault(new.split(".")[1], block.pop(key))
    return config


def take_debug_flag(argv: list[str] | None = None) -> bool:
    """Remove `--debug` from `argv` (sys.argv: Hydra would reject it) and remember it for `user_errors`; refuse
    renamed config keys first (`refuse_renamed_keys`): every command line calls this before Hydra parses."""
    argv = sys.argv if argv is None else argv
    refuse_renamed_keys(argv)
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
