"""FAQ answers: a new question -> the answer of the best-matching stored question, or a hand-over
to a person when unsure (`FaqAnswerer`), with the evaluation protocol (`lmrec.faq.evaluate`) and
training data from intent-labelled questions (`lmrec.faq.training`). See docs/faq.md."""

from lmrec.faq.answerer import MAX_QUESTION_CHARS, FaqAnswer, FaqAnswerer, FaqEntry, FaqMatch, mixed_tokenizer
from lmrec.faq.evaluate import (ThresholdChoice, at_threshold, choose_threshold, intent_metrics, precision_coverage,
                                score_questions)

__all__ = ["FaqAnswer", "FaqAnswerer", "FaqEntry", "FaqMatch", "MAX_QUESTION_CHARS", "ThresholdChoice",
           "at_threshold", "choose_threshold", "intent_metrics", "mixed_tokenizer", "precision_coverage",
           "score_questions"]
