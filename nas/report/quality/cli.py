"""`python -m nas.quality --store <results.sqlite> --truth <multirun dir> | nb201:<file> [--out DIR]`.

The command's entry module is `nas/quality/__main__.py`; it runs `main` here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nas.errors import NasError
from nas.report.quality import nb201
from nas.report.quality.report import markdown, quality_report
from nas.report.wandb_log import log_figures, log_table, start_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nas.quality",
        description="How well a search's one-shot scores rank architectures against retraining.",
    )
    parser.add_argument("--store", required=True, help="results.sqlite of a search")
    parser.add_argument(
        "--truth",
        required=True,
        nargs="+",
        help="stand-alone run directories, or nb201:<NAS-Bench-201 benchmark file>",
    )
    parser.add_argument("--out", help="output directory (default: <store dir>/quality)")
    parser.add_argument("--metric", default="test_acc", help="truth metric of result.json")
    parser.add_argument("--nb201-dataset", default=nb201.DEFAULTS["dataset"], help="nb201: dataset")
    parser.add_argument("--nb201-metric", default=nb201.DEFAULTS["metric"], help="nb201: metric")
    parser.add_argument("--nb201-hp", default=nb201.DEFAULTS["hp"], help="nb201: epochs, 12 or 200")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5, 10], help="top-k sizes")
    parser.add_argument(
        "--percent",
        type=float,
        nargs="+",
        default=[10, 50],
        help="K%% of the ranking's ends for Ning et al.'s P@top/bottom, BR and WR",
    )
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wandb", metavar="PROJECT", help="also log the table and figure to W&B")
    parser.add_argument("--wandb-mode", default="auto", help="auto | online | offline")
    args = parser.parse_args(argv)
    out = args.out or str(Path(args.store).expanduser().parent / "quality")
    try:
        report = quality_report(
            args.store,
            args.truth,
            out,
            args.metric,
            args.k,
            args.resamples,
            args.seed,
            {"dataset": args.nb201_dataset, "metric": args.nb201_metric, "hp": args.nb201_hp},
            args.percent,
        )
    except NasError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown(report), end="")
    print(f"-> {out}/quality.md, quality.json, quality.png")
    if args.wandb:
        publish(report, out, args.wandb, args.wandb_mode)
    return 0


def publish(report: dict, out: str, project: str, mode: str) -> None:
    """The report as a W&B run: a table of the statistics, the pairs, and the scatter figure."""
    run = start_run(project, "ranking-quality", out, mode)
    rows = [
        {"statistic": name, **{k: report[name][k] for k in ("value", "low", "high")}}
        for name in ("kendall_tau", "spearman", "pearson")
    ]
    rows += [
        {"statistic": f"{what}@{k}", "value": top[what], "low": None, "high": None}
        for k, top in report["top"].items()
        for what in ("precision", "regret")
    ]
    log_table("quality/statistics", rows, run)
    log_table("quality/pairs", report["pairs"], run)
    log_figures({"quality/scatter": f"{out}/quality.png"}, run)
    run.finish()
