"""The normalisation statistics of an image folder, cached beside the data under a content key.

Computing a folder's per-channel mean and std means decoding its whole training split; the result
is stored in `<root>/.nas-normalisation.json`, keyed by a SHA-256 over every file's relative path,
size and modification time (per split, so the split itself is part of the key) and the pixel
pipeline (image size, channels). Any added, removed, replaced or touched file, or another split or
size, gives another key, and the statistics are computed again. When the root cannot be written,
the file goes to the user's cache directory instead (`$XDG_CACHE_HOME/oneshot-nas/normalisation/`,
default `~/.cache/...`), named after the root's path; the log says which.

`HistogramStats` accumulates exact per-channel moments over batches, so a folder streamed from
disk gets the same statistics as one held in memory (`nas.data.batching.channel_stats`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from nas.atomic import write_text

CACHE_NAME = ".nas-normalisation.json"
KEEP = 16  # keys kept per cache file: one per (split, image size, channels) tried on the folder
PIPELINE = "pil-convert, resize-shorter-side, center-crop, uint8; v1"  # bump when pixels change
log = logging.getLogger(__name__)


def content_key(
    root: Path, files: Mapping[str, Sequence[str]], image_size: int, channels: int
) -> str:
    """SHA-256 over (split, relative path, size, mtime) of every file, and the pixel pipeline."""
    digest = hashlib.sha256(f"{PIPELINE}|{image_size}|{channels}".encode())
    for split in sorted(files):
        for path in files[split]:
            stat = os.stat(path)
            relative = os.path.relpath(path, root)
            digest.update(f"\n{split}|{relative}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def user_cache_file(root: Path) -> Path:
    """Where the statistics of a root that cannot be written go: the user's cache directory."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return base / "oneshot-nas" / "normalisation" / f"{name}.json"


def cache_files(root: Path) -> tuple[Path, Path]:
    """The two places a cache may be: beside the data first, then the user's cache directory."""
    return root / CACHE_NAME, user_cache_file(root)


def read_cached(root: Path, key: str) -> dict | None:
    """The entry stored under `key` beside the data or in the user's cache, else None."""
    for path in cache_files(root):
        entry = _read(path).get(key)
        if entry is not None:
            return entry
    return None


def write_cached(root: Path, key: str, entry: Mapping) -> Path:
    """Store `entry` under `key`, beside the data if the root can be written, else in the user's
    cache directory; returns the file written."""
    beside, fallback = cache_files(root)
    try:
        return _write(beside, key, entry)
    except OSError as error:  # read-only media, no permission: the user's own cache still works
        path = _write(fallback, key, entry)
        log.info(
            "image folder %s cannot be written (%s): normalisation statistics cached in %s",
            root,
            error.strerror or error,
            path,
        )
        return path


def _read(path: Path) -> dict:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):  # absent, unreadable or damaged: recomputed and rewritten
        return {}
    return found if isinstance(found, dict) else {}


def _write(path: Path, key: str, entry: Mapping) -> Path:
    older = [(k, v) for k, v in _read(path).items() if k != key]
    entries = {**dict(older[-(KEEP - 1) :]), key: dict(entry)}  # the newest KEEP, this one last
    return write_text(path, json.dumps(entries, indent=1) + "\n")


class HistogramStats:
    """Per-channel mean and std, in [0, 1] units, of uint8 batches [N, C, H, W] seen so far.

    A 256-bin histogram per channel gives exact moments, as `channel_stats` computes them on a
    whole split at once.
    """

    def __init__(self, channels: int) -> None:
        self.counts = torch.zeros(channels, 256, dtype=torch.float64)

    def add(self, images: torch.Tensor) -> None:
        """Count the pixels of a batch."""
        for channel in range(self.counts.shape[0]):
            values = images[:, channel].reshape(-1)
            self.counts[channel] += torch.bincount(values, minlength=256).double()

    def stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(means, stds); a constant channel's std is 1e-3, never 0, as in `channel_stats`."""
        values = torch.arange(256, dtype=torch.float64) / 255
        means, stds = [], []
        for counts in self.counts:
            total = counts.sum()
            mean = (counts * values).sum() / total
            var = (counts * (values - mean) ** 2).sum() / total
            means.append(float(mean))
            stds.append(max(float(var.sqrt()), 1e-3))
        return tuple(means), tuple(stds)
