"""Errors the user can fix, and only those: the command line prints them as one line, exit 2.

Anything else raised inside bertlab is a bug and keeps its traceback. Each class also
derives from the built-in exception a caller would naturally catch (ValueError), so
library users can handle them without importing bertlab's types.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: a config value, a data file, a checkpoint, a diverged run."""


class ConfigError(UserError, ValueError):
    """A config key or command-line value that cannot work; the message names key, value and what is
    allowed.
    """


class CheckpointError(UserError, ValueError):
    """`model.init`, a `.ckpt` or a Hugging Face directory that cannot be used; the message names
    it.
    """


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holding objects other than tensors and plain values: loading it could run
    code.
    """


class DataError(UserError, ValueError):
    """Bad input data. The message reads `path:line: what is wrong` (or `path: ...`)."""

    def __init__(self, path, what: str, line: int | None = None):
        self.path, self.line, self.what = str(path), line, what
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {what}")

    def __reduce__(self):
        # Raised in preparation and DataLoader worker processes: it must survive pickling.
        return (type(self), (self.path, self.what, self.line))


class NonFiniteError(UserError, FloatingPointError):
    """A NaN or infinite loss or gradient, with the step it happened at (lower optimizer.lr)."""
