"""The one exception type whose message is shown to users as is (CLI, Slicer panel)."""


class LDSegError(Exception):
    """A problem with the user's input, model or environment.

    The message says what is wrong and what to do; callers show it without a traceback.
    """


class CancelledError(LDSegError):
    """The user asked to stop a running segmentation; nothing was written."""

    def __init__(self, message: str = "Segmentation cancelled by the user; no output was written.") -> None:
        super().__init__(message)
