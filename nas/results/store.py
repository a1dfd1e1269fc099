"""ResultsStore: an embedded SQLite file holding one row per scored architecture.

Every result is committed the moment it arrives, so a killed search loses at most the batch in flight.
WAL mode plus a busy timeout let several processes append to one file; `INSERT OR IGNORE` on the
architecture id keeps the first score and never duplicates a row. A `meta` table records the space and
checkpoint the scores came from, so a store is never continued with scores of a different model.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas.atomic import atomic_path
from nas.errors import NasError, check

COLUMNS = (
    "arch_id",
    "arch_json",
    "oneshot_acc",
    "params",
    "macs",
    "checkpoint",
    "eval_batch_size",
    "eval_ghost_size",
    "seq",
    "created",
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    arch_id TEXT PRIMARY KEY,
    arch_json TEXT NOT NULL,
    oneshot_acc REAL NOT NULL,
    params INTEGER,
    macs INTEGER,
    checkpoint TEXT,
    eval_batch_size INTEGER,
    eval_ghost_size INTEGER,
    seq INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS results_by_acc ON results (oneshot_acc DESC);
CREATE INDEX IF NOT EXISTS results_by_seq ON results (seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_SQLITE_MAGIC = b"SQLite format 3\x00"
_TIMEOUT_S = 60.0  # how long a writer waits for another process's lock before giving up


class ResultsStore:
    """One SQLite file of search results; optionally bound to a space and a checkpoint."""

    def __init__(self, path: str | Path, space=None, checkpoint: str | None = None):
        self.path = Path(path)
        self._refuse_damaged_header()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=_TIMEOUT_S, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(_TIMEOUT_S * 1000)}")
            self._check_tables()
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as err:
            self._conn.close()
            raise self._damaged(str(err)) from None
        try:
            if space is not None:
                fix = "use a new results file for this space"
                self._claim("space_fingerprint", space.fingerprint, "search space", fix)
                self._claim("space_spec", space.spec(), "search space", fix)
            if checkpoint is not None:
                fix = "use a new results file for this checkpoint"
                self._claim("checkpoint", str(checkpoint), "checkpoint", fix)
        except NasError:
            self.close()
            raise

    # -- opening --------------------------------------------------------------------------------
    @property
    def _db(self) -> sqlite3.Connection:
        check(
            self._conn is not None,
            f"results store {str(self.path)!r} is closed; open a new ResultsStore",
        )
        return self._conn

    def _damaged(self, why: str) -> NasError:
        return NasError(
            f"results store {str(self.path)!r} is not a readable results database ({why}); "
            f"it was left untouched: move it away or pass another results path"
        )

    def _refuse_damaged_header(self) -> None:
        # Checked before sqlite touches the file: a foreign file must never be turned into a database.
        if self.path.is_dir():
            raise NasError(
                f"results store {str(self.path)!r} is a directory; pass a file path such as results.sqlite"
            )
        if self.path.is_file() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
            if head != _SQLITE_MAGIC:
                raise self._damaged("not an SQLite file")

    def _check_tables(self) -> None:
        # An SQLite file with tables but not ours (or an older layout) is refused, never altered.
        tables = {
            r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not tables:
            return
        missing = {"results", "meta"} - tables
        if missing:
            raise self._damaged(f"missing table(s) {sorted(missing)}; found {sorted(tables)}")
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(results)")}
        lacking = [c for c in COLUMNS if c not in cols]
        if lacking:
            raise self._damaged(f"table 'results' lacks column(s) {lacking}")

    def _claim(self, key: str, value: Any, what: str, fix: str) -> None:
        """Record meta[key] = value if unset (atomically), else refuse a different value."""
        self._db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
        )
        stored = self.get_meta(key)
        if stored != value:
            raise NasError(
                f"results store {str(self.path)!r} holds results of another {what} "
                f"({key}={stored!r}, this run has {value!r}); {fix}"
            )

    # -- writing --------------------------------------------------------------------------------
    def add(self, result: Mapping[str, Any]) -> bool:
        """Insert one result (committed at once); False if its arch_id was already stored."""
        row = dict(result)
        arch = row.pop("arch", None)
        if arch is not None:
            row.setdefault("arch_id", arch.id)
            row.setdefault("arch_json", arch.to_json())
            fp = self.get_meta("space_fingerprint")
            check(
                fp is None or fp == arch.space.fingerprint,
                f"architecture {arch.id} is from space fingerprint {arch.space.fingerprint}, but results store "
                f"{str(self.path)!r} holds space {fp}; use a new results file",
            )
        unknown = sorted(set(row) - set(COLUMNS))
        check(
            not unknown,
            f"result has unknown field(s) {unknown}; allowed: {list(COLUMNS)} (or 'arch')",
        )
        for key in ("arch_id", "arch_json", "oneshot_acc"):
            check(
                row.get(key) is not None,
                f"result lacks {key!r}: {str(result)[:200]}; pass 'arch' or arch_id/arch_json, and oneshot_acc",
            )
        row["oneshot_acc"] = float(row["oneshot_acc"])
        row.setdefault("created", time.time())
        names = [c for c in COLUMNS if c in row]
        values = [row[c] for c in names]
        if "seq" in row:
            sql = f"INSERT OR IGNORE INTO results ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        else:
            # One statement, so the next sequence number is taken under the same write lock as the insert.
            sql = (
                f"INSERT OR IGNORE INTO results ({', '.join(names)}, seq) "
                f"SELECT {', '.join('?' * len(names))}, COALESCE(MAX(seq), -1) + 1 FROM results"
            )
        return self._db.execute(sql, values).rowcount == 1

    def merge_from(self, path: str | Path) -> int:
        """Copy in every row of the results store at `path` whose arch_id is not stored here yet
        (seq and all); returns how many were added. One statement: all of them or none."""
        cols = ", ".join(COLUMNS)
        before = self.count()
        self._db.execute("ATTACH DATABASE ? AS other", (str(path),))
        try:
            self._db.execute(
                f"INSERT OR IGNORE INTO results ({cols}) SELECT {cols} FROM other.results"
            )
        finally:
            self._db.execute("DETACH DATABASE other")
        return self.count() - before

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-able value under `key` (replacing any earlier one)."""
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
        )

    # -- reading --------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under `key`, or `default`."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def has(self, arch_id: str) -> bool:
        """Whether a result for `arch_id` is stored."""
        return (
            self._db.execute("SELECT 1 FROM results WHERE arch_id = ?", (arch_id,)).fetchone()
            is not None
        )

    def get(self, arch_id: str) -> dict | None:
        """The stored row of `arch_id` as a dict, or None."""
        row = self._db.execute("SELECT * FROM results WHERE arch_id = ?", (arch_id,)).fetchone()
        return None if row is None else dict(row)

    def ids(self) -> set[str]:
        """Every stored architecture id."""
        return {r[0] for r in self._db.execute("SELECT arch_id FROM results")}

    def count(self) -> int:
        """Number of stored results."""
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def results(self) -> list[dict]:
        """Every row, in the order the architectures were proposed."""
        return [dict(r) for r in self._db.execute("SELECT * FROM results ORDER BY seq, arch_id")]

    def ranking(self) -> list[dict]:
        """Every row, best one-shot accuracy first (ties in proposal order)."""
        sql = "SELECT * FROM results ORDER BY oneshot_acc DESC, seq, arch_id"
        return [dict(r) for r in self._db.execute(sql)]

    def export_csv(self, path: str | Path) -> Path:
        """Write the ranking as CSV (rank, arch_id, oneshot_acc, params, macs, arch_json)."""
        path = Path(path)
        fields = ("arch_id", "oneshot_acc", "params", "macs", "arch_json")
        # Written whole, then renamed: a kill mid-export keeps the previous ranking readable.
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("rank", *fields))
            for rank, row in enumerate(self.ranking(), start=1):
                writer.writerow((rank, *(row[c] for c in fields)))
        return path

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"
