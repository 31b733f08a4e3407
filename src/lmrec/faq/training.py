"""Training data for FAQ matching from questions labelled with intents: stored questions of the same
intent are relevant to each other, questions of other intents are not.

- `intent_triples`: (question, other question, 1.0 same intent / 0.0 other intent) for a graded
  bi-encoder loss (`lmrec.text.finetune.finetune_pairs` with loss "cosent"); negatives are hard
  ones (the top of a first-stage ranking) and random ones.
- `intent_groups`: `RelevanceGroup`s for `lmrec.text.cross_encoder.train_cross_encoder`: a query
  question with first-stage candidates among the stored questions (label 1 for its intent, 0 else),
  topped up with random same-intent questions so every group has positives.

Example:
    >>> qs, it = ["where is my order", "track my parcel", "cancel my order", "stop my order"], ["t", "t", "c", "c"]
    >>> len(intent_triples(qs, it, positives=1, hard=None, negatives=1, seed=0)) == 8
    True
"""

from __future__ import annotations

import random
from typing import Sequence

from lmrec.text.cross_encoder import RelevanceGroup

__all__ = ["intent_triples", "intent_groups"]


def _by_intent(intents: Sequence[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, t in enumerate(intents):
        out.setdefault(t, []).append(i)
    return out


def intent_triples(questions: Sequence[str], intents: Sequence[str], *, positives: int = 2, negatives: int = 2,
                   hard: Sequence[Sequence[int]] | None = None, seed: int = 0) -> list[tuple[str, str, float]]:
    """For each question: `positives` other questions of its intent (score 1.0) and `negatives`
    questions of other intents (score 0.0), half from `hard[i]` (row indices ranked for question i,
    e.g. its BM25 top 30) when given, the rest at random. Shuffled, seeded."""
    rng = random.Random(seed)
    groups = _by_intent(intents)
    out: list[tuple[str, str, float]] = []
    n = len(questions)
    for i, (q, t) in enumerate(zip(questions, intents)):
        pool = [j for j in groups[t] if j != i]
        for j in rng.sample(pool, min(positives, len(pool))):
            out.append((q, questions[j], 1.0))
        hard_neg = [int(j) for j in (hard[i] if hard is not None else []) if 0 <= int(j) < n and intents[int(j)] != t]
        n_hard = min(len(hard_neg), (negatives + 1) // 2 if hard is not None else 0)
        picked = hard_neg[:n_hard]
        tries = 0
        while len(picked) < negatives and tries < 20 * negatives and n > len(groups[t]):
            j = rng.randrange(n)
            tries += 1
            if intents[j] != t and j not in picked:
                picked.append(j)
        out += [(q, questions[j], 0.0) for j in picked]
    rng.shuffle(out)
    return out


def intent_groups(queries: Sequence[str], query_intents: Sequence[str], stored: Sequence[str],
                  stored_intents: Sequence[str], candidates: Sequence[Sequence[int]], *, positives: int = 2,
                  negatives: int = 6, exclude_self: bool = False, seed: int = 0) -> list[RelevanceGroup]:
    """A group per query: up to `positives` stored questions of its intent (the first-stage's
    highest-ranked ones first, then random ones) and up to `negatives` of other intents (the
    highest-ranked: hard negatives; random ones when the ranking has too few). `candidates[i]` are stored row indices ranked for query i;
    `exclude_self` drops stored row i from query i's group (queries = the stored questions)."""
    rng = random.Random(seed)
    groups = _by_intent(stored_intents)
    out = []
    for i, (q, t) in enumerate(zip(queries, query_intents)):
        ranked = [int(j) for j in candidates[i] if not (exclude_self and int(j) == i)]
        pos = [j for j in ranked if stored_intents[j] == t][:positives]
        pool = [j for j in groups.get(t, []) if j not in pos and not (exclude_self and j == i)]
        pos += rng.sample(pool, min(max(positives - len(pos), 0), len(pool)))
        neg = [j for j in ranked if stored_intents[j] != t][:negatives]
        # a first stage that ranks only same-intent questions on top leaves no hard negative: add random ones
        others = len(stored) - len(groups.get(t, []))
        tries = 0
        while len(neg) < min(negatives, others) and tries < 20 * negatives:
            j = rng.randrange(len(stored))
            tries += 1
            if stored_intents[j] != t and j not in neg:
                neg.append(j)
        texts = [stored[j] for j in pos + neg]
        if pos and neg:
            out.append(RelevanceGroup(q, texts, [1.0] * len(pos) + [0.0] * len(neg)))
    return out
