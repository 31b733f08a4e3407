"""The demographic lift feature against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.data.dataset import Dataset, IdMap, Interactions
from lmrec.types import Event, Query
from lmrec.component import FEATURES
from lmrec.rank.user_features import DemographicLift, demographic_attributes
from lmrec.types import Candidates


def _tiny() -> Dataset:
    """4 users (F, F, M, unknown), 3 items; the women watch item 0, the man items 1 and 2."""
    inter = Interactions(np.array([0, 0, 1, 2, 2, 3]), np.array([0, 1, 0, 1, 2, 0]), np.arange(6))
    return Dataset("tiny", IdMap(list("abcd"), sort=False), IdMap(list("xyz"), sort=False), inter,
                   user_attributes={"gender": ["F", "F", "M", None], "zip": ["1", "2", "3", "4"]},
                   has_timestamps=False)


def _vals(f: DemographicLift, user: int, items: list[int]) -> np.ndarray:
    return f.values(Query(user=user), Candidates(np.array(items), np.zeros(len(items))))[:, 0]


def test_auto_attributes_leave_out_identifiers() -> None:
    assert demographic_attributes(_tiny()) == ["gender", "zip"]
    assert demographic_attributes(_tiny(), max_values=3) == ["gender"]
    assert FEATURES.create("demographic", {"attributes": ["gender"]}).fit(_tiny().interactions, _tiny()).columns \
        == ["demo:gender:lift"]


def test_lift_by_hand() -> None:
    ds = _tiny()
    f = DemographicLift(attributes=["gender"], prior=1.0).fit(ds.interactions, ds)
    overall = (np.array([3, 2, 1]) + 1) / (6 + 3)  # add-one item shares over all 6 events
    # women: 3 events, item 0 twice, item 1 once, item 2 never; one pseudo-event at `overall`
    women = (np.array([2, 1, 0]) + overall) / (3 + 1)
    np.testing.assert_allclose(_vals(f, 0, [0, 1, 2]), np.log(women / overall), rtol=1e-5)
    assert _vals(f, 0, [0])[0] > 0 > _vals(f, 0, [2])[0]
    np.testing.assert_allclose(_vals(f, 2, [1]), np.log((1 + overall[1]) / 3 / overall[1]), rtol=1e-5)
    assert np.isnan(_vals(f, 3, [0])).all()  # no gender known
    assert np.isnan(_vals(f, 99, [0])).all()  # a user the feature never saw


def test_prior_shrinks_small_groups() -> None:
    ds = _tiny()
    raw = DemographicLift(attributes=["gender"], prior=0.1).fit(ds.interactions, ds)
    smooth = DemographicLift(attributes=["gender"], prior=100.0).fit(ds.interactions, ds)
    assert abs(_vals(smooth, 2, [1])[0]) < abs(_vals(raw, 2, [1])[0])
    assert _vals(smooth, 2, [1])[0] > 0  # same sign


def test_update_equals_fit() -> None:
    ds = _tiny()
    full = DemographicLift(attributes=["gender"]).fit(ds.interactions, ds)
    online = DemographicLift(attributes=["gender"]).fit(ds.interactions.select(np.arange(6) < 3), ds)
    for u, i in zip(ds.interactions.user[3:], ds.interactions.item[3:]):
        online.update([Event(int(u), int(i), 0)])
    np.testing.assert_allclose(_vals(online, 0, [0, 1, 2]), _vals(full, 0, [0, 1, 2]))


def test_unknown_attribute_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a user attribute"):
        DemographicLift(attributes=["income"]).fit(_tiny().interactions, _tiny())
