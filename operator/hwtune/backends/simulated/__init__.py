"""Simulated backend: replay a benchmark table on a simulated clock (see ``backend``)."""

from hwtune.backends.simulated.backend import SimulatedBackend, SimulatedClock
from hwtune.backends.simulated.table import (
    MEMORY_KEY,
    RUNTIME_KEY,
    InMemoryTable,
    TableProtocol,
    synthetic_table,
)

__all__ = [
    "MEMORY_KEY",
    "RUNTIME_KEY",
    "InMemoryTable",
    "SimulatedBackend",
    "SimulatedClock",
    "TableProtocol",
    "synthetic_table",
]
