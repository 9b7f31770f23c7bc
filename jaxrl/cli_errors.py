"""The command line's top-level handler: a bad setting or bad data is one line on stderr, not a traceback.

`--debug` (removed from argv before Hydra parses it) or HYDRA_FULL_ERROR=1 shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from jaxrl.config import ConfigError
from jaxrl.data.loader import DataError

EXIT_BAD_INPUT = 2
ONE_LINE_ERRORS = (ConfigError, DataError)


def take_debug_flag(argv: list[str]) -> bool:
    """True if `--debug` is in argv (or HYDRA_FULL_ERROR=1); removes the flag so Hydra never sees it."""
    debug = "--debug" in argv
    while "--debug" in argv:
        argv.remove("--debug")
    if debug:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    return debug or os.environ.get("HYDRA_FULL_ERROR") == "1"


def one_line_errors(task: Callable, *args, **kwargs):
    """Run `task`; a ConfigError or DataError exits with status 2 and its message on one line (no traceback)."""
    try:
        return task(*args, **kwargs)
    except ONE_LINE_ERRORS as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        message = " ".join(str(error).split())
        print(f"jaxrl: error: {message}", file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_INPUT)
