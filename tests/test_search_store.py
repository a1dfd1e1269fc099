"""ResultsStore: rows survive reopening, concurrent writers never duplicate or lose rows, bad files are refused."""

from __future__ import annotations

import csv
import multiprocessing
import random
import sqlite3

import pytest

from nas.errors import NasError
from nas.results.store import ResultsStore

# No torch-importing module at the top: the spawned writer processes import this file.


def _row(i: int, acc: float | None = None) -> dict:
    return {
        "arch_id": f"a{i:04d}",
        "arch_json": f'{{"i": {i}}}',
        "oneshot_acc": i / 1000 if acc is None else acc,
    }


def _write_rows(path: str, start: int, stop: int, barrier) -> None:
    """Worker of the two-process test (module level so spawn can import it)."""
    with ResultsStore(path) as store:
        barrier.wait(timeout=60)  # both processes write at the same time, not one after the other
        for i in range(start, stop):
            store.add(_row(i))


def test_add_has_count_ranking_and_meta(tmp_path, small_space):
    archs = [small_space.sample(random.Random(s)) for s in range(5)]
    archs = list(dict.fromkeys(archs))
    with ResultsStore(
        tmp_path / "r.sqlite", space=small_space, checkpoint="ckpt/last.ckpt"
    ) as store:
        for k, arch in enumerate(archs):
            assert store.add(
                {"arch": arch, "oneshot_acc": 0.5 + 0.1 * (k % 3), "params": 100 - k, "macs": 7}
            )
        assert store.count() == len(archs) == len(store)
        assert all(store.has(a.id) for a in archs) and not store.has("nope")
        assert store.ids() == {a.id for a in archs}
        assert [r["arch_id"] for r in store.results()] == [a.id for a in archs]
        assert [r["seq"] for r in store.results()] == list(range(len(archs)))
        accs = [r["oneshot_acc"] for r in store.ranking()]
        assert accs == sorted(accs, reverse=True)
        assert store.get_meta("space_fingerprint") == small_space.fingerprint
        assert store.get_meta("space_spec") == small_space.spec()
        store.set_meta("settings", {"num_archs": 20, "strategy": "random"})
        assert store.get_meta("settings")["num_archs"] == 20
        assert store.get_meta("missing", default=3) == 3


def test_row_survives_close_and_reopen(tmp_path):
    path = tmp_path / "r.sqlite"
    store = ResultsStore(path)
    store.add(
        {
            **_row(1),
            "params": 10,
            "macs": 20,
            "checkpoint": "c.ckpt",
            "eval_batch_size": 256,
            "eval_ghost_size": 32,
        }
    )
    store.close()
    with pytest.raises(NasError, match="closed"):
        store.count()
    with ResultsStore(path) as again:
        (row,) = again.results()
    assert row["arch_id"] == "a0001" and row["oneshot_acc"] == pytest.approx(0.001)
    assert (row["params"], row["macs"], row["checkpoint"]) == (10, 20, "c.ckpt")
    assert (row["eval_batch_size"], row["eval_ghost_size"], row["seq"]) == (256, 32, 0)


def test_same_arch_twice_keeps_first_row(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        assert store.add(_row(1, acc=0.7))
        assert not store.add(_row(1, acc=0.2))
        assert store.count() == 1 and store.get("a0001")["oneshot_acc"] == 0.7


def test_two_stores_on_one_file_interleave_without_duplicates(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultsStore(path) as a, ResultsStore(path) as b:
        for i in range(50):
            a.add(_row(i))
            b.add(_row(i + 25))  # ids 25..49 written by both
        assert a.count() == b.count() == 75
        assert a.ids() == {f"a{i:04d}" for i in range(75)}
        assert sorted(r["seq"] for r in b.results()) == list(range(75))


def test_two_processes_lose_no_rows(tmp_path):
    path = str(tmp_path / "r.sqlite")
    ResultsStore(path).close()  # create the schema once so both workers only append
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    workers = [
        ctx.Process(target=_write_rows, args=(path, 0, 300, barrier)),
        ctx.Process(target=_write_rows, args=(path, 150, 450, barrier)),
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    with ResultsStore(path) as store:
        rows = store.results()
    assert [r["arch_id"] for r in rows].count("a0200") == 1
    assert {r["arch_id"] for r in rows} == {f"a{i:04d}" for i in range(450)} and len(rows) == 450
    assert sorted(r["seq"] for r in rows) == list(range(450))  # one sequence number per row


def test_non_sqlite_file_is_refused_and_left_intact(tmp_path):
    path = tmp_path / "results.sqlite"
    content = b"these are my precious notes, not a database\n" * 20
    path.write_bytes(content)
    with pytest.raises(NasError, match="move it away") as err:
        ResultsStore(path)
    assert str(path) in str(err.value)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.sqlite"]  # no -wal/-shm left


def test_sqlite_file_without_our_tables_is_refused_and_left_intact(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
        conn.execute("INSERT INTO people VALUES ('ada')")
    conn.close()
    content = path.read_bytes()
    with pytest.raises(NasError, match="missing table") as err:
        ResultsStore(path)
    assert str(path) in str(err.value) and path.read_bytes() == content


def test_other_space_or_checkpoint_is_refused(tmp_path, small_space):
    from nas.spaces.oneshot_cell import OneShotCellSpace

    path = tmp_path / "r.sqlite"
    ResultsStore(path, space=small_space, checkpoint="a.ckpt").close()
    ResultsStore(path, space=small_space, checkpoint="a.ckpt").close()  # same again: fine
    other = OneShotCellSpace(num_blocks=2, ops=["identity", "sep5x5", "maxpool3x3"])
    with pytest.raises(NasError, match="another search space"):
        ResultsStore(path, space=other)
    with pytest.raises(NasError, match="another checkpoint"):
        ResultsStore(path, space=small_space, checkpoint="b.ckpt")
    with ResultsStore(path) as store, pytest.raises(NasError, match="fingerprint"):
        store.add({"arch": other.sample(random.Random(0)), "oneshot_acc": 0.5})


def test_bad_result_fields_are_refused(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        with pytest.raises(NasError, match="unknown field"):
            store.add({**_row(1), "acc": 0.3})
        with pytest.raises(NasError, match="oneshot_acc"):
            store.add({"arch_id": "x", "arch_json": "{}"})


def test_export_csv_writes_the_ranking(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        for i, acc in enumerate([0.3, 0.9, 0.6]):
            store.add({**_row(i, acc), "params": 10 * i, "macs": i})
        out = store.export_csv(tmp_path / "out" / "ranking.csv")
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["rank", "arch_id", "oneshot_acc", "params", "macs", "arch_json"]
    assert [r["arch_id"] for r in rows] == ["a0001", "a0002", "a0000"]
    assert [r["rank"] for r in rows] == ["1", "2", "3"] and rows[0]["params"] == "10"
