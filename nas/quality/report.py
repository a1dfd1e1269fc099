"""The ranking-quality report: a results store's one-shot scores against stand-alone retrains.

`python -m nas.quality --store <search dir>/results.sqlite --truth <retraining multirun dir>` matches
every finished stand-alone run (`result.json`, the `nas.collect` layout) to the store's row of the
same architecture id (several runs of one architecture, e.g. seeds, are averaged), and writes
`quality.md`, `quality.json` and `quality.png` (one-shot vs truth scatter) to `--out`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from nas.analysis.figures import plot_correlation
from nas.atomic import write_text
from nas.collect import finished_standalone_runs
from nas.errors import check
from nas.quality.metrics import STATISTICS, ranking_quality
from nas.search.store import ResultsStore

LABELS = {"kendall_tau": "Kendall τ", "spearman": "Spearman ρ", "pearson": "Pearson r"}


def matched_pairs(
    store_path: str | Path, truth_dirs: Sequence[str], metric: str = "test_acc"
) -> tuple[list[str], list[float], list[float], list[str]]:
    """(arch ids, one-shot scores, truth, unmatched run dirs): runs matched to the store by id."""
    path = Path(str(store_path)).expanduser()
    check(
        path.is_file(),
        f"results store {str(path)!r} does not exist; pass --store <search dir>/results.sqlite",
    )
    with ResultsStore(path) as store:
        scores = {row["arch_id"]: float(row["oneshot_acc"]) for row in store.results()}
    truth: dict[str, list[float]] = defaultdict(list)
    unmatched = []
    for run, result in finished_standalone_runs(truth_dirs, metric):
        arch_id = result.get("arch_id")
        if arch_id in scores:
            truth[arch_id].append(float(result[metric]))
        else:
            unmatched.append(str(run.parent))
    check(
        len(truth) >= 2,
        f"only {len(truth)} of the stand-alone runs under {list(truth_dirs)} match an architecture "
        f"of {str(path)!r} ({len(unmatched)} do not): retrain architectures of this search "
        "(its selections), from the same search space",
    )
    ids = sorted(truth, key=lambda a: -scores[a])
    return (
        ids,
        [scores[a] for a in ids],
        [sum(truth[a]) / len(truth[a]) for a in ids],
        unmatched,
    )


def quality_report(
    store_path: str | Path,
    truth_dirs: Sequence[str],
    out_dir: str | Path,
    metric: str = "test_acc",
    ks: Sequence[int] = (1, 5, 10),
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """Compute the report (nas.quality.metrics) and write it; returns the JSON written."""
    ids, oneshot, truth, unmatched = matched_pairs(store_path, truth_dirs, metric)
    quality = ranking_quality(oneshot, truth, ks, resamples, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "store": str(store_path),
        "truth": [str(d) for d in truth_dirs],
        "metric": metric,
        "unmatched_runs": unmatched,
        **quality,
        "pairs": [
            {"arch_id": a, "oneshot": o, "truth": t}
            for a, o, t in zip(ids, oneshot, truth, strict=True)
        ],
    }
    write_text(out / "quality.json", json.dumps(report, indent=2) + "\n")
    write_text(out / "quality.md", markdown(report))
    plot_correlation(
        oneshot, truth, out / "quality.png", {k: quality[k]["value"] for k in STATISTICS}
    )
    return report


def markdown(report: dict) -> str:
    """The report as a markdown table (statistic, value, confidence interval)."""
    level = round(100 * report["level"])
    lines = [
        f"Ranking quality: {report['n']} architectures, one-shot score vs {report['metric']} "
        f"(bootstrap {level}% intervals, {report['resamples']} resamples)",
        "",
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
    if report["unmatched_runs"]:
        lines += [
            "",
            f"{len(report['unmatched_runs'])} run(s) matched no architecture of the store.",
        ]
    return "\n".join(lines) + "\n"
