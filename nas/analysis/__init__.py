"""Analysis of search results: symmetrized KL, rank correlations, the paper's figures, reports."""

from nas.analysis.correlation import bucket_index, bucket_sample, rank_correlations
from nas.analysis.figures import (
    plot_correlation,
    plot_dropout_panels,
    plot_kl_curves,
    plot_kl_vs_accuracy,
)
from nas.analysis.kl import mean_symmetric_kl, symmetric_kl
from nas.analysis.report import format_number, markdown_table, table1, table1_rows, write_report

__all__ = [
    "bucket_index",
    "bucket_sample",
    "format_number",
    "markdown_table",
    "mean_symmetric_kl",
    "plot_correlation",
    "plot_dropout_panels",
    "plot_kl_curves",
    "plot_kl_vs_accuracy",
    "rank_correlations",
    "symmetric_kl",
    "table1",
    "table1_rows",
    "write_report",
]
