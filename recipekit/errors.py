"""The one base class of the errors a user can cause and fix: bad input, a missing file or
model, an impossible request. Every command turns one into a single `error: ...` line on
stderr and exit status 2 (recipekit/cli.py); anything else is a bug and keeps its traceback.

Each module raises its own subclass (RowError, CheckpointError, ...), so a caller can tell
them apart; most also subclass the builtin they extended before (ValueError, RuntimeError),
so code that catches that builtin still catches them.
"""

from __future__ import annotations


class RecipekitError(Exception):
    """A user error: its message alone says what is wrong and where."""


class UsageError(RecipekitError):
    """Options that cannot run as given and that argparse alone cannot check (one needs another)."""
