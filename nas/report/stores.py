"""The one reader of a search's results store for the reports: its rows, space and checkpoint."""

from __future__ import annotations

from pathlib import Path

from nas.errors import check
from nas.results.store import ResultsStore
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
