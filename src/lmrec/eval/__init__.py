"""Offline evaluation: ranking metrics, the full-ranking evaluator, significance tests and
benchmark reports."""

from lmrec.eval.evaluator import EvalResult, Scorer, evaluate, evaluate_scores
from lmrec.eval.metrics import (
    coverage,
    gains_from_arrays,
    gains_matrix,
    graded_ndcg,
    hit_rate,
    intra_list_diversity,
    mrr,
    ndcg,
    novelty,
    precision,
    ranking_metrics,
    recall,
    self_information,
)
from lmrec.eval.sessions import evaluate_sessions
from lmrec.eval.report import plot_metric, read_results, rich_table, rows_table, write_results
from lmrec.eval.significance import BootstrapResult, MeanCI, compare, mean_ci, paired_bootstrap

__all__ = [
    "EvalResult", "Scorer", "evaluate", "evaluate_scores", "evaluate_sessions",
    "coverage", "gains_from_arrays", "gains_matrix", "graded_ndcg", "hit_rate", "intra_list_diversity", "mrr", "ndcg", "novelty", "precision",
    "ranking_metrics", "recall", "self_information",
    "plot_metric", "read_results", "rich_table", "rows_table", "write_results",
    "BootstrapResult", "MeanCI", "compare", "mean_ci", "paired_bootstrap",
]
