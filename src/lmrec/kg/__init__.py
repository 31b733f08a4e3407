"""Knowledge graph: typed item/entity graph (`graph`), triple files (`triples`), KG
embeddings (`embed`). The KG recall channel is `lmrec.recall.kg`, the ranker features
`lmrec.rank.kg_features`; explanations name a path through the graph."""

from lmrec.kg.graph import GraphConfig, KnowledgeGraph, relation_label
from lmrec.kg.triples import attach_triples, read_triples

__all__ = ["GraphConfig", "KnowledgeGraph", "relation_label", "read_triples", "attach_triples"]
