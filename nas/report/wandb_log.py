"""Figures as W&B images and results as W&B tables, only when a W&B run is active or asked for.

`wandb` is imported lazily: looked up in `sys.modules` when a caller merely might be inside a run
(search.py, a training callback), imported by `start_run` only when a study asks for W&B.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from nas.errors import check
from nas.loggers import WANDB_MODES, _wandb_logged_in


def active_run():
    """The active W&B run, or None (without importing wandb if nothing imported it yet)."""
    wandb = sys.modules.get("wandb")
    return None if wandb is None else wandb.run


def start_run(project: str, name: str, save_dir: str, mode: str = "auto"):
    """A new W&B run for a study (offline unless logged in, as `nas.loggers.wandb_logger`)."""
    check(mode in WANDB_MODES, f"wandb_mode={mode!r} is unknown; choose one of {list(WANDB_MODES)}")
    import wandb

    if mode == "auto":
        mode = "online" if _wandb_logged_in(wandb) else "offline"
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return wandb.init(project=project, name=name, dir=str(save_dir), mode=mode, job_type="study")


def log_figures(figures: Mapping[str, str | Path], run=None) -> bool:
    """Log PNGs as W&B images under `figures/<name>`; False (nothing done) without an active run."""
    run = run or active_run()
    if run is None:
        return False
    import wandb

    run.log({f"figures/{name}": wandb.Image(str(path)) for name, path in figures.items()})
    return True


def log_table(name: str, rows: Sequence[Mapping[str, object]], run=None) -> bool:
    """Log row dicts as the W&B table `name` (columns in order of first appearance)."""
    run = run or active_run()
    if run is None or not rows:
        return False
    import wandb

    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    data = [[_cell(row.get(c)) for c in columns] for row in rows]
    run.log({name: wandb.Table(columns=columns, data=data)})
    return True


def log_search_results(store, run=None, limit: int | None = None) -> bool:
    """Log a `ResultsStore`'s ranking as the table `search/results` (best first, `limit` rows)."""
    run = run or active_run()
    if run is None:
        return False
    keep = ("arch_id", "oneshot_acc", "params", "macs")
    rows = [{k: r[k] for k in keep} for r in store.ranking()[:limit]]
    if rows:
        run.summary["search/best"] = rows[0]["oneshot_acc"]
    return log_table("search/results", rows, run)


def _cell(value):
    # W&B tables want one type per column; nested values (lists of runs) become text
    return value if value is None or isinstance(value, int | float | str | bool) else str(value)


def publish_search(
    store, outputs: Mapping, project: str, name: str, save_dir: str, mode: str = "auto"
):
    """A W&B run holding a search's ranking table, its best score and its histogram."""
    run = start_run(project, name, save_dir, mode)
    try:
        log_search_results(store, run)
        log_figures({"histogram": outputs["histogram"]}, run)
    finally:
        run.finish()
