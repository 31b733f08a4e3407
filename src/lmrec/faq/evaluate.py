"""The FAQ protocol: ranking quality of stored questions for new wordings, intent accuracy, and the
abstain threshold's precision-coverage trade-off.

A test question is answered correctly when the top stored entry has the test question's intent
(any stored wording of the right intent carries an answer for it). Metrics over the top 10
entries: MRR@10 (1 / rank of the first entry of the right intent), Recall@k (a right-intent entry
in the top k, for k = 1, 5) and intent accuracy (the top-1 answer's intent).

The abstain rule answers when confidence >= threshold. `precision_coverage` is the curve over all
cut-offs (coverage = share answered, precision = share of answered ones that are right);
`choose_threshold` picks, on validation questions, the lowest threshold whose answered precision
reaches the target (the largest coverage that keeps it), and `at_threshold` measures a threshold
on other questions.

Example:
    >>> t = choose_threshold(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 1, 0, 0]), target=0.9)
    >>> t.threshold, t.precision, t.coverage
    (0.8, 1.0, 0.5)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from lmrec.faq.answerer import FaqAnswerer, FaqMatch

__all__ = ["ThresholdChoice", "precision_coverage", "choose_threshold", "at_threshold", "intent_metrics",
           "score_questions"]


@dataclass
class ThresholdChoice:
    """An abstain threshold with the answered precision and coverage where it was measured."""

    threshold: float
    precision: float
    coverage: float
    answered: int
    n: int
    target: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) and np.isfinite(v) else v) for k, v in asdict(self).items()}


def precision_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, coverage, precision) at every distinct confidence, highest first: answering
    the questions with confidence >= thresholds[j] covers coverage[j] of them at precision[j]."""
    conf = np.asarray(confidence, np.float64)
    ok = np.asarray(correct, np.float64)
    order = np.argsort(-conf, kind="stable")
    conf, ok = conf[order], ok[order]
    hits = np.cumsum(ok)
    n_ans = np.arange(1, len(conf) + 1)
    # a cut-off is only valid after the last of a run of equal confidences
    last = np.r_[conf[1:] != conf[:-1], True] if len(conf) else np.zeros(0, bool)
    return conf[last], n_ans[last] / max(len(conf), 1), hits[last] / n_ans[last]


def at_threshold(confidence: np.ndarray, correct: np.ndarray, threshold: float,
                 target: float | None = None) -> ThresholdChoice:
    """Answered precision and coverage of the rule "answer when confidence >= threshold"."""
    conf, ok = np.asarray(confidence, np.float64), np.asarray(correct, bool)
    ans = conf >= threshold
    n = int(ans.sum())
    return ThresholdChoice(float(threshold), float(ok[ans].mean()) if n else float("nan"),
                           n / max(len(conf), 1), n, len(conf), target)


def choose_threshold(confidence: np.ndarray, correct: np.ndarray, target: float = 0.97,
                     min_answered: int = 1) -> ThresholdChoice:
    """The lowest threshold (largest coverage) whose answered precision >= `target`, with at
    least `min_answered` questions answered; +inf (answer nothing) when no threshold reaches it."""
    th, cov, prec = precision_coverage(confidence, correct)
    n = len(np.asarray(confidence))
    ok = np.flatnonzero((prec >= target) & (cov * n >= min_answered))
    if not len(ok):
        return ThresholdChoice(float("inf"), float("nan"), 0.0, 0, n, target)
    j = int(ok[-1])
    return ThresholdChoice(float(th[j]), float(prec[j]), float(cov[j]), int(round(cov[j] * n)), n, target)


def intent_metrics(ranked_intents: Sequence[Sequence[str]], truth: Sequence[str], k: int = 10) -> dict[str, float]:
    """MRR@k, Recall@1, Recall@5 (a right-intent entry in the top 1 / 5) and intent accuracy (top
    1's intent) of entries ranked for each question, with standard errors of MRR and Recall@1."""
    rr, r1, r5 = [], [], []
    for ranked, t in zip(ranked_intents, truth):
        hit = [i for i, x in enumerate(list(ranked)[:k]) if x == t]
        first = hit[0] + 1 if hit else None
        rr.append(1.0 / first if first else 0.0)
        r1.append(1.0 if first == 1 else 0.0)
        r5.append(1.0 if first is not None and first <= 5 else 0.0)
    n = max(len(rr), 1)
    se = (lambda v: float(np.std(v, ddof=1) / np.sqrt(n)) if len(v) > 1 else float("nan"))
    return {f"MRR@{k}": float(np.mean(rr)) if rr else float("nan"), "Recall@1": float(np.mean(r1)) if r1 else float("nan"),
            "Recall@5": float(np.mean(r5)) if r5 else float("nan"),
            "intent_accuracy": float(np.mean(r1)) if r1 else float("nan"),
            f"MRR@{k}_se": se(rr), "Recall@1_se": se(r1), "n": len(rr)}


def score_questions(answerer: FaqAnswerer, questions: Sequence[str], k: int = 10,
                    batch: int = 256) -> tuple[list[list[FaqMatch]], np.ndarray]:
    """Each question's top-k matched entries and the answerer's confidence in its top one."""
    matches: list[list[FaqMatch]] = []
    for s in range(0, len(questions), batch):
        matches += answerer.rank_batch(list(questions[s:s + batch]), k)
    return matches, np.array([answerer.confidence_of(m) for m in matches], np.float64)
