"""Shared test fixtures.

`shared_data_dir` is the real-data directory (LMREC_DATA_DIR, else ../shared/data). Mark a
test with the data sets it needs, by registry name or folder name, and it is skipped when
any of them is absent:

    @pytest.mark.shared_data("ml-100k")
    def test_x(shared_data_dir): ...
"""

from __future__ import annotations

from pathlib import Path

import pytest


def _folder(name: str) -> str:
    from lmrec.data.loaders import DATASETS

    return DATASETS[name].folder if name in DATASETS else name


@pytest.fixture
def shared_data_dir(request: pytest.FixtureRequest) -> Path:
    """The shared data directory; skips when it (or a data set named by the test's
    `shared_data` marker) is absent."""
    from lmrec.settings import data_dir

    root = data_dir()
    marker = request.node.get_closest_marker("shared_data")
    wanted = [_folder(n) for n in marker.args] if marker else []
    for path in [root] + [root / f for f in wanted]:
        if not path.is_dir():
            pytest.skip(f"shared data not found at {path}; set LMREC_DATA_DIR")
    return root
