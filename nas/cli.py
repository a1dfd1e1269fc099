"""Helpers for the entry scripts: clear one-line errors instead of tracebacks, config logging."""

from __future__ import annotations

import contextlib
import sys

from nas.errors import NasError


def _user_error(err: BaseException) -> NasError | None:
    """The NasError behind `err` (Hydra wraps errors raised while instantiating), if any."""
    seen = err
    while seen is not None:
        if isinstance(seen, NasError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def user_errors():
    """Print bad-input errors as one clear line on stderr and exit with status 2."""
    try:
        yield
    except Exception as err:
        found = _user_error(err)
        if found is None:
            raise
        print(f"error: {found}", file=sys.stderr)
        sys.exit(2)
