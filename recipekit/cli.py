"""How every command ends on a user error: one `error: ...` line on stderr and exit status 2.

Each command's `main` is decorated with `command`. A RecipekitError, or an OSError about a
named file (an input that is missing, an output in the way, a folder not writable), is the
user's to fix, so it is told in one line; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable

from recipekit.errors import RecipekitError

# The status argparse exits with on a usage error, so every user error reads the same.
EXIT_USER_ERROR = 2


def command(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a command's `main(argv)`: its status, or EXIT_USER_ERROR after one line on stderr."""
    @functools.wraps(main)
    def run(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except RecipekitError as err:
            return _fail(err)
        except OSError as err:
            if err.filename is None:
                raise
            return _fail(err)

    return run


def _fail(err: Exception) -> int:
    print(f"error: {err}", file=sys.stderr)
    return EXIT_USER_ERROR


def exit_status(code: object) -> int:
    """The status the interpreter exits with on SystemExit(code); a message code is printed on stderr, as it does."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1
