"""One exception type for bad input, so entry scripts can print its message without a traceback."""

from __future__ import annotations


class NasError(ValueError):
    """Bad input: the message names the value, what was expected and how to fix it."""


def check(condition: bool, message: str) -> None:
    """Raise `NasError(message)` unless `condition` holds."""
    if not condition:
        raise NasError(message)
