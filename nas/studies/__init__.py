"""The paper's studies (Figs. 4-7) as functions: inputs from runs and stores, a PNG and a JSON out."""

from nas.studies.correlation import correlation_pick, correlation_study
from nas.studies.curves import kl_curves_study
from nas.studies.dropout import dropout_study
from nas.studies.kl_accuracy import kl_accuracy_study
from nas.studies.method_comparison import method_comparison_study
from nas.studies.report import report_study
from nas.studies.wandb_log import log_figures, log_search_results, log_table

__all__ = [
    "correlation_pick",
    "correlation_study",
    "dropout_study",
    "kl_accuracy_study",
    "kl_curves_study",
    "log_figures",
    "log_search_results",
    "log_table",
    "method_comparison_study",
    "report_study",
]
