"""One engine: the lists the HTTP service serves are the lists `RecPipeline.recommend` gives
offline for the same pipeline config and the same events.

A generated data set's catalog and training events are fed through the API as a client would
(POST /items, POST /events with timestamps), the pipeline is trained through POST
/admin/train, and every user's GET /recommend list is compared with an offline fit of the same
config on the same data set (built from files the way `lmrec eval` builds it), list by list.
The pipeline exercises every stage kind: CF (EASE, ALS), LM and transition channels, a
fallback, LightGBM LambdaRank over the default features, MMR re-ranking.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lmrec.data.dataset import build_dataset
from lmrec.data.splits import temporal_leave_one_out
from lmrec.pipeline import RecPipeline
from lmrec.serving.app import create_app
from lmrec.serving.config import ServiceConfig
from lmrec.testing.toy import toy_dataset

pytestmark = pytest.mark.slow

CONFIG = """
extends = "{default}"
encoder = "fake"

[[channels]]
name = "lm"
params = {{ encoder = "fake" }}

[[channels]]
name = "als"
params = {{ factors = 8, iterations = 5, num_threads = 1 }}

[[channels]]
name = "transitions"
before = "popular"
model = "transitions"
quota = 30
weight = 0.5

[rank.params.lambdarank]
n_estimators = 20
min_child_samples = 5

[rerank]
stages = [{{ name = "seen" }}, {{ name = "available" }}, {{ name = "mmr", params = {{ lambda = 0.8 }} }}]
"""


def test_served_lists_equal_offline_lists() -> None:
    from lmrec.pipeline.spec import CONFIG_DIR

    toy = toy_dataset(n_users=50, n_items=40, events_per_user=12, seed=3)
    # the data set as a loader builds it from files: ids in IdMap order, the service's item text
    raw = toy.interactions
    ds = build_dataset("toy", [toy.users.ids[u] for u in raw.user], [toy.items.ids[i] for i in raw.item],
                       raw.timestamp, item_ids=toy.items.ids, item_table=toy.item_table)
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "pipe.toml"
        cfg_path.write_text(CONFIG.format(default=CONFIG_DIR / "default.toml"))
        service = ServiceConfig(engine={"home": Path(tmp) / "home", "encoder": "fake", "index": "flat"},
                                auth_enabled=False, rate_limit_rps=0)
        ds.template = service.engine.item_template
        split = temporal_leave_one_out(ds)
        train = split.train_valid
        app = create_app(service)
        with TestClient(app) as client:
            while not app.state.service.ready:
                assert app.state.service.open_error is None
            ds.item_table.created_at = 900_000 + 7 * np.arange(ds.n_items)  # release times, sent along
            items = [{"item_id": ds.items.ids[i], "title": ds.item_table.title[i],
                      "categories": ds.item_table.categories[i], "created_at": float(ds.item_table.created_at[i])}
                     for i in range(ds.n_items)]
            assert client.post("/items", json={"items": items}).status_code == 200
            order = np.lexsort((train.item, train.timestamp))
            events = [{"user_id": ds.users.ids[train.user[j]], "item_id": ds.items.ids[train.item[j]],
                       "kind": "view", "timestamp": float(train.timestamp[j])} for j in order]
            for s in range(0, len(events), 500):
                r = client.post("/events", json=events[s:s + 500])
                assert r.status_code == 200 and r.json()["rejected"] == [], r.text
            r = client.post("/admin/train", json={"config": str(cfg_path)})
            assert r.status_code == 200, r.text
            served = {u: [i["item_id"] for i in client.get(f"/recommend/{u}", params={"k": 10}).json()["items"]]
                      for u in ds.users.ids}
        offline = RecPipeline(str(cfg_path)).fit(train, ds)
        for u, user_id in enumerate(ds.users.ids):
            want = [ds.items.ids[i] for i in offline.recommend(u, 10).items]
            assert served[user_id] == want, user_id
