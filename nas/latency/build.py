"""Building a latency table: time every path of a space's children once, and the fixed part.

The children measured are chosen to cover every key (`nas.latency.attribution`): first one child
per option index (child j takes option j of every decision), then children drawn at random, each
kept only if it holds keys not yet timed, the one holding most of them out of `candidates` draws.
A few more random children are measured beside them, those with the most and the fewest paths of
their draws, so that the children differ in how many paths they run.

Each measured child gives, per key it runs, that key's time (hooks on its modules), and its
remainder: its end-to-end time minus the times of its keys. The remainder is the fixed part plus
the glue that joins each path to the network outside its modules (adding its output to a node's
sum, the bookkeeping around it), so it is fitted, by least squares over the children, as
fixed + per_path * (paths the child runs), per_path >= 0. A key's entry is the median over the
children that ran it. A key whose modules never ran in children that held it (e.g. an op whose
block has no input) costs nothing.
"""

from __future__ import annotations

import datetime
import platform
import random
import statistics
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from nas.errors import check
from nas.latency.attribution import OpModules, PathKey
from nas.latency.table import LatencyTable
from nas.latency.timing import Clock, clock_for, keys_run, measure_children
from nas.spaces.base import Architecture, SearchSpace

GIVE_UP_AFTER = 3  # children holding a key that never ran it: the key costs nothing
SPREAD_CHILDREN = 4  # random children beyond the covering ones, for the per-path glue


def build_table(
    space: SearchSpace,
    network: Mapping,
    input_shape: Sequence[int],
    device: str = "cpu",
    batch_size: int = 1,
    warmup: int = 10,
    repeats: int = 30,
    seed: int = 0,
    clock: Clock | None = None,
    max_children: int = 200,
    candidates: int = 64,
    log: Callable[[str], None] | None = None,
) -> LatencyTable:
    """Measure the latency table of `space`'s children with `network` settings on `device`."""
    check(
        isinstance(batch_size, int) and batch_size >= 1,
        f"--batch-size={batch_size!r} must be an integer >= 1 (1: one image, as deployed)",
    )
    clock = clock or clock_for(device)
    ops = OpModules(space, network, seed)
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(seed))
    x = x.to(device)
    children = _choose_children(space, network, ops, x, device, seed, max_children, candidates)
    if log:
        log(
            f"{len(children)} children cover {len(set().union(*(k for *_, k in children)))} "
            f"of {len(ops.keys())} keys; timing {warmup} + {repeats} rounds"
        )
    measured = measure_children([(c, m) for c, m, _ in children], x, clock, warmup, repeats)
    timed: dict[PathKey, list[float]] = {}
    remainders: list[tuple[int, float]] = []  # (paths run, end to end minus their times)
    for total, paths in measured:
        for key, seconds in paths.items():
            timed.setdefault(key, []).append(seconds)
        remainders.append((len(paths), total - sum(paths.values())))
    fixed, per_path = fit_remainder(remainders)
    unrun = sorted(set(ops.keys()) - set(timed), key=str)
    return LatencyTable(
        space_spec=space.spec(),
        fingerprint=space.fingerprint,
        network=dict(network),
        input_shape=tuple(int(s) for s in input_shape),
        batch_size=batch_size,
        fixed_ms=fixed * 1e3,
        ops={k: statistics.median(v) * 1e3 for k, v in timed.items()},
        per_path_ms=per_path * 1e3,
        info={
            **hardware(device),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "warmup": warmup,
            "repeats": repeats,
            "children_measured": len(remainders),
            "undeclared_options": sorted(
                (list(k) for k in set(ops.keys()) - ops.declared), key=str
            ),
            "never_ran": [list(k) for k in unrun],
        },
    )


def fit_remainder(remainders: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """(fixed, per_path) of remainder ~ fixed + per_path * paths, least squares, per_path >= 0
    (with one number of paths, or a negative slope, per_path = 0 and fixed the median)."""
    counts = np.array([n for n, _ in remainders], dtype=np.float64)
    values = np.array([r for _, r in remainders], dtype=np.float64)
    if np.ptp(counts) > 0:
        slope, intercept = np.polyfit(counts, values, 1)
        if slope > 0:
            return float(intercept), float(slope)
    return float(np.median(values)), 0.0


def hardware(device: str) -> dict:
    """What the times were measured on."""
    info = {
        "device": torch.device(device).type,
        "torch": torch.__version__,
        "cpu": _cpu_name(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info


def _choose_children(
    space: SearchSpace,
    network: Mapping,
    ops: OpModules,
    x: torch.Tensor,
    device,
    seed: int,
    max_children: int,
    candidates: int,
) -> list[tuple[nn.Module, dict, set]]:
    """(child, its modules by key, the keys it runs) of every child to measure: each runs some
    key that no child before it runs; until every key runs or is given up."""
    rng = random.Random(seed)
    ran: set[PathKey] = set()
    held_unrun: dict[PathKey, int] = {}
    chosen: list[tuple[nn.Module, dict, set]] = []

    def wanted() -> set[PathKey]:
        return {k for k in ops.keys() if k not in ran and held_unrun.get(k, 0) < GIVE_UP_AFTER}

    def consider(arch: Architecture) -> None:
        new = ops.keys_used(arch) & wanted()
        if not new:
            return
        child = space.build_child(arch, **network).to(device).eval()
        modules = ops.modules_of(child, arch)
        runs = keys_run(child, x, modules)
        for key in new - runs:
            held_unrun[key] = held_unrun.get(key, 0) + 1
        if runs & new:
            ran.update(runs)
            chosen.append((child, modules, runs))

    for arch in _one_per_option_index(space, rng):
        if len(chosen) >= max_children or not wanted():
            break
        consider(arch)
    while len(chosen) < max_children and wanted():
        pool = [space.sample(rng) for _ in range(candidates)]
        best = max(pool, key=lambda a: len(ops.keys_used(a) & wanted()))
        if not ops.keys_used(best) & wanted():
            break  # what is left is held by too few children to be drawn: it stays untimed
        consider(best)
    for i in range(SPREAD_CHILDREN):  # alternately the most and the fewest paths of a draw
        pool = sorted(
            (space.sample(rng) for _ in range(candidates)), key=lambda a: len(ops.keys_used(a))
        )
        arch = pool[-1] if i % 2 == 0 else pool[0]
        child = space.build_child(arch, **network).to(device).eval()
        modules = ops.modules_of(child, arch)
        chosen.append((child, modules, keys_run(child, x, modules)))
    check(chosen, f"no child of space {space.name!r} runs any of its paths; nothing to time")
    return chosen


def _one_per_option_index(space: SearchSpace, rng: random.Random) -> list[Architecture]:
    """Child j takes option j (and the next ones, to reach min_k) of every decision that has one,
    a random choice elsewhere; children the space would refuse are skipped."""
    widest = max(len(d.options) for d in space.decisions)
    archs = []
    for j in range(widest):
        base = space.sample(rng)
        choices = dict(base.choices)
        for d in space.decisions:
            n = len(d.options)
            if j < n:
                choices[d.name] = [d.options[(j + t) % n] for t in range(max(1, d.min_k))]
        try:
            archs.append(space.architecture(choices))
        except ValueError:  # e.g. more than max_k: keep the random choice of that decision
            archs.append(base)
    return archs


def _cpu_name() -> str:
    """The processor's model name (Linux), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
