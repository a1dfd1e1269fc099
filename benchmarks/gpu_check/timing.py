"""Honest step timing inside a real Lightning fit, and hard time caps for one measurement."""

from __future__ import annotations

import math
import signal
import statistics
import time
from contextlib import contextmanager

import lightning as L
import torch


class TimeCapReached(Exception):
    """A measurement ran past its share of the run's time budget."""


@contextmanager
def time_cap(seconds: float):
    """Raise TimeCapReached inside the block after `seconds` (wall clock, main thread only).

    The device call has a hard limit; a measurement that hangs (a slow `torch.compile`, say) must
    cost its own line of the report, not the sections after it.
    """

    def expire(signum, frame):
        raise TimeCapReached(f"time cap of {seconds:.0f} s reached")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def sync(device: torch.device) -> None:
    """Wait for queued kernels, so a clock read covers the work launched before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float | None:
    """Peak bytes allocated since the last reset, in MiB; None on the CPU (no such counter)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def median_seconds(step, device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of one call of `step` after `warmup` untimed calls (cuDNN autotuning,
    allocator growth and compilation happen there)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class StepTimer(L.Callback):
    """Seconds between consecutive training-batch ends (synchronised), after `warmup` steps.

    The interval between two batch ends is what training pays per step: loading, augmenting and
    transferring the batch, the step itself and Lightning's bookkeeping. Losses are kept as
    tensors and read once at the end, so recording them adds no host sync per step.
    """

    def __init__(self, warmup: int, stop_after: int | None = None):
        self.warmup, self.stop_after = warmup, stop_after
        self.intervals: list[float] = []
        self._losses: list[torch.Tensor] = []
        self._last: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        reset_peak_memory(pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._losses.append(loss.detach().float().reshape(()))
        sync(pl_module.device)
        now = time.perf_counter()
        if self._last is not None and batch_idx >= self.warmup:
            self.intervals.append(now - self._last)
        self._last = now
        if self.stop_after is not None and batch_idx + 1 >= self.stop_after:
            trainer.should_stop = True  # a prefix of a longer run: same LR and dropout schedules

    @property
    def losses(self) -> list[float]:
        return [float(x) for x in self._losses]

    @property
    def step_seconds(self) -> float:
        if not self.intervals:
            raise RuntimeError("no timed steps: the run stopped before the warm-up ended")
        return statistics.median(self.intervals)


def finite_positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0
