"""Timing a child network: end to end, and the share of each path's modules, median of repeats.

A clock hands out marks and turns two of them into seconds once the device has finished
(`wait`). On the CPU a mark is the host's `perf_counter`; on a GPU it is a CUDA event recorded in
the stream, so marking costs no host synchronisation and the times are the device's own. Tests
pass a fake clock that advances by a known cost per module.

Path times come from forward pre/post hooks on the path's modules. Only the outermost hooked
module running at a time is timed, so a module nested in another hooked one is never counted twice.
End-to-end passes run without hooks (hooks cost host time of their own), interleaved with the
hooked passes, and children are measured in rounds (each child once per round), so that every
measurement sees the same drifting state of the machine and a burst of load on a shared machine
costs one sample of several children, which the median then drops.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from nas.errors import check

PathKey = tuple


class Clock(Protocol):
    def mark(self) -> Any:
        """A point in time (on the device's own timeline)."""

    def wait(self) -> None:
        """Return once the device has finished everything queued so far."""

    def seconds(self, start: Any, end: Any) -> float:
        """Seconds between two marks (valid after `wait`)."""


class HostClock:
    """The host's monotonic clock: CPU work runs synchronously, so nothing to wait for."""

    def mark(self) -> float:
        return time.perf_counter()

    def wait(self) -> None:
        pass

    def seconds(self, start: float, end: float) -> float:
        return end - start


class CudaClock:
    """CUDA events in the current stream."""

    def mark(self) -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def wait(self) -> None:
        torch.cuda.synchronize()

    def seconds(self, start: torch.cuda.Event, end: torch.cuda.Event) -> float:
        return start.elapsed_time(end) / 1000.0


def clock_for(device: torch.device | str) -> Clock:
    """The clock that times work on `device` (cpu or cuda)."""
    kind = torch.device(device).type
    check(
        kind in ("cpu", "cuda"),
        f"--device {device!r}: latency tables are measured on cpu or cuda; pass --device cpu|cuda",
    )
    if kind == "cuda":
        check(
            torch.cuda.is_available(),
            "--device cuda: this machine has no usable CUDA device; pass --device cpu",
        )
        return CudaClock()
    return HostClock()


def measure_children(
    children: Sequence[tuple[nn.Module, Mapping[PathKey, Sequence[nn.Module]]]],
    x: torch.Tensor,
    clock: Clock,
    warmup: int,
    repeats: int,
) -> list[tuple[float, dict[PathKey, float]]]:
    """Per (child, its modules by key): (end-to-end seconds, seconds of each key whose modules
    ran), medians over `repeats` rounds after `warmup` rounds. A round runs every child once plain
    and once hooked, so a burst of load on a shared machine spoils one sample of many children
    rather than every sample of one. Keys whose modules never ran are left out."""
    _check_counts(warmup, repeats)
    totals: list[list[float]] = [[] for _ in children]
    per_key: list[dict[PathKey, list[float]]] = [{} for _ in children]
    with torch.inference_mode():
        for step in range(warmup + repeats):
            for i, (child, modules) in enumerate(children):
                total = _timed_pass(child, x, clock)
                paths = _hooked_pass(child, x, modules, clock)
                if step >= warmup:
                    totals[i].append(total)
                    for key, seconds in paths.items():
                        per_key[i].setdefault(key, []).append(seconds)
    return [
        (statistics.median(t), {k: statistics.median(v) for k, v in keys.items()})
        for t, keys in zip(totals, per_key, strict=True)
    ]


def measure_networks(
    children: Sequence[nn.Module], x: torch.Tensor, clock: Clock, warmup: int, repeats: int
) -> list[float]:
    """End-to-end seconds of every `child(x)`: medians of `repeats` rounds after `warmup` rounds
    (a round runs every child once)."""
    _check_counts(warmup, repeats)
    times: list[list[float]] = [[] for _ in children]
    with torch.inference_mode():
        for step in range(warmup + repeats):
            for i, child in enumerate(children):
                seconds = _timed_pass(child, x, clock)
                if step >= warmup:
                    times[i].append(seconds)
    return [statistics.median(t) for t in times]


def keys_run(
    child: nn.Module, x: torch.Tensor, modules_by_key: Mapping[PathKey, Sequence[nn.Module]]
) -> set[PathKey]:
    """The keys whose modules run in one pass of `child(x)` (not timed)."""
    with torch.inference_mode():
        return set(_hooked_pass(child, x, modules_by_key, _NoClock()))


class _NoClock:
    def mark(self) -> float:
        return 0.0

    def wait(self) -> None:
        pass

    def seconds(self, start: float, end: float) -> float:
        return 0.0


def _check_counts(warmup: int, repeats: int) -> None:
    check(
        isinstance(warmup, int) and warmup >= 0 and isinstance(repeats, int) and repeats >= 1,
        f"warm-up={warmup!r} and repeats={repeats!r} must be integers, >= 0 and >= 1",
    )


def _timed_pass(child: nn.Module, x: torch.Tensor, clock: Clock) -> float:
    start = clock.mark()
    child(x)
    end = clock.mark()
    clock.wait()
    return clock.seconds(start, end)


def _hooked_pass(
    child: nn.Module, x: torch.Tensor, modules_by_key: Mapping[PathKey, Sequence[nn.Module]], clock
) -> dict[PathKey, float]:
    """One pass with every key's modules hooked: key -> seconds its outermost calls took."""
    owner = {id(m): key for key, modules in modules_by_key.items() for m in modules}
    depth = [0]  # hooked modules running now
    open_marks: dict[int, Any] = {}
    intervals: list[tuple[PathKey, Any, Any]] = []

    def before(module, _args):
        if depth[0] == 0:
            open_marks[id(module)] = clock.mark()
        depth[0] += 1

    def after(module, _args, _output):
        depth[0] -= 1
        if depth[0] == 0:
            intervals.append((owner[id(module)], open_marks.pop(id(module)), clock.mark()))

    modules = [m for ms in modules_by_key.values() for m in ms]
    handles = [m.register_forward_pre_hook(before) for m in modules]
    handles += [m.register_forward_hook(after) for m in modules]
    try:
        child(x)
    finally:
        for handle in handles:
            handle.remove()
    clock.wait()
    seconds: dict[PathKey, float] = {}
    for key, start, end in intervals:
        seconds[key] = seconds.get(key, 0.0) + clock.seconds(start, end)
    return seconds
