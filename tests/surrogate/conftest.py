"""Surrogate tests need torch, gpytorch and torch-geometric (the ``torch`` extra)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("gpytorch")
pytest.importorskip("torch_geometric")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/surrogate/" in str(item.fspath):
            item.add_marker(pytest.mark.torch)
