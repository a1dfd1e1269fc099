"""search.py and stand-alone retraining end to end, in miniature (smoke supernet, synthetic data)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from nas.spaces import Architecture
from tests.conftest import ROOT, compose_config

# search.py, made to SIGKILL itself right after its N-th result is committed (N: first argument).
KILLED_SEARCH = """
import os, runpy, signal, sys
from nas.results.store import ResultsStore
after, add = int(sys.argv.pop(1)), ResultsStore.add
def add_then_die(self, result):
    stored = add(self, result)
    if self.count() >= after:
        os.kill(os.getpid(), signal.SIGKILL)
    return stored
ResultsStore.add = add_then_die
sys.argv[0] = "search.py"
runpy.run_path("search.py", run_name="__main__")
"""


@pytest.fixture
def supernet_ckpt(smoke_supernet) -> Path:
    return smoke_supernet / "checkpoints" / "last.ckpt"


def _search(ckpt, out_dir, *overrides):
    import search

    cfg = compose_config(
        "search", ["experiment=smoke", f"ckpt={ckpt}", f"out_dir={out_dir}", *overrides], out_dir
    )
    return search.run(cfg)


def _rows(out_dir) -> list[tuple]:
    with sqlite3.connect(Path(out_dir) / "results.sqlite") as db:
        return db.execute(
            "SELECT seq, arch_id, oneshot_acc, params, macs FROM results ORDER BY seq"
        ).fetchall()


@pytest.mark.slow
def test_search_scores_ranks_selects_and_resumes(supernet_ckpt, tmp_path):
    out = tmp_path / "search"
    paths = _search(supernet_ckpt, out, "search.num_archs=24", "selection.k=3")
    rows = _rows(out)
    assert len(rows) == 24 and len({r[1] for r in rows}) == 24
    assert all(0.0 <= r[2] <= 1.0 and r[3] > 0 and r[4] > 0 for r in rows)
    ranking = Path(paths["ranking"]).read_text().splitlines()
    assert len(ranking) == 25 and ranking[0].startswith("rank,arch_id,oneshot_acc")
    assert Path(paths["histogram"]).stat().st_size > 1000
    for group in ("top", "small", "random", "allon"):
        files = Path(paths["selections"][group]).read_text().split()
        assert files and all(Architecture.load(f).id in Path(f).name for f in files)
    # running the same command again scores nothing new and keeps every row
    _search(supernet_ckpt, out, "search.num_archs=24", "selection.k=3")
    assert _rows(out) == rows
    # asking for more continues the same sequence of proposals
    _search(supernet_ckpt, out, "search.num_archs=30", "selection.k=3")
    assert _rows(out)[:24] == rows and len(_rows(out)) == 30


@pytest.mark.slow
def test_sigkill_midway_then_rerun_equals_uninterrupted(supernet_ckpt, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    _search(supernet_ckpt, reference, "search.num_archs=24")
    overrides = ["experiment=smoke", f"ckpt={supernet_ckpt}", "search.num_archs=24"]
    cmd = [sys.executable, "-c", KILLED_SEARCH, "9", *overrides, f"out_dir={killed}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _rows(killed) == _rows(reference)[:9]  # killed with 9 of 24 results stored
    _search(supernet_ckpt, killed, "search.num_archs=24")
    assert _rows(killed) == _rows(reference)


@pytest.mark.slow
def test_evolution_settings_come_from_the_strategy_group(supernet_ckpt, tmp_path):
    from nas.results.store import ResultsStore

    out = tmp_path / "evolution"
    given = ["strategy=evolution", "strategy.population_size=4", "search.num_archs=8"]
    honoured = ["search.eval_ghost_size=4", "dataset.eval_batch_size=16"]
    _search(supernet_ckpt, out, *given, *honoured, "selection.k=2")
    with ResultsStore(out / "results.sqlite") as store:
        settings = store.get_meta("settings")
        assert settings["strategy"] == "evolution"
        assert settings["strategy_kwargs"] == {"population_size": 4, "sample_size": 10}
        assert (settings["eval_ghost_size"], settings["eval_batch_size"]) == (4, 16)
        # a store that recorded only the settings given then (defaults left out) continues
        store.set_meta("settings", {**settings, "strategy_kwargs": {"population_size": 4}})
        rows = _rows(out)
    _search(supernet_ckpt, out, *given, *honoured, "selection.k=2")
    assert _rows(out) == rows


@pytest.mark.slow
def test_retrain_selection_standalone_and_collect_table(supernet_ckpt, tmp_path, capsys):
    import train
    from nas import collect

    out = tmp_path / "search"
    paths = _search(supernet_ckpt, out, "search.num_archs=12", "selection.k=2")
    arch_file = Path(paths["selections"]["top"]).read_text().split()[0]
    run = tmp_path / "standalone"
    cfg = compose_config("train", ["experiment=smoke_standalone", f"arch={arch_file}"], run)
    train.train(cfg)
    result = json.loads((run / "result.json").read_text())
    arch = Architecture.load(arch_file)
    child = arch.space.build_child(
        arch, filters=4, cells=2, stages=2, num_classes=10, in_channels=3
    )
    assert result["group"] == "top" and result["arch_id"] == arch.id
    assert result["params"] == sum(p.numel() for p in child.parameters())
    assert collect.main([str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "One-Shot Top" in table and "| 1 |" in table.replace(" ", "").replace("|1|", "| 1 |")


def test_search_bad_inputs_are_clear(supernet_ckpt, tmp_path, capsys):
    # more architectures than the space holds
    with pytest.raises(SystemExit):
        _search(supernet_ckpt, tmp_path / "a", "search.num_archs=100000000")
    assert "exceeds the 16,464 architectures" in capsys.readouterr().err
    # not a checkpoint at all
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(SystemExit):
        _search(bogus, tmp_path / "b", "search.num_archs=2")
    assert "cannot be read" in capsys.readouterr().err
    # a damaged results store is reported and left as it was
    store = tmp_path / "c" / "results.sqlite"
    store.parent.mkdir()
    store.write_bytes(b"garbage" * 100)
    with pytest.raises(SystemExit):
        _search(supernet_ckpt, tmp_path / "c", "search.num_archs=2")
    assert str(store) in capsys.readouterr().err and store.read_bytes() == b"garbage" * 100


@pytest.mark.slow
def test_search_with_wandb_logger_writes_an_offline_run(supernet_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "search"
    _search(
        supernet_ckpt,
        out,
        "search.num_archs=6",
        "selection.k=2",
        "logger=wandb",
        "logger.mode=offline",
    )
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


@pytest.mark.slow
def test_bn_recalibration_mode_scores_through_search_py(supernet_ckpt, tmp_path, capsys):
    """search.bn_recalibration_batches=N scores children with re-estimated BN; both modes work."""
    plain, recal = tmp_path / "plain", tmp_path / "recal"
    _search(supernet_ckpt, plain, "search.num_archs=5", "selection.k=2")
    _search(
        supernet_ckpt,
        recal,
        "search.num_archs=5",
        "selection.k=2",
        "search.bn_recalibration_batches=2",
    )
    assert [r[1] for r in _rows(plain)] == [r[1] for r in _rows(recal)]  # same proposals
    with sqlite3.connect(recal / "results.sqlite") as db:
        settings = json.loads(
            db.execute("SELECT value FROM meta WHERE key='settings'").fetchone()[0]
        )
    assert settings["bn_recalibration_batches"] == 2 and settings["batch_archs"] == 1  # auto, CPU
    with pytest.raises(SystemExit):
        _search(
            supernet_ckpt,
            tmp_path / "bad",
            "search.num_archs=2",
            "search.bn_recalibration_batches=99",
        )
    assert "search.bn_recalibration_batches=99 needs" in capsys.readouterr().err


@pytest.mark.slow
def test_search_scores_on_the_checkpoints_own_data_unless_told(supernet_ckpt, tmp_path, capsys):
    import search
    from nas.results.store import ResultsStore

    def run(out, *overrides):
        given = [f"ckpt={supernet_ckpt}", f"out_dir={out}", "search.num_archs=3", "selection.k=1"]
        search.run(compose_config("search", [*given, *overrides], out))
        with ResultsStore(out / "results.sqlite") as store:
            return sorted((r["arch_id"], r["oneshot_acc"]) for r in store.results())

    # no experiment: the base config's dataset is digits (1 channel, 64 pixels), which this
    # synthetic supernet could not score; the checkpoint's own dataset is used instead
    own = run(tmp_path / "own", "hardware=cpu")
    assert "warning" not in capsys.readouterr().err
    assert own == run(tmp_path / "smoke", "experiment=smoke")
    assert "warning" not in capsys.readouterr().err  # the same data as training: no warning
    run(tmp_path / "other", "experiment=smoke", "dataset.val_size=128")
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warning == [
        "warning: scoring on a dataset other than the checkpoint's: given val_size=128; trained "
        "on val_size=256; drop the dataset or experiment overrides to score on the training data"
    ]


@pytest.mark.slow
def test_a_changed_evaluation_setup_never_reuses_stored_scores(supernet_ckpt, tmp_path, capsys):
    from nas.results.store import ResultsStore

    out = tmp_path / "search"
    _search(supernet_ckpt, out, "search.num_archs=3", "selection.k=1")
    with pytest.raises(SystemExit):  # the same command on 128 validation images: refused
        _search(supernet_ckpt, out, "search.num_archs=3", "selection.k=1", "dataset.val_size=128")
    err = capsys.readouterr().err
    assert "was scored with another evaluation setup (dataset.val_size: 256 -> 128;" in err
    assert "val_images: [256, 3, 8, 8] -> [128, 3, 8, 8]" in err
    copy = tmp_path / "run" / "last.ckpt"  # its contents change later (training continued)
    copy.parent.mkdir()
    copy.write_bytes(supernet_ckpt.read_bytes())
    _search(copy, tmp_path / "copy", "search.num_archs=3", "selection.k=1")
    copy.write_bytes(supernet_ckpt.read_bytes() + b"\0")
    with pytest.raises(SystemExit):
        _search(copy, tmp_path / "copy", "search.num_archs=3", "selection.k=1")
    assert "another evaluation setup (checkpoint_sha256: " in capsys.readouterr().err
    with ResultsStore(out / "results.sqlite") as store:  # a store of an earlier version
        assert store.count() == 3
        store.set_meta("evaluation", None)
    _search(supernet_ckpt, out, "search.num_archs=3", "selection.k=1")
    assert "does not record its evaluation setup" in capsys.readouterr().err


@pytest.mark.slow
def test_two_search_processes_on_one_command_lose_and_repeat_nothing(supernet_ckpt, tmp_path):
    """Two `search.py` processes started at once on the same command share the work: the store
    ends with every position of the stream once, each row whole, and both exit cleanly."""
    out = tmp_path / "search"
    command = [
        sys.executable,
        "search.py",
        "experiment=smoke",
        f"ckpt={supernet_ckpt}",
        f"out_dir={out}",
        "search.num_archs=40",
        "selection.k=2",
    ]
    runs = [subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    errors = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    rows = _rows(out)
    assert [seq for seq, *_ in rows] == list(range(40))
    assert len({arch_id for _, arch_id, *_ in rows}) == 40
    assert all(None not in row for row in rows)  # no half-written row
    alone = tmp_path / "alone"
    _search(supernet_ckpt, alone, "search.num_archs=40", "selection.k=2")
    assert _rows(alone) == rows  # the same results as one process
