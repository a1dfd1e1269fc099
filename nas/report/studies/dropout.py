"""Dropout rate (paper Fig. 4): one-shot vs stand-alone accuracy, one panel per path-dropout rate.

Stand-alone accuracy does not depend on the supernet, so one retraining sweep serves every panel:
the architectures of a finished correlation study (`correlation.json`) are looked up in the
results store of each supernet of the dropout sweep. Searching every supernet with the same
`search.seed` and `search.num_archs` scores the same architectures in every store.
"""

from __future__ import annotations

from pathlib import Path

from nas.errors import check
from nas.report.figures import plot_dropout_panels
from nas.report.stats import rank_correlations
from nas.report.studies.common import checkpoint_hparams, read_json, write_json
from nas.results.store import ResultsStore
from nas.samplers.base import sampler_spec


def dropout_study(stores: list[str], correlation: str, out_dir: str) -> dict:
    """One scatter per supernet's store (its dropout rate from its checkpoint), side by side."""
    check(
        len(stores) >= 1,
        "study.stores is empty; pass the results.sqlite of every supernet of the dropout sweep",
    )
    standalone = read_json(correlation, "study=correlation")["archs"]
    panels = []
    for store in stores:
        path = Path(str(store)).expanduser()
        check(path.is_file(), f"results store {str(path)!r} does not exist; run search.py first")
        with ResultsStore(path) as db:
            hparams = checkpoint_hparams(db.get_meta("checkpoint") or "")
            rows = {a["arch_id"]: db.get(a["arch_id"]) for a in standalone}
        missing = [k for k, v in rows.items() if v is None]
        check(
            not missing,
            f"results store {str(path)!r} has no score for architecture(s) {missing[:5]}; search "
            "every supernet with the same search.seed and search.num_archs as the picked store",
        )
        dropout = sampler_spec(hparams) if hparams else {}
        check(
            "rate" in dropout,
            f"the checkpoint of {str(path)!r} is gone or records no path-dropout rate; "
            "keep the supernet checkpoints of the sweep (trained with sampler=path_dropout)",
        )
        oneshot = [rows[a["arch_id"]]["oneshot_acc"] for a in standalone]
        y = [a["standalone_mean"] for a in standalone]
        panels.append(
            {
                "rate": float(dropout["rate"]),
                "schedule": dropout.get("schedule"),
                "store": str(path.resolve()),
                "oneshot": oneshot,
                "standalone": y,
                "stats": rank_correlations(oneshot, y),
            }
        )
    panels.sort(key=lambda p: p["rate"])
    out = Path(out_dir)
    figure = plot_dropout_panels(panels, out / "dropout.png")
    numbers = {
        "arch_ids": [a["arch_id"] for a in standalone],
        "panels": panels,
        "kendall_tau": {f"{p['rate']:g}": p["stats"]["kendall_tau"] for p in panels},
    }
    write_json(out / "dropout.json", numbers)
    return {"figure": str(figure), "numbers": str(out / "dropout.json")}
