"""The stratified correlation sample (the paper's Fig. 5 protocol) as a selection to retrain.

`python -m nas.quality.sample --store <results.sqlite> --n 20 --buckets 5` sorts the stored
architectures by one-shot score, cuts them into `buckets` groups of (nearly) equal size (quantile
buckets: every part of the ranking is represented, however skewed the scores) and draws n/buckets
from each with a seeded generator. The selection `stratified` goes beside the search's others
(`<search dir>/selections/stratified.txt`), so the truth is one multirun:
`python train.py -m experiment=<..._standalone> arch=$(paste -sd, <search dir>/selections/stratified.txt)`,
then `python -m nas.quality --store ... --truth <that multirun>`.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from nas.errors import NasError, check
from nas.report.stats import bucket_sample
from nas.report.stores import open_store
from nas.results.selection import to_archs, write_selection


def stratified_rows(rows: list[dict], n: int, buckets: int, seed: int = 0) -> list[dict]:
    """n rows, n // buckets (the first n % buckets buckets one more) from each quantile bucket.

    The rows are ranked by one-shot score (best first, ties by arch id) and drawn with
    `bucket_sample(rule="quantile")`, best bucket first, each bucket's rows in the order drawn.
    """
    check(isinstance(buckets, int) and buckets >= 1, f"--buckets={buckets!r} must be >= 1")
    check(
        isinstance(n, int) and buckets <= n <= len(rows),
        f"--n={n!r} must lie between --buckets={buckets} and the {len(rows)} stored architectures",
    )
    ranked = sorted(rows, key=lambda r: (-r["oneshot_acc"], r["arch_id"]))
    counts = [n // buckets + (1 if b < n % buckets else 0) for b in range(buckets)]
    # the rank positions as scores: bucket 0 (the lowest) holds the best-ranked rows
    chosen = bucket_sample(
        list(range(len(ranked))), buckets, counts, random.Random(seed), rule="quantile", sort=False
    )
    return [ranked[i] for i in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nas.quality.sample", description=__doc__)
    parser.add_argument("--store", required=True, help="results.sqlite of a search")
    parser.add_argument("--n", type=int, default=20, help="architectures to select")
    parser.add_argument("--buckets", type=int, default=5, help="quantile buckets of one-shot score")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="stratified", help="selection name")
    args = parser.parse_args(argv)
    try:
        rows, space, _ = open_store(args.store)
        rows = stratified_rows(rows, args.n, args.buckets, args.seed)
        path = Path(args.store).expanduser()
        listing = write_selection(path.parent / "selections", args.name, to_archs(rows, space))
    except NasError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"selection {args.name}: {len(rows)} architectures -> {listing}")
    return 0
