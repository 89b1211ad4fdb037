"""User-facing errors.

Library code raises ``ValueError`` (bad config values, bad spaces) or one of the
subclasses below; the CLI turns any of them into one line on stderr and a
non-zero exit, never a traceback.
"""


class RlgenError(Exception):
    """An error the user caused and can fix; its message says how."""


class CheckpointError(RlgenError):
    """A checkpoint is missing, truncated, or was not written by rlgen."""


class UnknownNameError(RlgenError, ValueError):
    """An unknown environment id, preset, dataset, or registry name."""
