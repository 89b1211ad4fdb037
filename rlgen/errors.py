"""User-facing errors.

Library code raises one of these for anything a user caused (a bad config value,
a missing file, a checkpoint that is not rlgen's); the CLI turns them, and only
them, into one line on stderr and exit code 2. Any other exception is a bug in
rlgen and keeps its traceback. ``InputError`` is also a ``ValueError``, so code
that catches ``ValueError`` for bad values keeps working.
"""


class RlgenError(Exception):
    """An error the user caused and can fix; its message says how."""


class InputError(RlgenError, ValueError):
    """A value given to rlgen is not allowed; the message names it and what is."""


class CheckpointError(RlgenError):
    """A checkpoint is missing, truncated, or was not written by rlgen."""


class UnknownNameError(RlgenError, ValueError):
    """An unknown environment id, preset, dataset, or registry name."""
