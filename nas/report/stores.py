"""The one reader of a search's results store for the reports: its rows, space and checkpoint."""

from __future__ import annotations

from pathlib import Path

from nas.errors import check
from nas.results.store import ResultsStore
from nas.search.setup import META
from nas.spaces import SearchSpace, build_space


def open_store(store: str | Path) -> tuple[list[dict], SearchSpace, str | None]:
    """(rows in proposal order, the search space, the checkpoint it recorded) of a results store.

    A missing file, an empty store and a store without its search space are clear errors; the
    checkpoint is the path search.py scored with (None if not recorded), which may be gone by now.
    """
    path = Path(str(store)).expanduser()
    check(
        path.is_file(),
        f"results store {str(path)!r} does not exist; pass the results.sqlite written by "
        "search.py (<run>/search/<strategy>-seed<seed>/results.sqlite)",
    )
    with ResultsStore(path) as db:
        rows, spec, ckpt = db.results(), db.get_meta("space_spec"), db.get_meta("checkpoint")
    check(bool(rows), f"results store {str(path)!r} is empty; run search.py first")
    check(isinstance(spec, dict), f"results store {str(path)!r} does not record its search space")
    return rows, build_space(spec), ckpt


def store_setup(store: str | Path) -> tuple[dict | None, dict]:
    """(evaluation setup, search settings) a store records: what its scores mean (see
    nas.search.setup); the setup is None for a store of an earlier version."""
    with ResultsStore(Path(str(store)).expanduser()) as db:
        return db.get_meta(META), db.get_meta("settings") or {}


def setup_line(setup: dict | None, settings: dict) -> str:
    """One line saying what a store's scores were measured on, for a report's header."""
    if setup is None:
        return "Evaluation setup: not recorded (a store of an earlier version)."
    dataset = setup.get("dataset") or {}
    source = dataset.get("_target_", "unrecorded").rsplit(".", 1)[-1]
    where = dataset.get("data_dir") or dataset.get("root") or dataset.get("path")
    measured = ", ".join(
        f"{k}={settings[k]}"
        for k in ("eval_batch_size", "ghost_size", "bn_recalibration_batches")
        if settings.get(k) is not None
    )
    if setup.get("proxy"):  # a proxy search (nas.search.proxy_scorer): no validation pass
        proxy = setup["proxy"]
        return (
            f"Evaluation setup: {source}{f' ({where})' if where else ''}, proxy {proxy['name']} "
            f"of each untrained child on {proxy['images']} training images (seed {proxy['seed']})."
        )
    return (
        f"Evaluation setup: {source}{f' ({where})' if where else ''}, validation images "
        f"{'x'.join(map(str, setup.get('val_images') or []))}, checkpoint sha256 "
        f"{str(setup.get('checkpoint_sha256'))[:12]}{f', {measured}' if measured else ''}."
    )
