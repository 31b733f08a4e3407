"""FAQ / customer-service question sets: customer questions with their intent, category and answer.

`load_bitext_faq(folder)` reads the Bitext customer-support sample (`customer_support_qa.csv`:
4,514 English questions, 27 intents, 11 categories, one agent answer per question) into an
`FaqSet`. `FaqSet.split(...)` splits the questions at random *within each intent*, so the test
questions are wordings never stored while every intent is present in every part.

Example:
    >>> s = FaqSet("toy", ["where is my order", "track my parcel", "cancel it"], ["track", "track", "cancel"],
    ...            ["ORDER", "ORDER", "ORDER"], ["a1", "a2", "a3"])
    >>> s.n_intents, len(s)
    (2, 3)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmrec.data.loaders.base import require_files

__all__ = ["FaqSet", "FaqSplit", "load_bitext_faq", "BITEXT_FILE"]

BITEXT_FILE = "customer_support_qa.csv"


@dataclass
class FaqSplit:
    """Row indices of an `FaqSet` per part ("stored", "val", "test")."""

    stored: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)

    def summary(self) -> dict[str, Any]:
        return {"stored": len(self.stored), "val": len(self.val), "test": len(self.test), "seed": self.seed,
                "fractions": list(self.fractions), "protocol": "random within each intent"}


@dataclass
class FaqSet:
    """Questions (`questions[i]`) with their intent, category and answer, aligned by row."""

    name: str
    questions: list[str]
    intents: list[str]
    categories: list[str]
    answers: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.questions)
        for what in ("intents", "categories", "answers"):
            if len(getattr(self, what)) != n:
                raise ValueError(f"{self.name}: {what} has {len(getattr(self, what))} rows, questions {n}")

    def __len__(self) -> int:
        return len(self.questions)

    @property
    def intent_names(self) -> list[str]:
        return sorted(set(self.intents))

    @property
    def n_intents(self) -> int:
        return len(set(self.intents))

    def split(self, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), seed: int = 0) -> FaqSplit:
        """A seeded split of the rows within each intent: `fractions` of (stored, val, test); every
        intent with at least 3 questions has at least one in each part."""
        if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
            raise ValueError(f"fractions must be three shares (stored, val, test) summing to 1, got {fractions}")
        rng = np.random.default_rng(seed)
        parts: list[list[int]] = [[], [], []]
        by_intent: dict[str, list[int]] = {}
        for i, intent in enumerate(self.intents):
            by_intent.setdefault(intent, []).append(i)
        for intent in sorted(by_intent):
            rows = np.array(by_intent[intent])[rng.permutation(len(by_intent[intent]))]
            n = len(rows)
            n_val = int(round(fractions[1] * n))
            n_test = int(round(fractions[2] * n))
            if n >= 3:
                n_val, n_test = max(n_val, 1 if fractions[1] > 0 else 0), max(n_test, 1 if fractions[2] > 0 else 0)
            n_stored = n - n_val - n_test
            parts[0] += rows[:n_stored].tolist()
            parts[1] += rows[n_stored:n_stored + n_val].tolist()
            parts[2] += rows[n_stored + n_val:].tolist()
        return FaqSplit(*(np.sort(np.asarray(p, np.int64)) for p in parts), seed=seed,
                        fractions=tuple(float(f) for f in fractions))  # type: ignore[arg-type]

    def summary(self) -> dict[str, Any]:
        return {"questions": len(self), "intents": self.n_intents, "categories": len(set(self.categories)),
                "distinct_answers": len(set(self.answers)), **self.info}


def load_bitext_faq(folder: Path) -> FaqSet:
    """The Bitext customer-support sample: one row per customer question (`instruction`), with
    its `intent`, `category` and the agent's `response` as the answer."""
    folder = Path(folder)
    require_files("bitext-faq", folder, [BITEXT_FILE])
    df = pd.read_csv(folder / BITEXT_FILE, dtype=str, keep_default_na=False)
    missing = [c for c in ("instruction", "intent", "category", "response") if c not in df.columns]
    if missing:
        raise ValueError(f"{folder / BITEXT_FILE}: missing column(s) {', '.join(missing)}")
    df = df[df["instruction"].str.strip() != ""]
    return FaqSet("bitext-faq", df["instruction"].str.strip().tolist(), df["intent"].tolist(),
                  df["category"].tolist(), df["response"].tolist(),
                  info={"source": str(folder), "language": "en"})
