"""Item text enriched with its knowledge-graph neighbourhood, for the text encoders.

Each item gets a "kg" text field such as "director: the director of Heat, Ronin. star: Al
Pacino." — one sentence per relation (up to `per_relation` entities each), an entity written
by its name where the graph knows one, else through the titles of the best-known other items
that share it (the Satori entities of ML-1M have no names). `enrich_dataset` adds the field and
appends `{kg}` to the data set's item template, so every LM channel and feature embeds the
enriched text; the plain text stays in the other fields.

Example:
    >>> import numpy as np
    >>> from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
    >>> from lmrec.kg.graph import KnowledgeGraph
    >>> from lmrec.kg.triples import triples_from_arrays
    >>> t = ItemTable(title=["Heat", "Collateral", "Ronin"], categories=[[], [], []])
    >>> ds = Dataset("d", IdMap("u"), IdMap(["h", "c", "r"], sort=False), Interactions.empty(), item_table=t,
    ...              triples=triples_from_arrays(["h", "c"], ["film.director"] * 2, ["p1", "p1"], [True] * 2, [False] * 2))
    >>> kg_texts(KnowledgeGraph.from_dataset(ds), t.title)[1]
    'director: the director of Heat.'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.kg.graph import SEP, KnowledgeGraph, relation_label

__all__ = ["kg_texts", "enrich_dataset"]


def kg_texts(graph: KnowledgeGraph, titles: Sequence[str] | None = None, popularity: np.ndarray | None = None, *,
             relations: Sequence[str] | None = None, per_relation: int = 2, titles_per_entity: int = 2) -> list[str]:
    """One text per item (see the module docstring). `titles` default to the graph's data set
    titles passed through `enrich_dataset`; `popularity` orders the items that name an entity
    (default: item index); `relations` limits the relations used (default: all)."""
    m = graph.item_slots
    n = graph.n_items
    titles = list(titles) if titles is not None else [str(i) for i in range(n)]
    pop = np.asarray(popularity, np.float64) if popularity is not None else -np.arange(n, dtype=np.float64)
    csc = m.tocsc()
    keep_rel = set(relations) if relations is not None else None
    out = []
    for i in range(n):
        parts: dict[str, list[str]] = {}
        for s in m.indices[m.indptr[i]:m.indptr[i + 1]].tolist():
            rel, entity = graph.slots.ids[s].split(SEP, 1)
            if keep_rel is not None and rel not in keep_rel:
                continue
            label = relation_label(rel)
            names = parts.setdefault(label, [])
            if len(names) >= per_relation:
                continue
            if entity in graph.entity_names:
                names.append(graph.entity_names[entity])
                continue
            others = csc.indices[csc.indptr[s]:csc.indptr[s + 1]]
            others = others[others != i]
            if not len(others):
                continue
            best = others[np.argsort(-pop[others], kind="stable")[:titles_per_entity]]
            names.append(f"the {label} of " + ", ".join(titles[j] for j in best.tolist()))
        out.append(" ".join(f"{rel}: {'; '.join(v)}." for rel, v in parts.items() if v))
    return out


def enrich_dataset(dataset: Dataset, graph: KnowledgeGraph | None = None, *, popularity: np.ndarray | None = None,
                   relations: Sequence[str] | None = None, per_relation: int = 2,
                   titles_per_entity: int = 2) -> Dataset:
    """`dataset` with a "kg" item text field and `{kg}` appended to its item template (in
    place; returns it). The graph defaults to `KnowledgeGraph.from_dataset(dataset)`;
    `popularity` (e.g. training counts, never test events) picks the titles that name an
    unnamed entity (default: item order)."""
    from lmrec.text.templates import TEMPLATES

    table = dataset.item_table
    if table is None:
        raise ValueError(f"{dataset.name}: no item table to enrich")
    g = graph if graph is not None else KnowledgeGraph.from_dataset(dataset)
    table.text["kg"] = kg_texts(g, table.title, popularity, relations=relations, per_relation=per_relation,
                                titles_per_entity=titles_per_entity)
    base = dataset.template or TEMPLATES.get(dataset.name, TEMPLATES["generic"])
    base = TEMPLATES.get(base, base)
    if "{kg}" not in base:
        dataset.template = base.rstrip() + " {kg}"
    return dataset
