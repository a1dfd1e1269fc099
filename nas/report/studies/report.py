"""One Markdown page (and optionally one W&B run) of every study's figure, numbers and table."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nas.errors import check
from nas.report.markdown import write_report
from nas.report.wandb_log import log_figures, log_table, start_run

# output stem -> (heading, what the figure shows)
STUDIES = {
    "correlation": (
        "Correlation (Fig. 5)",
        "One-shot vs stand-alone accuracy, mean ± std over seeds.",
    ),
    "kl_vs_accuracy": (
        "KL vs accuracy (Fig. 6)",
        "Symmetrized KL to the all-on model on training images vs one-shot validation accuracy.",
    ),
    "dropout": ("Dropout rate (Fig. 4)", "One-shot vs stand-alone accuracy per path-dropout rate."),
    "kl_curves": ("KL over training (Fig. 7)", "The panel's KL to the all-on model over training."),
}
_STAT_KEYS = ("kendall_tau", "spearman", "pearson", "n")
_MAX_ROWS = 30  # longer tables are cut in the page (the JSON keeps everything)


def _section(stem: str, numbers: dict) -> tuple[dict, list[dict]]:
    """(numbers shown as bullets, table rows) of one study's JSON."""
    stats = numbers.get("stats") or {}
    shown = {k: stats[k] for k in _STAT_KEYS if stats.get(k) is not None}
    if stem == "dropout":
        rows = [
            {"r": p["rate"], **{k: p["stats"].get(k) for k in _STAT_KEYS}}
            for p in numbers["panels"]
        ]
    elif stem == "kl_curves":
        rows = [
            {"arch_id": k, **v} for k, v in numbers.items() if isinstance(v, dict) and k != "stats"
        ]
    else:
        rows = [{k: v for k, v in a.items() if k != "runs"} for a in numbers.get("archs", [])]
    for key in ("dropout_rate", "examples", "retrained", "picked"):
        if numbers.get(key) is not None:
            shown[key] = numbers[key]
    return shown, rows


def report_study(
    dirs: list[str],
    out_dir: str,
    title: str = "One-shot architecture search: analyses",
    wandb: bool = False,
    wandb_project: str = "oneshot-nas",
    wandb_mode: str = "auto",
) -> dict:
    """Write `<out_dir>/report.md` from the studies found in `dirs`; log them to W&B if asked."""
    out = Path(out_dir)
    found = []
    for directory in dirs:
        for stem in STUDIES:
            png, js = Path(directory) / f"{stem}.png", Path(directory) / f"{stem}.json"
            if png.is_file() and js.is_file():
                found.append((stem, png, json.loads(js.read_text())))
    check(
        bool(found),
        f"no study outputs (correlation/kl_vs_accuracy/dropout/kl_curves .png + .json) in {dirs}; "
        "run the studies first",
    )
    sections, tables = [], {}
    for stem, png, numbers in found:
        heading, text = STUDIES[stem]
        shown, rows = _section(stem, numbers)
        section = {"heading": heading, "text": text, "image": os.path.relpath(png, out)}
        if shown:
            section["numbers"] = shown
        if rows:
            section["table"] = rows[:_MAX_ROWS]
            tables[stem] = rows
        sections.append(section)
    page = write_report(out / "report.md", title, sections)
    logged = False
    if wandb:
        run = start_run(wandb_project, title, str(out), wandb_mode)
        try:
            log_figures({stem: png for stem, png, _ in found}, run)
            for stem, rows in tables.items():
                log_table(f"studies/{stem}", rows, run)
            for stem, _, numbers in found:
                for key, value in _section(stem, numbers)[0].items():
                    run.summary[f"{stem}/{key}"] = value
            logged = True
        finally:
            run.finish()
    return {"report": str(page), "sections": [s["heading"] for s in sections], "wandb": logged}
