"""Where the repository checkout is (the scripts and data files the tests use live there)."""

from __future__ import annotations

from pathlib import Path


def repo_root() -> Path:
    """The repository checkout this package lives in (operator/hwtune/testing/ is 3 levels down)."""
    return Path(__file__).resolve().parents[3]
