"""Where the shards of a sharded search keep their stores (and search.yaml's resolvers for them).

`search.py ... search.shard=i search.num_shards=n` writes `<out_dir>/shards/shard-<i>-of-<n>/
results.sqlite`; `python -m nas.search.merge <out_dir>` merges them into `<out_dir>/results.sqlite`,
the store a single process would have written there. Standard library and omegaconf only.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from nas.search.checkpoint import run_dir_of
from nas.search.strategies import strategy_name

SHARDS = "shards"  # sub-directory of a search's out_dir holding one directory per shard
_NAME = re.compile(r"shard-(\d+)-of-(\d+)")


def shard_dir(out_dir: str, shard: int, num_shards: int) -> str:
    """The directory of shard `shard` of `num_shards` of the search in `out_dir` (out_dir itself
    for an unsharded search)."""
    if int(num_shards) == 1:
        return str(out_dir)
    return str(Path(str(out_dir)) / SHARDS / f"shard-{int(shard)}-of-{int(num_shards)}")


def shard_share(num_archs: int, shard: int, num_shards: int) -> int:
    """How many of the stream's `num_archs` architectures shard `shard` of `num_shards` scores."""
    return len(range(shard, num_archs, num_shards))


def shard_stores(search_dir: str | Path) -> dict[tuple[int, int], Path]:
    """(shard, num_shards) -> results store of every shard directory under `<search_dir>/shards`."""
    found = {}
    for path in sorted((Path(search_dir) / SHARDS).glob("shard-*-of-*/results.sqlite")):
        match = _NAME.fullmatch(path.parent.name)
        if match:
            found[int(match.group(1)), int(match.group(2))] = path
    return found


# search.yaml's hydra.run.dir and out_dir use these. Registered here, on import by nas.search.run,
# and not only in search.py: Hydra launchers run search.run in worker processes that never execute
# search.py's top level.
OmegaConf.register_new_resolver("shard_dir", shard_dir, replace=True)
OmegaConf.register_new_resolver("run_dir_of", run_dir_of, replace=True)
OmegaConf.register_new_resolver("strategy_name", strategy_name, replace=True)
