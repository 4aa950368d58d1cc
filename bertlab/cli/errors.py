"""Turn user errors (bad data, bad config, missing files) into one line and a non-zero exit."""

from __future__ import annotations

import functools
import logging
import sys

from bertlab.checkpoint import UnsafeCheckpointError
from bertlab.data.errors import DataError

USER_ERRORS = (DataError, ValueError, FileNotFoundError, UnsafeCheckpointError)
EXIT_USER_ERROR = 2


def exit_on_user_errors(function):
    """Print `error: <message>` to stderr and exit 2 instead of a traceback; BERTLAB_DEBUG=1 keeps it."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except USER_ERRORS as error:
            import os

            if os.environ.get("BERTLAB_DEBUG"):
                raise
            logging.getLogger("bertlab").debug("user error", exc_info=True)
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)

    return wrapper
