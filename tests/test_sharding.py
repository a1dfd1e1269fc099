"""Sharded ranking: n shards of one proposal stream, merged, equal a single-process search.

The quick tests drive the search loop with a deterministic fake evaluator; the slow one runs two
`search.py` shard processes at once on a real (smoke) supernet, SIGKILLs one mid-run, reruns it and
merges with `python -m nas.search.merge`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from nas.errors import NasError
from nas.results.store import ResultsStore
from nas.search.driver import check_shard, distinct_proposals, replay_or_evaluate, score_shard
from nas.search.merge import merge
from nas.search.shards import shard_dir
from nas.search.strategies import RandomSearch, RegularizedEvolution
from tests.conftest import ROOT, compose_config
from tests.test_search_e2e import KILLED_SEARCH
from tests.test_strategies import FakeEvaluator

SEED = 7
SETTINGS = {"strategy": "random", "seed": SEED, "eval_batch_size": 32}


def _single(path, space, num_archs, evaluator=None, batch_archs=1):
    with ResultsStore(path, space=space, checkpoint="x.ckpt") as store:
        store.set_meta("settings", SETTINGS)
        return replay_or_evaluate(
            RandomSearch(space, random.Random(SEED)),
            store,
            num_archs,
            evaluator or FakeEvaluator(),
            batch_archs,
            row_fields={"checkpoint": "x.ckpt"},
        )


def _shard(out, space, num_archs, shard, n, evaluator, batch_archs=1, settings=SETTINGS):
    """One shard as search.py runs it: its store under out/shards/, its settings and target."""
    path = Path(shard_dir(out, shard, n)) / "results.sqlite"
    with ResultsStore(path, space=space, checkpoint="x.ckpt") as store:
        store.set_meta("settings", {**settings, "shard": shard, "num_shards": n})
        store.set_meta("num_archs", num_archs)
        return score_shard(
            RandomSearch(space, random.Random(SEED)),
            store,
            num_archs,
            evaluator,
            shard,
            n,
            batch_archs,
            row_fields={"checkpoint": "x.ckpt"},
        )


def _rows(path) -> list[tuple]:
    with ResultsStore(path) as store:
        return [(r["seq"], r["arch_id"], r["oneshot_acc"], r["params"]) for r in store.results()]


@pytest.mark.parametrize(("num_shards", "batch_archs"), [(2, 1), (3, 4)])
def test_merged_shards_equal_the_single_process_store(
    tmp_path, small_space, num_shards, batch_archs
):
    n = 40
    _single(tmp_path / "single.sqlite", small_space, n)
    out, seen = tmp_path / "sharded", Counter()
    for shard in range(num_shards):
        summary = _shard(
            out, small_space, n, shard, num_shards, FakeEvaluator(seen=seen), batch_archs
        )
        assert summary.evaluated == len(range(shard, n, num_shards)) and summary.replayed == 0
    assert sum(seen.values()) == len(seen) == n  # every architecture scored once, by one shard
    merged = merge(out)
    assert _rows(merged) == _rows(tmp_path / "single.sqlite")
    with ResultsStore(merged) as store:
        assert store.get_meta("settings") == SETTINGS  # the single-process search's own settings
        assert store.get_meta("space_spec") == small_space.spec()
    assert _rows(merge(out)) == _rows(tmp_path / "single.sqlite")  # merging again changes nothing


def test_stream_is_the_single_process_order_whatever_the_batch(small_space):
    stream = distinct_proposals(RandomSearch(small_space, random.Random(SEED)), 30)
    for batch_archs in (1, 4):
        with ResultsStore(":memory:") as store:
            summary = replay_or_evaluate(
                RandomSearch(small_space, random.Random(SEED)),
                store,
                30,
                FakeEvaluator(),
                batch_archs,
            )
        assert [a for a, _ in summary.history] == stream
    assert len(set(stream)) == 30


def test_killed_shard_reruns_without_scoring_anything_twice(tmp_path, small_space):
    n, out, seen = 30, tmp_path / "sharded", Counter()
    _single(tmp_path / "single.sqlite", small_space, n)
    _shard(out, small_space, n, 0, 2, FakeEvaluator(seen=seen))
    with pytest.raises(KeyboardInterrupt):  # killed during its 4th evaluation
        _shard(out, small_space, n, 1, 2, FakeEvaluator(kill_at=4, seen=seen))
    with pytest.raises(NasError, match=r"not finished .*\{1: '3 of 15'\}.*--partial"):
        merge(out)
    assert len(_rows(merge(out, partial=True))) == 18  # what there is, e.g. to look at progress
    again = _shard(out, small_space, n, 1, 2, FakeEvaluator(seen=seen))
    assert (again.replayed, again.evaluated) == (3, 12)
    assert sum(seen.values()) == len(seen) == n  # nothing scored twice, nothing lost
    assert _rows(merge(out)) == _rows(tmp_path / "single.sqlite")


def test_merged_store_continues_as_a_single_process_search(tmp_path, small_space):
    out = tmp_path / "sharded"
    for shard in range(2):
        _shard(out, small_space, 20, shard, 2, FakeEvaluator())
    merged, seen = merge(out), Counter()
    summary = _single(merged, small_space, 26, FakeEvaluator(seen=seen))
    assert (summary.replayed, summary.evaluated, len(seen)) == (20, 6, 6)
    _single(tmp_path / "single.sqlite", small_space, 26)
    assert _rows(merged) == _rows(tmp_path / "single.sqlite")


def test_merge_refuses_what_is_not_one_complete_search(tmp_path, small_space):
    with pytest.raises(NasError, match="no shard stores under"):
        merge(tmp_path / "nothing")
    out = tmp_path / "a"
    _shard(out, small_space, 12, 0, 3, FakeEvaluator())
    _shard(out, small_space, 12, 2, 3, FakeEvaluator())
    with pytest.raises(NasError, match=r"shard\(s\) \[1\] of 3 have no store"):
        merge(out)
    _shard(out, small_space, 12, 1, 3, FakeEvaluator(), settings={**SETTINGS, "seed": 8})
    with pytest.raises(NasError, match="shard 1 was run with other settings"):
        merge(out)
    out = tmp_path / "b"
    _shard(out, small_space, 12, 0, 2, FakeEvaluator())
    _shard(out, small_space, 10, 1, 2, FakeEvaluator())
    with pytest.raises(NasError, match=r"different search.num_archs .*\{0: 12, 1: 10\}"):
        merge(out)
    # a results store of another search already in the directory is never overwritten
    out = tmp_path / "c"
    for shard in range(2):
        _shard(out, small_space, 10, shard, 2, FakeEvaluator())
    with ResultsStore(out / "results.sqlite") as other:
        other.set_meta("settings", {**SETTINGS, "seed": 1})
    with pytest.raises(NasError, match="was filled with settings"):
        merge(out)


def test_bad_shard_settings_and_score_driven_strategies_are_refused(small_space):
    with pytest.raises(NasError, match=r"search.shard=2 must be an integer in \[0, 2\)"):
        check_shard(2, 2, 10)
    with pytest.raises(NasError, match="search.num_shards=0 must be an integer >= 1"):
        check_shard(0, 0, 10)
    with pytest.raises(NasError, match="search.num_shards=5 exceeds search.num_archs=4"):
        check_shard(0, 5, 4)
    evolution = RegularizedEvolution(small_space, random.Random(0), population_size=4)
    with pytest.raises(NasError, match="only score-free strategies"):
        distinct_proposals(evolution, 5)


def test_search_py_refuses_shards_of_evolution(smoke_supernet, tmp_path, capsys):
    import search

    overrides = [
        "experiment=smoke",
        f"ckpt={smoke_supernet / 'checkpoints' / 'last.ckpt'}",
        f"out_dir={tmp_path}",
        "strategy=evolution",
        "search.num_archs=4",
        "search.num_shards=2",
    ]
    with pytest.raises(SystemExit):
        search.run(compose_config("search", overrides, tmp_path))
    assert "search.num_shards=2 with strategy=evolution" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.sqlite"))  # refused before any store was made


@pytest.mark.slow
def test_two_shard_processes_one_killed_merge_to_the_single_process_run(
    smoke_supernet, tmp_path, monkeypatch
):
    import search
    from nas.search import merge as merge_cli
    from nas.search.evaluator import OneShotEvaluator

    ckpt = smoke_supernet / "checkpoints" / "last.ckpt"
    common = ["experiment=smoke", f"ckpt={ckpt}", "search.num_archs=16", "selection.k=2"]
    reference, out = tmp_path / "single", tmp_path / "sharded"
    search.run(compose_config("search", [*common, f"out_dir={reference}"], reference))

    def shard_cmd(i: int, kill_after: int | None = None) -> list[str]:
        args = [*common, f"out_dir={out}", f"search.shard={i}", "search.num_shards=2"]
        if kill_after is None:
            return [sys.executable, "search.py", *args]
        return [sys.executable, "-c", KILLED_SEARCH, str(kill_after), *args]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [  # both at once, on one machine, as on two GPUs or machines sharing a filesystem
        subprocess.Popen(shard_cmd(0), cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True),
        subprocess.Popen(shard_cmd(1, 3), cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True),
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert procs[0].returncode == 0, errors[0][-2000:]
    assert procs[1].returncode == -signal.SIGKILL, errors[1][-2000:]
    killed_store = Path(shard_dir(out, 1, 2)) / "results.sqlite"
    before = {row[1] for row in _rows(killed_store)}
    assert len(before) == 3

    scored = []  # the rerun of the killed shard scores only what it lacks
    evaluate = OneShotEvaluator.__call__
    monkeypatch.setattr(
        OneShotEvaluator,
        "__call__",
        lambda self, archs: scored.extend(a.id for a in archs) or evaluate(self, archs),
    )
    rerun = [*common, f"out_dir={out}", "search.shard=1", "search.num_shards=2"]
    search.run(compose_config("search", rerun, Path(shard_dir(out, 1, 2))))
    assert len(scored) == len(set(scored)) == 5 and not before & set(scored)

    assert merge_cli.main([str(out), "--k", "2"]) == 0
    assert _rows(out / "results.sqlite") == _rows(reference / "results.sqlite")
    for group in ("top", "small", "random", "allon"):  # the same picks, in the same order
        picks = [(d / "selections" / f"{group}.txt").read_text().split() for d in (reference, out)]
        assert [Path(p).name for p in picks[0]] == [Path(p).name for p in picks[1]]
    assert (out / "ranking.csv").read_text() == (reference / "ranking.csv").read_text()

    # search.py without shards takes the merged store as its own: it replays all, scores nothing
    scored.clear()
    search.run(compose_config("search", [*common, f"out_dir={out}"], out))
    assert scored == [] and _rows(out / "results.sqlite") == _rows(reference / "results.sqlite")

    from nas.report.stores import open_store  # what the studies and reports read

    rows, space, _ = open_store(str(out / "results.sqlite"))
    with ResultsStore(reference / "results.sqlite") as single:
        assert len(rows) == 16 and space.fingerprint == single.get_meta("space_fingerprint")


def test_a_search_process_scores_on_one_device():
    import torch

    import search

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert search._one_device(cuda, 1) == cuda and search._one_device(cpu, 4) == cpu
    assert search._one_device(cuda, [2]) == torch.device("cuda", 2)
    assert search._one_device(cuda, "3,") == torch.device("cuda", 3)
    with pytest.raises(NasError, match=r"trainer.devices=4: search.py scores on one device"):
        search._one_device(cuda, 4)
    with pytest.raises(NasError, match="run one shard per GPU"):
        search._one_device(cuda, [0, 1])


def test_shards_of_different_evaluation_setups_are_not_merged(tmp_path, small_space):
    out = tmp_path / "search"
    for shard in range(2):
        _shard(out, small_space, 10, shard, 2, FakeEvaluator())
        with ResultsStore(Path(shard_dir(out, shard, 2)) / "results.sqlite") as store:
            setup = {"checkpoint_sha256": "ab", "dataset": {"val_size": 300 - 100 * shard}}
            store.set_meta("evaluation", setup)
    with pytest.raises(
        NasError, match=r"another evaluation setup than shard 0 \(dataset.val_size: 300 -> 200\)"
    ):
        merge(out)
    assert not (out / "results.sqlite").exists()
