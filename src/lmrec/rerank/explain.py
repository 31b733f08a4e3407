"""Explanations for every recommended item: the channel(s) that produced it, the history item
(or query words) that matched it best, and the categories and attributes it shares with the
user's history, plus the stage scores that placed it.

Example:
    >>> import numpy as np
    >>> from lmrec.data.dataset import Interactions
    >>> from lmrec.types import Query
    >>> from lmrec.rank.history import UserHistory
    >>> from lmrec.rerank.base import StageContext
    >>> from lmrec.testing.toy import toy_dataset
    >>> from lmrec.types import Candidates
    >>> ds = toy_dataset()
    >>> ctx = StageContext(ds, UserHistory().fit(ds.interactions, ds.n_users), encoder="fake")
    >>> c = Candidates(np.array([6]), np.array([1.0]), [("ease",)], {"ease": np.array([1.0])})
    >>> e = Explainer(ctx).explain(Query(user=0), c)[0]
    >>> e["channels"], e["shared_categories"]
    (['ease'], ['action'])
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np

from lmrec.types import Query
from lmrec.rerank.base import StageContext
from lmrec.types import Candidates

__all__ = ["Explainer"]

_WORD = re.compile(r"\w+", re.UNICODE)


class Explainer:
    """Builds one JSON-able dict per candidate (see the module docstring).

    `history`: how many of the user's latest events are searched for the best match;
    `max_shared`: how many shared categories are listed (most frequent in the history first).
    """

    def __init__(self, ctx: StageContext, *, history: int = 50, max_shared: int = 3, graph: Any = None) -> None:
        self.ctx, self.history, self.max_shared = ctx, history, max_shared
        self.graph = graph  # a lmrec.kg.KnowledgeGraph: adds "kg_path" to each explanation

    def kg_path(self, item: int, hist: np.ndarray) -> dict[str, Any] | None:
        """The heaviest two-hop path from the history to `item` (history item -> shared
        entity -> item; weight = relation weight x entity rarity) and the relation whose
        shared entities weigh most in total; None without a shared entity."""
        g = self.graph
        if g is None or item >= g.n_items or not len(hist):
            return None
        from lmrec.kg.graph import SEP, relation_label

        sw = g.slot_weights()
        m = g.item_slots
        mine = m.indices[m.indptr[item]:m.indptr[item + 1]]
        mine = mine[sw[mine] > 0]
        hist = hist[hist < g.n_items]
        if not len(mine) or not len(hist):
            return None
        sub = m[hist][:, mine].tocoo()  # (history position, slot) pairs shared with the item
        if not sub.nnz:
            return None
        w = sw[mine[sub.col]]
        best = int(np.lexsort((sub.row, -w))[0])  # heaviest; ties: the latest history item
        slot = int(mine[sub.col[best]])
        relation, entity = g.slots.ids[slot].split(SEP, 1)
        totals: dict[int, float] = {}
        for c, x in zip(sub.col.tolist(), w.tolist(), strict=True):
            r = int(g.slot_relation[mine[c]])
            totals[r] = totals.get(r, 0.0) + x
        top = max(totals, key=lambda r: totals[r])
        via = self._item(int(hist[sub.row[best]]))
        target = self._item(item)
        label, name = relation_label(relation), g.entity_label(entity)
        return {"because": via, "relation": label, "entity": entity, "entity_name": name,
                "weight": round(float(w[best]), 4), "top_relation": relation_label(g.relations[top]),
                "text": f"you watched {via['title'] or via['item_id']}; same {label} ({name}) as "
                        f"{target['title'] or target['item_id']}"}

    def _item(self, i: int) -> dict[str, Any]:
        ds = self.ctx.dataset
        title = ds.item_table.title[i] if ds.item_table is not None and i < len(ds.item_table) else ""
        return {"item_id": ds.items.ids[i] if i < len(ds.items) else str(i), "title": title}

    def explain(self, query: Query, candidates: Candidates) -> list[dict[str, Any]]:
        ctx = self.ctx
        table = ctx.dataset.item_table
        hist = ctx.items_of(query)[-self.history:]
        hist = np.array(list(dict.fromkeys(hist[::-1].tolist())), np.int64)  # latest first, distinct
        sims = None
        if len(hist) and len(candidates):
            vec = ctx.item_vectors
            sims = vec[candidates.items] @ vec[hist].T  # (n_candidates, n_history)
        cat_counts = Counter(c for h in hist for c in ctx.categories[h]) if len(hist) else Counter()
        attr_seen: dict[str, set[str]] = {}
        if table is not None and len(hist):
            for name, values in table.attributes.items():
                attr_seen[name] = {str(values[h]) for h in hist if isinstance(values[h], str) and values[h]}
        words = set(_WORD.findall(query.text.lower())) if query.text else set()
        out = []
        for j, item in enumerate(candidates.items.tolist()):
            e: dict[str, Any] = {**self._item(item), "rank": j + 1, "score": _num(candidates.scores[j])}
            e["channels"] = list(candidates.sources[j]) if candidates.sources is not None else []
            e["stage_scores"] = {k: _num(v[j]) for k, v in candidates.stage_scores.items() if np.isfinite(v[j])}
            if sims is not None:
                b = int(np.argmax(sims[j]))
                e["because"] = {**self._item(int(hist[b])), "cosine": round(float(sims[j, b]), 4)}
            if self.graph is not None:
                e["kg_path"] = self.kg_path(item, hist)
            shared = [c for c in ctx.categories[item] if c in cat_counts]
            e["shared_categories"] = sorted(shared, key=lambda c: -cat_counts[c])[:self.max_shared]
            e["shared_attributes"] = {name: str(table.attributes[name][item]) for name, seen in attr_seen.items()
                                      if str(table.attributes[name][item]) in seen} if table is not None else {}
            if words:
                text = " ".join([e["title"], *ctx.categories[item]]).lower()
                e["query_terms"] = sorted(words & set(_WORD.findall(text)))
            out.append(e)
        return out


def _num(x: Any) -> float:
    return round(float(x), 6)
