"""Tests that must own the machine's Ray (the fake multi-node autoscaler) run only when asked for:
`pytest -m isolated tests/isolated` or REFINERY_ISOLATED=1, in their own pytest process after the main suite
(scripts/test.sh does this)."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "isolated: needs the machine's Ray to itself; run alone with -m isolated"
    )


def pytest_collection_modifyitems(config, items):
    expr = config.getoption("-m") or ""
    wanted = os.environ.get("REFINERY_ISOLATED") == "1" or ("isolated" in expr and "not isolated" not in expr)
    if wanted:
        return
    skip = pytest.mark.skip(
        reason="isolated test: run with `pytest -m isolated tests/isolated` or REFINERY_ISOLATED=1"
    )
    for item in items:
        if item.get_closest_marker("isolated"):
            item.add_marker(skip)
