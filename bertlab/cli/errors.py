"""Turn user errors (bad data, bad config, missing files) into one line and a non-zero exit."""

from __future__ import annotations

import functools
import logging
import os
import sys

from bertlab.errors import UserError
from bertlab.runtime.hydra import in_multirun

# Only errors the user can fix are shortened; anything else is a bug and keeps its traceback.
USER_ERRORS = (UserError,)
EXIT_USER_ERROR = 2


def exit_on_user_errors(function):
    """Print `error: <message>` to stderr and exit 2 instead of a traceback; BERTLAB_DEBUG=1 keeps
    it.

    In a Hydra multirun the error is printed and re-raised instead: Hydra records the job
    as failed and the sweep goes on with the next one (exiting would end the whole sweep).
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except USER_ERRORS as error:
            if os.environ.get("BERTLAB_DEBUG"):
                raise
            logging.getLogger("bertlab").debug("user error", exc_info=True)
            print(f"error: {error}", file=sys.stderr)
            if in_multirun():
                raise
            sys.exit(EXIT_USER_ERROR)

    return wrapper
