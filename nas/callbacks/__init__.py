"""Training callbacks: the one-shot accuracy / KL-divergence panel of the paper's analysis.

The panel itself (`draw_panel`, `panel_kl`, `panel_accuracy`) is `nas.report.panel`, shared with
the studies; the images it is measured on come from `nas.data.base`.
"""

from nas.callbacks.oneshot_panel import OneShotPanel

__all__ = ["OneShotPanel"]
