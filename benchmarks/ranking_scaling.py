"""Ranking throughput of one search.py process against n shard processes on this machine.

    python benchmarks/ranking_scaling.py                   # smoke supernet, 400 architectures, CPU
    python benchmarks/ranking_scaling.py --ckpt <last.ckpt> --experiment quickstart --num-archs 2000
    python benchmarks/ranking_scaling.py --ckpt <last.ckpt> --experiment cifar_oneshot \
        --num-archs 4000 --shards 4 --gpus --override hardware=gpu     # 4 GPUs: shard i on GPU i

Trains a smoke supernet unless --ckpt is given, then alternates, --rounds times: one process scoring
--num-archs architectures with all --threads; --shards shard processes at once, each with
threads/shards threads, merged with `python -m nas.search.merge`; and one process with a shard's
threads (what each shard would do alone). Each run is timed two ways: wall
time of the whole command (Python start, imports, loading the checkpoint and data included) and the
scoring window (first to last stored result, from the stores' `created` stamps). The merged store is
checked to equal the single process's (same architectures, same scores). Best round of each counts;
writes --out (JSON, with hardware, versions and date) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env(threads: int, gpu: int | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if gpu is not None:  # --gpus: each process sees only its own GPU
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    return env


def _rows(store: Path) -> list[tuple]:
    with sqlite3.connect(store) as db:
        return db.execute(
            "SELECT seq, arch_id, oneshot_acc, created FROM results ORDER BY seq"
        ).fetchall()


def _window(rows: list[tuple]) -> float:
    stamps = [r[3] for r in rows]
    return max(stamps) - min(stamps)


def run_single(common: list[str], out: Path, threads: int, gpus: bool = False) -> dict:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "search.py", *common, f"out_dir={out}", "selection.k=2"],
        cwd=ROOT,
        env=_env(threads, 0 if gpus else None),
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    rows = _rows(out / "results.sqlite")
    return {"wall_s": wall, "window_s": _window(rows), "archs": len(rows), "rows": rows}


def run_shards(common: list[str], out: Path, threads: int, shards: int, gpus: bool = False) -> dict:
    per = max(1, threads // shards)
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "search.py",
                *common,
                f"out_dir={out}",
                f"search.shard={i}",
                f"search.num_shards={shards}",
            ],
            cwd=ROOT,
            env=_env(per, i if gpus else None),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(shards)
    ]
    codes = [p.wait() for p in procs]
    assert codes == [0] * shards, f"shard exit codes {codes}"
    scored = time.perf_counter() - start
    subprocess.run(
        [sys.executable, "-m", "nas.search.merge", str(out), "--k", "2"],
        cwd=ROOT,
        env=_env(threads),
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    rows = _rows(out / "results.sqlite")
    return {
        "wall_s": wall,
        "shards_wall_s": scored,
        "merge_s": wall - scored,
        "window_s": _window(rows),
        "archs": len(rows),
        "rows": rows,
    }


def _train(experiment: str, directory: Path) -> Path:
    subprocess.run(
        [sys.executable, "train.py", f"experiment={experiment}", f"hydra.run.dir={directory}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return directory / "checkpoints" / "last.ckpt"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="supernet checkpoint (default: train experiment=smoke)")
    parser.add_argument("--experiment", default="smoke", help="the checkpoint's experiment")
    parser.add_argument("--num-archs", type=int, default=400)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="in total")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--gpus", action="store_true", help="shard i on GPU i (one process: GPU 0)")
    parser.add_argument(
        "--override", nargs="*", default=[], help="more search.py settings, e.g. hardware=gpu"
    )
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results-ranking-scaling-cpu.json")
    )
    args = parser.parse_args(argv)
    import torch

    load_before = os.getloadavg()  # a machine shared with other work skews the comparison
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = Path(args.ckpt) if args.ckpt else _train(args.experiment, tmp / "supernet")
        common = [
            f"experiment={args.experiment}",
            f"ckpt={ckpt}",
            f"search.num_archs={args.num_archs}",
            *args.override,
        ]
        single, sharded, one_thread = [], [], []
        per = max(1, args.threads // args.shards)
        for r in range(args.rounds):  # alternating: drifts in machine speed hit all alike
            single.append(run_single(common, tmp / f"single{r}", args.threads, args.gpus))
            sharded.append(
                run_shards(common, tmp / f"sharded{r}", args.threads, args.shards, args.gpus)
            )
            # one shard's resources alone: how far n processes are from n times one
            one_thread.append(run_single(common, tmp / f"one{r}", per, args.gpus))
            exact = [row[:3] for row in single[-1]["rows"]] == [
                row[:3] for row in sharded[-1]["rows"]
            ]
            assert exact, "the merged shards differ from the single process's store"

    def best(runs: list[dict], key: str) -> float:
        return min(run[key] for run in runs)

    n = args.num_archs
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{_cpu_name()}, {os.cpu_count()} logical CPUs, {platform.machine()}",
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "python": platform.python_version(),
        "torch": torch.__version__,
        "settings": {
            "experiment": args.experiment,
            "num_archs": n,
            "shards": args.shards,
            "threads_total": args.threads,
            "threads_per_shard": per,
            "rounds": args.rounds,
            "gpus": args.gpus,
            "overrides": args.override,
        },
        "single": {
            "archs_per_min_scoring": 60 * n / best(single, "window_s"),
            "archs_per_min_wall": 60 * n / best(single, "wall_s"),
            "rounds": [{k: v for k, v in run.items() if k != "rows"} for run in single],
        },
        "single_one_shards_threads": {
            "threads": per,
            "archs_per_min_scoring": 60 * n / best(one_thread, "window_s"),
            "archs_per_min_wall": 60 * n / best(one_thread, "wall_s"),
            "rounds": [{k: v for k, v in run.items() if k != "rows"} for run in one_thread],
        },
        "sharded": {
            "archs_per_min_scoring": 60 * n / best(sharded, "window_s"),
            "archs_per_min_wall": 60 * n / best(sharded, "wall_s"),
            "merge_s": best(sharded, "merge_s"),
            "rounds": [{k: v for k, v in run.items() if k != "rows"} for run in sharded],
        },
        "merged_equals_single": True,
    }
    for key in ("archs_per_min_scoring", "archs_per_min_wall"):
        result[f"speedup_{key.removeprefix('archs_per_min_')}"] = (
            result["sharded"][key] / result["single"][key]
        )
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    s, m, o = result["single"], result["sharded"], result["single_one_shards_threads"]
    print(
        f"{result['date']}, {result['machine']}, torch {result['torch']}, Python {result['python']}"
    )
    print("| processes | threads each | archs/min (scoring) | archs/min (wall, with start-up) |")
    print("|---:|---:|---:|---:|")
    print(
        f"| 1 | {args.threads} | {s['archs_per_min_scoring']:,.0f} | {s['archs_per_min_wall']:,.0f} |"
    )
    print(f"| 1 | {per} | {o['archs_per_min_scoring']:,.0f} | {o['archs_per_min_wall']:,.0f} |")
    print(
        f"| {args.shards} | {per} | "
        f"{m['archs_per_min_scoring']:,.0f} | {m['archs_per_min_wall']:,.0f} (merge {m['merge_s']:.1f} s) |"
    )
    print(f"speed-up: {result['speedup_scoring']:.2f}x scoring, {result['speedup_wall']:.2f}x wall")
    return result


if __name__ == "__main__":
    main()
