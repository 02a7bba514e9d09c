"""hotstats: percentiles of what was recorded, bounded memory however long the operator runs."""

from __future__ import annotations

from hwtune.backends.kubernetes import hotstats
from hwtune.backends.kubernetes.hotstats import HotStats


def test_percentiles_counts_and_windows() -> None:
    stats = HotStats()
    for ms in range(1, 101):
        stats.time("report.total", ms / 1000)
    stats.count("log.entries", 7)
    window = stats.summary(window=True)
    assert window["report.total"]["n"] == 100
    assert window["report.total"]["p50"] == 51.0 or abs(window["report.total"]["p50"] - 50.5) <= 1
    assert window["report.total"]["p99"] == 99.0 and window["report.total"]["max"] == 100.0
    assert window["log.entries"] == {"n": 7}
    assert stats.summary(window=True) == {}  # a window is read once
    run = stats.summary()
    assert run["report.total"]["n"] == 100 and run["log.entries"] == {"n": 7}
    line = HotStats.format(run)
    assert "report.total n=100 p50=" in line and "log.entries n=7" in line


def test_memory_stays_bounded_and_the_sample_stays_representative(monkeypatch) -> None:
    monkeypatch.setattr(hotstats, "KEEP", 1000)
    stats = HotStats()
    for i in range(20_000):
        stats.time("api.patch", (i % 100) / 1000)  # uniform 0..99 ms
    assert len(stats._run["api.patch"]) == 1000
    run = stats.summary()["api.patch"]
    assert run["n"] == 20_000
    assert 40 <= run["p50"] <= 60 and run["p99"] >= 95
