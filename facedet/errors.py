"""One exception type for every problem a user can fix.

Command-line entry points catch `FacedetError` and print its message on one line
(`error: ...`) instead of a traceback. Messages name the file, line, key or value
at fault and say what was expected.
"""


class FacedetError(Exception):
    """A user-facing error: bad input, bad config, bad checkpoint."""

    def __init__(self, message: str = "") -> None:
        super().__init__(self._original(str(message)))

    def _original(self, message: str) -> str:
        """The message itself, also when the error comes from a DataLoader worker.

        torch re-raises a worker's exception in the main process as
        `type(error)("Caught DataError in DataLoader worker process 0.\nOriginal Traceback ...")`:
        the worker's whole traceback, whose last line is "facedet.errors.DataError: <message>".
        Only <message> is kept, so a bad image reads the same with and without workers.
        """
        if "\nOriginal Traceback" not in message:
            return message
        last = message.rstrip().rsplit("\n", 1)[-1]
        prefix = f"{type(self).__module__}.{type(self).__qualname__}: "
        return last[len(prefix):] if last.startswith(prefix) else message


class DataError(FacedetError):
    """An image or label file that cannot be used (names the file, and the line if any)."""


class ConfigError(FacedetError):
    """An unknown key, a wrong type or an impossible value in a config or override."""


class CheckpointError(FacedetError):
    """A checkpoint that is missing, corrupt, or belongs to another model."""


class NonFiniteLossError(FacedetError):
    """A loss term became NaN or inf (names the term and the batch)."""
