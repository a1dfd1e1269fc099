"""Helpers for the entry scripts: clear one-line errors instead of tracebacks, config logging."""

from __future__ import annotations

import contextlib
import sys

from nas.errors import NasError


def _user_error(err: BaseException) -> NasError | None:
    """The NasError behind `err` (Hydra wraps errors raised while instantiating), if any."""
    seen = err
    while seen is not None:
        if isinstance(seen, NasError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def user_errors():
    """Print bad-input errors as one clear line on stderr and exit with status 2."""
    try:
        yield
    except Exception as err:
        found = _user_error(err)
        if found is None:
            raise
        print(f"error: {found}", file=sys.stderr)
        sys.exit(2)


def device_of(accelerator: str, precision: str | int):
    """(torch device, autocast dtype or None) for the hardware group's trainer settings."""
    import torch

    use_cuda = accelerator in ("gpu", "cuda") or (
        accelerator == "auto" and torch.cuda.is_available()
    )
    if use_cuda and not torch.cuda.is_available():
        raise NasError(
            f"trainer.accelerator={accelerator!r} but no CUDA device is visible; use hardware=cpu"
        )
    device = torch.device("cuda" if use_cuda else "cpu")
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(precision))
    return device, dtype


def write_run_result(trainer, module, metrics: dict, run_dir: str) -> dict:
    """Write `<run_dir>/result.json` (final metrics, size, architecture) for `python -m nas.collect`."""
    import json
    from pathlib import Path

    metrics = {k.replace("/", "_"): float(v) for k, v in metrics.items() if v.numel() == 1}
    h = module.hparams
    result = {
        "kind": type(module).__name__,
        "group": h.get("group"),
        "arch_id": h.get("arch_id"),
        "filters": h.get("filters"),
        "cells": h.get("cells"),
        "params": sum(p.numel() for p in module.parameters()),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        **{k: metrics[k] for k in ("val_acc", "test_acc", "val_loss", "test_loss") if k in metrics},
    }
    if trainer.is_global_zero:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
