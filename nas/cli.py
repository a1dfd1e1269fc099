"""Errors of the entry scripts as one clear line on stderr (exit status 2) instead of tracebacks.

Checks of settings and building objects from config live in `nas.config`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

# Earlier homes of these names (checks and building moved to nas.config, result.json to
# nas.collect); code written against them keeps working.
from nas.config import (  # noqa: F401
    build_callbacks,
    build_module,
    check_run_settings,
    check_settings,
    device_of,
)
from nas.errors import NasError
from nas.report.runs import write_run_result  # noqa: F401

# Settings that have no default, with what to pass; used in the message for a missing value (???).
_REQUIRED = {
    "ckpt": "a supernet checkpoint written by train.py: ckpt=<run>/checkpoints/last.ckpt",
    "arch": "an architecture JSON written by search.py: arch=<run>/search/<...>/selections/<file>.json",
}


def _chain(err: BaseException):
    """`err` and the exceptions it was raised from (Hydra and Lightning wrap errors)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _first_line(text: str) -> str:
    return " ".join(str(text).strip().splitlines()[0].split()) if str(text).strip() else ""


def _missing(err: BaseException) -> str:
    found = re.search(r"Missing mandatory value: ([\w.\[\]]+)", str(err))
    key = found.group(1) if found else str(getattr(err, "full_key", "") or "?")
    what = _REQUIRED.get(key.split(".")[-1], f"{key}=<value>")
    return f"{key} has no value (??? in the config); pass {what}"


def _script() -> str:
    """The entry script running (for hints that show a command), train.py when run otherwise."""
    name = Path(sys.argv[0]).name
    return name if name in ("train.py", "search.py", "study.py") else "train.py"


def _describe(err: BaseException) -> str | None:
    """One line for a bad-input error, or None for an error that is a bug (keep its traceback)."""
    from hydra.errors import (
        ConfigCompositionException,
        InstantiationException,
        MissingConfigException,
        OverrideParseException,
    )
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from omegaconf.errors import (
        ConfigAttributeError,
        ConfigKeyError,
        InterpolationToMissingValueError,
        MissingMandatoryValue,
    )

    chain = list(_chain(err))
    for e in chain:  # our own message wins wherever it sits in the chain
        if isinstance(e, NasError):
            return str(e)
    for e in chain:
        if isinstance(e, MissingMandatoryValue | InterpolationToMissingValueError):
            return _missing(e)
        if isinstance(e, MissingConfigException):
            # Hydra lists the available options on the lines after the first; keep them on one line.
            text = str(e).split("Config search path")[0]
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            return lines[0] + (
                "; " + lines[1] + " " + ", ".join(lines[2:]) if len(lines) > 2 else ""
            )
        if isinstance(e, ConfigCompositionException | OverrideParseException):
            key = re.search(r"Could not override '([^']+)'", str(e))
            if key and isinstance(e.__cause__, ConfigKeyError | ConfigAttributeError):
                return (
                    f"{key.group(1)} is not a setting of this config; check its spelling "
                    f"(`python {_script()} --cfg job` prints every setting)"
                )
            return " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        if isinstance(e, ConfigKeyError | ConfigAttributeError):
            return f"{_first_line(e)} (full key: {getattr(e, 'full_key', '?')})"
        if isinstance(e, InstantiationException) and "unexpected keyword argument" in str(e):
            arg = re.search(r"unexpected keyword argument '(\w+)'", str(e))
            where = re.search(r"full_key: (\S+)", str(e))
            key = f"{where.group(1) if where else '?'}.{arg.group(1) if arg else '?'}"
            target = re.search(r"target '([\w.]+)'", str(e))
            name = target.group(1).rsplit(".", 1)[-1] if target else "its target"
            return f"{key}: not a setting of {name}; check its spelling"
        if isinstance(e, MisconfigurationException):
            message = f"trainer: {_first_line(e)}"
            if "gpu" in message.lower() or "cuda" in message.lower():  # hardware=gpu without one
                message += "; this machine has no usable CUDA device: use hardware=cpu"
            return message
        if isinstance(e, OSError) and e.filename:
            return (
                f"cannot use {str(e.filename)!r}: {e.strerror or e}; choose a path that can be "
                "written (e.g. hydra.run.dir=<a writable directory>) or fix the file's permissions"
            )
    return None


@contextlib.contextmanager
def user_errors():
    """Print bad-input errors as one clear line on stderr and exit with status 2."""
    try:
        yield
    except Exception as err:
        message = _describe(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def run_cli(main) -> None:
    """Run a `hydra.main` function; errors Hydra meets before the task runs become one line too."""
    # Hydra prints its own multi-line report unless asked to re-raise; we want to format it ourselves.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    with user_errors():
        main()
