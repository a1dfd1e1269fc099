"""Outputs are replaced whole or not at all; temporary files of dead writers are cleared."""

from __future__ import annotations

import csv
import os
import random
import subprocess
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from nas.atomic import atomic_path, remove_stale_temp_files, write_text
from nas.checkpointing import LastCheckpoint
from nas.results.outputs import plot_histogram
from nas.results.selection import write_selection
from nas.results.store import ResultsStore


class Killed(Exception):
    """Stands for a failure (or a kill) in the middle of writing."""


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: no process has this pid any more
    return proc.pid


def _distinct(space, n: int) -> list:
    rng, archs = random.Random(0), []
    while len(archs) < n:
        arch = space.sample(rng)
        archs += [] if arch in archs else [arch]
    return archs


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "sub" / "outputs.json"
    assert write_text(path, "old\n") == path and path.read_text() == "old\n"
    with pytest.raises(Killed), atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp.name == f".outputs.json.{os.getpid()}.tmp"
        tmp.write_text("half of the new")
        raise Killed
    assert path.read_text() == "old\n" and _names(path.parent) == ["outputs.json"]
    with atomic_path(path, durable=True) as tmp:
        tmp.write_text("new\n")
    assert path.read_text() == "new\n" and _names(path.parent) == ["outputs.json"]


def test_ranking_csv_survives_a_failed_export(tmp_path, small_space, monkeypatch):
    store = ResultsStore(tmp_path / "results.sqlite")
    for i, arch in enumerate(_distinct(small_space, 3)):
        store.add({"arch": arch, "oneshot_acc": 0.1 * i, "params": 1, "macs": 1})
    ranking = store.export_csv(tmp_path / "ranking.csv")
    before = ranking.read_text()
    rows = store.ranking()

    def dies_after_one_row():
        yield rows[0]
        raise Killed

    monkeypatch.setattr(store, "ranking", dies_after_one_row)
    with pytest.raises(Killed):
        store.export_csv(ranking)
    store.close()
    assert ranking.read_text() == before and len(list(csv.reader(before.splitlines()))) == 4
    assert _names(tmp_path) == ["ranking.csv", "results.sqlite"]


def test_figure_survives_a_failed_redraw(tmp_path, monkeypatch):
    png = plot_histogram([0.1, 0.2, 0.3], tmp_path / "histogram.png")
    before = png.read_bytes()

    def dies_halfway(self, fname, **kwargs):
        Path(fname).write_bytes(before[:100])
        raise Killed

    monkeypatch.setattr(Figure, "savefig", dies_halfway)
    with pytest.raises(Killed):
        plot_histogram([0.5, 0.6], png)
    assert png.read_bytes() == before and _names(tmp_path) == ["histogram.png"]


def test_selection_listing_survives_a_failed_rewrite(tmp_path, small_space, monkeypatch):
    archs = _distinct(small_space, 2)
    listing = write_selection(tmp_path, "top", archs)
    before = listing.read_text()

    def dies(self, path):
        raise Killed

    monkeypatch.setattr(type(archs[0]), "save", dies)
    with pytest.raises(Killed):
        write_selection(tmp_path, "top", list(reversed(archs)))
    assert listing.read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    stale = tmp_path / f".last.ckpt.{dead}.tmp"
    kept = [
        tmp_path / f".last.ckpt.{live}.tmp",  # being written right now
        tmp_path / "last.ckpt",
        tmp_path / f"last.ckpt.{dead}.tmp",  # not our pattern: no leading dot
        tmp_path / f".notes.{dead}.txt",
    ]
    for path in (stale, *kept):
        path.write_bytes(b"x")
    assert remove_stale_temp_files(tmp_path) == [stale]
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert remove_stale_temp_files(tmp_path / "missing") == []


@pytest.mark.parametrize("rank_zero", [True, False])
def test_last_checkpoint_clears_stale_temp_files_at_start(tmp_path, rank_zero):
    stale = tmp_path / f".last.ckpt.{_dead_pid()}.tmp"
    stale.write_bytes(b"half a checkpoint")
    trainer = type("Trainer", (), {"is_global_zero": rank_zero})()
    LastCheckpoint(str(tmp_path)).setup(trainer, None, "fit")
    assert stale.exists() is not rank_zero
