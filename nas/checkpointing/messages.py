"""What the messages of a run stopped on non-finite numbers say: the checkpoint kept, what to lower.

Shared by `finite` (a non-finite loss) and `saving` (non-finite weights at a save).
"""

from __future__ import annotations

from pathlib import Path


def checkpoint_note(last: Path | None) -> str:
    """What became of the resume checkpoint when training stopped on non-finite numbers."""
    if last is None or not last.is_file():
        return "no checkpoint had been written yet"
    return f"the last checkpoint, {last}, is kept as it was"


def remedy_hint(module) -> str:
    """The settings to lower (with their current values) after the numbers overflowed."""
    h = module.hparams
    knobs = [f"model.lr (now {h.lr:g})"]
    sampler = h.get("sampler") or {}
    if "rate" in sampler:
        knobs.append(f"sampler.rate (now {sampler['rate']:g})")
    return f"Lower {' or '.join(knobs)} or add model.warmup_steps, and start a new run"
