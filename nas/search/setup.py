"""The evaluation setup of a results store: what a stored score means.

A one-shot score depends on more than the search settings: the checkpoint's contents, the data it
is measured on (dataset, split sizes and seed, image size) and how it is measured (batch and ghost
sizes, BN recalibration: in the store's `settings`). The store records the first two under
`evaluation`; a search whose setup differs stops and lists the differences instead of reusing rows
that mean something else; shards of different setups are not merged. Stores written before this
record existed are read as before, with one warning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from nas.errors import NasError
from nas.results.store import ResultsStore

META = "evaluation"
_CHUNK = 1 << 20


def file_digest(paths: Sequence[str | Path]) -> str:
    """SHA-256 over the contents of `paths` in order (one checkpoint, or a group searched as one)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(_CHUNK):
                digest.update(block)
    return digest.hexdigest()


def evaluation_setup(checkpoints: Sequence[str | Path], dataset: Mapping | None, val) -> dict:
    """The setup of a search: checkpoint contents (None without one: a proxy search may have
    none), dataset config, validation images' shape."""
    return {
        "checkpoint_sha256": file_digest(checkpoints) if checkpoints else None,
        "dataset": dict(dataset) if dataset is not None else None,
        "val_images": list(val.images.shape),
    }


def differences(before: Mapping, now: Mapping, prefix: str = "") -> list[str]:
    """`key: before -> now` for every leaf that differs (nested mappings walked)."""
    found = []
    for key in sorted({*before, *now}):
        a, b = before.get(key), now.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return found


def check_setup(store: ResultsStore, setup: dict, warn) -> None:
    """Record `setup` in `store`, or stop if its rows were scored with another one; `warn(line)`
    tells about a store of an earlier version that has rows but no record (reused as before)."""
    previous = store.get_meta(META)
    if previous is None and store.count():
        warn(
            f"warning: results store {store.path} does not record its evaluation setup (written "
            f"by an earlier version); its {store.count()} rows are reused as scored then"
        )
    elif previous is not None and previous != setup:
        store.close()
        raise NasError(
            f"results store {store.path} was scored with another evaluation setup ("
            f"{'; '.join(differences(previous, setup))}); its scores would mean something else: "
            "pass another out_dir for this setup, or the earlier one to continue it"
        )
    store.set_meta(META, setup)
