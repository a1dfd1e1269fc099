"""Whole-or-nothing file writes: write a temporary file beside the target, then rename it over it.

A process killed (or failing) while writing leaves the previous file intact, never a half-written
one; at worst a stray `.<name>.<pid>.tmp` stays behind, which `remove_stale_temp_files` clears once
its writer is gone. The rename is atomic only within one file system, hence the temporary file sits
in the target's own directory.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

# `.<name>.<pid>.tmp`: the writer's pid tells a stale file (its writer died) from one being written.
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def temp_path(path: str | Path) -> Path:
    """The temporary file that `atomic_path` writes for `path`: `.<name>.<pid>.tmp` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; when the block ends without error, rename it to `path`.

    On an error (or a KeyboardInterrupt) the temporary file is removed and `path` is untouched.
    `durable=True` also fsyncs the file and its directory, so that the new contents, not just the
    new name, survive a power cut (checkpoints: losing one costs hours of training).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if (
        durable
    ):  # the rename itself must reach the disk, or a power cut could bring back the old one
        _fsync(path.parent)


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically, creating its folder; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def remove_stale_temp_files(directory: str | Path) -> list[Path]:
    """Delete the `.<name>.<pid>.tmp` files in `directory` whose writing process no longer runs.

    Files of a live process (possibly another run writing into the same directory) are kept.
    Returns the removed paths.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in directory.iterdir():
        found = _TEMP.match(path.name)
        if found and path.is_file() and not _alive(int(found["pid"])):
            path.unlink(missing_ok=True)  # another process may be cleaning up at the same time
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but belongs to another user
        return True
    except (OverflowError, OSError):  # not a valid pid on this system: nobody is writing that file
        return False
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)  # a read-only descriptor may fsync a file or a directory
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
