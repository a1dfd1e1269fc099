"""The ranking-quality report: a results store's one-shot scores against the truth.

`python -m nas.quality --store <search dir>/results.sqlite --truth <retraining multirun dir>` matches
every finished stand-alone run (`result.json`, the `nas.collect` layout) to the store's row of the
same architecture id (several runs of one architecture, e.g. seeds, are averaged);
`--truth nb201:<benchmark file>` looks every stored architecture up in NAS-Bench-201 instead
(`nas.report.quality.nb201`). Writes `quality.md`, `quality.json` and `quality.png` (one-shot vs truth
scatter) to `--out`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from nas.atomic import write_text
from nas.errors import NasError, check
from nas.report.figures import plot_correlation
from nas.report.quality import nb201
from nas.report.runs import runs_truth
from nas.report.stats import STATISTICS, ranking_quality
from nas.report.stores import open_store, setup_line, store_setup
from nas.spaces import Architecture

LABELS = {"kendall_tau": "Kendall τ", "spearman": "Spearman ρ", "pearson": "Pearson r"}


def is_benchmark(truth: Sequence[str]) -> bool:
    """Whether --truth names NAS-Bench-201 (`nb201:<file>`) rather than run directories."""
    marked = [t for t in truth if str(t).startswith(nb201.PREFIX)]
    if marked and len(truth) > 1:
        raise NasError(
            f"--truth {list(truth)} mixes a benchmark ({marked[0]!r}) with run directories; "
            "pass either nb201:<benchmark file> or the retraining directories"
        )
    return bool(marked)


def truth_of(
    truth: Sequence[str],
    rows: Sequence[dict],
    space,
    where: str,
    metric: str = "test_acc",
    benchmark: Mapping | None = None,
    dataset: Mapping | None = None,
) -> tuple[dict[str, float], list[str]]:
    """({arch id: truth}, unmatched) of the store's `rows`: unmatched runs, or for a benchmark
    the stored architectures it has not evaluated. `benchmark`: dataset, metric, hp (nb201).
    `dataset`: the store's scoring data; runs trained on other images are refused."""
    if is_benchmark(truth):
        archs = [Architecture.from_json(r["arch_json"], space) for r in rows]
        path = str(truth[0])[len(nb201.PREFIX) :]
        return nb201.benchmark_truth(archs, space, path, where, **dict(benchmark or {}))
    return runs_truth(truth, {r["arch_id"] for r in rows}, metric, (dataset, where))


def matched_pairs(
    store_path: str | Path,
    truth: Sequence[str],
    metric: str = "test_acc",
    benchmark: Mapping | None = None,
    dataset: Mapping | None = None,
) -> tuple[list[str], list[float], list[float], list[str]]:
    """(arch ids, one-shot scores, truth, unmatched): the store's architectures with a truth;
    `dataset`: the images the store was scored on (runs trained on others are refused)."""
    rows, space, _ = open_store(store_path)
    where = f"results store {str(store_path)!r}"
    values, unmatched = truth_of(truth, rows, space, where, metric, benchmark, dataset)
    scores = {r["arch_id"]: float(r["oneshot_acc"]) for r in rows}
    check(
        len(values) >= 2,
        f"only {len(values)} architecture(s) of {where} have a truth in {list(truth)} "
        f"({len(unmatched)} unmatched); retrain architectures of this search (its selections), "
        "from the same search space",
    )
    ids = sorted(values, key=lambda a: -scores[a])
    return ids, [scores[a] for a in ids], [values[a] for a in ids], unmatched


def quality_report(
    store_path: str | Path,
    truth: Sequence[str],
    out_dir: str | Path,
    metric: str = "test_acc",
    ks: Sequence[int] = (1, 5, 10),
    resamples: int = 2000,
    seed: int = 0,
    benchmark: Mapping | None = None,
    percents: Sequence[float] = (10, 50),
) -> dict:
    """Compute the report (nas.report.stats.ranking_quality) and write it; returns the JSON written.

    `truth`: stand-alone run directories, or `["nb201:<benchmark file>"]` with `benchmark` =
    {dataset, metric, hp} (nas.report.quality.nb201.lookup's defaults when empty)."""
    setup, search_settings = store_setup(store_path)
    dataset = (setup or {}).get("dataset")
    ids, oneshot, values, unmatched = matched_pairs(store_path, truth, metric, benchmark, dataset)
    quality = ranking_quality(oneshot, values, ks, resamples, seed=seed, percents=percents)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if is_benchmark(truth):
        settings = {**nb201.DEFAULTS, **(benchmark or {})}
        source = {
            "metric": f"NAS-Bench-201 {settings['dataset']} {settings['metric']} "
            f"({settings['hp']} epochs)",
            "unmatched_archs": unmatched,
        }
    else:
        source = {"metric": metric, "unmatched_runs": unmatched}
    report = {
        "store": str(store_path),
        "setup": setup_line(setup, search_settings),
        "truth": [str(d) for d in truth],
        **source,
        **quality,
        "pairs": [
            {"arch_id": a, "oneshot": o, "truth": t}
            for a, o, t in zip(ids, oneshot, values, strict=True)
        ],
    }
    write_text(out / "quality.json", json.dumps(report, indent=2) + "\n")
    write_text(out / "quality.md", markdown(report))
    plot_correlation(
        oneshot, values, out / "quality.png", {k: quality[k]["value"] for k in STATISTICS}
    )
    return report


def markdown(report: dict) -> str:
    """The report as a markdown table (statistic, value, confidence interval)."""
    level = round(100 * report["level"])
    lines = [
        f"Ranking quality: {report['n']} architectures, one-shot score vs {report['metric']} "
        f"(bootstrap {level}% intervals, {report['resamples']} resamples)",
        "",
        *([report["setup"], ""] if report.get("setup") else []),
        f"| statistic | value | {level}% interval |",
        "| --- | ---: | --- |",
    ]
    for name in STATISTICS:
        s = report[name]
        lines.append(f"| {LABELS[name]} | {s['value']:.3f} | [{s['low']:.3f}, {s['high']:.3f}] |")
    for k, top in report["top"].items():
        lines.append(
            f"| precision@{k} | {top['precision']:.2f} | overlap {top['overlap']} of {k} |"
        )
        lines.append(f"| regret@{k} | {top['regret']:.4f} | best truth minus best of the top {k} |")
    for p, at in report.get("percent", {}).items():
        of = f"{at['count']} of {report['n']}"
        lines += [
            f"| P@top {p}% | {at['precision_top']:.2f} | top {of} by score in the top {p}% by truth |",
            f"| P@bottom {p}% | {at['precision_bottom']:.2f} | the same at the bottom |",
            f"| BR@{p}% | {at['best_rank']:.3f} | best true rank among the top {of}, / n |",
            f"| WR@{p}% | {at['worst_rank']:.3f} | worst true rank among them, / n |",
        ]
    if report.get("unmatched_runs"):
        lines += [
            "",
            f"{len(report['unmatched_runs'])} run(s) matched no architecture of the store.",
        ]
    if report.get("unmatched_archs"):
        lines += [
            "",
            f"{len(report['unmatched_archs'])} architecture(s) of the store are not in the "
            "benchmark file.",
        ]
    return "\n".join(lines) + "\n"


def quality_study(
    store: str,
    truth: str | Sequence[str],
    out_dir: str,
    metric: str = "test_acc",
    ks: Sequence[int] = (1, 5, 10),
    resamples: int = 2000,
    seed: int = 0,
    nb201: Mapping | None = None,
) -> dict:
    """`python study.py study=quality ...` (conf/study/quality.yaml): the report, as a study."""
    truth = [truth] if isinstance(truth, str) else list(truth)
    report = quality_report(store, truth, out_dir, metric, ks, resamples, seed, nb201)
    return {
        "report": str(Path(out_dir) / "quality.md"),
        "n": report["n"],
        **{name: report[name] for name in STATISTICS},
        "top": report["top"],
    }
