"""SGD with Nesterov momentum and a per-step learning-rate schedule (cosine by default)."""

from __future__ import annotations

import math

import torch

from nas.errors import check

LR_SCHEDULES = ("cosine", "constant")


def validate_optimizer(lr: float, momentum: float, schedule: str, warmup_steps: int) -> None:
    """Stop with a clear message on an out-of-range optimizer setting."""
    check(
        isinstance(lr, int | float) and lr > 0, f"model.lr={lr!r} must be > 0 (the paper uses 0.1)"
    )
    check(0 <= momentum < 1, f"model.momentum={momentum!r} must lie in [0, 1) (the paper uses 0.9)")
    check(
        schedule in LR_SCHEDULES,
        f"model.lr_schedule={schedule!r} is unknown; choose one of {list(LR_SCHEDULES)}",
    )
    check(
        isinstance(warmup_steps, int) and warmup_steps >= 0,
        f"model.warmup_steps={warmup_steps!r} must be an integer >= 0",
    )


def sgd_with_schedule(
    params,
    lr: float,
    momentum: float,
    nesterov: bool,
    schedule: str,
    warmup_steps: int,
    total_steps: int,
) -> dict:
    """Lightning optimizer config: SGD (no built-in decay) and a LambdaLR stepped every batch."""
    validate_optimizer(lr, momentum, schedule, warmup_steps)
    optimizer = torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0
    )
    total = max(1, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        t = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * t))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
