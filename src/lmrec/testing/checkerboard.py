"""A checkerboard data set where the right answer is known.

Users and items fall into `n_groups` groups (user u in group u % n_groups, item i in group
i % n_groups; with two groups the user x item matrix is a checkerboard). Each user interacts
with every item of their own group and with nothing else. Per user, one own-group item is held
out for test and another for validation, rotating through the group so that every item is
also seen in training by other users. Hence:

- after masking train + valid, the only own-group item left for a user is the test item, so a
  scorer that ranks own-group items first gets HR@1 = 1 on the test stage (HR@2 = 1 on
  the validation stage, where the test item is still unmasked);
- a scorer that ranks the other groups first gets HR@K = 0 for any K below the number of
  other-group items.

Timestamps put train events first, then the validation item, then the test item, so
`temporal_leave_one_out(checkerboard_dataset())` gives the same split.

Example:
    >>> split = checkerboard_split()
    >>> len(split.test) == split.dataset.n_users
    True
"""

from __future__ import annotations

import numpy as np

from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
from lmrec.data.splits import Split

__all__ = ["checkerboard_dataset", "checkerboard_split", "user_groups", "item_groups"]


def user_groups(n_users: int, n_groups: int = 2) -> np.ndarray:
    """Group of each user index."""
    return np.arange(n_users) % n_groups


def item_groups(n_items: int, n_groups: int = 2) -> np.ndarray:
    """Group of each item index."""
    return np.arange(n_items) % n_groups


def _roles(users_per_group: int, items_per_group: int, n_groups: int) -> tuple[np.ndarray, ...]:
    """(user, item, timestamp, role) columns; role 0 train, 1 valid, 2 test."""
    if items_per_group < 3:
        raise ValueError("items_per_group must be at least 3 (train, valid and test items per user)")
    if n_groups < 2:
        raise ValueError("n_groups must be at least 2")
    n_users = users_per_group * n_groups
    users, items, ts, roles = [], [], [], []
    for u in range(n_users):
        g, rank = u % n_groups, u // n_groups
        own = g + n_groups * np.arange(items_per_group)  # the items of group g, ascending
        test = own[rank % items_per_group]
        valid = own[(rank + 1) % items_per_group]
        train = own[(own != test) & (own != valid)]
        seq = np.r_[train, valid, test]
        users.append(np.full(len(seq), u))
        items.append(seq)
        ts.append(1_000_000 + 1000 * u + np.arange(len(seq)))
        roles.append(np.r_[np.zeros(len(train), np.int8), 1, 2])
    return tuple(np.concatenate(c) for c in (users, items, ts, roles))


def checkerboard_dataset(users_per_group: int = 20, items_per_group: int = 15, n_groups: int = 2) -> Dataset:
    """The checkerboard interactions as a Dataset (item categories name the group)."""
    u, i, t, _ = _roles(users_per_group, items_per_group, n_groups)
    n_users, n_items = users_per_group * n_groups, items_per_group * n_groups
    ig = item_groups(n_items, n_groups)
    table = ItemTable(title=[f"item {j} of group {ig[j]}" for j in range(n_items)],
                      categories=[[f"group{ig[j]}"] for j in range(n_items)])
    return Dataset("checkerboard", IdMap(range(n_users)), IdMap(range(n_items)), Interactions(u, i, t),
                   item_table=table, info={"n_groups": n_groups})


def checkerboard_split(users_per_group: int = 20, items_per_group: int = 15, n_groups: int = 2) -> Split:
    """The checkerboard data set with its known split: one test and one validation item per
    user, both of the user's group. `info` holds the `user_group` and `item_group` arrays."""
    ds = checkerboard_dataset(users_per_group, items_per_group, n_groups)
    _, _, _, role = _roles(users_per_group, items_per_group, n_groups)
    inter = ds.interactions
    return Split(
        "checkerboard", ds, inter.select(role == 0), inter.select(role == 1), inter.select(role == 2),
        info={"user_group": user_groups(ds.n_users, n_groups), "item_group": item_groups(ds.n_items, n_groups)},
    )
