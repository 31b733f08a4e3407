"""The knowledge graph: building from metadata and triple files, cleaning, the KG channel,
features, embeddings, explanation paths and the service (a new item joins at once)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import pytest

from lmrec.data.cleaning import DataError
from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
from lmrec.kg import GraphConfig, KnowledgeGraph, attach_triples, read_triples
from lmrec.kg.embed import KGEConfig, train_kge
from lmrec.pipeline import RecPipeline
from lmrec.recall.kg import KGChannel
from lmrec.types import Event, HistoryBatch


def shop(n_brands: int = 6, per_brand: int = 5, n_users: int = 60, seed: int = 0) -> Dataset:
    """Items of `n_brands` brands in a two-level category tree; every user buys within one
    brand (and some random items), so 'brand' predicts co-purchase and 'category' less."""
    rng = np.random.default_rng(seed)
    n = n_brands * per_brand
    brand = [f"Brand{b}" for b in range(n_brands) for _ in range(per_brand)]
    cats = [[f"Tools > {'Power' if i % 2 else 'Hand'}"] for i in range(n)]
    table = ItemTable(title=[f"item {i}" for i in range(n)], categories=cats,
                      attributes={"brand": brand, "year": [1990 + (i % 3) * 10 for i in range(n)]})
    users, items, ts = [], [], []
    for u in range(n_users):
        b = u % n_brands
        own = rng.choice(np.arange(b * per_brand, (b + 1) * per_brand), 3, replace=False)
        other = rng.choice(n, 2, replace=False)
        for t, i in enumerate([*own, *other]):
            users.append(u)
            items.append(int(i))
            ts.append(1000 + t)
    return Dataset("shop", IdMap([f"u{u}" for u in range(n_users)], sort=False),
                   IdMap([f"i{i}" for i in range(n)], sort=False),
                   Interactions(np.array(users), np.array(items), np.array(ts)), item_table=table)


def test_graph_from_metadata_has_hierarchy_attributes_and_decades() -> None:
    ds = shop()
    g = KnowledgeGraph.from_dataset(ds)
    assert set(g.relations) >= {"category", "brand", "decade", "subcategory_of"}
    # a category path gives every prefix, and the child -> parent edge
    assert ("category", "category:Tools > Power") in g.shared(1, 3)
    parent = g.entities.index("category:Tools")
    child = g.entities.index("category:Tools > Power")
    assert [child, g.relations.index("subcategory_of"), parent] in g.edges.tolist()
    # "Tools" is held by every item: above max_df, it carries no weight
    assert g.slot_weights()[g.slots.index("category\x1fcategory:Tools")] == 0
    assert g.shared(0, 1)[0] == ("brand", "brand:brand0")  # the rarest shared entity first
    assert g.entity_label("brand:brand0") == "Brand0"
    assert g.summary()["items_in_graph"] == ds.n_items


def test_relation_weights_follow_behaviour() -> None:
    ds = shop()
    g = KnowledgeGraph.from_dataset(ds)
    w = g.fit_relation_weights(ds.interactions.to_csr(ds.n_users, ds.n_items))
    assert w["brand"] > 0.5 > w["decade"]  # co-purchase follows the brand, not the decade


TRIPLES = """head\trelation\ttail
i0\tmade_by\tacme
i1\tmade_by\tacme
i1\tmade_by\tacme
i9999\tmade_by\tacme
i2\tmade by\u0007\tacme
i3\t\x01\tacme
i4\tsame_as\ti4
acme\tlocated_in\tohio
i5\tmade_by
"""


def test_triple_file_cleaning_report_never_crashes() -> None:
    ds = shop()
    frame, rep = read_triples(io.StringIO(TRIPLES), ds, name="kg.tsv", sep="\t", heads="auto")
    assert rep.counts == {"malformed_row": 1, "duplicate": 1, "bad_relation": 1, "self_loop": 1}
    assert rep.repaired == {"relation_renamed": 1}
    assert rep.rows_in == 9 and rep.rows_out == 5
    # auto: i9999 is not an item, so it is an entity; "items" mode reports it as unknown
    frame2, rep2 = read_triples(io.StringIO(TRIPLES), ds, name="kg.tsv", sep="\t")
    assert rep2.counts["unknown_item"] == 2  # i9999 and the entity "acme" as a head
    assert rep2.examples["unknown_item"][0].line == 5
    assert set(frame2["relation"]) == {"made_by"}
    with pytest.raises(DataError, match="kg.tsv line 4"):
        read_triples(io.StringIO(TRIPLES), ds, name="kg.tsv", sep="\t", strict=True)
    g = KnowledgeGraph.from_dataset(attach_triples(ds, frame))
    assert ("made_by", "acme") in g.shared(0, 1) and ("made_by", "acme") in g.shared(0, 2)
    assert [g.entities.index("acme"), g.relations.index("located_in"), g.entities.index("ohio")] in g.edges.tolist()


def test_triple_file_on_disk_and_missing(tmp_path: Path) -> None:
    ds = shop()
    p = tmp_path / "kg.csv"
    p.write_text("head,relation,tail,tail_type\ni0,similar_to,i1,item\n")
    frame, rep = read_triples(p, ds)
    assert frame.iloc[0].tolist() == ["i0", "similar_to", "i1", True, True]
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_triples(tmp_path / "nope.tsv", ds)


def test_channel_walks_two_hops_and_reads_the_request_history() -> None:
    ds = shop()
    ch = KGChannel(relation_weights="fit").fit(ds.interactions, ds)
    s = ch.user_scores(HistoryBatch([-1], [np.array([0])], [np.array([1])], [np.array([1.0])]))
    top = s.top(0, 4, np.array([0]))[0]
    assert set(top.tolist()) == {1, 2, 3, 4}  # the other items of brand 0
    s = ch.user_scores(HistoryBatch([-1], [np.array([0, 7])], [np.array([1, 2])], [np.array([1.0, 1.0])]))
    assert set(s.top(0, 8, np.array([0, 7]))[0].tolist()) >= {5, 6, 8, 9}  # brand 1 joins


def test_a_new_item_joins_the_graph_at_once() -> None:
    ds = shop()
    pipe = RecPipeline(spec={"encoder": "fake",
                             "channels": [{"name": "kg", "model": "kg", "quota": 20},
                                          {"name": "popular", "model": "popular", "weight": 0.0}],
                             "rank": {"ranker": "none", "features": [{"name": "channels"}, {"name": "kg"}]},
                             "fallback": {"chain": ["popular"]}}).fit(ds.interactions, ds)
    pipe.upsert_items(["new"], [{"title": "new drill", "categories": ["Tools > Power"],
                                 "attributes": {"brand": "Brand2", "year": 2020}}])
    new = pipe.dataset.items.index("new")
    pipe.update([Event(0, 10, 9999), Event(0, 11, 10000)])  # user 0 buys two Brand2 items
    rec = pipe.recommend(0, k=5, explain=True)
    assert new in rec.items.tolist()
    e = rec.explanations[rec.items.tolist().index(new)]
    assert e["kg_path"]["relation"] == "brand" and e["kg_path"]["entity_name"] == "Brand2"
    assert e["kg_path"]["because"]["item_id"] in ("i10", "i11")
    assert e["kg_path"]["text"].startswith("you watched item 1")


def test_pipeline_with_kg_round_trips_with_its_triples(tmp_path: Path) -> None:
    ds = shop()
    frame, _ = read_triples(io.StringIO("i0\tmade_by\tacme\ni29\tmade_by\tacme\n"), ds, name="t.tsv", sep="\t")
    attach_triples(ds, frame)
    spec = {"encoder": "fake", "channels": [{"name": "kg", "model": "kg"}, {"name": "ease", "model": "ease"}],
            "rank": {"ranker": "none", "features": [{"name": "channels"}, {"name": "kg"}]}}
    pipe = RecPipeline(spec=spec).fit(ds.interactions, ds)
    pipe.save(tmp_path / "p")
    back = RecPipeline.load(tmp_path / "p")
    assert back.dataset.triples is not None and len(back.dataset.triples) == 2
    for u in range(10):
        a, b = pipe.recommend(u, k=10), back.recommend(u, k=10)
        assert a.items.tolist() == b.items.tolist()
    assert ("made_by", "acme") in back.knowledge_graph().shared(0, 29)


def test_kg_features_separate_relations() -> None:
    ds = shop()
    from lmrec.rank.kg_features import KGFeatures
    from lmrec.types import Candidates, Query

    f = KGFeatures().fit(ds.interactions, ds)
    cols = f.columns
    v = f.values(Query(user=0), Candidates(np.array([1, 29]), np.zeros(2)))
    brand = cols.index("kg:rel:brand")
    hist = set(ds.interactions.item[ds.interactions.user == 0].tolist())
    share_b0 = np.mean([h < 5 for h in hist])
    assert v[0, brand] == pytest.approx(share_b0, abs=1e-6)
    assert v[0, cols.index("kg:linked")] == 1.0


def test_kge_link_prediction_beats_chance() -> None:
    # clusters of items that share a maker, a designer and a factory: a held-out link is
    # implied by the item's other links and its cluster mates' (a brand alone would not be)
    ds = shop(n_brands=8, per_brand=8, n_users=4)
    rows = [(f"i{i}", rel, f"{rel}{i // 8}") for i in range(64) for rel in ("maker", "designer", "factory")]
    frame, _ = read_triples(io.StringIO("".join(f"{h}\t{r}\t{t}\n" for h, r, t in rows)), ds, name="t", sep="\t")
    g = KnowledgeGraph.from_dataset(attach_triples(ds, frame), GraphConfig(sources=["triples"]))
    r = train_kge(g, KGEConfig(method="distmult", dim=16, epochs=150, lr=0.05, valid_fraction=0.1,
                               test_fraction=0.1, eval_every=10))
    n_nodes = g.n_items + len(g.entities)
    assert r.metrics["test_edges"] > 0 and r.metrics["best_epoch"] >= 10
    assert r.metrics["test_mrr"] > 5.0 / n_nodes  # chance: about 1 / n_nodes
    assert r.item_vectors(normalised=True).shape == (ds.n_items, 16)


def test_entity_and_relation_vectors_from_the_lm() -> None:
    from lmrec.recall.item2item import dataset_item_vectors, resolve_encoder
    from lmrec.text.base import normalize

    ds = shop()
    frame, _ = read_triples(io.StringIO("i0\tdirector\tp1\ni1\tdirector\tp1\n"), ds, name="t", sep="\t")
    g = KnowledgeGraph.from_dataset(attach_triples(ds, frame))
    items = dataset_item_vectors(ds, "fake")
    enc = resolve_encoder("fake")
    ent = g.entity_vectors(items, lambda texts: normalize(enc.encode_items(texts)))
    assert ent.shape == (len(g.slots), items.shape[1])
    named = g.slots.index("brand\x1fbrand:brand0")
    assert np.allclose(ent[named], normalize(enc.encode_items(["brand: Brand0"]))[0], atol=1e-5)
    anon = g.slots.index("director\x1fp1")  # no name: the mean of its two items' vectors
    mean = items[0] + items[1]
    assert np.allclose(ent[anon], mean / np.linalg.norm(mean), atol=1e-5)
    assert g.relation_vectors(lambda t: normalize(enc.encode_items(t))).shape == (len(g.relations), items.shape[1])


def shared_counts_by_relation(g: KnowledgeGraph, candidates: np.ndarray, history: np.ndarray) -> np.ndarray:
    """Reference for `KnowledgeGraph.overlap`: (len(candidates), n_relations): for each relation, the share of `history` items that
    share at least one slot of that relation (with a positive weight) with the candidate.
    One sparse product: history rows are split by relation, (item, relation) pairs."""
    n_rel = len(g.relations)
    out = np.zeros((len(candidates), n_rel), np.float32)
    history = np.asarray(history, np.int64)
    history = history[history < g.n_items]
    candidates = np.asarray(candidates, np.int64)
    ok = candidates < g.n_items
    if not len(history) or not ok.any():
        return out
    live = g.live_slots()
    h = live[history].tocoo()
    split = sp.csr_matrix((np.ones(h.nnz, np.float32), (h.row * n_rel + g.slot_relation[h.col], h.col)),
                          shape=(len(history) * n_rel, live.shape[1]))
    shared = (live[candidates[ok]] @ split.T).tocoo()  # (candidate, history item x relation) counts
    hit = np.zeros((int(ok.sum()), n_rel), np.float32)
    np.add.at(hit, (shared.row, shared.col % n_rel), 1.0)
    out[ok] = hit / len(history)
    return out


def test_overlap_join_equals_sparse_products() -> None:
    ds = shop(n_brands=5, per_brand=6)
    g = KnowledgeGraph.from_dataset(ds, GraphConfig(max_df=0.6))
    w = g.weighted()
    rng = np.random.default_rng(1)
    for _ in range(20):
        cands = rng.choice(ds.n_items + 3, 12, replace=False)  # a few beyond the graph
        hist = np.unique(rng.choice(ds.n_items, 7))
        sims, shares = g.overlap(cands, hist)
        ok = cands < ds.n_items
        ref = np.zeros_like(sims)
        ref[ok] = (w[cands[ok]] @ w[hist].T).toarray()
        assert np.allclose(sims, ref, atol=1e-6)
        assert np.allclose(shares, shared_counts_by_relation(g, cands, hist))
        assert shares.max() > 0


def test_affinity_equals_a_brute_force_count() -> None:
    ds = shop(n_brands=5, per_brand=6)
    g = KnowledgeGraph.from_dataset(ds, GraphConfig(max_df=0.6))
    w = g.weighted()
    df = g.df()
    rng = np.random.default_rng(2)
    for _ in range(20):
        cands = rng.choice(ds.n_items + 3, 12, replace=False)
        hist = np.unique(np.r_[rng.choice(ds.n_items, 6), cands[:1] % ds.n_items])
        aff, linked = g.affinity(cands, hist)
        ref_aff = np.zeros_like(aff)
        ref_linked = np.zeros_like(linked)
        for k, c in enumerate(cands):
            if c >= ds.n_items:
                continue
            hist_slots = [set(w[h].indices.tolist()) for h in hist if h != c]  # never itself
            slots = set(w[c].indices.tolist())
            ref_linked[k] = sum(bool(slots & hs) for hs in hist_slots)
            for s in slots:
                n = sum(s in hs for hs in hist_slots)
                if n:
                    r = g.slot_relation[s]
                    ref_aff[k, r] = max(ref_aff[k, r], min(n / max(df[s] - 1, 1), 1.0))
        assert np.allclose(aff, ref_aff, atol=1e-6)
        assert np.array_equal(linked, ref_linked)
        assert aff.max() > 0


def test_kg_features_affinity_columns() -> None:
    ds = shop()
    from lmrec.rank.kg_features import KGFeatures
    from lmrec.types import Candidates, Query

    f = KGFeatures(affinity=True).fit(ds.interactions, ds)
    cols = f.columns
    assert "kg:n_linked" in cols and "kg:aff:brand" in cols
    v = f.values(Query(user=0), Candidates(np.array([1, 29]), np.zeros(2)))
    assert v.shape == (2, len(cols))
    hist = set(ds.interactions.item[ds.interactions.user == 0].tolist())
    own = len([h for h in hist if h < 5 and h != 1])
    assert v[0, cols.index("kg:aff:brand")] == pytest.approx(own / 4, abs=1e-6)  # brand 0: 4 other items
    assert "kg:aff:brand" not in KGFeatures().fit(ds.interactions, ds).columns


def test_ease_kg_adds_the_graph_to_ease() -> None:
    from lmrec.recall.ease import EASE
    from lmrec.recall.kg import EASEKG

    ds = shop()
    plain = EASE(lam=20.0).fit(ds.interactions, ds)
    same = EASEKG(lam=20.0, alpha=0.0).fit(ds.interactions, ds)
    np.testing.assert_allclose(same.weights, plain.weights, rtol=1e-5, atol=1e-6)
    kg = EASEKG(lam=20.0, alpha=5.0).fit(ds.interactions, ds)
    # two items of one brand that no user bought together gain weight towards each other
    x = ds.interactions.to_csr(ds.n_users, ds.n_items)
    co = (x.T @ x).toarray()
    pairs = [(i, j) for i in range(ds.n_items) for j in range(ds.n_items)
             if i != j and i // 5 == j // 5 and co[i, j] == 0]
    assert pairs
    gain = np.mean([kg.weights[i, j] - plain.weights[i, j] for i, j in pairs])
    assert gain > 0.01
