"""Training callbacks: the one-shot accuracy / KL-divergence panel of the paper's analysis."""

from nas.callbacks.oneshot_panel import OneShotPanel
from nas.callbacks.panel import (
    draw_panel,
    first_val_examples,
    fixed_train_examples,
    panel_accuracy,
    panel_kl,
)

__all__ = [
    "OneShotPanel",
    "draw_panel",
    "first_val_examples",
    "fixed_train_examples",
    "panel_accuracy",
    "panel_kl",
]
