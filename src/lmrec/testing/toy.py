"""Small generated data sets for tests and the offline demo (no files needed)."""

from __future__ import annotations

import numpy as np

from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable

GENRES = ["action", "comedy", "drama", "horror", "romance", "scifi"]


def toy_dataset(n_users: int = 60, n_items: int = 40, events_per_user: int = 12, seed: int = 0,
                name: str = "toy") -> Dataset:
    """A clustered data set: each user prefers one genre and mostly picks its items, with
    popular items more likely. Timestamps increase per user; item text names the genre."""
    rng = np.random.default_rng(seed)
    item_genre = np.arange(n_items) % len(GENRES)
    pop = 1.0 / (1 + np.arange(n_items)) ** 0.5
    users, items, ts = [], [], []
    for u in range(n_users):
        g = u % len(GENRES)
        p = np.where(item_genre == g, 8.0, 1.0) * pop
        p = p / p.sum()
        n = min(events_per_user, n_items - 1)
        chosen = rng.choice(n_items, size=n, replace=False, p=p)
        start = 1_000_000 + u * 10
        for j, it in enumerate(chosen):
            users.append(u)
            items.append(int(it))
            ts.append(start + j * 100)
    table = ItemTable(
        title=[f"{GENRES[item_genre[i]]} movie {i}" for i in range(n_items)],
        categories=[[GENRES[item_genre[i]]] for i in range(n_items)],
    )
    umap = IdMap([f"u{u}" for u in range(n_users)], sort=False)
    imap = IdMap([str(i + 1) for i in range(n_items)])
    return Dataset(name, umap, imap, Interactions(np.array(users), np.array(items), np.array(ts)),
                   item_table=table)


def demo_dataset(seed: int = 0) -> Dataset:
    """A generated data set big enough for the offline demo to show differences between
    models (600 users, 300 items, 25 events each)."""
    return toy_dataset(n_users=600, n_items=300, events_per_user=25, seed=seed, name="generated-demo")


def cold_start_dataset() -> Dataset:
    """20 users on items 1..10 early in the timeline, then 10 events on two new items
    (11, 12) at the very end: a cold-start split's new items are exactly those two."""
    from lmrec.data.dataset import build_dataset

    users, items, ts = [], [], []
    for u in range(20):
        for j in range(8):
            users.append(u)
            items.append((u + j) % 10)
            ts.append(u * 10 + j)
    for u in range(10):
        users.append(u)
        items.append(10 + u % 2)
        ts.append(1000 + u)
    return build_dataset("cold", users, items, ts)
