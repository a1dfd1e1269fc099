"""Ranking speed of this tree against an earlier commit, measured in one run, alternating.

    python benchmarks/ranking_baseline.py --rev aacfcbf --baseline-pack 4

Both trees rank with their own `benchmarks/throughput.py::ranking` at the CPU smoke sizes (F=4,
3 cells, 16x16 inputs, 64 validation images in ghost batches of 8); this tree packs
`default_batch_archs(device)` architectures per pass, the baseline `--baseline-pack`. Rounds
alternate between the two so that drifts in machine speed hit both alike; the best round of each
counts. Prints a JSON line with both rates and their ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys, torch
sys.path.insert(0, {root!r})
sys.path.insert(0, {root!r} + "/benchmarks")
import throughput
try:
    from nas.spaces.oneshot_cell import OneShotCellSpace
except ImportError:  # trees from before spaces were packages
    from nas.spaces import OneShotCellSpace
torch.set_num_threads({threads})
rate = throughput.ranking(OneShotCellSpace(), 4, 3, 64, 64, 8, {pack}, torch.device("cpu"),
                          False, {passes}, 16)
print(json.dumps(rate))
"""


def rate(root: Path, pack: int, passes: int, threads: int) -> float:
    """Architectures per minute ranked by the tree at `root` (a fresh process)."""
    code = PROBE.format(root=str(root), pack=pack, passes=passes, threads=threads)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rev", required=True, help="the baseline commit")
    parser.add_argument("--baseline-pack", type=int, default=4, help="its architectures per pass")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--passes", type=int, default=20, help="ranking passes per measurement")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from nas.search.evaluator import default_batch_archs

    pack = default_batch_archs("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "-q", str(base), args.rev], cwd=ROOT, check=True)
        try:
            ours, theirs = [], []
            for _ in range(args.rounds):
                theirs.append(rate(base, args.baseline_pack, args.passes, args.threads))
                ours.append(rate(ROOT, pack, args.passes, args.threads))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)
    result = {
        "baseline_rev": args.rev,
        "baseline_pack": args.baseline_pack,
        "pack": pack,
        "baseline_archs_per_min": max(theirs),
        "archs_per_min": max(ours),
        "ratio": max(ours) / max(theirs),
        "rounds": {"baseline": theirs, "this_tree": ours},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
