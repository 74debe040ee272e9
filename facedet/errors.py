"""One exception type for every problem a user can fix.

Command-line entry points catch `FacedetError` and print its message on one line
(`error: ...`) instead of a traceback. Messages name the file, line, key or value
at fault and say what was expected.
"""


class FacedetError(Exception):
    """A user-facing error: bad input, bad config, bad checkpoint."""


class DataError(FacedetError):
    """An image or label file that cannot be used (names the file, and the line if any)."""


class ConfigError(FacedetError):
    """An unknown key, a wrong type or an impossible value in a config or override."""


class CheckpointError(FacedetError):
    """A checkpoint that is missing, corrupt, or belongs to another model."""


class NonFiniteLossError(FacedetError):
    """A loss term became NaN or inf (names the term and the batch)."""
