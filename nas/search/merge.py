"""Merge the shards of a search into one store, then rank and select: `python -m nas.search.merge <out_dir>`.

The shards of `search.py ... search.shard=i search.num_shards=n` each write
`<out_dir>/shards/shard-<i>-of-<n>/results.sqlite`. Merging copies their rows (each with seq = its
place in the proposal stream) into `<out_dir>/results.sqlite`, the store one process would have
written there, with the same settings: `search.py` without shards continues it, and everything that
reads a store (selections, `python -m nas.quality`, the studies) reads it. Then ranking.csv, the
histogram and the selections are written as `search.py` writes them. Merging again after more shards
finish adds what is new; rows already merged are kept.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from nas.errors import NasError, check
from nas.results.outputs import console, write_outputs
from nas.results.store import ResultsStore
from nas.search import setup
from nas.search.shards import SHARDS, shard_share, shard_stores
from nas.spaces import build_space

SHARD_KEYS = ("shard", "num_shards")  # the only settings in which the shards of one search differ


@dataclass
class Shard:
    index: int
    path: Path
    settings: dict
    num_archs: int
    count: int
    space_spec: dict
    checkpoint: str
    evaluation: dict | None  # the evaluation setup (nas.search.setup); None: an earlier version's


def _read_shard(index: int, path: Path) -> Shard:
    with ResultsStore(path) as store:
        settings = store.get_meta("settings") or {}
        shard = Shard(
            index,
            path,
            settings,
            store.get_meta("num_archs"),
            store.count(),
            store.get_meta("space_spec"),
            store.get_meta("checkpoint"),
            store.get_meta(setup.META),
        )
        num_shards = settings.get("num_shards") or 1
        stray = sum(row["seq"] % num_shards != index for row in store.results())
    check(
        settings.get("shard") == index and "num_shards" in settings and shard.num_archs is not None,
        f"{str(path)!r} is not the store of shard {index} (its settings: {settings}); shard "
        "directories are written by search.py with search.shard and search.num_shards",
    )
    check(
        stray == 0,
        f"{str(path)!r} holds {stray} row(s) outside shard {index} of {num_shards}; it was not "
        "written by that shard alone: move it away and rerun that shard",
    )
    return shard


def read_shards(search_dir: str | Path) -> list[Shard]:
    """The shards under `<search_dir>/shards`, checked to be the complete set of one search."""
    search_dir = Path(str(search_dir)).expanduser()
    found = shard_stores(search_dir)
    check(
        bool(found),
        f"no shard stores under {str(search_dir / SHARDS)!r} (shard-<i>-of-<n>/results.sqlite); "
        "pass the out_dir of a search run with search.shard=<i> search.num_shards=<n>",
    )
    counts = sorted({n for _, n in found})
    check(
        len(counts) == 1,
        f"{str(search_dir / SHARDS)!r} holds shards of searches split {counts} ways; keep only one "
        "split (move the others away) and merge again",
    )
    n = counts[0]
    missing = [i for i in range(n) if (i, n) not in found]
    check(
        not missing,
        f"shard(s) {missing} of {n} have no store under {str(search_dir / SHARDS)!r}; run them "
        f"(search.py with the same settings and search.shard=<i> search.num_shards={n}, or copy "
        "their shard directories here) and merge again",
    )
    shards = [_read_shard(i, found[i, n]) for i in range(n)]
    first = shards[0]
    for other in shards[1:]:
        check(
            _base(other.settings) == _base(first.settings)
            and (other.space_spec, other.checkpoint) == (first.space_spec, first.checkpoint),
            f"shard {other.index} was run with other settings or another checkpoint than shard 0 "
            f"({_base(other.settings)}, {other.checkpoint!r} vs {_base(first.settings)}, "
            f"{first.checkpoint!r}); rerun it with the settings of the others",
        )
    for other in shards[1:]:
        changed = setup.differences(first.evaluation or {}, other.evaluation or {})
        check(
            not changed,
            f"shard {other.index} was scored with another evaluation setup than shard 0 "
            f"({'; '.join(changed)}); rerun it with the checkpoint and data of the others",
        )
    targets = {s.index: s.num_archs for s in shards}
    check(
        len(set(targets.values())) == 1,
        f"the shards were run with different search.num_archs (shard -> num_archs: {targets}); "
        "rerun the shorter ones with the largest num_archs (they continue where they stopped)",
    )
    return shards


def _base(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k not in SHARD_KEYS}


def merge(search_dir: str | Path, partial: bool = False) -> Path:
    """Merge the shards of `search_dir` into `<search_dir>/results.sqlite`; returns its path.

    Shards that have not scored their whole share (killed, or still running) are refused unless
    `partial`: rerunning a killed shard's command completes it without scoring anything twice.
    """
    search_dir = Path(str(search_dir)).expanduser()
    shards = read_shards(search_dir)
    n, num_archs = len(shards), shards[0].num_archs
    short = {
        s.index: f"{s.count} of {shard_share(num_archs, s.index, n)}"
        for s in shards
        if s.count < shard_share(num_archs, s.index, n)
    }
    check(
        partial or not short,
        f"shard(s) not finished (shard: results stored of its share of search.num_archs="
        f"{num_archs}): {short}; rerun their search.py commands (they continue where they "
        "stopped), or merge what there is with --partial",
    )
    settings = _base(shards[0].settings)
    path = search_dir / "results.sqlite"
    space = build_space(shards[0].space_spec)
    with ResultsStore(path, space=space, checkpoint=shards[0].checkpoint) as store:
        previous = store.get_meta("settings")
        check(
            previous in (None, settings),
            f"results store {str(path)!r} was filled with settings {previous}, but the shards "
            f"have {settings}; merge into another directory (copy {SHARDS}/ there)",
        )
        store.set_meta("settings", settings)
        if shards[0].evaluation is not None:
            setup.check_setup(store, shards[0].evaluation, print)
        for shard in shards:
            store.merge_from(shard.path)
        # Rows of the same stream agree on seq; two archs at one place would be two streams.
        seqs = [row["seq"] for row in store.results()]
        check(
            len(set(seqs)) == len(seqs),
            f"results store {str(path)!r} holds two architectures at one stream position; its "
            "rows come from different proposal streams: merge into a new directory",
        )
        store.set_meta(
            "merged_from", {"num_shards": n, "num_archs": num_archs, "partial": bool(short)}
        )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("search_dir", help="out_dir of the sharded search (holds shards/)")
    parser.add_argument(
        "--partial", action="store_true", help="merge even if some shards are unfinished"
    )
    parser.add_argument("--k", type=int, default=10, help="architectures per selection group")
    parser.add_argument("--top", type=int, default=100, help="One-Shot Top samples from this many")
    parser.add_argument("--percentile", type=float, default=90, help="One-Shot Small's threshold")
    parser.add_argument("--seed", type=int, default=0, help="seed of the selections' sampling")
    args = parser.parse_args(argv)
    try:
        path = merge(args.search_dir, args.partial)
        with ResultsStore(path) as store:
            space = build_space(store.get_meta("space_spec"))
            console.print(f"merged {store.count():,} results -> {path}")
            write_outputs(
                store, space, args.search_dir, args.k, args.top, args.percentile, args.seed
            )
    except NasError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
