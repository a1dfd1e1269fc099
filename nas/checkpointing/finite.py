"""Stop training on a NaN or infinite loss, with the step, what was kept and what to change."""

from __future__ import annotations

import torch

from nas.checkpointing.messages import checkpoint_note, remedy_hint
from nas.checkpointing.saving import LastCheckpoint
from nas.errors import NasError


def check_finite_loss(module, loss: torch.Tensor) -> None:
    """Stop training with the step and a hint when `loss` is NaN or infinite.

    On the CPU the flag is read at once, so the optimizer never steps on a bad loss. On a CUDA
    device reading it would stall the host every step (no queueing ahead of the GPU), so the flag is
    copied to pinned memory and read at a later step once the copy has landed: a bad loss stops the
    run a step or two late, and `LastCheckpoint` refuses to save the non-finite weights it leaves.
    """
    if loss.device.type != "cuda":
        _raise_if_bad(
            module, bool(torch.isfinite(loss)), loss.item(), module.trainer.global_step, True
        )
        return
    pending = getattr(module, "_loss_check_pending", None)  # (pinned flag, copy event, step)
    if pending is not None and pending[1].query():
        _raise_if_bad(module, bool(pending[0]), float("nan"), pending[2], False)
        pending = None
    if pending is None:
        flag = torch.empty((), dtype=torch.bool, pin_memory=True)
        flag.copy_(torch.isfinite(loss.detach()), non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        module._loss_check_pending = (flag, event, module.trainer.global_step)


def _raise_if_bad(module, finite: bool, value: float, step: int, before_update: bool) -> None:
    if finite:
        return
    trainer = module.trainer
    last = next((cb.path for cb in trainer.callbacks if isinstance(cb, LastCheckpoint)), None)
    when = (
        "before this step changed the weights" if before_update else "(noticed a step or two later)"
    )
    shown = f"{value}" if before_update else "not finite"
    raise NasError(
        f"the training loss is {shown} at step {step} (epoch {trainer.current_epoch}): training "
        f"stopped {when}; {checkpoint_note(last)}. {remedy_hint(module)}"
    )
