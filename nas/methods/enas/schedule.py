"""ENAS's optimiser for the network weights (the authors' `get_train_ops`): SGD with Nesterov
momentum and cosine annealing with warm restarts, stepped per epoch (T0, T_mult), shared by the
search (`ENASModule`) and the final training (`EnasFinalModule`)."""

from __future__ import annotations

import torch

from nas.errors import check


def check_warm_restarts(lr: float, lr_min: float, period: int, mult: int) -> None:
    """Stop with a clear message on an out-of-range schedule setting."""
    for key, value in (("restart_period", period), ("restart_mult", mult)):
        check(
            isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            f"model.{key}={value!r} must be an integer >= 1",
        )
    check(
        0 <= lr_min < lr,
        f"model.lr_min={lr_min!r} must lie in [0, model.lr={lr}) (the code: 5e-4 to 1e-3)",
    )


def sgd_warm_restarts(
    params,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    lr_min: float,
    period: int,
    mult: int,
) -> dict:
    """Lightning's optimiser config: SGD and cosine warm restarts from `lr` to `lr_min` per epoch."""
    optimizer = torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=period, T_mult=mult, eta_min=lr_min
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
